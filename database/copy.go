package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/sqlstatestore"

	"xmppbridge/database/upgrades"
)

// copiedTables are the tables Copy copies, in the order it fills them: a
// table comes after those it references (outbox after message). They are
// every table of the bridge's schema (upgrades/00-latest.sql) and of
// mautrix's state store, which the bridge keeps in the same database;
// TestCopyKnowsEveryTable fails when the schema has a table that is
// neither here nor in notCopied.
var copiedTables = []string{
	"portal",
	"portal_member",
	"message",
	"txn_inbox",
	"set_aside",
	"outbox",
	"management_room",
	"user_setting",
	"kv",
	"subscription",
	"puppet_profile",
	"ghost_profile",
	"mx_registrations",
	"mx_user_profile",
	"mx_room_state",
}

// notCopied are the tables that the target's own upgrade writes when Copy
// opens it: which program owns the database and the versions of the two
// schemas, which Copy requires to be the same on both sides.
var notCopied = []string{"database_owner", "version", sqlstatestore.VersionTableName}

// ErrTargetNotEmpty is Copy's refusal of a target that already holds rows.
var ErrTargetNotEmpty = errors.New("the target database already holds data")

// ErrSourceVersion is Copy's refusal of a source whose schema is not the
// one this bridge writes.
var ErrSourceVersion = errors.New("the source database's schema is not this bridge's")

// insertParams bounds the parameters of one INSERT of many rows: SQLite
// builds before 3.32 allow 999.
const insertParams = 900

// Place says where a database is: its type, as appservice.database.type
// ("sqlite3-fk-wal" or "postgres"), and its URI.
type Place struct {
	Type, URI string
}

// PlaceOf reads a database named on the command line: a postgres:// or
// postgresql:// URI is PostgreSQL; anything else is a SQLite file (a path,
// made absolute, or a "file:" URI).
func PlaceOf(arg string) (Place, error) {
	if strings.HasPrefix(arg, "postgres://") || strings.HasPrefix(arg, "postgresql://") {
		return Place{Type: "postgres", URI: arg}, nil
	}
	if arg == "" || strings.HasPrefix(arg, "file:") || arg == ":memory:" {
		return Place{Type: "sqlite3-fk-wal", URI: arg}, nil
	}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return Place{}, fmt.Errorf("read the path %q: %w", arg, err)
	}
	return Place{Type: "sqlite3-fk-wal", URI: abs}, nil
}

// String names the place for a person, without a password.
func (p Place) String() string {
	if u, err := url.Parse(p.URI); err == nil && u.User != nil {
		return p.Type + " " + u.Redacted()
	}
	if p.Type == "postgres" && strings.Contains(p.URI, "password=") {
		return p.Type + " (connection string not shown: it holds a password)"
	}
	return p.Type + " " + p.URI
}

// Copy copies every table of the bridge's database at from into the one at
// to, values unchanged (row ids, read positions, sequences), in one
// transaction on the target, and returns how many rows each table had.
//
// The bridge must not be running on from meanwhile: what it writes during
// the copy would be missing from the target (a SQLite source is opened
// read-only, so Copy never changes it). from must have the schema this
// bridge writes: a database of an older version is upgraded by starting the
// bridge on it once. to is created or upgraded as the bridge does at start;
// if it already holds rows, Copy refuses unless replace is set, and then
// deletes them first.
func Copy(ctx context.Context, from, to Place, replace bool, log zerolog.Logger) (map[string]int64, error) {
	srcDialect, err := dbutil.ParseDialect(from.Type)
	if err != nil {
		return nil, fmt.Errorf("read the source's type: %w", err)
	}
	if srcDialect == dbutil.SQLite && !strings.HasPrefix(from.URI, "file:") {
		// SQLite removes the WAL file when the last connection closes: one
		// that is there means a bridge still running on it (or one killed,
		// whose last writes the copy reads from it all the same).
		if _, err := os.Stat(from.URI + "-wal"); err == nil {
			log.Warn().Str("wal", from.URI+"-wal").Msg("The source is open, or was not closed: if the bridge still runs on it, " +
				"what it writes during the copy will be missing from the copy; stop it and copy again")
		}
	}
	src, err := openSource(from, srcDialect)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	// One snapshot of the source for every table.
	srcOpts := &sql.TxOptions{ReadOnly: true}
	if srcDialect == dbutil.Postgres {
		srcOpts.Isolation = sql.LevelRepeatableRead
	}
	srcTx, err := src.BeginTx(ctx, srcOpts)
	if err != nil {
		return nil, fmt.Errorf("read the source database %s: %w", from, err)
	}
	defer func() { _ = srcTx.Rollback() }()
	if err := checkSource(ctx, srcTx); err != nil {
		return nil, fmt.Errorf("source database %s: %w", from, err)
	}

	dst, err := openTarget(ctx, to, log)
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	dstTx, err := dst.db.RawDB.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin writing the target database %s: %w", to, err)
	}
	defer func() { _ = dstTx.Rollback() }()
	if err := emptyTarget(ctx, dstTx, replace); err != nil {
		return nil, fmt.Errorf("target database %s: %w", to, err)
	}
	counts := make(map[string]int64, len(copiedTables))
	for _, table := range copiedTables {
		n, err := copyTable(ctx, srcTx, dstTx, table)
		if err != nil {
			return nil, fmt.Errorf("copy table %s: %w", table, err)
		}
		counts[table] = n
		log.Debug().Str("table", table).Int64("rows", n).Msg("Copied table")
	}
	next, err := nextIDs(ctx, srcTx, srcDialect)
	if err != nil {
		return nil, fmt.Errorf("read the source's id sequences: %w", err)
	}
	if err := setNextIDs(ctx, dstTx, dst.db.Dialect, next); err != nil {
		return nil, fmt.Errorf("set the target's id sequences: %w", err)
	}
	if err := dstTx.Commit(); err != nil {
		return nil, fmt.Errorf("commit the copy into %s: %w", to, err)
	}
	return counts, nil
}

// Empty tells whether the database holds neither a portal nor a message:
// the bridge starts from nothing on it.
func (db *Database) Empty(ctx context.Context) (bool, error) {
	var held bool
	err := db.db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM portal) OR EXISTS (SELECT 1 FROM message)").Scan(&held)
	if err != nil {
		return false, fmt.Errorf("look for portals and messages: %w", err)
	}
	return !held, nil
}

// openSource opens from without upgrading it (that would write to it), a
// SQLite file read-only.
func openSource(from Place, dialect dbutil.Dialect) (*sql.DB, error) {
	driver, uri := "postgres", from.URI
	if dialect == dbutil.SQLite {
		driver, uri = "sqlite3", readOnlySQLite(from.URI)
	}
	db, err := sql.Open(driver, uri)
	if err != nil {
		return nil, fmt.Errorf("open the source database %s: %w", from, err)
	}
	return db, nil
}

// readOnlySQLite is the "file:" URI that opens the SQLite database at uri
// (a path or a "file:" URI) read-only.
func readOnlySQLite(uri string) string {
	if !strings.HasPrefix(uri, "file:") {
		uri = "file:" + (&url.URL{Path: uri}).EscapedPath()
	}
	path, query, _ := strings.Cut(uri, "?")
	params, err := url.ParseQuery(query)
	if err != nil {
		// Left to SQLite, which reports it.
		return uri
	}
	params.Set("mode", "ro")
	return path + "?" + params.Encode()
}

// checkSource makes sure the source is the bridge's database with the
// schemas this binary writes: a copy of another version would put rows
// into tables of a different shape.
func checkSource(ctx context.Context, tx *sql.Tx) error {
	var found string
	if err := tx.QueryRowContext(ctx, "SELECT owner FROM database_owner WHERE key=0").Scan(&found); err != nil {
		return fmt.Errorf("read which program it belongs to (is it the bridge's database?): %w", err)
	} else if found != owner {
		return fmt.Errorf("it belongs to %q, not to the bridge", found)
	}
	for _, schema := range []struct {
		table  string
		latest int
	}{
		{"version", len(upgrades.Table)},
		{sqlstatestore.VersionTableName, len(sqlstatestore.UpgradeTable)},
	} {
		var version int
		if err := tx.QueryRowContext(ctx, "SELECT version FROM "+schema.table).Scan(&version); err != nil {
			return fmt.Errorf("read its schema version from %s: %w", schema.table, err)
		}
		if version != schema.latest {
			return fmt.Errorf("%w: %s says v%d, this bridge writes v%d; start this version of the bridge on it once "+
				"(that upgrades it), stop it, then copy", ErrSourceVersion, schema.table, version, schema.latest)
		}
	}
	return nil
}

// openTarget opens to as the bridge does, which creates or upgrades both
// schemas, without the inbox's pruner: the copy keeps every transaction
// the source kept.
func openTarget(ctx context.Context, to Place, log zerolog.Logger) (*Database, error) {
	opts := defaultOptions()
	opts.pruneEvery = math.MaxInt64
	db, err := openWith(ctx, to.Type, to.URI, log, opts)
	if err != nil {
		return nil, fmt.Errorf("open the target database %s: %w", to, err)
	}
	stateStore := sqlstatestore.NewSQLStateStore(db.DB(), dbutil.ZeroLogger(log), false)
	err = EnsureVersionTable(ctx, stateStore.Database)
	if err == nil {
		err = stateStore.Upgrade(ctx)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("prepare the state store in the target database %s: %w", to, err)
	}
	return db, nil
}

// emptyTarget refuses a target with rows in it, or deletes them if replace.
func emptyTarget(ctx context.Context, tx *sql.Tx, replace bool) error {
	var held []string
	for _, table := range copiedTables {
		var n int64
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			return fmt.Errorf("count the rows of %s: %w", table, err)
		} else if n > 0 {
			held = append(held, fmt.Sprintf("%s: %d", table, n))
		}
	}
	if len(held) == 0 {
		return nil
	}
	if !replace {
		return fmt.Errorf("%w (%s); copy into an empty one, or ask to replace what it holds", ErrTargetNotEmpty, strings.Join(held, ", "))
	}
	for _, table := range slices.Backward(copiedTables) {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+table); err != nil {
			return fmt.Errorf("delete the rows of %s: %w", table, err)
		}
	}
	return nil
}

// copyTable copies every row of table, its columns by name (an upgraded
// table may have them in another order than a new one).
func copyTable(ctx context.Context, src, dst *sql.Tx, table string) (int64, error) {
	blob, err := targetColumns(ctx, dst, table)
	if err != nil {
		return 0, err
	}
	rows, err := src.QueryContext(ctx, "SELECT * FROM "+table)
	if err != nil {
		return 0, fmt.Errorf("read the source: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, fmt.Errorf("read the source's columns: %w", err)
	}
	if len(cols) != len(blob) {
		return 0, fmt.Errorf("the source has %d columns (%s), the target %d", len(cols), strings.Join(cols, ", "), len(blob))
	}
	for _, c := range cols {
		if _, ok := blob[c]; !ok {
			return 0, fmt.Errorf("the target has no column %s", c)
		}
	}
	perInsert := max(1, insertParams/len(cols))
	var batch []any
	var n int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := dst.ExecContext(ctx, insertRows(table, cols, len(batch)/len(cols)), batch...); err != nil {
			return fmt.Errorf("write the target: %w", err)
		}
		batch = batch[:0]
		return nil
	}
	row := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range row {
		ptrs[i] = &row[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return 0, fmt.Errorf("read a row of the source: %w", err)
		}
		for i, v := range row {
			// Drivers hand over text of types they do not know (JSON,
			// enums) as bytes; only a binary column takes them as such.
			if b, ok := v.([]byte); ok && !blob[cols[i]] {
				v = string(b)
			}
			batch = append(batch, v)
		}
		n++
		if len(batch) >= perInsert*len(cols) {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read the source: %w", err)
	}
	return n, flush()
}

// targetColumns names table's columns in the target, each with whether it
// holds bytes (BLOB on SQLite, BYTEA on PostgreSQL).
func targetColumns(ctx context.Context, dst *sql.Tx, table string) (map[string]bool, error) {
	rows, err := dst.QueryContext(ctx, "SELECT * FROM "+table+" WHERE 1=0")
	if err != nil {
		return nil, fmt.Errorf("read the target's columns: %w", err)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, fmt.Errorf("read the target's columns: %w", err)
	}
	blob := make(map[string]bool, len(types))
	for _, t := range types {
		name := strings.ToLower(t.DatabaseTypeName())
		blob[t.Name()] = name == "blob" || name == "bytea"
	}
	return blob, rows.Close()
}

// insertRows is an INSERT of n rows into cols of table.
func insertRows(table string, cols []string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", table, strings.Join(cols, ", "))
	p := 0
	for r := range n {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			p++
			fmt.Fprintf(&b, "$%d", p)
		}
		b.WriteByte(')')
	}
	return b.String()
}

// nextIDs reads, per table, the id the source would give its next row
// where that is more than the largest id copied: a sequence that went
// past rows since deleted (the outbox's jobs done). On SQLite only
// AUTOINCREMENT tables remember that (sqlite_sequence); on PostgreSQL
// every serial column does.
func nextIDs(ctx context.Context, tx *sql.Tx, dialect dbutil.Dialect) (map[string]int64, error) {
	next := map[string]int64{}
	if dialect == dbutil.SQLite {
		rows, err := tx.QueryContext(ctx, "SELECT name, seq FROM sqlite_sequence")
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var table string
			var seq int64
			if err := rows.Scan(&table, &seq); err != nil {
				return nil, err
			}
			next[table] = seq + 1
		}
		return next, rows.Err()
	}
	seqs, err := serialColumns(ctx, tx)
	if err != nil {
		return nil, err
	}
	for _, s := range seqs {
		var last int64
		var called bool
		// The name comes from PostgreSQL itself, quoted as needed.
		if err := tx.QueryRowContext(ctx, "SELECT last_value, is_called FROM "+s.sequence).Scan(&last, &called); err != nil {
			return nil, fmt.Errorf("read sequence %s: %w", s.sequence, err)
		}
		if called {
			last++
		}
		next[s.table] = last
	}
	return next, nil
}

// setNextIDs makes the target give each table's next row an id past both
// the rows copied and the source's own next id (nextIDs), so that a new row
// collides with none and no id of a deleted row comes back.
func setNextIDs(ctx context.Context, tx *sql.Tx, dialect dbutil.Dialect, next map[string]int64) error {
	if dialect == dbutil.SQLite {
		// Other tables' INTEGER PRIMARY KEY goes on from the largest id
		// there; an AUTOINCREMENT table from sqlite_sequence, which the
		// inserts moved to the largest id copied.
		rows, err := tx.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%AUTOINCREMENT%'")
		if err != nil {
			return err
		}
		var auto []string
		for rows.Next() {
			var table string
			if err := rows.Scan(&table); err != nil {
				rows.Close()
				return err
			}
			auto = append(auto, table)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, table := range auto {
			n, ok := next[table]
			if !ok {
				continue
			}
			if _, err := tx.ExecContext(ctx, "DELETE FROM sqlite_sequence WHERE name = $1 AND seq < $2", table, n-1); err != nil {
				return fmt.Errorf("move the sequence of %s: %w", table, err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO sqlite_sequence (name, seq) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = $1)", table, n-1); err != nil {
				return fmt.Errorf("move the sequence of %s: %w", table, err)
			}
		}
		return nil
	}
	seqs, err := serialColumns(ctx, tx)
	if err != nil {
		return err
	}
	for _, s := range seqs {
		var largest int64
		if err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT COALESCE(MAX(%s), 0) FROM %s", s.column, s.table)).Scan(&largest); err != nil {
			return fmt.Errorf("read the largest %s of %s: %w", s.column, s.table, err)
		}
		n := max(largest+1, next[s.table])
		if _, err := tx.ExecContext(ctx, "SELECT setval($1::regclass, $2, false)", s.sequence, n); err != nil {
			return fmt.Errorf("set sequence %s to %d: %w", s.sequence, n, err)
		}
	}
	return nil
}

type serialColumn struct{ table, column, sequence string }

// serialColumns lists the columns of the copied tables that take their
// default from a sequence (BIGSERIAL), in the current schema.
func serialColumns(ctx context.Context, tx *sql.Tx) ([]serialColumn, error) {
	rows, err := tx.QueryContext(ctx, `
		SELECT table_name, column_name, pg_get_serial_sequence(quote_ident(table_name), column_name)
		FROM information_schema.columns
		WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%'
		ORDER BY table_name, column_name`)
	if err != nil {
		return nil, fmt.Errorf("list the sequences: %w", err)
	}
	defer rows.Close()
	var seqs []serialColumn
	for rows.Next() {
		var s serialColumn
		var seq sql.NullString
		if err := rows.Scan(&s.table, &s.column, &seq); err != nil {
			return nil, fmt.Errorf("list the sequences: %w", err)
		}
		if seq.Valid && slices.Contains(copiedTables, s.table) {
			s.sequence = seq.String
			seqs = append(seqs, s)
		}
	}
	return seqs, rows.Err()
}
