package database

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"

	"xmppbridge/mapping"
)

// A table added to the schema (upgrades/00-latest.sql, or mautrix's state
// store) must be one Copy knows, or an operator moving engines would lose
// it without a word.
func TestCopyKnowsEveryTable(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			dbType, uri := e.place(t)
			db, err := openTarget(t.Context(), Place{dbType, uri}, testLogger(t))
			must(t, err)
			t.Cleanup(func() { _ = db.Close() })
			got := tablesOf(t, db.DB())
			want := slices.Sorted(slices.Values(append(slices.Clone(copiedTables), notCopied...)))
			if !slices.Equal(got, want) {
				t.Errorf("tables in the schema:\n  %v\nCopy copies or skips on purpose:\n  %v", got, want)
			}
		})
	}
}

// A database with rows in every table, copied SQLite → PostgreSQL →
// SQLite, comes back row for row, the outbox's sequence included; on
// PostgreSQL, new rows take ids past those copied.
func TestCopyRoundTrip(t *testing.T) {
	ctx := t.Context()
	first := newSQLiteStore(t)
	fill(t, first)
	want := dumpTables(t, first.DB())
	for table, rows := range want {
		if len(rows) == 0 {
			t.Errorf("fill left table %s empty: the test would not see it lost", table)
		}
	}
	wantSeq := sqliteSequence(t, first.DB().RawDB)
	must(t, first.Close())
	sourceBytes := readFile(t, first.path)

	pgType, pgURI := postgresPlace(t)
	pg := Place{pgType, pgURI}
	counts, err := Copy(ctx, Place{"sqlite3-fk-wal", first.path}, pg, false, testLogger(t))
	must(t, err)
	if n := counts["message"]; n != int64(len(want["message"])) {
		t.Errorf("Copy says it copied %d messages, the source has %d", n, len(want["message"]))
	}
	if !bytes.Equal(readFile(t, first.path), sourceBytes) {
		t.Error("the SQLite source changed during the copy")
	}

	back := sqlitePlaceOf(t)
	_, err = Copy(ctx, pg, back, false, testLogger(t))
	must(t, err)

	db, err := openTarget(ctx, pg, testLogger(t))
	must(t, err)
	if got := dumpTables(t, db.DB()); !equalDumps(t, "PostgreSQL copy", got, withoutStorage(want)) {
		t.Log("(the copy into PostgreSQL differs already)")
	}
	newRowsTakeNewIDs(t, db, want)
	must(t, db.Close())

	final, err := openTarget(ctx, back, testLogger(t))
	must(t, err)
	defer final.Close()
	equalDumps(t, "SQLite copy of the PostgreSQL copy", dumpTables(t, final.DB()), want)
	if got := sqliteSequence(t, final.DB().RawDB); !slices.Equal(got, wantSeq) {
		t.Errorf("sqlite_sequence after the round trip: %v, want %v", got, wantSeq)
	}
}

// A target that holds rows is refused, unless replace is asked for, and
// then holds the source's rows and only those.
func TestCopyIntoDatabaseWithData(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			src := newSQLiteStore(t)
			fill(t, src)
			want := dumpTables(t, src.DB())
			must(t, src.Close())

			dbType, uri := e.place(t)
			target := Place{dbType, uri}
			old, err := Open(ctx, dbType, uri, testLogger(t))
			must(t, err)
			must(t, old.PutPortal(ctx, mapping.DirectPortal("!other:example.org", dave, carol, t0)))
			must(t, old.SetKV(ctx, "sync_token", "s_other"))
			must(t, old.Close())

			_, err = Copy(ctx, Place{"sqlite3-fk-wal", src.path}, target, false, testLogger(t))
			if !errors.Is(err, ErrTargetNotEmpty) {
				t.Fatalf("copy into a database with a portal: %v, want ErrTargetNotEmpty", err)
			}
			_, err = Copy(ctx, Place{"sqlite3-fk-wal", src.path}, target, true, testLogger(t))
			must(t, err)
			db, err := openTarget(ctx, target, testLogger(t))
			must(t, err)
			defer db.Close()
			if db.DB().Dialect == dbutil.Postgres {
				want = withoutStorage(want)
			}
			equalDumps(t, "replaced target", dumpTables(t, db.DB()), want)
		})
	}
}

// A source of another schema version is refused: its tables may not have
// the shape of the target's.
func TestCopyRefusesOtherVersion(t *testing.T) {
	src := newSQLiteStore(t)
	fill(t, src)
	_, err := src.DB().Exec(t.Context(), "UPDATE version SET version = version - 1")
	must(t, err)
	must(t, src.Close())
	_, err = Copy(t.Context(), Place{"sqlite3-fk-wal", src.path}, sqlitePlaceOf(t), false, testLogger(t))
	if !errors.Is(err, ErrSourceVersion) {
		t.Fatalf("copy of an older database: %v, want ErrSourceVersion", err)
	}
}

// The warning at start rests on Empty: true on a new database, false once
// a portal or a message is in it.
func TestEmpty(t *testing.T) {
	forEachEngine(t, func(t *testing.T, _ engine, s *store) {
		ctx := t.Context()
		if empty, err := s.Empty(ctx); err != nil || !empty {
			t.Errorf("new database: Empty = %v, %v; want true", empty, err)
		}
		mustAdd(t, s, newMessage(bob, "m1", mapping.FromXMPP))
		if empty, err := s.Empty(ctx); err != nil || empty {
			t.Errorf("database with a message: Empty = %v, %v; want false", empty, err)
		}
	})
}

func TestPlaceOf(t *testing.T) {
	abs, err := PlaceOf("bridge.db")
	must(t, err)
	tests := []struct {
		arg  string
		want Place
	}{
		{"postgres://bridge:secret@db.example/bridge?sslmode=disable", Place{"postgres", "postgres://bridge:secret@db.example/bridge?sslmode=disable"}},
		{"postgresql://db.example/bridge", Place{"postgres", "postgresql://db.example/bridge"}},
		{"/var/lib/xmppbridge/bridge.db", Place{"sqlite3-fk-wal", "/var/lib/xmppbridge/bridge.db"}},
		{"file:/var/lib/xmppbridge/bridge.db?_txlock=immediate", Place{"sqlite3-fk-wal", "file:/var/lib/xmppbridge/bridge.db?_txlock=immediate"}},
	}
	for _, tt := range tests {
		if got, err := PlaceOf(tt.arg); err != nil || got != tt.want {
			t.Errorf("PlaceOf(%q) = %+v, %v; want %+v", tt.arg, got, err, tt.want)
		}
	}
	if !strings.HasPrefix(abs.URI, "/") || !strings.HasSuffix(abs.URI, "/bridge.db") {
		t.Errorf("a relative path is made absolute: got %q", abs.URI)
	}
	if s := (Place{"postgres", "postgres://bridge:secret@db.example/bridge"}).String(); strings.Contains(s, "secret") {
		t.Errorf("Place.String shows the password: %s", s)
	}
}

func TestReadOnlySQLite(t *testing.T) {
	tests := []struct{ uri, want string }{
		{"/data/bridge.db", "file:/data/bridge.db?mode=ro"},
		{"/data/a b?#.db", "file:/data/a%20b%3F%23.db?mode=ro"},
		{"file:/data/bridge.db?mode=rwc&_txlock=immediate", "file:/data/bridge.db?_txlock=immediate&mode=ro"},
	}
	for _, tt := range tests {
		if got := readOnlySQLite(tt.uri); got != tt.want {
			t.Errorf("readOnlySQLite(%q) = %q, want %q", tt.uri, got, tt.want)
		}
	}
}

func sqlitePlaceOf(t *testing.T) Place {
	dbType, uri := sqlitePlace(t)
	return Place{dbType, uri}
}

// fill puts rows into every table, through the store as the bridge writes
// them: a portal with its watermarks moved, messages both ways with a
// reaction and acks, done and pending transactions, an item set aside, an
// outbox whose sequence went past deleted jobs, the bot's room, a user's
// settings, the /sync token, subscriptions, both kinds of profile (a photo
// as bytes), and mautrix's state store.
func fill(t *testing.T, s *store) {
	t.Helper()
	ctx := t.Context()
	must(t, s.PutPortal(ctx, mapping.DirectPortal("!room:example.org", alice, bob, t0)))
	in := withEvent(newMessage(bob, "x1", mapping.FromXMPP), "$in1")
	in.Requests = mapping.Requests{Receipt: true, Displayed: true, Markable: true}
	mustAdd(t, s, in)
	in2 := newMessage(bob, "x2", mapping.FromXMPP) // not yet on Matrix
	in2.PeerResource = "balcony"
	mustAdd(t, s, in2)
	out := withEvent(newMessage(bob, "m1", mapping.FromMatrix), "$out1")
	out.OriginID, out.Body = "m1", "it is the east, and <Juliet> is the sun — ☀"
	job := &mapping.Job{Kind: "xmpp.message", Payload: []byte(`{"body":"x"}`), NotBefore: t0, Lane: "bob@example.net"}
	mustAdd(t, s, out, job)
	reaction := withEvent(newMessage(bob, "r1", mapping.FromMatrix), "$react1")
	reaction.RelKind, reaction.RelTo, reaction.RelKey = "reaction", out.RowID, "👍"
	mustAdd(t, s, reaction)
	_, err := s.Acknowledge(ctx, []mapping.Ack{
		{Row: in.RowID, Kind: mapping.AckDisplayed, At: t0.Add(time.Second), UpTo: "!room:example.org", By: "@alice:example.org"},
		{Row: out.RowID, Kind: mapping.AckDelivered, At: t0.Add(2 * time.Second)},
	})
	must(t, err)

	for i := range 3 {
		_, err := s.PutTxn(ctx, &mapping.Txn{ID: fmt.Sprint("txn", i), Body: []byte(fmt.Sprintf(`{"events":[%d]}`, i))})
		must(t, err)
	}
	must(t, s.FinishTxn(ctx, "txn0", nil, nil))
	_, err = s.PutSetAside(ctx, &mapping.SetAside{TxnID: "txn1", EventID: "$bad", Room: "!room:example.org", Sender: alice, Type: "m.room.message", Reason: mapping.SetAsideRefused, Error: "too long", At: t0})
	must(t, err)

	// Jobs 2..4, of which the last two are done: the sequence is past the
	// largest id left.
	jobs := []*mapping.Job{
		{Kind: "matrix.ghost_profile", Payload: []byte{0, 1, 2, 0xff}, NotBefore: t0.Add(time.Minute), Attempts: 2, LastError: "HTTP 502"},
		{Kind: "xmpp.vcard", NotBefore: t0},
		{Kind: "xmpp.vcard", NotBefore: t0},
	}
	must(t, s.AddJobs(ctx, jobs...))
	must(t, s.DeleteJobs(ctx, jobs[1].ID, jobs[2].ID))

	must(t, s.PutManagementRoom(ctx, "!bot:example.org", alice))
	off, on := false, true
	must(t, s.SetUserSetting(ctx, mapping.UserSetting{MXID: alice, Receipts: &off, Typing: &on, ReceiptsOnSince: t0}))
	must(t, s.SetUserSetting(ctx, mapping.UserSetting{MXID: dave, Typing: &off}))
	must(t, s.SetKV(ctx, "sync_token", "s72594_4483_1934"))
	must(t, s.SetSubscriptionFrom(ctx, alice, bob, true))
	must(t, s.SetSubscriptionTo(ctx, alice, carol, true))
	must(t, s.SetPuppetProfile(ctx, &mapping.Profile{MXID: alice, Name: "Alice", AvatarURL: "mxc://example.org/a", Photo: []byte{0x89, 'P', 'N', 'G', 0}, PhotoType: "image/png", PhotoHash: "0a1b"}))
	must(t, s.SetGhostProfile(ctx, &mapping.GhostProfile{JID: bob, Name: "Bob", NamedByNick: true, PhotoHash: "", AvatarURL: ""}))

	ss := sqlstatestore.NewSQLStateStore(s.DB(), dbutil.NoopLogger, false)
	must(t, EnsureVersionTable(ctx, ss.Database))
	must(t, ss.Upgrade(ctx))
	ghost := id.UserID("@_xmpp_bob=40example.net:example.org")
	must(t, ss.MarkRegistered(ctx, ghost))
	must(t, ss.SetMember(ctx, "!room:example.org", ghost, &event.MemberEventContent{Membership: event.MembershipJoin, Displayname: "Bob (XMPP)"}))
	must(t, ss.SetMembership(ctx, "!room:example.org", alice, event.MembershipInvite))
	must(t, ss.SetPowerLevels(ctx, "!room:example.org", &event.PowerLevelsEventContent{Users: map[id.UserID]int{ghost: 100, alice: 100}}))
	must(t, ss.SetJoinRules(ctx, "!room:example.org", &event.JoinRulesEventContent{JoinRule: event.JoinRuleInvite}))
	must(t, ss.MarkMembersFetched(ctx, "!room:example.org"))
}

// newRowsTakeNewIDs adds a message and a job to a copy: their ids come
// after every id of the source, the job's after those of deleted jobs too.
func newRowsTakeNewIDs(t *testing.T, db *Database, src map[string][]string) {
	t.Helper()
	ctx := t.Context()
	msg := newMessage(carol, "after-copy", mapping.FromXMPP)
	job := &mapping.Job{Kind: "xmpp.vcard", NotBefore: t0}
	mustAdd(t, db, msg, job)
	if want := int64(len(src["message"])) + 1; msg.RowID != want {
		t.Errorf("new message took row %d, want %d", msg.RowID, want)
	}
	// fill's jobs had ids 1 to 4 and the last two were deleted.
	if job.ID != 5 {
		t.Errorf("new job took id %d, want 5 (after the deleted ones)", job.ID)
	}
	var txn mapping.Txn
	txn.ID, txn.Body = "after-copy", []byte("{}")
	_, err := db.PutTxn(ctx, &txn)
	must(t, err)
	var set bool
	set, err = db.PutSetAside(ctx, &mapping.SetAside{TxnID: "after-copy", Reason: mapping.SetAsideDecode, Error: "x", At: t0})
	must(t, err)
	if !set {
		t.Error("a new item set aside was taken for a known one")
	}
}

// tablesOf lists the tables of db's schema.
func tablesOf(t *testing.T, db *dbutil.Database) []string {
	t.Helper()
	query := "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
	if db.Dialect == dbutil.SQLite {
		query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
	}
	tables := queryStrings(t, db.RawDB, query)
	slices.Sort(tables)
	return tables
}

// queryStrings is the one column of text that query answers.
func queryStrings(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), query)
	must(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		must(t, rows.Scan(&s))
		out = append(out, s)
	}
	must(t, rows.Err())
	return out
}

// jsonColumns hold JSON, which PostgreSQL's jsonb keeps by its meaning, not
// its spelling: they are compared as JSON.
var jsonColumns = map[string]bool{"power_levels": true, "encryption": true, "create_event": true, "join_rules": true}

// dumpTables renders every copied table, a line per row, sorted: values
// by type and content, the same on both engines for the same row. On
// SQLite, bytes and text differ (a BLOB never equals a TEXT in a query);
// lib/pq hands over text of types it does not know (jsonb, enums) as
// bytes, whose column types keep them apart anyway.
func dumpTables(t *testing.T, dbu *dbutil.Database) map[string][]string {
	t.Helper()
	db, blobIsText := dbu.RawDB, dbu.Dialect == dbutil.Postgres
	dump := map[string][]string{}
	for _, table := range copiedTables {
		rows, err := db.QueryContext(t.Context(), "SELECT * FROM "+table)
		must(t, err)
		cols, err := rows.Columns()
		must(t, err)
		lines := []string{}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			must(t, rows.Scan(ptrs...))
			fields := make([]string, len(cols))
			for i, v := range vals {
				fields[i] = cols[i] + "=" + render(t, v, jsonColumns[cols[i]], blobIsText)
			}
			slices.Sort(fields) // columns by name: their order may differ
			lines = append(lines, strings.Join(fields, " "))
		}
		must(t, rows.Err())
		rows.Close()
		slices.Sort(lines)
		dump[table] = lines
	}
	return dump
}

func render(t *testing.T, v any, isJSON, blobIsText bool) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		if !blobIsText {
			return "blob:" + render(t, string(v), isJSON, true)
		}
		return render(t, string(v), isJSON, true)
	case string:
		if isJSON {
			return renderJSON(t, []byte(v))
		}
		return fmt.Sprintf("%q", v)
	case int64, bool:
		return fmt.Sprint(v)
	default:
		t.Fatalf("unexpected value %#v of type %T", v, v)
		return ""
	}
}

func renderJSON(t *testing.T, b []byte) string {
	var v any
	must(t, json.Unmarshal(b, &v))
	out, err := json.Marshal(v)
	must(t, err)
	return "json:" + string(out)
}

// withoutStorage is a SQLite dump as a PostgreSQL one renders the same
// rows: a column's type, not the value, says whether it holds bytes.
func withoutStorage(dump map[string][]string) map[string][]string {
	out := make(map[string][]string, len(dump))
	for table, lines := range dump {
		for _, line := range lines {
			out[table] = append(out[table], strings.ReplaceAll(line, "=blob:", "="))
		}
	}
	return out
}

// equalDumps reports every table whose rows differ.
func equalDumps(t *testing.T, what string, got, want map[string][]string) bool {
	t.Helper()
	ok := true
	for _, table := range copiedTables {
		if !slices.Equal(got[table], want[table]) {
			ok = false
			t.Errorf("%s: table %s differs\n got: %s\nwant: %s", what, table,
				strings.Join(got[table], "\n      "), strings.Join(want[table], "\n      "))
		}
	}
	return ok
}

func sqliteSequence(t *testing.T, db *sql.DB) []string {
	t.Helper()
	return queryStrings(t, db, "SELECT name || '=' || seq FROM sqlite_sequence ORDER BY name")
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}
