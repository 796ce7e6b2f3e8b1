package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"time"

	"github.com/mattn/go-sqlite3"
	"go.mau.fi/util/dbutil"
)

// sqliteDriver is what the database type "sqlite3-fk-wal" opens: the
// pragmas of mautrix's driver of that name (foreign keys, WAL, synchronous
// NORMAL, a 5 s busy timeout), and one more, no automatic checkpoints.
//
// Left to itself, SQLite copies the WAL back into the database file, with
// an fsync of each, inside whichever commit takes the WAL past 1,000 pages.
// At 1,000 receipts a second that is a commit every fraction of a second
// waiting milliseconds on the disk, with every receipt behind it: the p99
// of BenchmarkXMPPToMatrixLatency was 4 ms with it and 1.9 ms without, the
// same as with the database on tmpfs. The checkpointer below does that
// work on a connection of its own, off every receipt's path; in WAL mode a
// checkpoint blocks neither readers nor writers.
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
			} {
				if _, err := conn.Exec(pragma, []driver.Value{}); err != nil {
					return fmt.Errorf("%s: %w", pragma, err)
				}
			}
			return nil
		},
	})
}

// checkpointEvery is how often the checkpointer runs. A second of writes
// at the bench's top rate is a few thousand pages of WAL: readers find
// their pages in it as fast as in the database file.
const checkpointEvery = time.Second

// checkpointer runs PASSIVE checkpoints until ctx ends, then closes done.
func (db *Database) checkpointer(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		_, err := db.Checkpoint(ctx, checkpointPassive)
		if err == nil {
			db.checkpoints.Add(1)
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

// checkpointMode is a mode of SQLite's PRAGMA wal_checkpoint.
type checkpointMode string

const (
	checkpointPassive  checkpointMode = "PASSIVE"  // what it can without waiting
	checkpointTruncate checkpointMode = "TRUNCATE" // all, then empty the WAL
)

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
