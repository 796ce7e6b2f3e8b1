package mapping_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

const dm = id.RoomID("!dm:example.org")

// fromJuliet has Juliet send n messages asking for req; it returns their
// Matrix events. The portal is Alice's.
func fromJuliet(t *testing.T, h *harness, n int, req Requests) []id.EventID {
	t.Helper()
	ctx := context.Background()
	if _, err := h.store.PortalByRoom(ctx, dm); err != nil {
		_ = h.store.PutPortal(ctx, DirectPortal(dm, alice, jid.MustParse(julietJID), time.Now().Add(-time.Hour)))
	}
	var evs []id.EventID
	for i := 0; i < n; i++ {
		m := chat(fmt.Sprintf("j%d-%d", len(h.matrix.texts), i), "hello")
		m.Requests = req
		if _, err := h.b.HandleXMPPMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
		evs = append(evs, id.EventID(fmt.Sprintf("$ev%d", len(h.matrix.texts))))
	}
	return evs
}

func receiptEvent(room id.RoomID, ev id.EventID, typ ReceiptType, user id.UserID, thread string) Receipt {
	return Receipt{Room: room, Event: ev, Type: typ, User: user, Thread: thread}
}

// ephemeral hands the core one transaction of receipts and typing (in
// any order: Receipt or Typing values) and runs the outbox; it returns
// what reached XMPP, one line per stanza.
func (h *harness) ephemeral(t *testing.T, in ...any) []string {
	t.Helper()
	before := len(h.xmpp.sent)
	txn := MatrixTxn{ID: fmt.Sprintf("e%d", time.Now().UnixNano())}
	for _, v := range in {
		switch v := v.(type) {
		case Receipt:
			txn.Receipts = append(txn.Receipts, v)
		case Typing:
			txn.Typing = append(txn.Typing, v)
		default:
			t.Fatalf("ephemeral: %T is neither a Receipt nor a Typing", v)
		}
	}
	if err := h.handleTxn(context.Background(), txn); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	var out []string
	for _, m := range h.xmpp.sent[before:] {
		out = append(out, describe(m))
	}
	return out
}

func describe(m *OutMessage) string {
	var parts []string
	names := map[ReceiptWire]string{WireReceived: "received", WireEventOffline: "x-offline", WireEventDelivered: "x-delivered",
		WireEventDisplayed: "x-displayed", WireMarkerDisplayed: "marker"}
	for _, a := range m.Acks {
		parts = append(parts, names[a.Wire]+" "+a.ID)
	}
	if e := m.Event; e != nil {
		kind := "cancel"
		if e.Composing {
			kind = "x-composing"
		}
		parts = append(parts, kind+" "+e.ID)
	}
	if m.ChatState != "" {
		parts = append(parts, "state "+m.ChatState)
	}
	return strings.Join(parts, "+") + " to " + m.To.String()
}

var all = Requests{Receipt: true, Delivered: true, Displayed: true, Composing: true, Markable: true}

// The Matrix receipts module: m.read is an "up to" marker. XEP-0022 §3.2:
// events are per message. An m.read on the second of three messages raises,
// oldest first, delivery (reading implies it) then <displayed/> for the
// first two, one XEP-0333 marker for the newest markable (the second), and
// nothing for the third; the same read again raises nothing.
func TestReadIsUpTo(t *testing.T) {
	h := newHarness(t)
	h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, ReadImpliesDelivered: true, MaxDisplayedPerRead: 50}
	evs := fromJuliet(t, h, 3, all)
	rows := func(i int) string { m, _ := h.store.MessageByEventID(context.Background(), evs[i]); return m.XMPPID }
	got := h.ephemeral(t, receiptEvent(dm, evs[1], ReceiptRead, alice, ""))
	to := " to " + julietJID
	want := []string{
		"received " + rows(0) + to, "x-delivered " + rows(0) + to,
		"received " + rows(1) + to, "x-delivered " + rows(1) + to,
		"x-displayed " + rows(0) + to, "x-displayed " + rows(1) + to,
		"marker " + rows(1) + to,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if again := h.ephemeral(t, receiptEvent(dm, evs[1], ReceiptRead, alice, ""), receiptEvent(dm, evs[0], ReceiptRead, alice, "")); len(again) != 0 {
		t.Errorf("the same read (and an older one) again raised %q", again)
	}
	// Then the third: only it.
	if got := h.ephemeral(t, receiptEvent(dm, evs[2], ReceiptRead, alice, "main")); len(got) != 4 {
		t.Errorf("third read raised %q, want 4 stanzas for the third message only", got)
	}
}

// A client reading through a conversation sends an m.read per message; a
// transaction (or a group of them) carrying many of one room is expanded
// once, for the newest (m.read is "up to"): the same stanzas as that read
// alone, and one lookup of the room's unread messages, not one per read.
func TestReadsOfATransactionCoalesced(t *testing.T) {
	h := newHarness(t)
	h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, ReadImpliesDelivered: true, MaxDisplayedPerRead: 50}
	evs := fromJuliet(t, h, 20, Requests{Displayed: true, Markable: true})
	var reads []any
	for _, ev := range evs[:10] {
		reads = append(reads, receiptEvent(dm, ev, ReceiptRead, alice, ""))
	}
	reads[3], reads[9] = reads[9], reads[3] // the newest need not come last
	lookups := h.store.UnreadLookups()
	got := h.ephemeral(t, reads...)
	if n := h.store.UnreadLookups() - lookups; n != 1 {
		t.Errorf("%d lookups of unread messages for 10 reads of one room, want 1", n)
	}
	m9, _ := h.store.MessageByEventID(context.Background(), evs[9])
	if len(got) != 11 || got[10] != "marker "+m9.XMPPID+" to "+julietJID {
		t.Errorf("got %d stanzas ending %q, want 10 <displayed/> and the marker of the tenth message", len(got), got[len(got)-1])
	}
}

// Only what was requested: a message that asked only for XEP-0184 gets
// <received/> on delivery and nothing on display; one that asked for
// nothing gets nothing.
func TestOnlyWhatWasRequested(t *testing.T) {
	h := newHarness(t)
	h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, ReadImpliesDelivered: true, MaxDisplayedPerRead: 50}
	onlyReceipt := fromJuliet(t, h, 1, Requests{Receipt: true})
	nothing := fromJuliet(t, h, 1, Requests{})
	if got := h.ephemeral(t, receiptEvent(dm, onlyReceipt[0], "m.delivery", alice, "")); len(got) != 1 || !strings.HasPrefix(got[0], "received ") {
		t.Errorf("m.delivery of a XEP-0184 message raised %q, want one <received/>", got)
	}
	if got := h.ephemeral(t, receiptEvent(dm, nothing[0], ReceiptRead, alice, "")); len(got) != 0 {
		t.Errorf("a read of messages that asked for nothing more raised %q", got)
	}
}

// MSC4089: m.delivery and its unstable name, by the portal's user, become
// exactly the requested delivery receipts, once however many devices send it.
func TestDeliveryToXMPP(t *testing.T) {
	for _, typ := range []ReceiptType{"m.delivery", "org.matrix.msc4089.delivery"} {
		t.Run(string(typ), func(t *testing.T) {
			h := newHarness(t)
			h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, MaxDisplayedPerRead: 50}
			evs := fromJuliet(t, h, 1, Requests{Receipt: true, Delivered: true})
			got := h.ephemeral(t, receiptEvent(dm, evs[0], typ, alice, ""), receiptEvent(dm, evs[0], typ, alice, ""))
			if len(got) != 2 || !strings.HasPrefix(got[0], "received ") || !strings.HasPrefix(got[1], "x-delivered ") {
				t.Errorf("got %q", got)
			}
			if again := h.ephemeral(t, receiptEvent(dm, evs[0], typ, alice, "")); len(again) != 0 {
				t.Errorf("a second device's delivery raised %q", again)
			}
		})
	}
}

// The cap: one read raises at most max <displayed/>; the newest win, and
// none of the older ones is ever acknowledged later either.
func TestReadCap(t *testing.T) {
	h := newHarness(t)
	h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, MaxDisplayedPerRead: 2}
	evs := fromJuliet(t, h, 5, Requests{Displayed: true})
	got := h.ephemeral(t, receiptEvent(dm, evs[4], ReceiptRead, alice, ""))
	m3, _ := h.store.MessageByEventID(context.Background(), evs[3])
	m4, _ := h.store.MessageByEventID(context.Background(), evs[4])
	want := []string{"x-displayed " + m3.XMPPID + " to " + julietJID, "x-displayed " + m4.XMPPID + " to " + julietJID}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
	mark := Mark{Room: dm, By: MatrixMember(alice)}
	if unread, _ := h.store.UnreadUpTo(context.Background(), map[Mark]int64{mark: 1 << 60}, 100); len(unread[mark]) != 0 {
		t.Errorf("%d capped-out messages are still unread; they would be acknowledged later, out of order", len(unread[mark]))
	}
}

// The newest m.read of each of several rooms in one transaction: each is
// expanded (Matrix receipts module: "up to" per room), with one lookup of
// unread messages for all the rooms, not one a room.
func TestReadsOfSeveralRoomsOneLookup(t *testing.T) {
	h := newHarness(t)
	h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, MaxDisplayedPerRead: 50}
	ctx := context.Background()
	var reads []any
	var want []string
	for i, peer := range []string{"juliet@capulet.lit", "romeo@montague.lit", "nurse@capulet.lit"} {
		m := chat(fmt.Sprintf("s%d", i), "hello")
		m.From = jid.MustParse(peer + "/phone")
		m.Requests = Requests{Displayed: true}
		if _, err := h.b.HandleXMPPMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
		p, err := h.store.PortalByPair(ctx, alice, jid.MustParse(peer))
		if err != nil {
			t.Fatal(err)
		}
		ev := id.EventID(fmt.Sprintf("$ev%d", len(h.matrix.texts)))
		reads = append(reads, receiptEvent(p.RoomID, ev, ReceiptRead, alice, ""))
		want = append(want, "x-displayed s"+fmt.Sprint(i)+" to "+peer)
	}
	lookups := h.store.UnreadLookups()
	got := h.ephemeral(t, reads...)
	if n := h.store.UnreadLookups() - lookups; n != 1 {
		t.Errorf("%d lookups of unread messages for reads of 3 rooms, want 1", n)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Privacy and refusals: m.read.private never leaves Matrix; receipts of the
// bridge's own users, of other users, in non-portal rooms, on events that
// did not come from XMPP, on unknown events, in other threads, and of a
// user who turned them off, are all ignored and counted.
func TestMatrixReceiptRefusals(t *testing.T) {
	h := newHarness(t)
	h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, MaxDisplayedPerRead: 50, Overrides: map[id.UserID]bool{"@shy:example.org": false}}
	evs := fromJuliet(t, h, 1, all)
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!shy:example.org", "@shy:example.org", jid.MustParse("romeo@montague.lit"), time.Time{}))
	_ = h.handleTxn(ctx, MatrixTxn{ID: "out", Events: []MatrixEvent{textEvent("$fromAlice", alice, dm, "hi")}})
	h.drain(t)
	for _, tc := range []struct {
		reason Reason
		evt    Receipt
	}{
		{ReasonPrivate, receiptEvent(dm, evs[0], ReceiptReadPrivate, alice, "")},
		{ReasonOwn, receiptEvent(dm, evs[0], ReceiptRead, julietGhost, "")},
		{ReasonOwn, receiptEvent(dm, evs[0], ReceiptRead, testIDs.Bot(), "")},
		{ReasonNotPortalUser, receiptEvent(dm, evs[0], ReceiptRead, "@bob:example.org", "")},
		{ReasonNotPortal, receiptEvent("!elsewhere:example.org", evs[0], ReceiptRead, alice, "")},
		{ReasonNotFromXMPP, receiptEvent(dm, "$fromAlice", ReceiptRead, alice, "")},
		{ReasonUnknownEvent, receiptEvent(dm, "$never", ReceiptRead, alice, "")},
		{ReasonThread, receiptEvent(dm, evs[0], ReceiptRead, alice, "$thread-root")},
		{ReasonUnknownType, receiptEvent(dm, evs[0], "com.example.seen", alice, "")},
		{ReasonDisabled, receiptEvent("!shy:example.org", evs[0], ReceiptRead, "@shy:example.org", "")},
	} {
		before := h.counts["matrix_receipt/"+string(tc.reason)]
		if got := h.ephemeral(t, tc.evt); len(got) != 0 {
			t.Errorf("%s: raised %q", tc.reason, got)
		}
		if h.counts["matrix_receipt/"+string(tc.reason)] != before+1 {
			t.Errorf("%s: not counted", tc.reason)
		}
	}
}

// MSC4089: "Delivery receipts should not be sent for events prior to a
// user's join"; the same for reads of messages from before the portal.
func TestNoReceiptsBeforeInvite(t *testing.T) {
	h := newHarness(t)
	h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, MaxDisplayedPerRead: 50}
	evs := fromJuliet(t, h, 1, all)
	// The portal made an hour from now (PutPortal keeps a portal's
	// creation time, as the database does: set it in the fake directly).
	h.store.SetPortalCreatedAt(dm, time.Now().Add(time.Hour))
	if got := h.ephemeral(t, receiptEvent(dm, evs[0], "m.delivery", alice, "")); len(got) != 0 || h.counts["matrix_receipt/"+string(ReasonBeforeInvite)] != 1 {
		t.Errorf("got %q, counts %v", got, h.counts)
	}
}

// Typing: the portal user's m.typing becomes XEP-0085 composing/active and
// XEP-0022 composing (and its cancellation) against the newest message that
// asked for composing events; only changes are sent.
func TestTypingToXMPP(t *testing.T) {
	h := newHarness(t)
	h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, MaxDisplayedPerRead: 50}
	evs := fromJuliet(t, h, 2, Requests{Composing: true})
	newest, _ := h.store.MessageByEventID(context.Background(), evs[1])
	typing := func(users ...id.UserID) Typing {
		return Typing{Room: dm, Users: users}
	}
	to := " to " + julietJID
	if got := h.ephemeral(t, typing(alice)); fmt.Sprint(got) != fmt.Sprint([]string{"state composing" + to, "x-composing " + newest.XMPPID + to}) {
		t.Errorf("typing on: %q", got)
	}
	if got := h.ephemeral(t, typing(alice, "@bob:example.org")); len(got) != 0 {
		t.Errorf("no change, yet %q", got)
	}
	if got := h.ephemeral(t, typing()); fmt.Sprint(got) != fmt.Sprint([]string{"state active" + to, "cancel " + newest.XMPPID + to}) {
		t.Errorf("typing off: %q", got)
	}
}

// xmpp.receipt_to: full sends to the resource the message came from.
func TestReceiptToFullJID(t *testing.T) {
	h := newHarness(t)
	h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, MaxDisplayedPerRead: 50, ToFullJID: true}
	evs := fromJuliet(t, h, 1, Requests{Receipt: true})
	if got := h.ephemeral(t, receiptEvent(dm, evs[0], "m.delivery", alice, "")); len(got) != 1 || !strings.HasSuffix(got[0], " to "+julietJID+"/balcony") {
		t.Errorf("got %q, want it to the balcony resource", got)
	}
}

// Transactions handled as a group mean what they mean one by one: each
// receipt once, in order; and a group holding a transaction finished
// before falls back to one at a time, which repeats nothing of it.
func TestTransactionGroup(t *testing.T) {
	h := newHarness(t)
	h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, MaxDisplayedPerRead: 50, ReadImpliesDelivered: true}
	evs := fromJuliet(t, h, 3, Requests{Receipt: true, Displayed: true})
	ctx := context.Background()
	for _, id := range []string{"g1", "g2", "g3"} {
		_, _ = h.store.PutTxn(ctx, &Txn{ID: id, Body: []byte("{}")})
	}
	before := len(h.xmpp.sent)
	err := h.b.HandleMatrixTxns(ctx, []MatrixTxn{
		{ID: "g1", Receipts: []Receipt{receiptEvent(dm, evs[0], "m.delivery", alice, "")}},
		{ID: "g2", Receipts: []Receipt{receiptEvent(dm, evs[0], "m.delivery", alice, ""), receiptEvent(dm, evs[1], ReceiptRead, alice, "")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	var got []string
	for _, m := range h.xmpp.sent[before:] {
		got = append(got, describe(m))
	}
	want := []string{"received " + h.xmppIDOf(t, evs[0]), "received " + h.xmppIDOf(t, evs[1]),
		"x-displayed " + h.xmppIDOf(t, evs[0]), "x-displayed " + h.xmppIDOf(t, evs[1])}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("group sent %q,\nwant %q", got, want)
	}

	// g2 is finished: the group falls back, and only g3 counts.
	before = len(h.xmpp.sent)
	err = h.b.HandleMatrixTxns(ctx, []MatrixTxn{
		{ID: "g2", Receipts: []Receipt{receiptEvent(dm, evs[2], "m.delivery", alice, "")}},
		{ID: "g3", Receipts: []Receipt{receiptEvent(dm, evs[2], ReceiptRead, alice, "")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	got = nil
	for _, m := range h.xmpp.sent[before:] {
		got = append(got, describe(m))
	}
	want = []string{"received " + h.xmppIDOf(t, evs[2]), "x-displayed " + h.xmppIDOf(t, evs[2])}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("fallback sent %q,\nwant %q (g2's delivery is a replay: nothing)", got, want)
	}
}

// xmppIDOf is the stanza id of ev's message, and where receipts about it go.
func (h *harness) xmppIDOf(t *testing.T, ev id.EventID) string {
	t.Helper()
	m, err := h.store.MessageByEventID(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	return m.XMPPID + " to " + julietJID
}
