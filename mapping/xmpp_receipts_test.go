package mapping_test

import (
	"bytes"
	"context"
	"errors"
	"github.com/rs/zerolog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
	"xmppbridge/mapping/memstore"
)

// sentToJuliet opens a portal and has Alice send n messages to Juliet; it
// returns their stanza ids, in order.
func sentToJuliet(t *testing.T, h *harness, n int) []string {
	t.Helper()
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	var evts []MatrixEvent
	for i := 0; i < n; i++ {
		evts = append(evts, textEvent("$a"+string(rune('1'+i)), alice, "!dm:example.org", "line"))
	}
	if err := h.handleTxn(ctx, MatrixTxn{ID: "sent", Events: evts}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	ids := make([]string, n)
	for i, s := range h.xmpp.sent {
		ids[i] = s.ID
	}
	return ids
}

// receipt is a body-less message from Juliet's phone to Alice's puppet.
func receipt(edit func(*XMPPMessage)) *XMPPMessage {
	m := &XMPPMessage{From: jid.MustParse(julietJID + "/phone"), To: jid.MustParse(alicePup), Type: ""}
	edit(m)
	return m
}

func (h *harness) handle(t *testing.T, m *XMPPMessage) {
	t.Helper()
	reply, err := h.b.HandleXMPPMessage(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if reply != nil {
		// XEP-0184 §5: "SHOULD NOT return an error" for receipts.
		t.Fatalf("answered a receipt with %+v", reply)
	}
	h.drain(t)
}

// docs/protocols.md, XMPP → Matrix: <received/> (XEP-0184 §5) and x:event
// <delivered/> (XEP-0022 §3.2) become a delivery receipt on the event, as
// the ghost; each (message, kind) once, however many resources report it.
func TestDeliveryFromXMPP(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(m *XMPPMessage, id string)
	}{
		{"XEP-0184 received", func(m *XMPPMessage, id string) { m.Acks = append(m.Acks, XMPPAck{Wire: WireReceived, ID: id}) }},
		{"XEP-0022 delivered", func(m *XMPPMessage, id string) { m.Acks = append(m.Acks, XMPPAck{Wire: WireEventDelivered, ID: id}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ids := sentToJuliet(t, h, 2)
			h.handle(t, receipt(func(m *XMPPMessage) { tc.edit(m, ids[1]) }))
			want := "!dm:example.org " + string(julietGhost) + " $a2"
			if len(h.matrix.deliveries) != 1 || h.matrix.deliveries[0] != want {
				t.Fatalf("deliveries %q, want [%q]", h.matrix.deliveries, want)
			}
			// Another resource, then the other protocol, report it again.
			h.handle(t, receipt(func(m *XMPPMessage) { m.From = jid.MustParse(julietJID + "/laptop"); tc.edit(m, ids[1]) }))
			h.handle(t, receipt(func(m *XMPPMessage) {
				m.Acks = append(m.Acks, XMPPAck{Wire: WireReceived, ID: ids[1]})
				m.Acks = append(m.Acks, XMPPAck{Wire: WireEventDelivered, ID: ids[1]})
			}))
			// Three duplicate reports: the laptop's, and both of the last stanza's.
			if len(h.matrix.deliveries) != 1 || h.counts["xmpp_receipt/"+string(ReasonDuplicate)] != 3 {
				t.Errorf("deliveries %q, duplicates %d; want one delivery, three duplicates", h.matrix.deliveries, h.counts["xmpp_receipt/"+string(ReasonDuplicate)])
			}
		})
	}
}

// x:event <displayed/> (XEP-0022 §3.2) and XEP-0333 <displayed/> become the
// ghost's m.read on the event; m.read only moves forward (Matrix receipts
// module: an "up to" marker), and a burst is coalesced into one receipt.
func TestDisplayedFromXMPP(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 3)
	h.handle(t, receipt(func(m *XMPPMessage) { m.Acks = append(m.Acks, XMPPAck{Wire: WireEventDisplayed, ID: ids[1]}) }))
	if want := "!dm:example.org " + string(julietGhost) + " $a2"; len(h.matrix.reads) != 1 || h.matrix.reads[0] != want {
		t.Fatalf("reads %q, want [%q]", h.matrix.reads, want)
	}
	// An older marker changes nothing.
	h.handle(t, receipt(func(m *XMPPMessage) { m.Acks = append(m.Acks, XMPPAck{Wire: WireMarkerDisplayed, ID: ids[0]}) }))
	if len(h.matrix.reads) != 1 {
		t.Fatalf("reads %q after an older marker, want still one", h.matrix.reads)
	}
	// A burst: the newest, then an older one, before the outbox runs.
	_, _ = h.b.HandleXMPPMessage(context.Background(), receipt(func(m *XMPPMessage) { m.Acks = append(m.Acks, XMPPAck{Wire: WireMarkerDisplayed, ID: ids[2]}) }))
	_, _ = h.b.HandleXMPPMessage(context.Background(), receipt(func(m *XMPPMessage) { m.Acks = append(m.Acks, XMPPAck{Wire: WireEventDisplayed, ID: ids[2]}) }))
	h.drain(t)
	if len(h.matrix.reads) != 2 || h.matrix.reads[1] != "!dm:example.org "+string(julietGhost)+" $a3" {
		t.Errorf("reads %q, want a second one on $a3", h.matrix.reads)
	}
}

// A burst of XEP-0333 markers, one per message as a client catching up on a
// long history sends them, is one m.read on the newest (XEP-0333 §4: a
// marker is "up to"; Matrix m.read too): one job stored and one sent, not
// one per marker.
func TestDisplayedBurstOneRead(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 200)
	jobsBefore := h.store.JobsAdded()
	for _, x := range ids {
		_, _ = h.b.HandleXMPPMessage(context.Background(), receipt(func(m *XMPPMessage) { m.Acks = append(m.Acks, XMPPAck{Wire: WireMarkerDisplayed, ID: x}) }))
	}
	h.drain(t)
	if want := "!dm:example.org " + string(julietGhost) + " $a" + string(rune('1'+199)); len(h.matrix.reads) != 1 || h.matrix.reads[0] != want {
		t.Fatalf("reads %q, want [%q]", h.matrix.reads, want)
	}
	if n := h.store.JobsAdded() - jobsBefore; n != 1 {
		t.Errorf("%d jobs stored for the burst, want 1", n)
	}
	if n := h.counts["xmpp_receipt/marker_displayed"]; n != 200 {
		t.Errorf("%d markers counted, want 200", n)
	}
}

// Who may acknowledge (docs/protocols.md, XMPP → Matrix): only the bare JID the message went to,
// addressed to the puppet that sent it, about a message that asked for it,
// never in a groupchat; everything else is ignored and counted, never
// answered with an error (XEP-0184 §5).
func TestReceiptRefusals(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 1)
	// A message from Juliet that requested nothing, to test XEP-0022's
	// rule that unsolicited events are not allowed.
	for _, tc := range []struct {
		name   string
		reason Reason
		m      *XMPPMessage
	}{
		{"forged by a third JID", ReasonUnknownID, receipt(func(m *XMPPMessage) {
			m.From = jid.MustParse("tybalt@capulet.lit/street")
			m.Acks = append(m.Acks, XMPPAck{Wire: WireReceived, ID: ids[0]})
		})},
		{"unknown id", ReasonUnknownID, receipt(func(m *XMPPMessage) { m.Acks = append(m.Acks, XMPPAck{Wire: WireReceived, ID: "no-such-id"}) })},
		{"to another puppet", ReasonWrongPuppet, receipt(func(m *XMPPMessage) {
			m.To = jid.MustParse(`bob\3aexample.org@matrix.example.org`)
			m.Acks = append(m.Acks, XMPPAck{Wire: WireReceived, ID: ids[0]})
		})},
	} {
		before := h.counts["xmpp_receipt/"+string(tc.reason)]
		h.handle(t, tc.m)
		if h.counts["xmpp_receipt/"+string(tc.reason)] != before+1 {
			t.Errorf("%s: not counted as %s (%v)", tc.name, tc.reason, h.counts)
		}
	}
	// Groupchat receipts never count.
	gc := receipt(func(m *XMPPMessage) {
		m.Type = TypeGroupchat
		m.Acks = append(m.Acks, XMPPAck{Wire: WireReceived, ID: ids[0]})
	})
	h.handle(t, gc)
	if len(h.matrix.deliveries) != 0 || len(h.matrix.reads) != 0 {
		t.Errorf("deliveries %q reads %q, want none", h.matrix.deliveries, h.matrix.reads)
	}
}

// Over budget at the bridge: counted per receipt, nothing recorded.
func TestReceiptsOverBudgetCounted(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 3)
	h.b.SetIntake(Limits{PeerRate: 0.001, PeerBurst: 2, Pending: 100}, time.Now, zerolog.Nop())
	for _, x := range ids {
		h.handle(t, receipt(func(m *XMPPMessage) { m.Acks = append(m.Acks, XMPPAck{Wire: WireReceived, ID: x}) }))
	}
	if h.counts["xmpp_receipt/"+string(ReasonOverBudget)] != 1 || len(h.matrix.deliveries) != 2 {
		t.Errorf("over budget %d, deliveries %d; want 1 and 2", h.counts["xmpp_receipt/"+string(ReasonOverBudget)], len(h.matrix.deliveries))
	}
}

// XEP-0022 §2.1: events are raised only if requested; a message from Matrix
// whose row asked for nothing gets no translation.
func TestUnsolicitedEventIgnored(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	msg := &Message{RoomID: "!dm:example.org", EventID: "$plain", XMPPID: "plain-1", PeerJID: jid.MustParse(julietJID), Direction: FromMatrix, MXID: alice, TS: time.Now()}
	if _, err := h.store.AddMessage(ctx, msg); err != nil {
		t.Fatal(err)
	}
	h.handle(t, receipt(func(m *XMPPMessage) {
		m.Acks = []XMPPAck{{Wire: WireEventDelivered, ID: "plain-1"}, {Wire: WireEventDisplayed, ID: "plain-1"}}
	}))
	h.handle(t, receipt(func(m *XMPPMessage) { m.Event = &EventNotice{ID: "plain-1", Composing: true} }))
	if len(h.matrix.deliveries)+len(h.matrix.reads)+len(h.matrix.typings()) != 0 || h.counts["xmpp_receipt/"+string(ReasonUnsolicited)] != 2 || h.counts["xmpp_typing/"+string(ReasonUnsolicited)] != 1 {
		t.Errorf("deliveries %q reads %q typing %q counts %v", h.matrix.deliveries, h.matrix.reads, h.matrix.typings(), h.counts)
	}
}

// XEP-0022 §3.2.4 composing and its cancellation, and XEP-0085's states,
// become the ghost's typing, with a timeout so a lost cancellation cannot
// leave it typing for ever.
func TestTypingFromXMPP(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 1)
	steps := []struct {
		edit func(*XMPPMessage)
		want bool
	}{
		{func(m *XMPPMessage) { m.Event = &EventNotice{ID: ids[0], Composing: true} }, true},
		{func(m *XMPPMessage) { m.Event = &EventNotice{ID: ids[0]} }, false}, // XEP-0022 Listing 10
		{func(m *XMPPMessage) { m.ChatState = "composing"; m.Type = TypeChat }, true},
		{func(m *XMPPMessage) { m.ChatState = "paused"; m.Type = TypeChat }, false},
		{func(m *XMPPMessage) { m.ChatState = "gone"; m.Type = TypeChat }, false},
	}
	for i, s := range steps {
		h.handle(t, receipt(s.edit))
		want := "!dm:example.org " + string(julietGhost) + " " + map[bool]string{true: "true", false: "false"}[s.want]
		if got := h.matrix.typings(); len(got) != i+1 || got[i] != want {
			t.Errorf("step %d: typing %q, want %q", i, got, want)
		}
	}
}

// A message of type error answering one of ours becomes a failure status
// on its event: "wait" is retriable, the other types are not (RFC 6120
// §8.3.2). It is never answered.
func TestErrorFromXMPPBecomesFailureStatus(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 2)
	h.handle(t, receipt(func(m *XMPPMessage) {
		m.Type, m.ID = TypeError, ids[0]
		m.Error = &StanzaError{Type: "cancel", Condition: "service-unavailable"}
	}))
	h.handle(t, receipt(func(m *XMPPMessage) {
		m.Type, m.ID = TypeError, ids[1]
		m.Error = &StanzaError{Type: "wait", Condition: "resource-constraint"}
	}))
	h.handle(t, receipt(func(m *XMPPMessage) {
		m.Type, m.ID = TypeError, "not-ours"
		m.Error = &StanzaError{Type: "cancel", Condition: "item-not-found"}
	}))
	want := []string{"!dm:example.org $a1 false service-unavailable", "!dm:example.org $a2 true resource-constraint"}
	if len(h.matrix.failures) != 2 || h.matrix.failures[0] != want[0] || h.matrix.failures[1] != want[1] {
		t.Errorf("failures %q, want %q", h.matrix.failures, want)
	}
	if h.counts["xmpp_error/"+string(ReasonUnknownID)] != 1 {
		t.Errorf("counts %v", h.counts)
	}
}

// failingStore is a memstore.Store whose lookups fail while down is set:
// a database that went away.
type failingStore struct {
	*memstore.Store
	down atomic.Bool
}

func (s *failingStore) MessagesByXMPPIDs(ctx context.Context, dir Direction, keys []XMPPKey) (map[XMPPKey]*Message, error) {
	if s.down.Load() {
		return nil, errors.New("connection refused")
	}
	return s.Store.MessagesByXMPPIDs(ctx, dir, keys)
}

// While the store is down, receipts from XMPP wait in the intake (they
// were read from the stream: nothing else holds them) and the log says so
// once, however many flushes fail; once it is back, they are recorded,
// and the log says that once too.
func TestReceiptsWaitForTheStore(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 3)
	var logs bytes.Buffer
	fs := &failingStore{Store: h.store}
	h.b = New(*h.b.Config(), fs, nil, zerolog.New(&logs).Level(zerolog.InfoLevel))
	h.b.SetSides(h.matrix, h.xmpp)
	fs.down.Store(true)
	ctx := context.Background()
	for i, xid := range ids {
		if _, err := h.b.HandleXMPPMessage(ctx, receipt(func(m *XMPPMessage) { m.Acks = append(m.Acks, XMPPAck{Wire: WireReceived, ID: xid}) })); err != nil {
			t.Fatal(err)
		}
		if h.b.FlushReceipts(ctx) {
			t.Fatalf("flush %d succeeded with the store down", i)
		}
		// What the metrics tell an operator: these are in memory only.
		if got := h.b.Unrecorded(); got != i+1 {
			t.Errorf("after flush %d: %d unrecorded, want %d", i, got, i+1)
		}
	}
	fs.down.Store(false)
	if !h.b.FlushReceipts(ctx) {
		t.Fatal("flush failed with the store back")
	}
	if got := h.b.Unrecorded(); got != 0 {
		t.Errorf("%d unrecorded once recorded, want 0", got)
	}
	h.drain(t)
	if len(h.matrix.deliveries) != 3 {
		t.Errorf("deliveries %q, want the 3 receipts that waited", h.matrix.deliveries)
	}
	out := logs.String()
	if strings.Count(out, "Failed to look up receipts") != 1 || strings.Count(out, "recorded again") != 1 {
		t.Errorf("want one line for the outage and one for its end:\n%s", out)
	}
}

// lostAnswerStore is a memstore.Store whose next write of jobs commits
// and then fails, as a COMMIT does that PostgreSQL carried out just before
// the connection went: the caller sees an error for work that is done.
type lostAnswerStore struct {
	*memstore.Store
	loseNext atomic.Bool
}

func (s *lostAnswerStore) lost(err error) error {
	if err == nil && s.loseNext.Swap(false) {
		return errors.New("unexpected EOF")
	}
	return err
}

func (s *lostAnswerStore) Acknowledge(ctx context.Context, acks []Ack, jobs ...*Job) ([]bool, error) {
	isNew, err := s.Store.Acknowledge(ctx, acks, jobs...)
	return isNew, s.lost(err)
}

func (s *lostAnswerStore) AddMessage(ctx context.Context, msg *Message, jobs ...*Job) (bool, error) {
	added, err := s.Store.AddMessage(ctx, msg, jobs...)
	return added, s.lost(err)
}

// A write whose answer was lost stored its jobs, but the core never
// handed them to the outbox, and its retry finds the work done (a receipt
// already recorded, a message already stored) and hands over nothing: so
// the first write that succeeds after a failure has the outbox read the
// store at once. Without it the send waited for the outbox's next look,
// up to 5 s, and the PostgreSQL-crash drill counted it lost.
func TestAJobWhoseCommitsAnswerWasLostIsSentAtOnce(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 1)
	ls := &lostAnswerStore{Store: h.store}
	h.b = New(*h.b.Config(), ls, nil, zerolog.Nop())
	h.b.SetSides(h.matrix, h.xmpp)
	out := &recOutbox{}
	h.b.SetOutbox(out)
	ctx := context.Background()
	jobsNow := func() int {
		jobs, err := h.store.DueJobsAfter(ctx, time.Now().Add(time.Hour), 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		return len(jobs)
	}
	before := jobsNow()

	// A receipt (XEP-0184 §5): recorded, answer lost, flushed again.
	if _, err := h.b.HandleXMPPMessage(ctx, receipt(func(m *XMPPMessage) { m.Acks = append(m.Acks, XMPPAck{Wire: WireReceived, ID: ids[0]}) })); err != nil {
		t.Fatal(err)
	}
	ls.loseNext.Store(true)
	if h.b.FlushReceipts(ctx) {
		t.Fatal("the flush whose commit answered an error says it succeeded")
	}
	if !h.b.FlushReceipts(ctx) {
		t.Fatal("the second flush failed")
	}
	if jobsNow() != before+1 || len(out.queued) != 0 {
		t.Fatalf("%d jobs stored, %d queued; want the receipt's job stored once and not queued", jobsNow()-before, len(out.queued))
	}
	if out.rescans != 1 {
		t.Fatalf("outbox asked to read the store %d times, want 1", out.rescans)
	}

	// A message: stored, answer lost; the component tries it again.
	msg := chat("lost-answer", "Did my heart love till now?")
	ls.loseNext.Store(true)
	if _, err := h.b.HandleXMPPMessage(ctx, msg); err == nil {
		t.Fatal("the message whose commit answered an error was accepted")
	}
	if _, err := h.b.HandleXMPPMessage(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if out.rescans != 2 {
		t.Fatalf("outbox asked to read the store %d times, want 2", out.rescans)
	}
	// A write that succeeds with nothing failed before asks for nothing.
	if _, err := h.b.HandleXMPPMessage(ctx, chat("fine", "Forswear it, sight!")); err != nil {
		t.Fatal(err)
	}
	if out.rescans != 2 {
		t.Fatalf("outbox asked to read the store %d times after a plain write, want 2", out.rescans)
	}
}

// A receipt job hands the send what it is about in memory (Job.Made);
// read back from the store after a restart (no Made), its payload makes
// the same request: a person's delivery, and an occupant's m.read as
// their own ghost (XEP-0333 §3, "groupchat").
func TestReceiptJobReadBackIsTheSame(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	juliet := jid.MustParse("juliet@capulet.example")
	msg := &Message{RowID: 7, RoomID: "!dm:example.org", EventID: "$seen", PeerJID: juliet, MXID: alice}
	if err := h.store.PutPortal(ctx, DirectPortal(msg.RoomID, alice, juliet, time.Time{})); err != nil {
		t.Fatal(err)
	}
	occupant := MemberID("lounge@conference.example.org/8lfZCp")
	jobs := []*Job{
		ReceiptJob(JobMatrixDelivery, msg.RoomID, msg, ""),
		ReceiptJob(JobMatrixRead, msg.RoomID, msg, occupant),
	}
	run := func(made bool) (deliveries, reads []string) {
		h.matrix.mu.Lock()
		h.matrix.deliveries, h.matrix.reads = nil, nil
		h.matrix.mu.Unlock()
		for _, j := range jobs {
			c := *j
			if !made {
				c.Made = nil
			}
			if err := h.b.RunJob(ctx, &c); err != nil {
				t.Fatal(err)
			}
		}
		h.matrix.mu.Lock()
		defer h.matrix.mu.Unlock()
		return h.matrix.deliveries, h.matrix.reads
	}
	d1, r1 := run(true)
	d2, r2 := run(false)
	if len(d1) != 1 || len(r1) != 1 || !slices.Equal(d1, d2) || !slices.Equal(r1, r2) {
		t.Errorf("in memory: %q %q; read back: %q %q", d1, r1, d2, r2)
	}
}
