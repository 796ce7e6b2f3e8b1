package matrixside

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/database"
	"xmppbridge/internal/peers"
	"xmppbridge/mapping"
)

// U+0000, which a JSON string may carry as \u0000 and PostgreSQL refuses in
// text, is gone from every string the core gets: bodies, formatted bodies,
// edits, reaction keys, display names, the users of a receipt. A
// backslash followed by "u0000" is text, and stays.
func TestDecodeStripsNUL(t *testing.T) {
	s := NewServer("hs-secret", nil, nil, func(string, string) {}, zerolog.Nop())
	msg := func(id, content string) string {
		return `{"type":"m.room.message","event_id":"` + id + `","room_id":"!r:example.org","sender":"@alice:example.org","origin_server_ts":1,"content":` + content + `}`
	}
	body := `{"events": [` +
		msg("$m", `{"msgtype":"m.text","body":"a\u0000b","format":"org.matrix.custom.html","formatted_body":"<b>\u0000x</b>"}`) + `,` +
		msg("$e", `{"msgtype":"m.text","body":"* c","m.new_content":{"msgtype":"m.text","body":"c\u0000d"},"m.relates_to":{"rel_type":"m.replace","event_id":"$m"}}`) + `,` +
		`{"type":"m.reaction","event_id":"$r","room_id":"!r:example.org","sender":"@alice:example.org","content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$m","key":"\u0000👍"}}},` +
		`{"type":"m.room.member","state_key":"@alice:example.org","event_id":"$j","room_id":"!r:example.org","sender":"@alice:example.org","content":{"membership":"join","displayname":"Al\u0000ice"}},` +
		msg("$t", `{"msgtype":"m.text","body":"\\u0000 is how JSON writes NUL"}`) +
		`], "ephemeral": [{"type":"m.receipt","room_id":"!r:example.org","content":{"$m":{"m.read":{"@alice:example.org\u0000":{"ts":1}}}}}]}`
	txn := s.decodeEvents(&mapping.Txn{ID: "t", Body: []byte(body)})
	if len(txn.Events) != 5 || len(txn.Receipts) != 1 {
		t.Fatalf("decoded %d events and %d receipts, want 5 and 1: %+v", len(txn.Events), len(txn.Receipts), txn)
	}
	got := []string{txn.Events[0].Body, txn.Events[0].HTML, txn.Events[1].Rel.NewBody, txn.Events[2].Rel.Key, txn.Events[3].DisplayName, txn.Events[4].Body, string(txn.Receipts[0].User)}
	want := []string{"ab", "<b>x</b>", "cd", "👍", "Alice", `\u0000 is how JSON writes NUL`, "@alice:example.org"}
	if !slices.Equal(got, want) {
		t.Errorf("decoded %q, want %q", got, want)
	}
}

// A group of transactions that fails for its data with no event to blame
// (here a panic outside any event) is taken one by one: the transaction
// that fails alone is set aside (a row, done), and those before and after
// it are processed, in order. A failure of the store is not a reason to
// set anything aside: the group stays pending, to be tried again.
func TestGroupFailureSetAsideOneByOne(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      func() error
		wantDone  []string
		wantAside int
	}{
		{"panic", func() error { panic("boom") }, []string{"t1", "t2", "t4", "t5"}, 1},
		// The group t3 is in stays pending; those decoded and handled in a
		// group before it may be done (how many depends on how far decoding
		// ran ahead): wantDone is what may be done at most.
		{"store down", func() error { return errors.New("connection refused") }, []string{"t1", "t2"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, db, _ := newServer(t)
			ctx := t.Context()
			var done []string
			s.handleTxns = func(ctx context.Context, txns []mapping.MatrixTxn) error {
				for _, txn := range txns {
					if txn.ID == "t3" {
						return tc.fail()
					}
				}
				for _, txn := range txns {
					if err := db.FinishTxn(ctx, txn.ID, nil, nil); err != nil {
						return err
					}
					done = append(done, txn.ID)
				}
				return nil
			}
			var txns []*mapping.Txn
			for i := 1; i <= 5; i++ {
				txn := &mapping.Txn{ID: fmt.Sprintf("t%d", i), Body: []byte(`{"events":[]}`)}
				if _, err := db.PutTxn(ctx, txn); err != nil {
					t.Fatal(err)
				}
				txns = append(txns, txn)
			}
			ok := s.processBatch(ctx, txns)
			pending, _ := db.PendingTxns(ctx, 0, 0)
			n, newest, _ := db.SetAsideCount(ctx)
			if tc.wantAside == 0 {
				if n != 0 || len(done) > len(tc.wantDone) || !slices.Equal(done, tc.wantDone[:len(done)]) {
					t.Fatalf("processed %q, %d set aside; want none set aside and at most %q done", done, n, tc.wantDone)
				}
				if ok || len(pending) != 5-len(done) {
					t.Errorf("ok %t, %d pending; want false and all %d not done pending, to retry", ok, len(pending), 5-len(done))
				}
				return
			}
			if !slices.Equal(done, tc.wantDone) || n != tc.wantAside {
				t.Fatalf("processed %q, %d set aside; want %q, %d", done, n, tc.wantDone, tc.wantAside)
			}
			if !ok || len(pending) != 0 || newest.TxnID != "t3" || newest.EventID != "" || newest.Reason != mapping.SetAsidePanic {
				t.Errorf("ok %t, %d pending, set aside %+v; want t3 set aside whole and nothing pending", ok, len(pending), newest)
			}
			// A transaction that fails alone is set aside at once, handled
			// once (a panic's stack is logged once).
			calls := 0
			s.handleTxns = func(context.Context, []mapping.MatrixTxn) error { calls++; return tc.fail() }
			alone := &mapping.Txn{ID: "t6", Body: []byte(`{"events":[]}`)}
			if _, err := db.PutTxn(ctx, alone); err != nil {
				t.Fatal(err)
			}
			if ok := s.processBatch(ctx, []*mapping.Txn{alone}); !ok || calls != 1 {
				t.Errorf("a transaction failing alone: ok %t, handled %d times; want set aside after one", ok, calls)
			}
			if n, newest, _ := db.SetAsideCount(ctx); n != 2 || newest.TxnID != "t6" {
				t.Errorf("set aside %d, newest %+v; want t6 too", n, newest)
			}
		})
	}
}

// newPostgresServer is newServer on a PostgreSQL schema of its own.
func newPostgresServer(t *testing.T) (*Server, *database.Database) {
	t.Helper()
	uri := os.Getenv("XMPPBRIDGE_TEST_POSTGRES")
	if uri == "" {
		t.Fatal("set XMPPBRIDGE_TEST_POSTGRES to a PostgreSQL URI (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	schema := fmt.Sprintf("matrixside_%d", time.Now().UnixNano())
	dbURI, err := peers.FreshPostgresSchema(t.Context(), uri, schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peers.DropPostgresSchema(uri, schema) })
	s, db, _ := newServerOn(t, "postgres", dbURI)
	return s, db
}

// pushMessage stores a homeserver transaction of one message of Alice's.
func pushMessage(t *testing.T, db *database.Database, txnID string, ev id.EventID, body string) {
	t.Helper()
	raw := fmt.Sprintf(`{"events":[{"type":"m.room.message","event_id":%q,"room_id":"!dm:example.org","sender":"@alice:example.org","origin_server_ts":1700000000000,"content":{"msgtype":"m.text","body":%s}}]}`, ev, body)
	if _, err := db.PutTxn(t.Context(), &mapping.Txn{ID: txnID, Body: []byte(raw)}); err != nil {
		t.Fatal(err)
	}
}

// On PostgreSQL, which refuses U+0000 in text: Alice's message holding one
// is stored and queued for XMPP without it; and a message whose event the
// store refuses whatever is done to it (an event id too long for its
// index, SQLSTATE 54000) is set aside, while the transaction after it is
// processed. Before, either stopped every transaction behind it, for good.
func TestPostgresHostileEvents(t *testing.T) {
	s, db := newPostgresServer(t)
	ctx := t.Context()
	if err := db.PutPortal(ctx, mapping.DirectPortal("!dm:example.org", "@alice:example.org", jid.MustParse("juliet@capulet.lit"), time.Time{})); err != nil {
		t.Fatal(err)
	}
	long := make([]byte, 4000)
	_, _ = rand.Read(long)
	longID := id.EventID("$" + hex.EncodeToString(long))
	pushMessage(t, db, "p1", "$nul", `"Hi\u0000 there"`)
	pushMessage(t, db, "p2", longID, `"too long an id"`)
	pushMessage(t, db, "p3", "$next", `"next"`)
	if !s.processPending(ctx) {
		t.Fatal("processing failed")
	}
	if pending, _ := db.PendingTxns(ctx, 0, 0); len(pending) != 0 {
		t.Errorf("%d transactions still pending", len(pending))
	}
	nul, err := db.MessageByEventID(ctx, "$nul")
	if err != nil || nul.Body != "Hi there" {
		t.Fatalf("the message with NUL: %+v, %v; want it stored as \"Hi there\"", nul, err)
	}
	next, err := db.MessageByEventID(ctx, "$next")
	if err != nil || next.Body != "next" {
		t.Fatalf("the message after the refused one: %+v, %v", next, err)
	}
	jobs, err := db.DueJobs(ctx, time.Now().Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	var sends []int64
	for _, j := range jobs {
		if j.Kind == mapping.JobSendToXMPP {
			sends = append(sends, j.MessageID)
		}
	}
	if !slices.Equal(sends, []int64{nul.RowID, next.RowID}) {
		t.Errorf("sends to XMPP for rows %v, want %d and %d", sends, nul.RowID, next.RowID)
	}
	n, newest, err := db.SetAsideCount(ctx)
	if err != nil || n != 1 || newest.TxnID != "p2" || newest.Reason != mapping.SetAsideRefused || !strings.Contains(newest.Error, "54000") {
		t.Fatalf("set aside %d, %+v, %v; want p2's event, refused (54000)", n, newest, err)
	}
	// Its row is one the store takes: the id cut to the spec's 255 bytes.
	if kept := strings.TrimSuffix(string(newest.EventID), "…"); len(newest.EventID) > 255 || len(kept) < 200 || !strings.HasPrefix(string(longID), kept) {
		t.Errorf("the event id set aside is %q, want the first 252 bytes of %s…", newest.EventID, longID[:20])
	}
}
