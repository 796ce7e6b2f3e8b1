package database

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
	"go.mau.fi/util/dbutil"

	"xmppbridge/internal/retry"
)

// sqliteDriver is what the database type "sqlite3-fk-wal" opens: the
// pragmas of mautrix's driver of that name (foreign keys, WAL, synchronous
// NORMAL, a 5 s busy timeout), and two more: no automatic checkpoints, and
// a WAL file cut back to walFileLimit whenever it starts over.
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

// sqliteCacheKiB is the page cache of each SQLite connection, the most it
// holds however large the database grows.
const sqliteCacheKiB = 16 << 10

func init() {
	sql.Register(sqliteDriver, &sqlite3.SQLiteDriver{
		ConnectHook: func(conn *sqlite3.SQLiteConn) error {
			for _, pragma := range []string{
				"PRAGMA foreign_keys = ON",
				"PRAGMA journal_mode = WAL",
				"PRAGMA synchronous = NORMAL",
				"PRAGMA busy_timeout = 5000",
				"PRAGMA wal_autocheckpoint = 0",
				// 16 MiB of pages a connection instead of SQLite's 2: a
				// burst of 100 lookups at 1 M mappings took 7.1 ms with
				// the default (most of it reading index pages again), 1.8
				// with this; at 10 M, 11.1 and 2.2 ms (BenchmarkStore).
				fmt.Sprintf("PRAGMA cache_size = %d", -sqliteCacheKiB),
				fmt.Sprintf("PRAGMA journal_size_limit = %d", walFileLimit),
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

// defaultWALLimit is the size of the WAL in use past which the
// checkpointer makes SQLite start it over.
//
// A PASSIVE checkpoint copies frames into the database file but never
// starts the WAL over: only the next writer can, and only once every frame
// is copied and no reader still reads from the WAL. Under steady load some
// reader always does, or a commit landed after the checkpoint began, so the
// WAL grew without end (3 GB in minutes). Readers then look pages up in an
// ever longer WAL index, and the first connection after a crash reads the
// whole file to rebuild it: 2 s before the first query.
//
// So when the WAL in use passes walLimit the checkpointer runs a PASSIVE
// checkpoint (which copies nearly everything without blocking anyone) and
// then RESTART ones. RESTART takes the write lock, copies the frames
// committed since, and checks that no reader is still in the WAL, so that
// the next writer starts the WAL over from its first frame. Writers wait
// meanwhile (their busy_timeout applies): for those frames and two fsyncs
// (the longest try in BenchmarkXMPPToMatrixLatency took 18-43 ms, on a
// machine with a load of 4-7 on its 2 cores; its p50 and p99 did not
// differ from those without the bound there); readers are never blocked.
// Waiting for readers
// would hold the lock longer, so the tries do not wait, unless the WAL
// passed twice walLimit (see restart). The file keeps its size and is
// written over.
//
// RESTART rather than TRUNCATE: emptying the file frees its blocks inside
// the write lock, 12 ms for 32 MiB on this machine's ext4 (mounted with
// discard), and the writes after it allocate them again.
// journal_size_limit (walFileLimit) cuts the file back, in the commit
// that starts the WAL over, only when it grew past 64 MiB, as when a
// reader held the WAL for long.
//
// 16 MiB is about two and a half seconds of writes at 1,000 receipts a
// second (BenchmarkXMPPToMatrixLatency wrote 6.5 MB/s). The file stays
// under twice that plus what is written while the checkpointer waits
// (walResetWait, walCheckEvery): under 64 MiB up to about 90 MB/s.
const defaultWALLimit = 16 << 20

// walFileLimit is journal_size_limit: the size a WAL file is cut back to
// when it starts over, the bound aimed at.
const walFileLimit = 64 << 20

// walCheckEvery is how often the checkpointer looks at the size of the WAL
// in use: a read of 96 bytes of the -shm file.
const walCheckEvery = 100 * time.Millisecond

// walResetWait is how long the checkpointer tries to have the WAL start
// over before it leaves it to the next check (see restart). A RESTART
// checkpoint holds the write lock while it waits for readers: it must give
// up long before the writers queued behind it (5 s) do.
const walResetWait = 250 * time.Millisecond

// walResetRetry is the pause between RESTART checkpoints that do not wait.
const walResetRetry = 200 * time.Microsecond

// walLimit is the WAL size past which the checkpointer starts it over; 0
// means never (tests only, to show that PASSIVE checkpoints alone do not
// bound it).
func (db *Database) walLimit() int64 {
	return db.opts.walLimit
}

// checkpointer runs PASSIVE checkpoints every checkpointEvery, and has the
// WAL start over when it passes walLimit, until ctx ends.
func (db *Database) checkpointer(ctx context.Context) {
	ck := &walCheckpointer{db: db}
	defer ck.close()
	tick := time.NewTicker(min(db.opts.walCheckEvery, db.opts.checkpointEvery))
	defer tick.Stop()
	var lastPassive time.Time
	var failing retry.Outage
	var overSince time.Time // the WAL could not be started over since then
	restartedAt := -1       // frames in use when it last was, until a writer starts over
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		frames, known := ck.framesInUse()
		if frames == restartedAt {
			// No writer since the last reset: it starts over at the next.
			frames = 0
		}
		over := known && db.walLimit() > 0 && int64(frames)*(ck.pageSize+24) > db.walLimit()
		if !over && time.Since(lastPassive) < db.opts.checkpointEvery {
			continue
		}
		st, err := ck.checkpoint(ctx, checkpointPassive)
		lastPassive = time.Now()
		if err == nil {
			db.checkpoints.Add(1)
			if !known && st.frames != restartedAt {
				// No -shm to read: the frames in use the checkpoint saw.
				over = db.walLimit() > 0 && int64(st.frames)*(ck.pageSize+24) > db.walLimit()
			}
		}
		if err == nil && over {
			var restarted bool
			urgent := int64(max(frames, st.frames))*(ck.pageSize+24) > 2*db.walLimit()
			restarted, st, err = ck.restart(ctx, urgent)
			switch {
			case restarted:
				overSince = time.Time{}
				restartedAt = st.frames
			case overSince.IsZero():
				overSince = time.Now()
			case time.Since(overSince) > 10*time.Second:
				// A reader has been in the WAL for seconds (or writers
				// never let go of the lock): it grows until that ends.
				db.log.Warn().Int("wal_frames", frames).Dur("for", time.Since(overSince)).
					Msg("The SQLite WAL is over its limit and cannot start over: readers still in it")
				overSince = time.Now()
			}
		}
		switch {
		case err != nil && ctx.Err() == nil:
			// Once per run of failures: the WAL only grows meanwhile.
			if failing.Fail(time.Now()) == retry.First {
				db.log.Warn().Err(err).Msg("Failed to checkpoint the SQLite WAL; will retry")
			}
		case err == nil:
			if said, _, _ := failing.End(); said {
				db.log.Info().Msg("SQLite WAL checkpoints work again")
			}
		}
	}
}

// walCheckpointer is the checkpointer's own connection, kept out of the
// pool so that its busy timeout can be its own (see restart).
type walCheckpointer struct {
	db       *Database
	conn     *sql.Conn
	pageSize int64
	shm      *os.File // the -shm file, nil until opened
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
		_, err = conn.ExecContext(ctx, "PRAGMA busy_timeout = 0")
	}
	if err != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // not back into the pool
		_ = conn.Close()
		return fmt.Errorf("set up the connection for checkpoints: %w", err)
	}
	ck.conn = conn
	return nil
}

func (ck *walCheckpointer) setBusyTimeout(ctx context.Context, d time.Duration) error {
	if err := ck.open(ctx); err != nil {
		return err
	}
	if _, err := ck.conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", d.Milliseconds())); err != nil {
		return fmt.Errorf("set the checkpoints' busy timeout: %w", err)
	}
	return nil
}

func (ck *walCheckpointer) close() {
	if ck.shm != nil {
		_ = ck.shm.Close()
		ck.shm = nil
	}
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

// restart runs RESTART checkpoints that do not wait (busy_timeout 0), a
// try every walResetRetry for up to walResetWait, or, if urgent, one that
// waits up to walResetWait: false if readers or writers held it up.
//
// Not waiting is what keeps writers' latency: a checkpoint that waits
// holds the write lock while it sleeps in SQLite's busy handler, whose
// sleeps grow to 100 ms, so writers queued behind it waited 100-250 ms a
// reset in TestSQLiteWALBounded (p99 of commits 110-140 ms against 20-55
// ms). But with a reader in the WAL nearly all the time, tries that do not
// wait can fail for longer than it takes the WAL to double: past twice
// walLimit the checkpointer waits.
func (ck *walCheckpointer) restart(ctx context.Context, urgent bool) (bool, walState, error) {
	if urgent {
		if err := ck.setBusyTimeout(ctx, ck.db.opts.walResetWait); err != nil {
			return false, walState{}, err
		}
		defer func() { _ = ck.setBusyTimeout(context.Background(), 0) }()
	}
	start := time.Now()
	var st walState
	var err error
	var took time.Duration
	for {
		try := time.Now()
		st, err = ck.checkpoint(ctx, checkpointRestart)
		// A try holds the write lock for at most its own duration.
		if ns := time.Since(try).Nanoseconds(); ns > ck.db.walTryMax.Load() {
			ck.db.walTryMax.Store(ns)
		}
		took = time.Since(start)
		if err != nil || !st.busy || urgent || took > ck.db.opts.walResetWait {
			break
		}
		select {
		case <-ctx.Done():
			return false, st, ctx.Err()
		case <-time.After(walResetRetry):
		}
	}
	if err != nil {
		return false, st, err
	}
	if st.busy {
		ck.db.walResetsBusy.Add(1)
		ck.db.log.Debug().Dur("took", took).Msg("SQLite WAL not started over yet: busy")
		return false, st, nil
	}
	ck.db.walResets.Add(1)
	if ns := took.Nanoseconds(); ns > ck.db.walResetMax.Load() {
		ck.db.walResetMax.Store(ns)
	}
	ck.db.log.Debug().Dur("took", took).Int("frames", st.frames).Msg("The SQLite WAL starts over")
	return true, st, nil
}

// framesInUse reads the number of frames of the WAL in use (mxFrame) from
// the header of the wal-index, the -shm file, without a lock: false if it
// cannot (no such file, or a header being written). The layout is SQLite's
// documented one (https://sqlite.org/walformat.html, "The WAL-Index
// Header"): two copies of a 48-byte header in native byte order, the
// version 3007000 at offset 0, isInit at 12, mxFrame at 16; writers update
// the second copy first, so equal copies are a whole header.
func (ck *walCheckpointer) framesInUse() (int, bool) {
	if ck.db.walPath == "" {
		return 0, false
	}
	if ck.shm == nil {
		f, err := os.Open(strings.TrimSuffix(ck.db.walPath, "-wal") + "-shm")
		if err != nil {
			return 0, false
		}
		ck.shm = f
	}
	var hdr [96]byte
	if _, err := ck.shm.ReadAt(hdr[:], 0); err != nil {
		_ = ck.shm.Close()
		ck.shm = nil
		return 0, false
	}
	h := hdr[:48]
	if !bytes.Equal(h, hdr[48:]) || binary.NativeEndian.Uint32(h[0:]) != 3007000 || h[12] == 0 {
		return 0, false
	}
	return int(binary.NativeEndian.Uint32(h[16:])), true
}

// checkpointMode is a mode of SQLite's PRAGMA wal_checkpoint.
type checkpointMode string

const (
	checkpointPassive  checkpointMode = "PASSIVE"  // what it can without waiting
	checkpointRestart  checkpointMode = "RESTART"  // all, and the next writer starts over
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

// createPrivate creates the SQLite database file of uri, if it does not
// exist yet, readable and writable by the bridge's user alone: it holds
// every bridged message's text. SQLite itself would create it 0644, and
// gives the -wal and -shm files the mode of the database file, so they
// follow. An existing file keeps the mode its owner gave it; an in-memory
// database has no file.
func createPrivate(uri string) error {
	path, query, _ := strings.Cut(uri, "?")
	if p, ok := strings.CutPrefix(path, "file:"); ok {
		if strings.HasPrefix(p, "//") {
			// file://host/path: the path starts after the authority.
			_, p, _ = strings.Cut(p[2:], "/")
			p = "/" + p
		}
		var err error
		if path, err = url.PathUnescape(p); err != nil {
			return fmt.Errorf("read the path of %q: %w", uri, err)
		}
	}
	if params, err := url.ParseQuery(query); err == nil && (params.Get("mode") == "memory" || params.Get("mode") == "ro") {
		return nil
	}
	if path == "" || path == ":memory:" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}
