package mapping_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// processInbox handles the stored transactions the core announced, as the
// transaction processor (matrixside.Server) does, and runs the outbox.
func (h *harness) processInbox(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	txns, err := h.store.PendingTxns(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, txn := range txns {
		decoded, ok, err := DecodedTxn(txn)
		if err != nil || !ok {
			t.Fatalf("inbox entry %s is not a parked receipt (%v)", txn.ID, err)
		}
		if err := h.handleTxn(ctx, decoded); err != nil {
			t.Fatal(err)
		}
	}
	h.drain(t)
}

// earlyHarness has Alice's portal with Juliet, and an inbox that records
// what the core announces to it.
func earlyHarness(t *testing.T) (*harness, *[]string) {
	h := newHarness(t)
	_ = h.store.PutPortal(context.Background(), DirectPortal(dm, alice, jid.MustParse(julietJID), time.Now().Add(-time.Hour)))
	h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, ReadImpliesDelivered: true, MaxDisplayedPerRead: 50}
	var announced []string
	h.b.SetInbox(func(txnID string) { announced = append(announced, txnID) })
	return h, &announced
}

// MSC4089: "If an event is not encrypted, a delivery receipt is sent when
// the client receives the event", and delivery receipts "are not 'up to'
// markers - they are for singular events". So Alice's client may deliver
// its m.delivery before the homeserver has answered the bridge's send with
// the event's id, and no later receipt makes up for losing it: the bridge
// parks it behind the send and translates it once the id is known
// (XEP-0184 §5: <received/> to the sender, who asked for it).
func TestReceiptBeforeEventIDIsParkedAndTranslated(t *testing.T) {
	for _, typ := range []ReceiptType{ReceiptDelivery, ReceiptDeliveryUnstable, ReceiptRead} {
		t.Run(string(typ), func(t *testing.T) {
			h, announced := earlyHarness(t)
			ctx := context.Background()
			h.matrix.beforeAnswer = func(room id.RoomID, ev id.EventID) {
				// The homeserver pushes Alice's receipt before it answers.
				if err := h.handleTxn(ctx, MatrixTxn{ID: "early-" + string(ev), Receipts: []Receipt{receiptEvent(room, ev, typ, alice, "")}}); err != nil {
					t.Error(err)
				}
			}
			m := chat("wherefore", "Wherefore art thou?")
			m.Requests = Requests{Receipt: true, Displayed: true}
			if _, err := h.b.HandleXMPPMessage(ctx, m); err != nil {
				t.Fatal(err)
			}
			h.drain(t)
			if got := h.counts["matrix_receipt/"+ReceiptParked]; got != 1 {
				t.Fatalf("parked receipts = %d, want 1 (counts %v)", got, h.counts)
			}
			if len(h.xmpp.sent) != 0 {
				t.Fatalf("sent before the event was known: %v", h.xmpp.sent)
			}
			if len(*announced) != 1 {
				t.Fatalf("transactions announced to the inbox = %v, want one", *announced)
			}
			h.processInbox(t)
			to := " to " + julietJID
			want := []string{"received wherefore" + to}
			if typ == ReceiptRead {
				// Reading implies delivery (receipts.read_implies_delivered).
				want = append(want, "x-displayed wherefore"+to)
			}
			var got []string
			for _, m := range h.xmpp.sent {
				got = append(got, describe(m))
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("to XMPP = %v, want %v", got, want)
			}
			// A replay that runs again (a crash before its job left the
			// store) stores nothing new: the transaction id is the job's.
			h.processInbox(t)
			if got := len(h.xmpp.sent); got != len(want) {
				t.Errorf("after processing the inbox again: %d stanzas, want %d", got, len(want))
			}
		})
	}
}

// A receipt on an event the bridge does not know, in a portal that owes
// Matrix nothing, is about something that never crossed the bridge (a
// notice, a state event): dropped at once, as unknown, with no job.
func TestUnknownEventWithNothingOnItsWayIsDropped(t *testing.T) {
	h, announced := earlyHarness(t)
	if out := h.ephemeral(t, receiptEvent(dm, "$notice", ReceiptDelivery, alice, "")); len(out) != 0 {
		t.Errorf("to XMPP = %v, want nothing", out)
	}
	if h.counts["matrix_receipt/"+string(ReasonUnknownEvent)] != 1 || h.counts["matrix_receipt/"+ReceiptParked] != 0 || len(*announced) != 0 {
		t.Errorf("counts %v, announced %v: want one unknown_event, nothing parked", h.counts, *announced)
	}
}

// A parked receipt whose event never gets an id (the send failed for good)
// is dropped as unknown when its turn comes: nothing loops, and no receipt
// reaches XMPP.
func TestParkedReceiptOfFailedSendIsDropped(t *testing.T) {
	h, announced := earlyHarness(t)
	ctx := context.Background()
	h.matrix.beforeAnswer = func(room id.RoomID, ev id.EventID) {
		if err := h.handleTxn(ctx, MatrixTxn{ID: "early", Receipts: []Receipt{receiptEvent(room, ev, ReceiptDelivery, alice, "")}}); err != nil {
			t.Error(err)
		}
		// ... and then refuses the send after all.
		h.matrix.mu.Lock()
		h.matrix.fail = fmt.Errorf("%w: M_FORBIDDEN", ErrPermanent)
		h.matrix.mu.Unlock()
	}
	wrapped := &failAfterHook{fakeMatrix: h.matrix}
	h.b.SetSides(wrapped, h.xmpp)
	m := chat("doomed", "hello")
	m.Requests = Requests{Receipt: true}
	if _, err := h.b.HandleXMPPMessage(ctx, m); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	h.processInbox(t)
	// Its sender hears of the failure (undeliverable), and of nothing else.
	if len(h.xmpp.sent) != 1 || h.xmpp.sent[0].Type != TypeError || h.xmpp.sent[0].ID != "doomed" || len(*announced) != 0 {
		t.Errorf("sent %v, announced %v: want only the error answering the failed message", h.xmpp.sent, *announced)
	}
	if h.counts["matrix_receipt/"+ReceiptParked] != 1 || h.counts["matrix_receipt/"+string(ReasonUnknownEvent)] != 1 {
		t.Errorf("counts %v: want one parked, then one unknown_event", h.counts)
	}
}

// failAfterHook is the fake homeserver whose SendMessage fails with f.fail
// when its hook has set it: the event was seen by clients, then refused.
type failAfterHook struct{ *fakeMatrix }

func (f *failAfterHook) SendMessage(ctx context.Context, room id.RoomID, sender id.UserID, msg *OutMatrix, txnID string) (id.EventID, error) {
	ev, err := f.fakeMatrix.SendMessage(ctx, room, sender, msg, txnID)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && f.fail != nil {
		return "", f.fail
	}
	return ev, err
}

// The inbox entries the bridge writes itself (receipts handed back, and
// receipts and typing read by /sync) read back as they were written; one
// in the shape of a pushed transaction (an earlier version's) and a
// homeserver's transaction are left to the transaction decoder.
func TestDecodedTxn(t *testing.T) {
	receipts := []Receipt{{Room: dm, Event: "$e", Type: ReceiptRead, User: alice, Thread: ThreadMain}}
	typing := []Typing{{Room: dm, Users: []id.UserID{alice}}}
	txn, err := NewDecodedTxn(SyncedPrefix+"s1", MatrixTxn{Receipts: receipts, Typing: typing})
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := DecodedTxn(txn)
	if err != nil || !ok || !reflect.DeepEqual(got, MatrixTxn{ID: SyncedPrefix + "s1", Receipts: receipts, Typing: typing}) {
		t.Errorf("read back %+v, %v, %v", got, ok, err)
	}
	for _, old := range []*Txn{
		{ID: SyncedPrefix + "s0", Body: []byte(`{"ephemeral":[{"type":"m.typing","room_id":"!dm:example.org","content":{"user_ids":[]}}]}`)},
		{ID: "42", Body: []byte(`{"receipts":[{"room":"!dm:example.org"}]}`)},
	} {
		if _, ok, err := DecodedTxn(old); ok || err != nil {
			t.Errorf("%s was read as the bridge's own entry (%v)", old.ID, err)
		}
	}
	if _, ok, err := DecodedTxn(&Txn{ID: ParkedPrefix + "7", Body: []byte("not json")}); !ok || err == nil {
		t.Errorf("a broken entry of the bridge's: ok %v, err %v; want it reported", ok, err)
	}
}
