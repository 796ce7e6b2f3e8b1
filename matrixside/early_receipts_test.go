package matrixside

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/database"
	"xmppbridge/mapping"
	"xmppbridge/outbox"
)

// slowHomeserver answers SendText only when released: meanwhile the
// receipt for the event it made arrives, as when a homeserver hands the
// event to clients before it answers the bridge.
type slowHomeserver struct {
	mapping.MatrixSide // nil: nothing else is called
	sending, release   chan struct{}
}

func (h *slowHomeserver) SendMessage(ctx context.Context, _ id.RoomID, _ id.UserID, _ *mapping.OutMatrix, _ string) (id.EventID, error) {
	close(h.sending)
	select {
	case <-h.release:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return "$late", nil
}

type lockedXMPP struct {
	mu   sync.Mutex
	sent []*mapping.OutMessage
}

func (x *lockedXMPP) Send(_ context.Context, ms ...*mapping.OutMessage) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.sent = append(x.sent, ms...)
	return nil
}

func (x *lockedXMPP) SendPresence(context.Context, *mapping.OutPresence) error { return nil }
func (x *lockedXMPP) FetchVCard(context.Context, jid.JID, jid.JID) (*mapping.VCard, error) {
	return nil, mapping.ErrPermanent
}
func (x *lockedXMPP) FetchAvatar(context.Context, jid.JID, jid.JID, string) ([]byte, error) {
	return nil, mapping.ErrPermanent
}
func (x *lockedXMPP) Ping(context.Context, jid.JID, jid.JID) error                     { return nil }
func (x *lockedXMPP) Moderate(context.Context, jid.JID, jid.JID, string, string) error { return nil }
func (x *lockedXMPP) RenameRoom(context.Context, jid.JID, jid.JID, string) error       { return nil }
func (x *lockedXMPP) InstantRoom(context.Context, jid.JID, jid.JID) error              { return nil }
func (x *lockedXMPP) RoomName(context.Context, jid.JID, jid.JID) (string, error) {
	return "", nil
}
func (x *lockedXMPP) SetRosterItem(context.Context, jid.JID, jid.JID, string) error {
	return mapping.ErrNoPrivilege
}

func (x *lockedXMPP) received() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	var ids []string
	for _, m := range x.sent {
		for _, a := range m.Acks {
			if a.Wire == mapping.WireReceived {
				ids = append(ids, a.ID)
			}
		}
	}
	return ids
}

// MSC4089 delivery receipts are per event and sent as soon as a client has
// the event: one that reaches the bridge, in a pushed transaction, before
// the homeserver has answered the send with the event's id is parked, put
// back into the inbox once the id is stored, and becomes the XEP-0184
// <received/> the XMPP sender asked for. Real store, real transaction
// processor and outbox.
func TestReceiptBeforeEventIDThroughTheInbox(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := database.Open(ctx, "sqlite3-fk-wal", filepath.Join(t.TempDir(), "as.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	core := mapping.New(mapping.Config{Identities: ids, Permissions: mapping.Permissions{"example.org": mapping.PermUser},
		Receipts: mapping.ReceiptPolicy{SendToXMPP: true, MaxDisplayedPerRead: 50}}, db, nil, zerolog.Nop())
	hs := &slowHomeserver{sending: make(chan struct{}), release: make(chan struct{})}
	xs := &lockedXMPP{}
	core.SetSides(hs, xs)
	out := outbox.New(db, core, nil, zerolog.Nop())
	core.SetOutbox(out)
	s := NewServer("hs-secret", db, core, func(string, string) {}, zerolog.Nop())
	core.SetInbox(s.Enqueue)
	api := newAPI(t, s)

	alice := id.UserID("@alice:example.org")
	juliet := jid.MustParse("juliet@capulet.lit")
	room := id.RoomID("!dm:example.org")
	if err := db.PutPortal(ctx, mapping.DirectPortal(room, alice, juliet, time.Now().Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	puppet, _ := ids.Puppet(alice)
	from, _ := juliet.WithResource("balcony")
	_, err = core.HandleXMPPMessage(ctx, &mapping.XMPPMessage{ID: "m1", From: from, To: puppet, Type: mapping.TypeChat,
		Body: "Wherefore art thou?", HasBody: true, Requests: mapping.Requests{Receipt: true}})
	if err != nil {
		t.Fatal(err)
	}
	go core.Run(ctx)
	go out.Run(ctx)
	go s.Run(ctx)

	<-hs.sending
	body := `{"events":[],"ephemeral":[{"type":"m.receipt","room_id":"!dm:example.org","content":{"$late":{"m.delivery":{"@alice:example.org":{"ts":1}}}}}]}`
	if status, resp := do(t, "PUT", api+txnPath+"early", "hs-secret", body); status != 200 {
		t.Fatalf("PUT = %d %s", status, resp)
	}
	waitUntil(t, "the early transaction processed", func() bool { txns, _ := db.PendingTxns(ctx, 0, 0); return len(txns) == 0 })
	if got := xs.received(); len(got) != 0 {
		t.Fatalf("receipts sent before the event was known: %v", got)
	}
	close(hs.release)
	waitUntil(t, "the <received/>", func() bool { return len(xs.received()) > 0 })
	time.Sleep(100 * time.Millisecond) // room for a second one, which would be wrong
	if got := xs.received(); len(got) != 1 || got[0] != "m1" {
		t.Errorf("receipts to XMPP = %v, want one <received id='m1'/>", got)
	}
}

func waitUntil(t *testing.T, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
