package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"
	"xmppbridge/database/upgrades"

	"github.com/lib/pq"
	"github.com/mattn/go-sqlite3"
	"go.mau.fi/util/dbutil"

	"xmppbridge/mapping"
)

// Refuses tells the store refusing the data (no retry helps: set it aside)
// from the store failing (retry: nothing is lost). Errors as the drivers
// make them, wrapped as the store wraps them.
func TestRefusesByCode(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("store message: %w", err) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"postgres NUL in text", &pq.Error{Code: "22021"}, true},
		{"postgres value out of range", &pq.Error{Code: "22003"}, true},
		{"postgres unique violation", &pq.Error{Code: "23505"}, true},
		{"postgres check violation", &pq.Error{Code: "23514"}, true},
		{"postgres index row too large", &pq.Error{Code: "54000"}, true},
		{"postgres serialization failure", &pq.Error{Code: "40001"}, false},
		{"postgres deadlock", &pq.Error{Code: "40P01"}, false},
		{"postgres connection failure", &pq.Error{Code: "08006"}, false},
		{"postgres disk full", &pq.Error{Code: "53100"}, false},
		{"postgres shutting down", &pq.Error{Code: "57P01"}, false},
		{"postgres I/O error", &pq.Error{Code: "58030"}, false},
		{"postgres undefined table", &pq.Error{Code: "42P01"}, false},
		{"sqlite constraint", sqlite3.Error{Code: sqlite3.ErrConstraint, ExtendedCode: sqlite3.ErrConstraintUnique}, true},
		{"sqlite mismatch", sqlite3.Error{Code: sqlite3.ErrMismatch}, true},
		{"sqlite too big", sqlite3.Error{Code: sqlite3.ErrTooBig}, true},
		{"sqlite busy", sqlite3.Error{Code: sqlite3.ErrBusy}, false},
		{"sqlite locked", sqlite3.Error{Code: sqlite3.ErrLocked}, false},
		{"sqlite disk full", sqlite3.Error{Code: sqlite3.ErrFull}, false},
		{"sqlite I/O", sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrWrite}, false},
		{"stored JID that does not parse", func() error { _, err := parseJID("@@"); return err }(), true},
		{"connection lost", driver.ErrBadConn, false},
		{"closed", sql.ErrConnDone, false},
		{"cancelled", context.Canceled, false},
		{"timed out", context.DeadlineExceeded, false},
		{"unknown", errors.New("something else"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err
			if err != nil {
				err = wrap(err)
			}
			if got := refuses(err); got != tc.want {
				t.Errorf("Refuses(%v) = %t, want %t", err, got, tc.want)
			}
		})
	}
}

// The refusals the engines really make, through the store's own methods:
// a room that is another pair's portal (the primary key), a body with U+0000
// on PostgreSQL, a value a stored row cannot be read back as; and a store
// that is closed is failing, not refusing.
func TestRefusesFromEngines(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *store) {
		ctx := t.Context()
		must(t, s.PutPortal(ctx, mapping.DirectPortal("!a:example.org", alice, bob, time.Time{})))
		err := s.PutPortal(ctx, mapping.DirectPortal("!a:example.org", alice, carol, time.Time{}))
		if err == nil || !s.Refuses(err) {
			t.Errorf("second pair in one room: %v, refused %t; want refused", err, s.Refuses(err))
		}
		msg := newMessage(bob, "nul", mapping.FromMatrix)
		msg.Body = "a\x00b"
		_, err = s.AddMessage(ctx, msg)
		switch e.name {
		case "postgres":
			if err == nil || !s.Refuses(err) {
				t.Errorf("NUL in a body on PostgreSQL: %v, refused %t; want refused", err, s.Refuses(err))
			}
		default:
			must(t, err)
		}
		_, err = s.DB().Exec(ctx, "UPDATE portal SET jid='@@' WHERE room_id='!a:example.org'")
		must(t, err)
		if _, err = s.PortalByRoom(ctx, "!a:example.org"); err == nil || !s.Refuses(err) {
			t.Errorf("a stored JID that does not parse: %v, refused %t; want refused", err, s.Refuses(err))
		}
		_, err = s.DB().Exec(ctx, "UPDATE portal SET created_at=NULL WHERE room_id='!a:example.org'")
		if err == nil {
			t.Fatal("NULL into a NOT NULL column was taken")
		} else if !s.Refuses(err) {
			t.Errorf("NULL into a NOT NULL column: %v not refused", err)
		}
		must(t, s.Close())
		_, err = s.PortalByRoom(ctx, "!b:example.org")
		if err == nil || s.Refuses(err) {
			t.Errorf("a closed store: %v, refused %t; want a failure, not a refusal", err, s.Refuses(err))
		}
		s.Database = s.open() // for the cleanup's Close
	})
}

// What is set aside is kept once per item, however often it is met, and
// the newest and the count are what `status` and the gauge show. Text the
// engine would refuse (it may quote what it refused) is kept without it.
func TestSetAside(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		if n, newest, err := s.SetAsideCount(ctx); err != nil || n != 0 || newest != nil {
			t.Fatalf("empty: %d, %+v, %v", n, newest, err)
		}
		first := &mapping.SetAside{TxnID: "t1", EventID: "$e1", Room: "!a:example.org", Sender: alice, Type: "m.room.message",
			Reason: mapping.SetAsideRefused, Error: "store message: pq: invalid byte sequence", At: t0}
		for i, want := range []bool{true, false} {
			if isNew, err := s.PutSetAside(ctx, first); err != nil || isNew != want {
				t.Errorf("put %d: %t, %v; want %t", i, isNew, err, want)
			}
		}
		whole := &mapping.SetAside{TxnID: "t2", Type: "transaction", Reason: mapping.SetAsidePanic, Error: "panic: \x00boom", At: t0.Add(time.Second)}
		if isNew, err := s.PutSetAside(ctx, whole); err != nil || !isNew {
			t.Errorf("put a whole transaction: %t, %v", isNew, err)
		}
		n, newest, err := s.SetAsideCount(ctx)
		must(t, err)
		want := *whole
		want.Error = "panic: boom"
		if newest != nil && newest.At.Equal(want.At) {
			newest.At = want.At
		}
		if n != 2 || newest == nil || *newest != want {
			t.Errorf("count = %d, newest = %+v; want 2, %+v", n, newest, want)
		}
	})
}

// A database made by the schema before set_aside (v8, kept as it was in
// testdata) upgrades to today's, keeps its rows, and takes what is set
// aside; on both engines.
func TestUpgradeFromV8(t *testing.T) {
	forEachUpgrade(t, "testdata/v8-latest.sql", func(t *testing.T, old *dbutil.Database) {
		ctx := t.Context()
		_, err := old.Exec(ctx, "INSERT INTO portal (room_id, mxid, jid, created_at) VALUES ('!a:example.org', $1, $2, $3)",
			alice, bob.String(), t0.UnixMilli())
		must(t, err)
		if exists, err := old.TableExists(ctx, "set_aside"); err != nil || exists {
			t.Fatalf("the v8 schema has set_aside: %t, %v", exists, err)
		}
	}, func(t *testing.T, db *Database) {
		ctx := t.Context()
		if p, err := db.PortalByRoom(ctx, "!a:example.org"); err != nil || p.User() != alice {
			t.Errorf("portal after the upgrade = %+v, %v", p, err)
		}
		if isNew, err := db.PutSetAside(ctx, &mapping.SetAside{TxnID: "t1", EventID: "$e", Reason: mapping.SetAsideDecode, Error: "x", At: t0}); err != nil || !isNew {
			t.Errorf("set aside after the upgrade: %t, %v", isNew, err)
		}
	})
}

// forEachUpgrade makes, on each engine, a database with the schema of
// file (an earlier 00-latest.sql, kept as it was in testdata), fills it as
// that schema stood with fill, opens it as the bridge does (upgrading it
// to today's) and checks it with check.
func forEachUpgrade(t *testing.T, file string, fill func(t *testing.T, old *dbutil.Database), check func(t *testing.T, db *Database)) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			old, dbType, uri := openOldSchema(t, e, file)
			fill(t, old)
			must(t, old.Close())
			check(t, openUpgraded(t, dbType, uri))
		})
	}
}

// openOldSchema makes a database of engine e with the schema of file (an
// earlier 00-latest.sql, kept as it was in testdata), to be filled as that
// version filled it, closed, and upgraded by openUpgraded.
func openOldSchema(t *testing.T, e engine, file string) (old *dbutil.Database, dbType, uri string) {
	t.Helper()
	schema, err := os.ReadFile(file)
	must(t, err)
	dbType, uri = e.place(t)
	raw, err := sql.Open(dbType, uri)
	must(t, err)
	old, err = dbutil.NewWithDB(raw, dbType)
	must(t, err)
	old.Owner = owner
	old.UpgradeTable.RegisterFS(fstest.MapFS{"00-latest.sql": &fstest.MapFile{Data: schema, Mode: fs.ModePerm}})
	must(t, EnsureVersionTable(t.Context(), old))
	must(t, old.Upgrade(t.Context()))
	return old, dbType, uri
}

// openUpgraded opens what openOldSchema made, as the bridge does, and
// checks that it is at today's version.
func openUpgraded(t *testing.T, dbType, uri string) *Database {
	t.Helper()
	db, err := Open(t.Context(), dbType, uri, testLogger(t))
	must(t, err)
	t.Cleanup(func() { _ = db.Close() })
	var version int
	must(t, db.DB().QueryRow(t.Context(), "SELECT version FROM "+db.DB().VersionTable).Scan(&version))
	if want := len(upgrades.Table); version != want {
		t.Errorf("version = %d, want %d", version, want)
	}
	return db
}

// The SQLite file, its WAL and its shared memory are created readable by
// the bridge's user alone: they hold every bridged message. A file:
// URI is a path too.
func TestSQLiteFilesPrivate(t *testing.T) {
	for _, form := range []string{"path", "uri"} {
		t.Run(form, func(t *testing.T) {
			_, path := sqlitePlace(t)
			uri := path
			if form == "uri" {
				uri = "file:" + path + "?_busy_timeout=1000"
			}
			db, err := Open(t.Context(), "sqlite3-fk-wal", uri, testLogger(t))
			must(t, err)
			t.Cleanup(func() { _ = db.Close() })
			must(t, db.PutPortal(t.Context(), mapping.DirectPortal("!a:example.org", alice, bob, time.Time{})))
			for _, f := range []string{path, path + "-wal", path + "-shm"} {
				info, err := os.Stat(f)
				if err != nil {
					t.Errorf("stat %s: %v", f, err)
				} else if mode := info.Mode().Perm(); mode != 0o600 {
					t.Errorf("%s has mode %o, want 600", strings.TrimPrefix(f, path), mode)
				}
			}
		})
	}
}
