package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"os"
	"time"

	"github.com/mattn/go-sqlite3"
	"go.mau.fi/util/dbutil"
)

// sqliteDriver is what the database type "sqlite3-fk-wal" opens: the
// pragmas of mautrix's driver of that name (foreign keys, WAL, synchronous
// NORMAL, a 5 s busy timeout), and two more: no automatic checkpoints, and
// a WAL file cut back to defaultWALLimit whenever it starts over.
//
// Left to itself, SQLite copies the WAL back into the database file, with
// an fsync of each, inside whichever commit takes the WAL past 1,000 pages.
// At 1,000 receipts a second that is a commit every fraction of a second
// waiting milliseconds on the disk, with every receipt behind it: the p99
// of BenchmarkXMPPToMatrixLatency was 4 ms with it and 1.9 ms without, the
// same as with the database on tmpfs. The checkpointer below does that
// work on a connection of its own, off every receipt's path; in WAL mode a
// PASSIVE checkpoint blocks neither readers nor writers, but alone it does
// not keep the WAL small (see walLimit).
const sqliteDriver = "sqlite3-xmppbridge"

func init() {
	sql.Register(sqliteDriver, &sqlite3.SQLiteDriver{
		ConnectHook: func(conn *sqlite3.SQLiteConn) error {
			for _, pragma := range []string{
				"PRAGMA foreign_keys = ON",
				"PRAGMA journal_mode = WAL",
				"PRAGMA synchronous = NORMAL",
				"PRAGMA busy_timeout = 5000",
				"PRAGMA wal_autocheckpoint = 0",
				fmt.Sprintf("PRAGMA journal_size_limit = %d", defaultWALLimit),
			} {
				if _, err := conn.Exec(pragma, []driver.Value{}); err != nil {
					return fmt.Errorf("%s: %w", pragma, err)
				}
			}
			return nil
		},
	})
}

// checkpointEvery is how often the checkpointer copies the WAL back into
// the database file. A second of writes at the bench's top rate is a few
// thousand pages of WAL: readers find their pages in it as fast as in the
// database file.
const checkpointEvery = time.Second

// defaultWALLimit is the size of the WAL file past which the checkpointer
// empties it, and the size a WAL file is cut back to when SQLite starts it
// over (journal_size_limit).
//
// A PASSIVE checkpoint copies frames into the database file but never
// starts the WAL over: only the next writer can, and only once every frame
// is copied and no reader still reads from the WAL. Under steady load some
// reader always does, or a commit landed after the checkpoint began, so the
// WAL grew without end (3 GB in minutes). Readers then look pages up in an
// ever longer WAL index, and the first connection after a crash reads the
// whole file to rebuild it: 2 s before the first query.
//
// So when the file passes walLimit the checkpointer runs a PASSIVE
// checkpoint (which copies nearly everything without blocking anyone) and
// then a TRUNCATE one. TRUNCATE takes the write lock, copies the frames
// committed since, waits for the readers still in the WAL to finish, and
// empties the file. Writers wait meanwhile (their busy_timeout applies):
// the frames of a fraction of a second, two fsyncs and the end of the
// readers' queries; readers are never blocked. TRUNCATE rather than
// RESTART because the file's size is then the WAL's size: stat tells
// the checkpointer all it needs every walCheckEvery, and a WAL that
// SQLite starts over by itself is cut back by journal_size_limit.
//
// 32 MiB is about two seconds of writes at the bench's top rate: a reset
// every few seconds at full load, every few minutes at 1,000 receipts a
// second, and a WAL file that stays under 64 MiB even if the writes of a
// whole walCheckEvery land on top.
const defaultWALLimit = 32 << 20

// walCheckEvery is how often the checkpointer looks at the WAL file's
// size: a stat, nearly free.
const walCheckEvery = 100 * time.Millisecond

// walResetWait is the busy timeout of the checkpointer's own connection.
// The TRUNCATE checkpoint holds the write lock while it waits for readers:
// it must give up long before the writers queued behind it (5 s) do. It
// tries again at the next check.
const walResetWait = 250 * time.Millisecond

// walLimit is the WAL size past which the checkpointer empties it; 0 means
// never (tests only, to show that PASSIVE checkpoints alone do not bound
// it).
func (db *Database) walLimit() int64 {
	return db.opts.walLimit
}

// checkpointer runs PASSIVE checkpoints every checkpointEvery, and empties
// the WAL when it passes walLimit, until ctx ends.
func (db *Database) checkpointer(ctx context.Context) {
	ck := &walCheckpointer{db: db}
	defer ck.close()
	tick := time.NewTicker(min(db.opts.walCheckEvery, db.opts.checkpointEvery))
	defer tick.Stop()
	var lastPassive time.Time
	failing := false
	var overSince time.Time // the WAL could not be emptied since then
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		size := db.walSize()
		over := db.walLimit() > 0 && size > db.walLimit()
		if !over && time.Since(lastPassive) < db.opts.checkpointEvery {
			continue
		}
		st, err := ck.checkpoint(ctx, checkpointPassive)
		lastPassive = time.Now()
		if err == nil {
			db.checkpoints.Add(1)
			// Where the file cannot be found, the frames in use tell.
			over = over || (db.walLimit() > 0 && int64(st.frames)*(ck.pageSize+24) > db.walLimit())
		}
		if err == nil && over {
			var emptied bool
			emptied, err = ck.empty(ctx)
			switch {
			case emptied:
				overSince = time.Time{}
			case overSince.IsZero():
				overSince = time.Now()
			case time.Since(overSince) > 10*time.Second:
				// A reader has been in the WAL for seconds (or a writer
				// never lets go): it grows until that ends.
				db.log.Warn().Int64("wal_bytes", size).Dur("for", time.Since(overSince)).
					Msg("The SQLite WAL is over its limit and cannot be emptied: readers still in it")
				overSince = time.Now()
			}
		}
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			// Once per run of failures: the WAL only grows meanwhile.
			db.log.Warn().Err(err).Msg("Failed to checkpoint the SQLite WAL; will retry")
			failing = true
		case err == nil && failing:
			db.log.Info().Msg("SQLite WAL checkpoints work again")
			failing = false
		}
	}
}

// walSize is the size of the WAL file, 0 if there is none or its name is
// unknown (an in-memory database).
func (db *Database) walSize() int64 {
	if db.walPath == "" {
		return 0
	}
	st, err := os.Stat(db.walPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// walCheckpointer is the checkpointer's own connection, kept out of the
// pool so that its busy timeout can be walResetWait.
type walCheckpointer struct {
	db       *Database
	conn     *sql.Conn
	pageSize int64
}

func (ck *walCheckpointer) open(ctx context.Context) error {
	if ck.conn != nil {
		return nil
	}
	conn, err := ck.db.db.RawDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("get a connection for checkpoints: %w", err)
	}
	if err = conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&ck.pageSize); err == nil {
		_, err = conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", walResetWait.Milliseconds()))
	}
	if err != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // not back into the pool
		_ = conn.Close()
		return fmt.Errorf("set up the connection for checkpoints: %w", err)
	}
	ck.conn = conn
	return nil
}

func (ck *walCheckpointer) close() {
	if ck.conn == nil {
		return
	}
	// Back into the pool as the others are.
	if _, err := ck.conn.ExecContext(context.Background(), "PRAGMA busy_timeout = 5000"); err != nil {
		_ = ck.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = ck.conn.Close()
	ck.conn = nil
}

func (ck *walCheckpointer) checkpoint(ctx context.Context, mode checkpointMode) (walState, error) {
	if err := ck.open(ctx); err != nil {
		return walState{}, err
	}
	st, err := checkpointOn(ctx, ck.conn, mode)
	if err != nil {
		// Another connection next time.
		_ = ck.conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = ck.conn.Close()
		ck.conn = nil
	}
	return st, err
}

// empty runs a TRUNCATE checkpoint: false if readers or a writer held it
// up past walResetWait.
func (ck *walCheckpointer) empty(ctx context.Context) (bool, error) {
	start := time.Now()
	st, err := ck.checkpoint(ctx, checkpointTruncate)
	took := time.Since(start)
	if err != nil {
		return false, err
	}
	if st.busy {
		ck.db.walResetsBusy.Add(1)
		ck.db.log.Debug().Dur("took", took).Msg("SQLite WAL not emptied yet: busy")
		return false, nil
	}
	ck.db.walResets.Add(1)
	if ns := took.Nanoseconds(); ns > ck.db.walResetMax.Load() {
		ck.db.walResetMax.Store(ns)
	}
	ck.db.log.Debug().Dur("took", took).Int("frames", st.frames).Msg("Emptied the SQLite WAL")
	return true, nil
}

// checkpointMode is a mode of SQLite's PRAGMA wal_checkpoint.
type checkpointMode string

const (
	checkpointPassive  checkpointMode = "PASSIVE"  // what it can without waiting
	checkpointTruncate checkpointMode = "TRUNCATE" // all, then empty the WAL
)

// walState is what PRAGMA wal_checkpoint reports: whether it was held up
// (only the modes that wait), the frames in the WAL and how many of them
// are in the database file.
type walState struct {
	busy           bool
	frames, copied int
}

type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func checkpointOn(ctx context.Context, q rowQuerier, mode checkpointMode) (walState, error) {
	var busy, frames, copied int
	err := q.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+string(mode)+")").Scan(&busy, &frames, &copied)
	if err != nil {
		return walState{}, fmt.Errorf("checkpoint the WAL (%s): %w", mode, err)
	}
	return walState{busy: busy != 0, frames: frames, copied: copied}, nil
}

// Checkpoint copies the WAL back into the database file and returns how
// many frames the WAL still holds that are not in the file. On PostgreSQL
// it does nothing.
func (db *Database) Checkpoint(ctx context.Context, mode checkpointMode) (behind int, err error) {
	if db.db.Dialect != dbutil.SQLite {
		return 0, nil
	}
	var busy, frames, done int
	err = db.db.QueryRow(ctx, "PRAGMA wal_checkpoint("+string(mode)+")").Scan(&busy, &frames, &done)
	if err != nil {
		return 0, fmt.Errorf("checkpoint the WAL (%s): %w", mode, err)
	}
	return max(frames-done, 0), nil
}

// sqliteWALPath is the path of the WAL file of db's main database, "" if
// it has none (in memory).
func sqliteWALPath(ctx context.Context, db *dbutil.Database) (string, error) {
	rows, err := db.Query(ctx, "PRAGMA database_list")
	if err != nil {
		return "", fmt.Errorf("find the database file: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int
		var name, file string
		if err := rows.Scan(&seq, &name, &file); err != nil {
			return "", fmt.Errorf("find the database file: %w", err)
		}
		if name == "main" && file != "" {
			return file + "-wal", nil
		}
	}
	return "", rows.Err()
}
