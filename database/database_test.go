package database

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
	"xmppbridge/mapping/memstore"
)

const (
	postgresEnv     = "XMPPBRIDGE_TEST_POSTGRES"
	skipPostgresEnv = "XMPPBRIDGE_SKIP_POSTGRES"
)

// store is an open Database that can be closed and opened again on the same
// data, as across a restart of the bridge.
type store struct {
	*Database
	t    *testing.T
	open func() *Database
	path string // SQLite's file, "" on PostgreSQL
}

func (s *store) reopen() {
	s.t.Helper()
	if err := s.Close(); err != nil {
		s.t.Fatal(err)
	}
	s.Database = s.open()
}

type engine struct {
	name string
	// newStore opens an empty store of its own, removed when t ends, with
	// the options given (defaultOptions if none).
	newStore func(t *testing.T, opts ...options) *store
	// place gives an empty place for a database, removed when t ends: its
	// dbType and URI, for Open.
	place func(t *testing.T) (dbType, uri string)
}

var engines = []engine{
	{"sqlite", newSQLiteStore, sqlitePlace},
	{"postgres", newPostgresStore, postgresPlace},
}

func sqlitePlace(t *testing.T) (string, string) {
	return "sqlite3-fk-wal", filepath.Join(t.TempDir(), "bridge.db")
}

// contractStore is the store as the core and the outbox use it: what the
// database offers them, and what the core's in-memory fake
// (memstore.Store) offers the core's tests.
type contractStore interface {
	mapping.Store
	PendingTxns(ctx context.Context, limit, maxBytes int) ([]*mapping.Txn, error)
	DueJobs(ctx context.Context, now time.Time, limit int) ([]*mapping.Job, error)
	DueJobsAfter(ctx context.Context, now time.Time, after int64, limit int) ([]*mapping.Job, error)
	DeleteJob(ctx context.Context, jobID int64) error
	DeleteJobs(ctx context.Context, jobIDs ...int64) error
	RetryJob(ctx context.Context, jobID int64, notBefore time.Time, lastErr string) error
}

var _ contractStore = (*memstore.Store)(nil)

// forEachStore runs a test of the store's contract on each engine and on
// memstore.Store, in parallel: the fake the core's rules are tested on
// behaves as the database does, in what these tests ask of both.
func forEachStore(t *testing.T, test func(t *testing.T, s contractStore)) {
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		test(t, memstore.New())
	})
	forEachEngine(t, func(t *testing.T, _ engine, s *store) { test(t, s) })
}

// forEachEngine runs test once on each engine, in parallel.
func forEachEngine(t *testing.T, test func(t *testing.T, e engine, s *store)) {
	forEachEngineWith(t, defaultOptions(), test)
}

// forEachEngineWith is forEachEngine on stores opened with opts.
func forEachEngineWith(t *testing.T, opts options, test func(t *testing.T, e engine, s *store)) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			test(t, e, e.newStore(t, opts))
		})
	}
}

func pickOptions(opts []options) options {
	if len(opts) > 0 {
		return opts[0]
	}
	return defaultOptions()
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// newOpenedStore opens the store with open and closes whatever is open when
// t ends.
func newOpenedStore(t *testing.T, open func() *Database) *store {
	s := &store{t: t, open: open}
	s.Database = open()
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newSQLiteStore(t *testing.T, opts ...options) *store {
	// A plain path, not a "file:" URI: Open must add its own parameters to
	// either.
	_, path := sqlitePlace(t)
	s := newOpenedStore(t, func() *Database {
		t.Helper()
		db, err := openWith(t.Context(), "sqlite3-fk-wal", path, testLogger(t), pickOptions(opts))
		if err != nil {
			t.Fatal(err)
		}
		return db
	})
	s.path = path
	return s
}

// newPostgresStore opens a store in a schema of its own (postgresPlace).
func newPostgresStore(t *testing.T, opts ...options) *store {
	_, uri := postgresPlace(t)
	schema := searchPathOf(t, uri)
	return newOpenedStore(t, func() *Database {
		t.Helper()
		db, err := openWith(t.Context(), "postgres", uri, testLogger(t), pickOptions(opts))
		if err != nil {
			t.Fatal(err)
		}
		// lib/pq sends unknown URI parameters as run-time parameters; make
		// sure search_path really arrived, or the tests would share public.
		var current string
		if err = db.DB().QueryRow(t.Context(), "SELECT current_schema()").Scan(&current); err != nil {
			t.Fatal(err)
		} else if current != schema {
			t.Fatalf("current_schema() = %q, want %q: search_path was not applied", current, schema)
		}
		return db
	})
}

// searchPathOf is the schema postgresPlace put in uri.
func searchPathOf(t *testing.T, uri string) string {
	if _, schema, ok := strings.Cut(uri, " search_path="); ok {
		return schema
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("search_path")
}

// postgresPlace makes a schema of its own for a store, so that tests can
// run in parallel on one database and leave nothing behind.
func postgresPlace(t *testing.T) (string, string) {
	base := os.Getenv(postgresEnv)
	if base == "" {
		if os.Getenv(skipPostgresEnv) == "1" {
			t.Skipf("PostgreSQL tests skipped because %s=1", skipPostgresEnv)
		}
		t.Fatalf("set %s to a PostgreSQL URI (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) "+
			"to run the PostgreSQL tests, or %s=1 to skip them", postgresEnv, skipPostgresEnv)
	}
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatalf("open %s: %v", postgresEnv, err)
	}
	schema := "xmppbridge_test_" + randomHex(t)
	if _, err = admin.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
		_ = admin.Close()
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		_ = admin.Close()
	})

	return "postgres", withSearchPath(t, base, schema)
}

// withSearchPath adds search_path to a lib/pq URL or key=value string.
func withSearchPath(t testing.TB, base, schema string) string {
	if !strings.HasPrefix(base, "postgres://") && !strings.HasPrefix(base, "postgresql://") {
		return base + " search_path=" + schema
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", postgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func randomHex(t testing.TB) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

var (
	alice = id.UserID("@alice:example.org")
	dave  = id.UserID("@dave:example.org")
	bob   = jid.MustParse("bob@example.net")
	carol = jid.MustParse("carol@example.net")
	// A millisecond-exact time, since that is what the store keeps.
	t0 = time.UnixMilli(1_700_000_000_123)
)

func newMessage(peer jid.JID, xmppID string, dir mapping.Direction) *mapping.Message {
	return &mapping.Message{
		RoomID:    "!room:example.org",
		XMPPID:    xmppID,
		PeerJID:   peer,
		Direction: dir,
		MXID:      alice,
		Body:      "hello " + xmppID,
		TS:        t0,
	}
}

// messageView is a Message in a form reflect.DeepEqual compares by value.
type messageView struct {
	mapping.Message
	Peer string
}

func viewMessage(m *mapping.Message) messageView {
	c := *m
	c.TS, c.DeliveredAt, c.DisplayedAt = atMilli(c.TS), atMilli(c.DeliveredAt), atMilli(c.DisplayedAt)
	c.Sender = m.SentBy() // what the store keeps of a message that names none
	peer := c.PeerJID.String()
	c.PeerJID = jid.JID{}
	return messageView{c, peer}
}

type jobView struct {
	ID, MessageID int64
	Kind          mapping.JobKind
	Payload       string
	Attempts      int
	NotBefore     int64
	LastError     string
}

func viewJobs(jobs []*mapping.Job) []jobView {
	views := make([]jobView, len(jobs))
	for i, j := range jobs {
		views[i] = jobView{j.ID, j.MessageID, j.Kind, string(j.Payload), j.Attempts, toMilli(j.NotBefore), j.LastError}
	}
	return views
}

func atMilli(t time.Time) time.Time {
	return fromMilli(toMilli(t))
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, mapping.ErrNotFound) {
		t.Errorf("%s: got error %v, want mapping.ErrNotFound", what, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func withEvent(m *mapping.Message, ev id.EventID) *mapping.Message {
	m.EventID = ev
	return m
}

func mustAdd(t *testing.T, s contractStore, msg *mapping.Message, jobs ...*mapping.Job) {
	t.Helper()
	added, err := s.AddMessage(t.Context(), msg, jobs...)
	if err != nil {
		t.Fatal(err)
	} else if !added {
		t.Fatalf("message %q was taken for a duplicate", msg.XMPPID)
	}
}

// allJobs returns every job, due or not.
func allJobs(t *testing.T, s contractStore) []*mapping.Job {
	t.Helper()
	jobs, err := s.DueJobs(t.Context(), t0.Add(1000*time.Hour), 1000)
	must(t, err)
	return jobs
}

func TestPortal(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		_, err := s.PortalByRoom(ctx, "!a:example.org")
		wantNotFound(t, "PortalByRoom on empty store", err)
		_, err = s.PortalByPair(ctx, alice, bob)
		wantNotFound(t, "PortalByPair on empty store", err)

		// A full JID is kept bare, and found by any of its resources.
		must(t, s.PutPortal(ctx, mapping.DirectPortal("!a:example.org", alice, jid.MustParse("bob@example.net/phone"), t0)))
		want := *mapping.DirectPortal("!a:example.org", alice, bob, t0)
		checkPortal := func(what string, p *mapping.Portal, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if p.RoomID != want.RoomID || p.User() != want.User() || !p.JID.Equal(want.JID) || !p.CreatedAt.Equal(want.CreatedAt) {
				t.Errorf("%s = %+v (jid %s), want %+v (jid %s)", what, *p, p.JID, want, want.JID)
			}
		}
		p, err := s.PortalByRoom(ctx, "!a:example.org")
		checkPortal("PortalByRoom", p, err)
		p, err = s.PortalByPair(ctx, alice, jid.MustParse("bob@example.net/laptop"))
		checkPortal("PortalByPair", p, err)

		// Putting the same room again keeps when it was created.
		again := mapping.DirectPortal("!a:example.org", alice, bob, t0.Add(time.Hour))
		must(t, s.PutPortal(ctx, again))
		if !again.CreatedAt.Equal(t0) {
			t.Errorf("re-put portal CreatedAt = %v, want the stored %v", again.CreatedAt, t0)
		}
		p, err = s.PortalByRoom(ctx, "!a:example.org")
		checkPortal("PortalByRoom after re-put", p, err)

		// A new room for the pair replaces the old one.
		must(t, s.PutPortal(ctx, mapping.DirectPortal("!b:example.org", alice, bob, t0.Add(2*time.Hour))))
		_, err = s.PortalByRoom(ctx, "!a:example.org")
		wantNotFound(t, "PortalByRoom of the replaced room", err)
		want = *mapping.DirectPortal("!b:example.org", alice, bob, t0.Add(2*time.Hour))
		p, err = s.PortalByPair(ctx, alice, bob)
		checkPortal("PortalByPair after upsert", p, err)

		// Other pairs have portals of their own, but not in a taken room.
		must(t, s.PutPortal(ctx, mapping.DirectPortal("!c:example.org", dave, bob, t0)))
		if p, err = s.PortalByPair(ctx, dave, bob); err != nil || p.RoomID != "!c:example.org" {
			t.Errorf("PortalByPair(dave, bob) = %+v, %v; want room !c", p, err)
		}
		if err = s.PutPortal(ctx, mapping.DirectPortal("!b:example.org", alice, carol, time.Time{})); err == nil {
			t.Error("PutPortal into a room of another pair succeeded")
		}

		// A zero CreatedAt means now.
		fresh := mapping.DirectPortal("!d:example.org", alice, carol, time.Time{})
		before := time.Now().Add(-time.Second)
		must(t, s.PutPortal(ctx, fresh))
		if fresh.CreatedAt.Before(before) || fresh.CreatedAt.After(time.Now()) {
			t.Errorf("PutPortal with zero CreatedAt stored %v, want about now", fresh.CreatedAt)
		}
	})
}

func TestAddMessageDedup(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		first := newMessage(bob, "m1", mapping.FromXMPP)
		first.EventID = "$e1"
		mustAdd(t, s, first)

		tests := []struct {
			name      string
			msg       *mapping.Message
			wantAdded bool
		}{
			{"same event id", withEvent(newMessage(carol, "m2", mapping.FromMatrix), "$e1"), false},
			{"same stanza id, peer and direction", newMessage(jid.MustParse("bob@example.net/other"), "m1", mapping.FromXMPP), false},
			{"same stanza id in the other direction", newMessage(bob, "m1", mapping.FromMatrix), true},
			{"same stanza id with another peer", newMessage(carol, "m1", mapping.FromXMPP), true},
			{"no stanza id", newMessage(bob, "", mapping.FromXMPP), true},
			{"no stanza id again", newMessage(bob, "", mapping.FromXMPP), true},
			{"new event id", withEvent(newMessage(bob, "m3", mapping.FromMatrix), "$e3"), true},
		}
		for _, tt := range tests {
			jobsBefore := len(allJobs(t, s))
			job := &mapping.Job{Kind: "send"}
			added, err := s.AddMessage(ctx, tt.msg, job)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if added != tt.wantAdded {
				t.Errorf("%s: AddMessage = %t, want %t", tt.name, added, tt.wantAdded)
			}
			wantJobs, wantRowSet := jobsBefore, tt.wantAdded
			if tt.wantAdded {
				wantJobs++
			}
			if got := len(allJobs(t, s)); got != wantJobs {
				t.Errorf("%s: %d jobs stored, want %d", tt.name, got, wantJobs)
			}
			if (tt.msg.RowID != 0) != wantRowSet || (job.ID != 0) != wantRowSet {
				t.Errorf("%s: RowID %d, job ID %d; want them set: %t", tt.name, tt.msg.RowID, job.ID, wantRowSet)
			}
		}

		// The duplicates changed nothing about the first message.
		got, err := s.MessageByXMPPID(ctx, bob, "m1", mapping.FromXMPP)
		must(t, err)
		if !reflect.DeepEqual(viewMessage(got), viewMessage(first)) {
			t.Errorf("first message after duplicates = %+v, want %+v", viewMessage(got), viewMessage(first))
		}
	})
}

// The batch lookups find what the one-at-a-time ones find, over more keys
// than one query takes, and nothing of another direction or peer.
func TestMessageBatchLookups(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		const n = 700
		var keys []mapping.XMPPKey
		var evs []id.EventID
		for i := 0; i < n; i++ {
			xid := fmt.Sprintf("x%d", i)
			mustAdd(t, s, withEvent(newMessage(bob, xid, mapping.FromMatrix), id.EventID("$"+xid)))
			keys = append(keys, mapping.XMPPKey{Peer: bob.String(), ID: xid})
			evs = append(evs, id.EventID("$"+xid))
		}
		mustAdd(t, s, newMessage(carol, "c1", mapping.FromXMPP))
		keys = append(keys,
			keys[0], // twice
			mapping.XMPPKey{Peer: bob.String(), ID: "missing"},
			mapping.XMPPKey{Peer: carol.String(), ID: "x1"},          // another peer
			mapping.XMPPKey{Peer: carol.String(), ID: "c1"},          // the other direction
			mapping.XMPPKey{Peer: bob.String(), ID: ""},              // no id names no message
			mapping.XMPPKey{Peer: "bob@example.net/phone", ID: "x2"}, // peers are bare
		)
		got, err := s.MessagesByXMPPIDs(ctx, mapping.FromMatrix, keys)
		must(t, err)
		if len(got) != n {
			t.Errorf("MessagesByXMPPIDs found %d messages, want %d", len(got), n)
		}
		for _, k := range keys[:n] {
			if m := got[k]; m == nil || m.XMPPID != k.ID || m.EventID != id.EventID("$"+k.ID) {
				t.Fatalf("MessagesByXMPPIDs[%v] = %+v", k, m)
			}
		}
		byEvent, err := s.MessagesByEventIDs(ctx, append(evs, "$missing"))
		must(t, err)
		if len(byEvent) != n || byEvent["$x650"].XMPPID != "x650" {
			t.Errorf("MessagesByEventIDs found %d messages, want %d", len(byEvent), n)
		}
	})
}

func TestMessageLookups(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		msg := &mapping.Message{
			RoomID:       "!room:example.org",
			EventID:      "$ev",
			XMPPID:       "x1",
			OriginID:     "o1",
			StanzaID:     "s1",
			PeerJID:      jid.MustParse("bob@example.net/phone"),
			PeerResource: "phone",
			Direction:    mapping.FromXMPP,
			MXID:         alice,
			Body:         "hi ☃",
			TS:           t0,
			Requests:     mapping.Requests{Receipt: true, Delivered: true, Displayed: true, Composing: true, Offline: true, Markable: true},
			DeliveredAt:  t0.Add(time.Second),
			DisplayedAt:  t0.Add(2 * time.Second),
			RelKind:      mapping.RelReply,
			RelTo:        7,
			RelKey:       "👍",
		}
		mustAdd(t, s, msg)
		want := *msg
		want.PeerJID = bob // stored bare

		lookups := []struct {
			name string
			get  func() (*mapping.Message, error)
		}{
			{"MessageByRow", func() (*mapping.Message, error) { return s.MessageByRow(ctx, msg.RowID) }},
			{"MessageByEventID", func() (*mapping.Message, error) { return s.MessageByEventID(ctx, "$ev") }},
			{"MessageByXMPPID", func() (*mapping.Message, error) {
				return s.MessageByXMPPID(ctx, jid.MustParse("bob@example.net/laptop"), "x1", mapping.FromXMPP)
			}},
		}
		for _, l := range lookups {
			got, err := l.get()
			if err != nil {
				t.Errorf("%s: %v", l.name, err)
			} else if !reflect.DeepEqual(viewMessage(got), viewMessage(&want)) {
				t.Errorf("%s =\n%+v, want\n%+v", l.name, viewMessage(got), viewMessage(&want))
			}
		}

		_, err := s.MessageByRow(ctx, msg.RowID+100)
		wantNotFound(t, "MessageByRow of a missing row", err)
		_, err = s.MessageByEventID(ctx, "$missing")
		wantNotFound(t, "MessageByEventID of a missing event", err)
		_, err = s.MessageByXMPPID(ctx, bob, "x1", mapping.FromMatrix)
		wantNotFound(t, "MessageByXMPPID in the other direction", err)
		_, err = s.MessageByXMPPID(ctx, carol, "x1", mapping.FromXMPP)
		wantNotFound(t, "MessageByXMPPID with another peer", err)

		// A message without a stanza id is found only by row and event.
		anon := newMessage(bob, "", mapping.FromXMPP)
		mustAdd(t, s, anon)
		_, err = s.MessageByXMPPID(ctx, bob, "", mapping.FromXMPP)
		wantNotFound(t, "MessageByXMPPID with an empty id", err)

		// The Matrix side's event arrives later.
		must(t, s.SetMessageEventID(ctx, anon.RowID, "!other:example.org", "$anon"))
		got, err := s.MessageByEventID(ctx, "$anon")
		must(t, err)
		if got.RowID != anon.RowID || got.RoomID != "!other:example.org" {
			t.Errorf("after SetMessageEventID: row %d in %s, want row %d in !other", got.RowID, got.RoomID, anon.RowID)
		}
		if err = s.SetMessageEventID(ctx, anon.RowID, "!room:example.org", "$ev"); err == nil || errors.Is(err, mapping.ErrNotFound) {
			t.Errorf("SetMessageEventID to another message's event: %v, want a conflict error", err)
		}
		err = s.SetMessageEventID(ctx, anon.RowID+100, "!room:example.org", "$nowhere")
		wantNotFound(t, "SetMessageEventID of a missing row", err)
	})
}

func TestJobs(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		now := t0

		msg := newMessage(bob, "m1", mapping.FromMatrix)
		j1 := &mapping.Job{Kind: "xmpp-send", Payload: []byte(`{"n":1}`)}
		j2 := &mapping.Job{Kind: "matrix-receipt", NotBefore: now.Add(-time.Minute)}
		mustAdd(t, s, msg, j1, j2)
		if j1.ID == 0 || j2.ID <= j1.ID || j1.MessageID != msg.RowID || j2.MessageID != msg.RowID {
			t.Fatalf("jobs stored with a message: %+v %+v, want increasing IDs and MessageID %d", *j1, *j2, msg.RowID)
		}
		j3 := &mapping.Job{Kind: "later", NotBefore: now.Add(time.Hour)}
		j4 := &mapping.Job{Kind: "unrelated", NotBefore: now}
		must(t, s.AddJobs(ctx, j3, j4))

		due := func(at time.Time, limit int, want ...*mapping.Job) {
			t.Helper()
			got, err := s.DueJobs(ctx, at, limit)
			must(t, err)
			if !reflect.DeepEqual(viewJobs(got), viewJobs(want)) {
				t.Errorf("DueJobs(now%+v, %d) =\n%+v, want\n%+v", at.Sub(now), limit, viewJobs(got), viewJobs(want))
			}
		}
		due(now, 10, j1, j2, j4)
		due(now, 2, j1, j2)
		due(now.Add(2*time.Hour), 10, j1, j2, j3, j4)
		// The next batch of a long queue: the due jobs after the last read.
		if got, err := s.DueJobsAfter(ctx, now, j2.ID, 10); err != nil || !reflect.DeepEqual(viewJobs(got), viewJobs([]*mapping.Job{j4})) {
			t.Errorf("DueJobsAfter(now, j2) = %+v, %v; want j4", viewJobs(got), err)
		}
		if _, err := s.DueJobs(ctx, now, 0); err == nil {
			t.Error("DueJobs with limit 0 succeeded")
		}

		// A failed attempt postpones the job and says why.
		must(t, s.RetryJob(ctx, j1.ID, now.Add(time.Minute), "remote-server-timeout"))
		due(now, 10, j2, j4)
		j1.Attempts, j1.NotBefore, j1.LastError = 1, now.Add(time.Minute), "remote-server-timeout"
		due(now.Add(time.Minute), 10, j1, j2, j4)
		wantNotFound(t, "RetryJob of a missing job", s.RetryJob(ctx, j4.ID+100, now, "x"))

		must(t, s.DeleteJob(ctx, j2.ID))
		must(t, s.DeleteJob(ctx, j2.ID)) // gone is done
		due(now.Add(time.Minute), 10, j1, j4)

		// All or nothing: a job that cannot be stored takes its message and
		// the other jobs with it.
		before := viewJobs(allJobs(t, s))
		msg2 := newMessage(bob, "m2", mapping.FromMatrix)
		good, bad := &mapping.Job{Kind: "xmpp-send"}, &mapping.Job{Kind: ""}
		if _, err := s.AddMessage(ctx, msg2, good, bad); err == nil {
			t.Error("AddMessage with a kindless job succeeded")
		}
		if msg2.RowID != 0 || good.ID != 0 || good.MessageID != 0 {
			t.Errorf("failed AddMessage left RowID %d, job %+v", msg2.RowID, *good)
		}
		_, err := s.MessageByXMPPID(ctx, bob, "m2", mapping.FromMatrix)
		wantNotFound(t, "message of a failed AddMessage", err)
		if err = s.AddJobs(ctx, &mapping.Job{Kind: "ok"}, &mapping.Job{Kind: ""}); err == nil {
			t.Error("AddJobs with a kindless job succeeded")
		}
		// Foreign keys are on: a job cannot point at a message that is not there.
		if err = s.AddJobs(ctx, &mapping.Job{Kind: "orphan", MessageID: msg.RowID + 100}); err == nil {
			t.Error("AddJobs for a missing message succeeded")
		}
		if got := viewJobs(allJobs(t, s)); !reflect.DeepEqual(got, before) {
			t.Errorf("failed inserts changed the outbox:\n%+v, was\n%+v", got, before)
		}
	})
}

func TestTxnInbox(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		put := func(txnID, body string, want bool) {
			t.Helper()
			added, err := s.PutTxn(ctx, &mapping.Txn{ID: txnID, Body: []byte(body)})
			must(t, err)
			if added != want {
				t.Errorf("PutTxn(%s) = %t, want %t", txnID, added, want)
			}
		}
		pending := func(want ...string) {
			t.Helper()
			txns, err := s.PendingTxns(ctx, 0, 0)
			must(t, err)
			var got []string
			for _, txn := range txns {
				got = append(got, txn.ID+"="+string(txn.Body))
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("PendingTxns = %q, want %q", got, want)
			}
		}

		pending()
		// Ids that do not sort in arrival order.
		put("b", `{"b":1}`, true)
		put("a", `{"a":1}`, true)
		put("c", `{"c":1}`, true)
		put("a", `{"a":2}`, false) // a homeserver retry
		pending("b={\"b\":1}", "a={\"a\":1}", "c={\"c\":1}")

		job := &mapping.Job{Kind: "xmpp-send", Payload: []byte("a")}
		must(t, s.FinishTxn(ctx, "a", nil, []*mapping.Job{job}))
		if job.ID == 0 {
			t.Error("FinishTxn did not set the job's ID")
		}
		pending("b={\"b\":1}", "c={\"c\":1}")
		if jobs := allJobs(t, s); len(jobs) != 1 || jobs[0].ID != job.ID || !bytes.Equal(jobs[0].Payload, []byte("a")) {
			t.Errorf("jobs after FinishTxn = %+v, want the one job", viewJobs(jobs))
		}

		// Finishing again, as after a crash between finishing and forgetting,
		// stores nothing a second time.
		replayed := &mapping.Job{Kind: "xmpp-send"}
		must(t, s.FinishTxn(ctx, "a", nil, []*mapping.Job{replayed}))
		if replayed.ID != 0 || len(allJobs(t, s)) != 1 {
			t.Errorf("FinishTxn of a finished transaction stored job %d", replayed.ID)
		}
		put("a", `{"a":3}`, false) // still known once done

		wantNotFound(t, "FinishTxn of an unknown transaction", s.FinishTxn(ctx, "zzz", nil, nil))

		// A job that cannot be stored leaves the transaction pending.
		if err := s.FinishTxn(ctx, "b", nil, []*mapping.Job{{Kind: "ok"}, {Kind: ""}}); err == nil {
			t.Error("FinishTxn with a kindless job succeeded")
		}
		pending("b={\"b\":1}", "c={\"c\":1}")
		if n := len(allJobs(t, s)); n != 1 {
			t.Errorf("failed FinishTxn left %d jobs, want 1", n)
		}
		must(t, s.FinishTxn(ctx, "b", nil, nil))
		pending("c={\"c\":1}")
	})
}

func TestKV(t *testing.T) {
	forEachEngine(t, func(t *testing.T, _ engine, s *store) {
		ctx := t.Context()
		_, err := s.GetKV(ctx, "sync_token")
		wantNotFound(t, "GetKV of a missing key", err)
		for _, v := range []string{"s1_2_3", "s4_5_6", ""} {
			must(t, s.SetKV(ctx, "sync_token", v))
			got, err := s.GetKV(ctx, "sync_token")
			if err != nil || got != v {
				t.Errorf("GetKV after SetKV(%q) = %q, %v", v, got, err)
			}
		}
	})
}

// TestReopen checks that everything survives closing the database and
// opening it again, as across a restart, and that opening an up-to-date
// database changes nothing.
func TestReopen(t *testing.T) {
	forEachEngine(t, func(t *testing.T, _ engine, s *store) {
		ctx := t.Context()
		must(t, s.PutPortal(ctx, mapping.DirectPortal("!a:example.org", alice, bob, t0)))
		msg := newMessage(bob, "m1", mapping.FromXMPP)
		msg.EventID = "$e1"
		msg.Requests.Markable = true
		job := &mapping.Job{Kind: "matrix-send", Payload: []byte(`{}`), NotBefore: t0}
		mustAdd(t, s, msg, job)
		must(t, s.RetryJob(ctx, job.ID, t0.Add(time.Minute), "busy"))
		job.Attempts, job.NotBefore, job.LastError = 1, t0.Add(time.Minute), "busy"
		_, err := s.PutTxn(ctx, &mapping.Txn{ID: "done", Body: []byte("1")})
		must(t, err)
		must(t, s.FinishTxn(ctx, "done", nil, nil))
		_, err = s.PutTxn(ctx, &mapping.Txn{ID: "pending", Body: []byte("2")})
		must(t, err)
		must(t, s.SetKV(ctx, "sync_token", "s42"))

		for round := 1; round <= 2; round++ {
			s.reopen()
			p, err := s.PortalByPair(ctx, alice, bob)
			if err != nil || p.RoomID != "!a:example.org" || !p.CreatedAt.Equal(t0) {
				t.Errorf("round %d: portal = %+v, %v", round, p, err)
			}
			got, err := s.MessageByEventID(ctx, "$e1")
			if err != nil {
				t.Errorf("round %d: message: %v", round, err)
			} else if !reflect.DeepEqual(viewMessage(got), viewMessage(msg)) {
				t.Errorf("round %d: message = %+v, want %+v", round, viewMessage(got), viewMessage(msg))
			}
			if jobs := allJobs(t, s); !reflect.DeepEqual(viewJobs(jobs), viewJobs([]*mapping.Job{job})) {
				t.Errorf("round %d: jobs = %+v, want %+v", round, viewJobs(jobs), viewJobs([]*mapping.Job{job}))
			}
			txns, err := s.PendingTxns(ctx, 0, 0)
			if err != nil || len(txns) != 1 || txns[0].ID != "pending" || string(txns[0].Body) != "2" {
				t.Errorf("round %d: pending transactions = %+v, %v", round, txns, err)
			}
			if added, err := s.PutTxn(ctx, &mapping.Txn{ID: "done", Body: []byte("1")}); err != nil || added {
				t.Errorf("round %d: PutTxn of a finished transaction = %t, %v", round, added, err)
			}
			if v, err := s.GetKV(ctx, "sync_token"); err != nil || v != "s42" {
				t.Errorf("round %d: sync token = %q, %v", round, v, err)
			}
			// New rows continue after the old ones.
			next := &mapping.Job{Kind: mapping.JobKind(fmt.Sprintf("round-%d", round))}
			must(t, s.AddJobs(ctx, next))
			if next.ID <= job.ID {
				t.Errorf("round %d: new job ID %d not after %d", round, next.ID, job.ID)
			}
			must(t, s.DeleteJob(ctx, next.ID))
		}
	})
}

// TestSeparateStores opens two stores on one engine at once. On PostgreSQL
// they are two schemas of one database, where dbutil alone would find the
// other schema's version table and fail to upgrade the second.
func TestSeparateStores(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, first *store) {
		ctx := t.Context()
		must(t, first.PutPortal(ctx, mapping.DirectPortal("!a:example.org", alice, bob, time.Time{})))
		second := e.newStore(t)
		_, err := second.PortalByRoom(ctx, "!a:example.org")
		wantNotFound(t, "portal of the first store in the second", err)
		must(t, second.PutPortal(ctx, mapping.DirectPortal("!a:example.org", dave, carol, time.Time{})))
		if p, err := first.PortalByRoom(ctx, "!a:example.org"); err != nil || p.User() != alice {
			t.Errorf("first store's portal = %+v, %v; want alice's", p, err)
		}
	})
}

// TestConcurrentAddMessage stores the same stanza from several goroutines at
// once, as when a peer's server retries while the first copy is being
// stored: exactly one must win, and nobody may fail on a locked database.
func TestConcurrentAddMessage(t *testing.T) {
	forEachEngine(t, func(t *testing.T, _ engine, s *store) {
		const writers = 8
		type result struct {
			added bool
			err   error
		}
		results := make(chan result, writers)
		for i := range writers {
			go func() {
				msg := newMessage(bob, "race", mapping.FromXMPP)
				msg.Body = fmt.Sprint("copy ", i)
				added, err := s.AddMessage(t.Context(), msg, &mapping.Job{Kind: "matrix-send"})
				results <- result{added, err}
			}()
		}
		winners := 0
		for range writers {
			r := <-results
			if r.err != nil {
				t.Error(r.err)
			} else if r.added {
				winners++
			}
		}
		if winners != 1 {
			t.Errorf("%d writers stored the message, want 1", winners)
		}
		if n := len(allJobs(t, s)); n != 1 {
			t.Errorf("%d jobs stored, want 1", n)
		}
	})
}

func TestSQLiteDefaults(t *testing.T) {
	for in, want := range map[string]string{
		"bridge.db":                                 "bridge.db?_txlock=immediate&_stmt_cache_size=64",
		"file:b.db?mode=rwc":                        "file:b.db?mode=rwc&_txlock=immediate&_stmt_cache_size=64",
		"b.db?_txlock=deferred":                     "b.db?_txlock=deferred&_stmt_cache_size=64",
		"b.db?_stmt_cache_size=0":                   "b.db?_stmt_cache_size=0&_txlock=immediate",
		"b.db?_txlock=exclusive&_stmt_cache_size=8": "b.db?_txlock=exclusive&_stmt_cache_size=8",
	} {
		if got := withSQLiteDefaults(in); got != want {
			t.Errorf("withSQLiteDefaults(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPortalsByRooms(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		var rooms []id.RoomID
		for i := 0; i < 600; i++ { // more than one query's worth
			r := id.RoomID(fmt.Sprintf("!p%d:example.org", i))
			must(t, s.PutPortal(ctx, mapping.DirectPortal(r, alice, jid.MustParse(fmt.Sprintf("p%d@example.net", i)), t0)))
			rooms = append(rooms, r)
		}
		got, err := s.PortalsByRooms(ctx, append(rooms, "!nothing:example.org", rooms[3]))
		must(t, err)
		if len(got) != len(rooms) {
			t.Errorf("PortalsByRooms found %d portals, want %d", len(got), len(rooms))
		}
		if p := got["!p599:example.org"]; p == nil || p.JID.String() != "p599@example.net" || p.User() != alice || !p.CreatedAt.Equal(t0) {
			t.Errorf("portal of !p599 = %+v", p)
		}
	})
}

// HasUnsentToMatrix sees a message from XMPP until its event is stored, and
// only for its own pair: it decides whether an early receipt waits
// (mapping/early_receipts.go).
func TestHasUnsentToMatrix(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		unsent := func(mxid id.UserID, peer jid.JID) bool {
			t.Helper()
			v, err := s.HasUnsentToMatrix(ctx, mxid, peer)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		if unsent(alice, bob) {
			t.Fatal("unsent with no messages")
		}
		toMatrix := newMessage(bob, "m1", mapping.FromXMPP)
		toMatrix.EventID = ""
		mustAdd(t, s, toMatrix)
		fromMatrix := newMessage(bob, "m2", mapping.FromMatrix)
		fromMatrix.EventID = "$mine"
		mustAdd(t, s, fromMatrix)
		other, _ := bob.WithResource("phone") // the same person, by bare JID
		if !unsent(alice, other) {
			t.Error("a stored message from XMPP without its event is not unsent")
		}
		if unsent("@carol:example.org", bob) {
			t.Error("another Matrix user's pair is unsent")
		}
		must(t, s.SetMessageEventID(ctx, toMatrix.RowID, "!room:example.org", "$sent"))
		if unsent(alice, bob) {
			t.Error("still unsent once its event is stored")
		}
	})
}

// The live reactions to a message: one direction's, in order, without
// those a redaction points at, and without other kinds of relation.
func TestReactions(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		target := newMessage(bob, "m1", mapping.FromMatrix)
		mustAdd(t, s, target)
		rel := func(kind mapping.RelKind, to int64, key string, dir mapping.Direction) *mapping.Message {
			m := newMessage(bob, "", dir)
			m.RelKind, m.RelTo, m.RelKey = kind, to, key
			mustAdd(t, s, m)
			return m
		}
		up := rel(mapping.RelReaction, target.RowID, "👍", mapping.FromXMPP)
		heart := rel(mapping.RelReaction, target.RowID, "❤", mapping.FromXMPP)
		rel(mapping.RelReaction, target.RowID, "🎉", mapping.FromMatrix)
		rel(mapping.RelReply, target.RowID, "", mapping.FromXMPP)
		rel(mapping.RelRedact, up.RowID, "", mapping.FromXMPP)
		got, err := s.Reactions(ctx, target.RowID, mapping.FromXMPP)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].RowID != heart.RowID || got[0].RelKey != "❤" {
			t.Fatalf("reactions %+v, want only the heart", got)
		}
		if got, _ := s.Reactions(ctx, heart.RowID, mapping.FromXMPP); len(got) != 0 {
			t.Errorf("reactions to a reaction: %+v", got)
		}
	})
}

// A user's portals, by JID, and nobody else's.
func TestPortalsOf(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		for i, pair := range []struct {
			mxid id.UserID
			jid  string
		}{{alice, "romeo@example.net"}, {"@carol:example.org", "bob@example.net"}, {alice, "bob@example.net"}} {
			must(t, s.PutPortal(ctx, mapping.DirectPortal(id.RoomID(fmt.Sprintf("!r%d:example.org", i)), pair.mxid, jid.MustParse(pair.jid), t0)))
		}
		ps, err := s.PortalsOf(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 2 || ps[0].JID.String() != "bob@example.net" || ps[1].JID.String() != "romeo@example.net" || ps[0].RoomID != "!r2:example.org" {
			t.Fatalf("portals %+v", ps)
		}
	})
}

// What the operator watches: the sends owed to each side, since when the
// oldest waits, and a database that answers.
func TestOwedSends(t *testing.T) {
	forEachEngine(t, func(t *testing.T, _ engine, s *store) {
		ctx := t.Context()
		before := time.Now().Add(-time.Second)
		must(t, s.AddJobs(ctx, &mapping.Job{Kind: mapping.JobSendToXMPP}, &mapping.Job{Kind: mapping.JobSendToXMPP}, &mapping.Job{Kind: mapping.JobJoin}))
		owed, err := s.OwedSends(ctx)
		if err != nil {
			t.Fatal(err)
		}
		x, m := owed[mapping.SideXMPP], owed[mapping.SideMatrix]
		if x.Count != 2 || m.Count != 1 || x.Oldest.Before(before) || m.Oldest.After(time.Now()) {
			t.Errorf("owed %+v", owed)
		}
		if err := s.Ping(ctx); err != nil {
			t.Error(err)
		}
	})
}

// The bot's rooms and what users set through it, kept as the core's fake
// keeps them.
func TestBotStore(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		if _, err := s.ManagementRoom(ctx, "!bot:example.org"); !errors.Is(err, mapping.ErrNotFound) {
			t.Fatalf("unknown room: %v", err)
		}
		must(t, s.PutManagementRoom(ctx, "!bot:example.org", alice))
		if u, err := s.ManagementRoom(ctx, "!bot:example.org"); err != nil || u != alice {
			t.Fatalf("room of %q, %v", u, err)
		}
		off, on := false, true
		must(t, s.SetUserSetting(ctx, mapping.UserSetting{MXID: alice, Receipts: &off}))
		since := time.UnixMilli(1_700_000_000_123)
		must(t, s.SetUserSetting(ctx, mapping.UserSetting{MXID: alice, Receipts: &off, Typing: &on, ReceiptsOnSince: since}))
		got, err := s.UserSettings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v := got[alice]; len(got) != 1 || v.Receipts == nil || *v.Receipts || v.Typing == nil || !*v.Typing || !v.ReceiptsOnSince.Equal(since) {
			t.Errorf("settings %+v", got)
		}
	})
}

// How far behind the homeserver the bridge is: the oldest transaction
// still to process, none once it is.
func TestOldestPendingTxn(t *testing.T) {
	forEachEngine(t, func(t *testing.T, _ engine, s *store) {
		ctx := t.Context()
		if at, err := s.OldestPendingTxn(ctx); err != nil || !at.IsZero() {
			t.Fatalf("none pending: %v %v", at, err)
		}
		before := time.Now().Add(-time.Second)
		for _, id := range []string{"t1", "t2"} {
			if _, err := s.PutTxn(ctx, &mapping.Txn{ID: id, Body: []byte("{}")}); err != nil {
				t.Fatal(err)
			}
		}
		if at, err := s.OldestPendingTxn(ctx); err != nil || at.Before(before) || at.After(time.Now()) {
			t.Fatalf("two pending: %v %v", at, err)
		}
		must(t, s.FinishTxns(ctx, []string{"t1", "t2"}, nil, nil))
		if at, err := s.OldestPendingTxn(ctx); err != nil || !at.IsZero() {
			t.Fatalf("all done: %v %v", at, err)
		}
	})
}
