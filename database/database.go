// Package database keeps the bridge's state on SQLite or PostgreSQL: the
// portals, the id map of bridged messages, the inbox of homeserver
// transactions and the outbox of sends still owed. It implements
// mapping.Store.
package database

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/lib/pq"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream"
	"mellium.im/xmpp/jid"

	"xmppbridge/database/upgrades"
	"xmppbridge/mapping"
)

// owner is recorded in the database so that pointing the bridge at another
// program's database fails instead of mixing tables.
const owner = "xmppbridge"

// Database is the bridge's store.
type Database struct {
	db   *dbutil.Database
	opts options
	// stopBackground ends the goroutines that look after the database
	// (the SQLite checkpointer, the pruner of the inbox); background is
	// done once they have.
	stopBackground context.CancelFunc
	background     sync.WaitGroup
	checkpointing  bool   // the SQLite checkpointer runs
	walPath        string // the SQLite WAL file, "" if unknown
	log            zerolog.Logger
	// writeMu lines up the writes of a SQLite store (serialWrites): see
	// writing.
	writeMu      sync.Mutex
	serialWrites bool
	// portals keeps the portals read (portalcache.go).
	portals portalCache
	// messages keeps the newest messages (messagecache.go).
	messages *messageCache

	// For tests and measurements.
	checkpoints   atomic.Int64 // PASSIVE checkpoints done by the checkpointer
	walResets     atomic.Int64 // times it had the WAL start over
	walResetsBusy atomic.Int64 // times it tried and readers held it up
	walResetMax   atomic.Int64 // the longest reset, all its tries, in nanoseconds
	walTryMax     atomic.Int64 // the longest single RESTART try, in nanoseconds
	pruned        atomic.Int64 // done transactions deleted by the pruner
}

// options are the knobs of the background work; Open uses defaultOptions,
// tests change them.
type options struct {
	// walLimit is the WAL size past which the checkpointer empties it (see
	// defaultWALLimit); 0 never does, as before it existed.
	walLimit        int64
	walCheckEvery   time.Duration
	walResetWait    time.Duration
	checkpointEvery time.Duration
	// The inbox keeps done transactions that are among the newest keepTxns
	// or younger than keepTxnsFor (see keepTxns), pruning every pruneEvery.
	keepTxns    int64
	keepTxnsFor time.Duration
	pruneEvery  time.Duration
}

func defaultOptions() options {
	return options{
		walLimit:        defaultWALLimit,
		walCheckEvery:   walCheckEvery,
		walResetWait:    walResetWait,
		checkpointEvery: checkpointEvery,
		keepTxns:        keepTxns,
		keepTxnsFor:     keepTxnsFor,
		pruneEvery:      pruneEvery,
	}
}

var _ mapping.Store = (*Database)(nil)

// writing waits for the store's turn to write and returns the end of it.
// SQLite lets one connection write at a time, and one that finds another
// writing waits in its busy handler, which sleeps 1 ms, then 2, then 5,
// whether or not the lock is given back meanwhile: the homeserver's push
// of a transaction waited that way behind the processing of the one
// before, and the bridge sat idle half the time. In line here, each
// writer starts the moment the one before is done. PostgreSQL locks rows,
// not the database: there, writers do not wait for one another.
//
// Each method that writes on its own takes its turn once, at its start;
// those it calls inside its transaction do not (the lock is not
// reentrant).
func (db *Database) writing() func() {
	if !db.serialWrites {
		return func() {}
	}
	db.writeMu.Lock()
	return db.writeMu.Unlock
}

// Open connects to the database and brings its schema up to date.
//
// dbType is "sqlite3-fk-wal" (uri a file path or "file:" URI) or "postgres"
// (uri a lib/pq connection string). A SQLite URI gets two defaults where
// it does not set them: "_txlock=immediate", because a deferred
// transaction that reads before it writes fails with SQLITE_BUSY instead
// of waiting when another writer is active; and "_stmt_cache_size=64",
// because without it go-sqlite3 compiles every statement anew each time,
// which was a sixth of the CPU of a receipt.
func Open(ctx context.Context, dbType, uri string, log zerolog.Logger) (*Database, error) {
	return openWith(ctx, dbType, uri, log, defaultOptions())
}

func openWith(ctx context.Context, dbType, uri string, log zerolog.Logger, opts options) (*Database, error) {
	dialect, err := dbutil.ParseDialect(dbType)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dbType, err)
	}
	driverName := dbType
	if dialect == dbutil.SQLite {
		if err := createPrivate(uri); err != nil {
			return nil, fmt.Errorf("open %s database: %w", dbType, err)
		}
		uri = withSQLiteDefaults(uri)
		if dbType == "sqlite3-fk-wal" {
			driverName = sqliteDriver // the same, checkpointed off the path
		}
	}
	raw, err := sql.Open(driverName, uri)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dbType, err)
	}
	db, err := dbutil.NewWithDB(raw, dbType)
	if err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("open %s database: %w", dbType, err)
	}
	db.Owner = owner
	db.Log = dbutil.ZeroLogger(log.With().Str("db_section", "main").Logger())
	db.UpgradeTable = upgrades.Table

	ctx = log.WithContext(ctx)
	if err = EnsureVersionTable(ctx, db); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err = db.Upgrade(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("upgrade %s database: %w", dbType, err)
	}
	d := &Database{db: db, opts: opts, log: log, serialWrites: dialect == dbutil.SQLite, messages: newMessageCache()}
	if driverName == sqliteDriver {
		if d.walPath, err = sqliteWALPath(ctx, db); err != nil {
			_ = db.Close()
			return nil, err
		}
		d.checkpointing = true
	}
	var bctx context.Context
	bctx, d.stopBackground = context.WithCancel(context.WithoutCancel(ctx))
	if d.checkpointing {
		d.background.Go(func() { d.checkpointer(bctx) })
	}
	d.background.Go(func() { d.pruner(bctx) })
	d.background.Go(func() { d.warmUp(bctx) })
	return d, nil
}

// EnsureVersionTable creates db's version table in the current schema if it
// is missing. Call it before db.Upgrade on every dbutil.Database sharing a
// PostgreSQL database (e.g. mautrix's sqlstatestore): dbutil looks the table
// up in information_schema by name only, so a table of the same name in any
// other schema makes it skip creating its own and then fail to read it.
func EnsureVersionTable(ctx context.Context, db *dbutil.Database) error {
	// Same columns dbutil would create; the name is dbutil's own setting,
	// never user input.
	query := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (version INTEGER, compat INTEGER)", db.VersionTable)
	if _, err := db.Exec(ctx, query); err != nil {
		return fmt.Errorf("create version table %s: %w", db.VersionTable, err)
	}
	return nil
}

// DB is the underlying database, for other stores (such as mautrix's
// sqlstatestore) that keep their tables next to the bridge's.
func (db *Database) DB() *dbutil.Database {
	return db.db
}

// Close closes the database.
func (db *Database) Close() error {
	db.stopBackground()
	db.background.Wait()
	if db.checkpointing {
		// The last connection to close checkpoints what is left anyway;
		// TRUNCATE here leaves no WAL behind even if another process
		// still has the file open.
		if _, err := db.Checkpoint(context.Background(), checkpointTruncate); err != nil {
			db.log.Warn().Err(err).Msg("Failed to checkpoint the SQLite WAL before closing")
		}
	}
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	return nil
}

func withSQLiteDefaults(uri string) string {
	_, query, hasQuery := strings.Cut(uri, "?")
	params, err := url.ParseQuery(query)
	if err != nil {
		// Leave a URI we cannot read to the driver, which reports it.
		return uri
	}
	for _, p := range [][2]string{{"_txlock", "immediate"}, {"_stmt_cache_size", "64"}} {
		if params.Has(p[0]) {
			continue
		}
		if hasQuery {
			uri += "&"
		} else {
			uri += "?"
		}
		uri += p[0] + "=" + p[1]
		hasQuery = true
	}
	return uri
}

// toMilli stores the zero time as 0, so that it reads back as zero.
func toMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func bareJID(j jid.JID) string {
	return j.Bare().String()
}

// parsedJIDs remembers stored JIDs already parsed: rows name the same few
// peers over and over, and parsing (PRECIS normalisation) is a good part of
// reading a row. Parsing is a pure function of the string, so one cache
// serves every database; it is emptied when it grows past maxParsedJIDs.
var parsedJIDs = struct {
	sync.Mutex
	m map[string]jid.JID
}{m: map[string]jid.JID{}}

const maxParsedJIDs = 10000

func parseJID(s string) (jid.JID, error) {
	if s == "" {
		return jid.JID{}, nil
	}
	parsedJIDs.Lock()
	j, ok := parsedJIDs.m[s]
	parsedJIDs.Unlock()
	if ok {
		return j, nil
	}
	j, err := jid.Parse(s)
	if err != nil {
		return jid.JID{}, &storedValueError{fmt.Errorf("parse stored jid %q: %w", s, err)}
	}
	parsedJIDs.Lock()
	if len(parsedJIDs.m) >= maxParsedJIDs {
		clear(parsedJIDs.m)
	}
	parsedJIDs.m[s] = j
	parsedJIDs.Unlock()
	return j, nil
}
