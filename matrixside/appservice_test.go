package matrixside

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/database"
	"xmppbridge/mapping"
)

var ids = mapping.Identities{HomeserverDomain: "example.org", ComponentDomain: "matrix.example.org", BotLocalpart: "xmppbridge"}

func newServer(t *testing.T) (*Server, *database.Database, *httptest.Server) {
	t.Helper()
	return newServerOn(t, "sqlite3-fk-wal", filepath.Join(t.TempDir(), "as.db"))
}

// newServerOn is newServer on the database at uri.
func newServerOn(t *testing.T, dbType, uri string) (*Server, *database.Database, *httptest.Server) {
	t.Helper()
	db, err := database.Open(context.Background(), dbType, uri, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	core := mapping.New(mapping.Config{Identities: ids, Permissions: mapping.Permissions{"example.org": mapping.PermUser}}, db, nil, zerolog.Nop())
	s := NewServer("hs-secret", db, core, func(string, string) {}, zerolog.Nop())
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, db, ts
}

// newAPI serves s's application service API; it returns its base URL.
func newAPI(t *testing.T, s *Server) string {
	t.Helper()
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

func do(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	return doTyped(t, method, url, token, "", body)
}

// doTyped is do with the body labelled contentType ("": not labelled).
func doTyped(t *testing.T, method, url, token, contentType, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const txnPath = "/_matrix/app/v1/transactions/"

// Application service API: a wrong hs_token is 403 M_FORBIDDEN, none is
// 401 M_UNAUTHORIZED, an unknown route 404 M_UNRECOGNIZED, bad JSON 400.
func TestAppServiceAPIRefusals(t *testing.T) {
	_, db, ts := newServer(t)
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		errcode                         string
	}{
		{"wrong token", "PUT", txnPath + "1", "nope", `{"events":[]}`, 403, "M_FORBIDDEN"},
		{"no token", "PUT", txnPath + "1", "", `{"events":[]}`, 401, "M_UNAUTHORIZED"},
		{"unknown route", "GET", "/_matrix/app/v1/thirdparty/protocol/x", "hs-secret", "", 404, "M_UNRECOGNIZED"},
		{"malformed json", "PUT", txnPath + "2", "hs-secret", `{"events":[`, 400, "M_NOT_JSON"},
		{"unknown user", "GET", "/_matrix/app/v1/users/@someone:example.org", "hs-secret", "", 404, "M_NOT_FOUND"},
		// Matrix AS API §Querying room aliases: an alias the bridge will
		// not make (not a chat's) is 404, escaped as a homeserver sends it.
		{"not a chat's alias", "GET", "/_matrix/app/v1/rooms/%23someroom:example.org", "hs-secret", "", 404, "M_NOT_FOUND"},
		{"not a chat's address", "GET", "/_matrix/app/v1/rooms/%23_xmpp_conference.capulet.lit:example.org", "hs-secret", "", 404, "M_NOT_FOUND"},
		{"alias, no token", "GET", "/_matrix/app/v1/rooms/%23_xmpp_a=40b:example.org", "", "", 401, "M_UNAUTHORIZED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t, tc.method, ts.URL+tc.path, tc.token, tc.body)
			if status != tc.status || !strings.Contains(body, `"errcode":"`+tc.errcode+`"`) {
				t.Errorf("got %d %s, want %d %s", status, body, tc.status, tc.errcode)
			}
		})
	}
	if txns, _ := db.PendingTxns(context.Background(), 0, 0); len(txns) != 0 {
		t.Errorf("refused transactions were stored: %d", len(txns))
	}
	if status, _ := do(t, "GET", ts.URL+"/_matrix/app/v1/users/"+string(ids.Ghost(jid.MustParse("juliet@capulet.lit"))), "hs-secret", ""); status != 200 {
		t.Errorf("ghost query answered %d", status)
	}
}

// A transaction is stored before it is answered 200, and processed once
// even when re-sent.
func TestTransactionDurableAndOnce(t *testing.T) {
	s, db, ts := newServer(t)
	ctx := context.Background()
	room := id.RoomID("!dm:example.org")
	_ = db.PutPortal(ctx, mapping.DirectPortal(room, "@alice:example.org", jid.MustParse("juliet@capulet.lit"), time.Time{}))
	body := `{"events":[{"type":"m.room.message","event_id":"$e1","room_id":"!dm:example.org","sender":"@alice:example.org","origin_server_ts":1,"content":{"msgtype":"m.text","body":"hello"}},{"type":"m.room.message","content":"not an object"}]}`
	for i := 0; i < 2; i++ {
		if status, resp := do(t, "PUT", ts.URL+txnPath+"txn1", "hs-secret", body); status != 200 || strings.TrimSpace(resp) != "{}" {
			t.Fatalf("PUT #%d = %d %s", i, status, resp)
		}
	}
	// Stored, not yet processed: the processor has not run.
	if txns, _ := db.PendingTxns(ctx, 0, 0); len(txns) != 1 || txns[0].ID != "txn1" {
		t.Fatalf("pending %v, want txn1 once", txns)
	}
	runCtx, cancel := context.WithCancel(ctx)
	go s.Run(runCtx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if txns, _ := db.PendingTxns(ctx, 0, 0); len(txns) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("transaction never processed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	msg, err := db.MessageByEventID(ctx, "$e1")
	if err != nil || msg.Body != "hello" || msg.Direction != mapping.FromMatrix {
		t.Fatalf("message %+v, %v", msg, err)
	}
	jobs, _ := db.DueJobs(ctx, time.Now(), 10)
	if len(jobs) != 1 || jobs[0].Kind != mapping.JobSendToXMPP {
		t.Errorf("jobs %+v, want one XMPP send", jobs)
	}
}

// A transaction of 10,000 events (Synapse sends at most 100 PDUs, but
// nothing in the application service API bounds it) is stored whole and
// processed whole: every message is in the id map with its send.
func TestTransactionOf10000Events(t *testing.T) {
	s, db, ts := newServer(t)
	ctx := context.Background()
	_ = db.PutPortal(ctx, mapping.DirectPortal("!dm:example.org", "@alice:example.org", jid.MustParse("juliet@capulet.lit"), time.Time{}))
	var b strings.Builder
	b.WriteString(`{"events":[`)
	const n = 10000
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"m.room.message","event_id":"$e%d","room_id":"!dm:example.org","sender":"@alice:example.org","origin_server_ts":1,"content":{"msgtype":"m.text","body":"line %d"}}`, i, i)
	}
	b.WriteString(`]}`)
	if status, resp := do(t, "PUT", ts.URL+txnPath+"big", "hs-secret", b.String()); status != 200 {
		t.Fatalf("PUT = %d %s", status, resp)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.Run(runCtx)
	// A bound on waiting, not on speed: under the race detector on a
	// loaded machine the 10,000 took 50 s where they take 16 alone.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if txns, _ := db.PendingTxns(ctx, 0, 0); len(txns) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("transaction never processed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, ev := range []id.EventID{"$e0", "$e4999", "$e9999"} {
		if _, err := db.MessageByEventID(ctx, ev); err != nil {
			t.Errorf("%s: %v", ev, err)
		}
	}
	if jobs, _ := db.DueJobs(ctx, time.Now(), 2*n); len(jobs) != n {
		t.Errorf("%d sends owed, want %d", len(jobs), n)
	}
}

// flakyInbox is a database that refuses writes until it is let back.
type flakyInbox struct {
	Inbox
	mu   sync.Mutex
	down bool
	puts int
}

func (f *flakyInbox) PutTxn(ctx context.Context, txn *mapping.Txn) (bool, error) {
	f.mu.Lock()
	f.puts++
	down := f.down
	f.mu.Unlock()
	if down {
		return false, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	}
	return f.Inbox.PutTxn(ctx, txn)
}

// A transaction the database cannot take yet is held in its request and
// stored once the database is back, answered 200 then: never 200 before it
// is stored, and no 500 for an outage shorter than HoldFor (Dendrite loses
// the events behind a batch it was answered 500 for). Past HoldFor it is
// answered 500, and the homeserver keeps it to resend.
func TestTransactionHeldWhileTheDatabaseIsAway(t *testing.T) {
	s, db, ts := newServer(t)
	inbox := &flakyInbox{Inbox: db, down: true}
	s.Store = inbox
	body := `{"events":[]}`
	go func() {
		time.Sleep(700 * time.Millisecond)
		inbox.mu.Lock()
		inbox.down = false
		inbox.mu.Unlock()
	}()
	if status, resp := do(t, "PUT", ts.URL+txnPath+"held", "hs-secret", body); status != 200 {
		t.Fatalf("PUT during a short outage = %d %s, want 200 once stored", status, resp)
	}
	if txns, _ := db.PendingTxns(context.Background(), 0, 0); len(txns) != 1 || txns[0].ID != "held" {
		t.Fatalf("pending %v: the held transaction was not stored", txns)
	}
	inbox.mu.Lock()
	inbox.down, inbox.puts = true, 0
	inbox.mu.Unlock()
	s.HoldFor = 600 * time.Millisecond
	if status, _ := do(t, "PUT", ts.URL+txnPath+"refused", "hs-secret", body); status != 500 {
		t.Fatalf("PUT during a long outage = %d, want 500", status)
	}
	if inbox.puts > 10 {
		t.Errorf("asked the database %d times in 600 ms, want every %s", inbox.puts, holdRetry)
	}
}

// Ephemeral events come under the stable key or MSC2409's; a bad one is
// counted and skipped while the rest of the transaction counts.
func TestDecodeEphemeral(t *testing.T) {
	counts := map[string]int{}
	s := NewServer("hs-secret", nil, nil, func(what, why string) { counts[what+"/"+why]++ }, zerolog.Nop())
	body := `{
		"ephemeral": [
			{"type":"m.receipt","room_id":"!a:example.org","content":{"$e1":{"m.read":{"@alice:example.org":{"ts":1700000000123,"thread_id":"main"}}}}},
			{"type":"m.receipt","room_id":"!a:example.org","content":"not an object"},
			{"type":"m.presence","content":{"presence":"online"}},
			{"content":{}}
		],
		"de.sorunome.msc2409.ephemeral": [
			{"type":"m.typing","room_id":"!b:example.org","content":{"user_ids":["@alice:example.org"]}}
		]}`
	txn := s.decodeEvents(&mapping.Txn{ID: "t", Body: []byte(body)})
	wantReceipts := []mapping.Receipt{{Room: "!a:example.org", Event: "$e1", Type: mapping.ReceiptRead, User: "@alice:example.org", Thread: mapping.ThreadMain, TS: time.UnixMilli(1700000000123).UTC()}}
	if !reflect.DeepEqual(txn.Receipts, wantReceipts) {
		t.Errorf("receipts %+v, want %+v", txn.Receipts, wantReceipts)
	}
	wantTyping := []mapping.Typing{{Room: "!b:example.org", Users: []id.UserID{"@alice:example.org"}}}
	if !reflect.DeepEqual(txn.Typing, wantTyping) {
		t.Errorf("typing %+v, want %+v", txn.Typing, wantTyping)
	}
	want := map[string]int{"matrix_event/malformed_content": 1, "matrix_event/unsupported_ephemeral": 1, "matrix_event/malformed": 1}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("count %s = %d, want %d (all: %v)", k, counts[k], n, counts)
		}
	}
}

// Transactions left pending (an outage, a crash) are read a batch at a time,
// so that memory does not grow with how many there are, and all of them are
// processed, in order.
func TestManyPendingTransactionsInBatches(t *testing.T) {
	s, db, ts := newServer(t)
	ctx := context.Background()
	_ = db.PutPortal(ctx, mapping.DirectPortal("!dm:example.org", "@alice:example.org", jid.MustParse("juliet@capulet.lit"), time.Time{}))
	n := 2*pendingBatch + 5
	for i := range n {
		body := fmt.Sprintf(`{"events":[{"type":"m.room.message","event_id":"$b%d","room_id":"!dm:example.org","sender":"@alice:example.org","origin_server_ts":%d,"content":{"msgtype":"m.text","body":"m%d"}}]}`, i, i+1, i)
		if status, resp := do(t, "PUT", ts.URL+txnPath+fmt.Sprintf("b%d", i), "hs-secret", body); status != 200 {
			t.Fatalf("PUT %d = %d %s", i, status, resp)
		}
	}
	if txns, _ := db.PendingTxns(ctx, pendingBatch, 0); len(txns) != pendingBatch {
		t.Fatalf("%d pending in a batch, want %d", len(txns), pendingBatch)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.Run(runCtx)
	waitUntil(t, "every transaction processed", func() bool { txns, _ := db.PendingTxns(ctx, 0, 0); return len(txns) == 0 })
	first, err1 := db.MessageByEventID(ctx, "$b0")
	last, err2 := db.MessageByEventID(ctx, id.EventID(fmt.Sprintf("$b%d", n-1)))
	if err1 != nil || err2 != nil || first.RowID >= last.RowID {
		t.Errorf("first %v (%v), last %v (%v): want both stored, in order", first, err1, last, err2)
	}
}

// Room events become what the core reads of them: a message's msgtype and
// body, a member event's user, membership and (from the invite's stripped
// state, client-server API "m.room.member" unsigned.invite_room_state) the
// room's join rule; an m.room.topic its topic; an encrypted event is only
// that; others keep their type.
func TestDecodeRoomEvents(t *testing.T) {
	s := NewServer("hs-secret", nil, nil, func(string, string) {}, zerolog.Nop())
	body := `{"events": [
		{"type":"m.room.message","event_id":"$m","room_id":"!r:example.org","sender":"@alice:example.org","origin_server_ts":1432735824653,
		 "content":{"msgtype":"m.emote","body":"waves"}},
		{"type":"m.room.member","event_id":"$i","room_id":"!r:example.org","sender":"@alice:example.org","state_key":"@_xmpp_juliet=40capulet.lit:example.org",
		 "content":{"membership":"invite","is_direct":true},
		 "unsigned":{"invite_room_state":[{"type":"m.room.join_rules","state_key":"","sender":"@alice:example.org","content":{"join_rule":"public"}}]}},
		{"type":"m.room.encrypted","event_id":"$e","room_id":"!r:example.org","sender":"@alice:example.org",
		 "content":{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"x","device_id":"D","sender_key":"k","session_id":"s"}},
		{"type":"m.room.topic","event_id":"$t","room_id":"!r:example.org","sender":"@alice:example.org","state_key":"","content":{"topic":"hi"}}
	]}`
	got := s.decodeEvents(&mapping.Txn{ID: "t", Body: []byte(body)}).Events
	want := []mapping.MatrixEvent{
		{ID: "$m", Room: "!r:example.org", Sender: "@alice:example.org", TS: time.UnixMilli(1432735824653), Kind: mapping.EventMessage, Type: "m.room.message", MsgType: mapping.MsgEmote, Body: "waves"},
		{ID: "$i", Room: "!r:example.org", Sender: "@alice:example.org", Kind: mapping.EventMember, Type: "m.room.member",
			Target: "@_xmpp_juliet=40capulet.lit:example.org", Membership: mapping.MembershipInvite, JoinRule: mapping.JoinRulePublic},
		{ID: "$e", Room: "!r:example.org", Sender: "@alice:example.org", Kind: mapping.EventEncrypted, Type: "m.room.encrypted"},
		{ID: "$t", Room: "!r:example.org", Sender: "@alice:example.org", Kind: mapping.EventTopic, Type: "m.room.topic", Body: "hi"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
	}
}

// What points at an event, from the client-server API's own examples:
// an edit ("Event replacements": m.new_content, m.relates_to m.replace),
// a reply (m.relates_to.m.in_reply_to), a formatted body
// (org.matrix.custom.html), a reaction (m.annotation) and a redaction, with
// its target at the top (room versions before 11) or in its content (11),
// and its reason (which a moderation carries to XMPP).
func TestDecodeRelations(t *testing.T) {
	s := NewServer("hs-secret", nil, nil, func(string, string) {}, zerolog.Nop())
	body := `{"events": [
		{"type":"m.room.message","event_id":"$edit","room_id":"!r:example.org","sender":"@alice:example.org",
		 "content":{"body":"* Hello! My name is bar","msgtype":"m.text",
		  "m.new_content":{"body":"Hello! My name is bar","msgtype":"m.text","format":"org.matrix.custom.html","formatted_body":"Hello! My name is <b>bar</b>"},
		  "m.relates_to":{"rel_type":"m.replace","event_id":"$some_event_id"}}},
		{"type":"m.room.message","event_id":"$reply","room_id":"!r:example.org","sender":"@alice:example.org",
		 "content":{"body":"That sounds like a great idea!","msgtype":"m.text","format":"org.matrix.custom.html","formatted_body":"That sounds like a <em>great</em> idea!",
		  "m.relates_to":{"m.in_reply_to":{"event_id":"$another_event"}}}},
		{"type":"m.reaction","event_id":"$react","room_id":"!r:example.org","sender":"@alice:example.org",
		 "content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$some_event_id","key":"👍"}}},
		{"type":"m.room.redaction","event_id":"$red10","room_id":"!r:example.org","sender":"@alice:example.org","redacts":"$fukweghifu23:localhost",
		 "content":{"reason":"Spamming"}},
		{"type":"m.room.redaction","event_id":"$red11","room_id":"!r:example.org","sender":"@alice:example.org",
		 "content":{"reason":"Spamming","redacts":"$fukweghifu24:localhost"}}
	]}`
	got := s.decodeEvents(&mapping.Txn{ID: "t", Body: []byte(body)}).Events
	msg := func(id id.EventID) mapping.MatrixEvent {
		return mapping.MatrixEvent{ID: id, Room: "!r:example.org", Sender: "@alice:example.org", Kind: mapping.EventMessage, Type: "m.room.message", MsgType: mapping.MsgText}
	}
	edit := msg("$edit")
	edit.Body = "* Hello! My name is bar"
	edit.Rel = mapping.MatrixRelation{Type: mapping.RelTypeReplace, Event: "$some_event_id", NewBody: "Hello! My name is bar", NewHTML: "Hello! My name is <b>bar</b>", NewMsgType: mapping.MsgText}
	reply := msg("$reply")
	reply.Body, reply.HTML = "That sounds like a great idea!", "That sounds like a <em>great</em> idea!"
	reply.Rel.ReplyTo = "$another_event"
	want := []mapping.MatrixEvent{edit, reply,
		{ID: "$react", Room: "!r:example.org", Sender: "@alice:example.org", Kind: mapping.EventReaction, Type: "m.reaction",
			Rel: mapping.MatrixRelation{Type: mapping.RelTypeAnnotation, Event: "$some_event_id", Key: "👍"}},
		{ID: "$red10", Room: "!r:example.org", Sender: "@alice:example.org", Kind: mapping.EventRedaction, Type: "m.room.redaction", Redacts: "$fukweghifu23:localhost", Body: "Spamming"},
		{ID: "$red11", Room: "!r:example.org", Sender: "@alice:example.org", Kind: mapping.EventRedaction, Type: "m.room.redaction", Redacts: "$fukweghifu24:localhost", Body: "Spamming"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
	}
}

// Dendrite pushes no redaction to application services: the bot's /sync
// reads them from the portals' timelines, into the same decoded events as
// pushed ones (and only them: other timeline events were pushed), stored
// and read back as the inbox does.
func TestDecodeSyncedRedactions(t *testing.T) {
	var resp syncResponse
	raw := `{"next_batch":"s2","rooms":{"join":{"!r:example.org":{"timeline":{"events":[
		{"type":"m.room.message","event_id":"$m","sender":"@alice:example.org","content":{"msgtype":"m.text","body":"pushed already"}},
		{"type":"m.room.redaction","event_id":"$red","sender":"@alice:example.org","redacts":"$gone","content":{}}
	]}}}}}`
	if err := json.Unmarshal([]byte(raw), &resp); err != nil {
		t.Fatal(err)
	}
	out := fuzzServer().decodeSynced(&resp)
	want := []mapping.MatrixEvent{{ID: "$red", Room: "!r:example.org", Sender: "@alice:example.org", Kind: mapping.EventRedaction, Type: "m.room.redaction", Redacts: "$gone"}}
	if !reflect.DeepEqual(out.Events, want) {
		t.Fatalf("decoded %+v, want %+v", out.Events, want)
	}
	txn, err := mapping.NewDecodedTxn(mapping.SyncedPrefix+"s2", out)
	if err != nil {
		t.Fatal(err)
	}
	back, ok, err := mapping.DecodedTxn(txn)
	if err != nil || !ok || !reflect.DeepEqual(back.Events, want) {
		t.Fatalf("stored and read back: %+v %v %v", back.Events, ok, err)
	}
}

// Hostile transactions get a clear refusal, are counted, and store
// nothing: one labelled as something other than JSON, one larger than
// limits.max_transaction_mib (not read past it), one that is not JSON. The homeserver,
// answered non-200, keeps it to retry: nothing acknowledged is dropped.
func TestHostileTransactions(t *testing.T) {
	s, db, ts := newServer(t)
	counts := map[string]int{}
	s.Count = func(what, reason string) { counts[what+"/"+reason]++ }
	put := func(id, contentType, body string) (int, string) {
		t.Helper()
		return doTyped(t, "PUT", ts.URL+txnPath+id, "hs-secret", contentType, body)
	}
	if status, body := put("h1", "text/plain", `{"events":[]}`); status != 400 || !strings.Contains(body, "M_NOT_JSON") || counts["as_txn/wrong_content_type"] != 1 {
		t.Errorf("text/plain: %d %s, counts %v", status, body, counts)
	}
	if status, body := put("h2", "application/json; charset=utf-8", `{"events":[]}`); status != 200 {
		t.Errorf("application/json with a charset: %d %s", status, body)
	}
	if status, body := put("h3", "", `{"events":[]}`); status != 200 {
		t.Errorf("no content type: %d %s", status, body)
	}
	big := `{"events":[],"pad":"` + strings.Repeat("x", DefaultMaxTxnBytes) + `"}`
	if status, body := put("h4", "application/json", big); status != 413 || !strings.Contains(body, "M_TOO_LARGE") {
		t.Errorf("%d bytes: %d %s", len(big), status, body)
	}
	if status, _ := put("h5", "application/json", `{"events":[{]}`); status != 400 || counts["as_txn/bad_json"] != 1 {
		t.Errorf("bad JSON: %d, counts %v", status, counts)
	}
	txns, _ := db.PendingTxns(context.Background(), 0, 0)
	var stored []string
	for _, txn := range txns {
		stored = append(stored, txn.ID)
	}
	if strings.Join(stored, ",") != "h2,h3" {
		t.Errorf("stored %q, want only the two good ones", stored)
	}
}

// A pushed transaction is parsed once, on its way in: the processor takes
// what putTransaction decoded, not the body stored beside it (here changed
// behind its back, to tell which it read). A transaction with nothing kept,
// as after a restart, is decoded from its stored body.
func TestTransactionParsedOnce(t *testing.T) {
	s, db, ts := newServer(t)
	ctx := t.Context()
	var got []string
	s.handleTxns = func(ctx context.Context, txns []mapping.MatrixTxn) error {
		for _, txn := range txns {
			for _, rc := range txn.Receipts {
				got = append(got, txn.ID+" "+string(rc.Event))
			}
			if err := db.FinishTxn(ctx, txn.ID, nil, nil); err != nil {
				return err
			}
		}
		return nil
	}
	receipt := func(ev string) string {
		return `{"events":[],"ephemeral":[{"type":"m.receipt","room_id":"!dm:example.org","content":{"` + ev + `":{"m.read":{"@alice:example.org":{"ts":1}}}}}]}`
	}
	if code, body := do(t, http.MethodPut, ts.URL+"/_matrix/app/v1/transactions/pushed", "hs-secret", receipt("$pushed")); code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	// It is decoded off the request: wait until it is kept.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		s.decodedMu.Lock()
		_, kept := s.decoded["pushed"]
		s.decodedMu.Unlock()
		if kept {
			break
		} else if time.Now().After(deadline) {
			t.Fatal("the pushed transaction was never kept decoded")
		}
	}
	// Behind the processor's back: the stored body now says another event.
	if _, err := db.DB().Exec(ctx, "UPDATE txn_inbox SET body=$1 WHERE txn_id='pushed'", []byte(receipt("$changed"))); err != nil {
		t.Fatal(err)
	}
	// Stored by an earlier run: nothing kept, read from its body.
	if _, err := db.PutTxn(ctx, &mapping.Txn{ID: "restarted", Body: []byte(receipt("$stored"))}); err != nil {
		t.Fatal(err)
	}
	if !s.processPending(ctx) {
		t.Fatal("processPending failed")
	}
	want := []string{"pushed $pushed", "restarted $stored"}
	if !slices.Equal(got, want) {
		t.Errorf("handled %q, want %q", got, want)
	}
	if s.decoded != nil && len(s.decoded) != 0 {
		t.Errorf("%d decoded transactions still kept after the inbox emptied", len(s.decoded))
	}
}

// An edit of a file's caption (client-server API, "Event replacements"
// and v1.10 "Media captions", as Element sends it): the file and its new
// caption are m.new_content's, not the "* " fallback's.
func TestDecodeCaptionEdit(t *testing.T) {
	s := NewServer("hs-secret", nil, nil, func(string, string) {}, zerolog.Nop())
	body := `{"events": [
		{"type":"m.room.message","event_id":"$edit","room_id":"!r:example.org","sender":"@alice:example.org",
		 "content":{"msgtype":"m.image","body":"* the old fallback","filename":"cat.png","url":"mxc://example.org/old","info":{"mimetype":"image/png","size":7},
		  "m.new_content":{"msgtype":"m.image","body":"A cat","filename":"cat.png","url":"mxc://example.org/cat","info":{"mimetype":"image/png","size":9}},
		  "m.relates_to":{"rel_type":"m.replace","event_id":"$pic"}}}
	]}`
	got := s.decodeEvents(&mapping.Txn{ID: "t", Body: []byte(body)}).Events
	if len(got) != 1 {
		t.Fatalf("decoded %+v", got)
	}
	f, rel := got[0].File, got[0].Rel
	want := mapping.MatrixFile{URL: "mxc://example.org/cat", Name: "cat.png", Type: "image/png", Size: 9, Caption: "A cat"}
	if f == nil || *f != want || rel.Type != mapping.RelTypeReplace || rel.Event != "$pic" || rel.NewMsgType != mapping.MsgImage {
		t.Errorf("decoded file %+v rel %+v, want m.new_content's %+v", f, rel, want)
	}
}

// A transaction the processor finds stored while its decoding is still
// under way (putTransaction answers, then decodes) is taken from that
// decoding, not parsed a second time; one whose decoding gave nothing
// (its store failed, or it was seen before) is read from its body.
func TestProcessorWaitsForTheDecodingUnderWay(t *testing.T) {
	srv, _, _ := newServer(t)
	typing := `{"ephemeral":[{"type":"m.typing","room_id":"!b:example.org","content":{"user_ids":["@alice:example.org"]}}]}`
	k := srv.expectDecoded("t1")
	got := make(chan mapping.MatrixTxn, 1)
	go func() { got <- srv.decode(&mapping.Txn{ID: "t1", Body: []byte(typing)}) }()
	select {
	case <-got:
		t.Fatal("the processor did not wait for the decoding under way")
	case <-time.After(50 * time.Millisecond):
	}
	k.settle(mapping.MatrixTxn{ID: "t1"}, true) // no typing: not the body's
	if txn := <-got; txn.ID != "t1" || len(txn.Typing) != 0 {
		t.Errorf("decode = %+v, want the decoding's form", txn)
	}

	srv.expectDecoded("t2").settle(mapping.MatrixTxn{}, false)
	if txn := srv.decode(&mapping.Txn{ID: "t2", Body: []byte(typing)}); len(txn.Typing) != 1 {
		t.Errorf("decode = %+v, want the body's typing", txn)
	}
	if srv.expectDecoded("t1") == nil {
		t.Error("a transaction taken still had its entry")
	}
}
