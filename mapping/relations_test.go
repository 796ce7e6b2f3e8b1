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

// The rules of relations.go, one row of the table at a time (docs/protocols.md),
// with the XEPs' own example stanzas where they have some, retold
// between Juliet on XMPP and Alice on Matrix.

// julietSays is a chat message from Juliet's balcony to Alice's puppet.
func julietSays(xid, body string, edit func(*XMPPMessage)) *XMPPMessage {
	m := chat(xid, body)
	if edit != nil {
		edit(m)
	}
	return m
}

// matrixBodies is what the fake homeserver was sent, without the room,
// the sender and the transaction id: "body", "edit $ev text", "react $ev
// key", "redact $ev".
func (h *harness) matrixBodies() []string {
	h.matrix.mu.Lock()
	defer h.matrix.mu.Unlock()
	var out []string
	for _, t := range h.matrix.texts {
		f := strings.SplitN(t, " ", 3)
		out = append(out, f[2][:strings.LastIndexByte(f[2], ' ')])
	}
	return out
}

func (h *harness) wantMatrix(t *testing.T, want ...string) {
	t.Helper()
	if got := h.matrixBodies(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sent to Matrix %q, want %q", got, want)
	}
}

// XEP-0308 §3, Examples 3 and 4: "But soft, what light through yonder
// airlock breaks?" corrected to "window"; a second correction names the
// original again, and one naming the correction is taken for the
// original too. Each is an m.replace of the original event with
// m.new_content (client-server API, event replacements).
func TestCorrectionFromXMPP(t *testing.T) {
	h := newHarness(t)
	h.handle(t, julietSays("bad1", "But soft, what light through yonder airlock breaks?", nil))
	h.handle(t, julietSays("good1", "But soft, what light through yonder window breaks?", func(m *XMPPMessage) { m.Replace = "bad1" }))
	h.handle(t, julietSays("good2", "But soft, what light through yonder window breaks!", func(m *XMPPMessage) { m.Replace = "bad1" }))
	h.handle(t, julietSays("good3", "But soft!", func(m *XMPPMessage) { m.Replace = "good2" }))
	h.wantMatrix(t,
		"But soft, what light through yonder airlock breaks?",
		"edit $ev1 But soft, what light through yonder window breaks?",
		"edit $ev1 But soft, what light through yonder window breaks!",
		"edit $ev1 But soft!")
	// A receipt for the correction is one for the edit event.
	row, err := h.store.MessageByXMPPID(context.Background(), jid.MustParse(julietJID), "good1", FromXMPP)
	if err != nil || row.EventID != "$ev2" || row.RelKind != RelReplace || row.RelTo != 1 {
		t.Fatalf("correction row %+v, %v", row, err)
	}
}

// Only a message's sender corrects or retracts it: Juliet's correction or
// retraction of Alice's message, a third JID's of Juliet's, and either of
// an id never bridged change nothing and are never bridged as messages.
func TestCorrectionAndRetractionRefused(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 1)
	h.handle(t, julietSays("j1", "Ay me!", nil))
	romeo := func(m *XMPPMessage) { m.From = jid.MustParse("romeo@montague.lit/orchard") }
	cases := []struct {
		name   string
		edit   func(*XMPPMessage)
		what   string
		reason Reason
	}{
		{"correct Alice's message", func(m *XMPPMessage) { m.Replace = ids[0] }, "xmpp_replace", ReasonNotAuthor},
		{"retract Alice's message", func(m *XMPPMessage) { m.Retract = ids[0] }, "xmpp_redact", ReasonNotAuthor},
		{"third JID corrects", func(m *XMPPMessage) { romeo(m); m.Replace = "j1" }, "xmpp_replace", ReasonUnknownID},
		{"third JID retracts", func(m *XMPPMessage) { romeo(m); m.Retract = "j1" }, "xmpp_redact", ReasonUnknownID},
		{"unknown id corrected", func(m *XMPPMessage) { m.Replace = "never" }, "xmpp_replace", ReasonUnknownID},
		{"unknown id reacted to", func(m *XMPPMessage) { m.Reactions = &XMPPReactions{ID: "never", Keys: []string{"👋"}} }, "xmpp_reaction", ReasonUnknownID},
	}
	for i, c := range cases {
		before := h.counts[c.what+"/"+string(c.reason)]
		h.handle(t, julietSays(fmt.Sprint("x", i), "This person attempted to change a previous message", c.edit))
		if h.counts[c.what+"/"+string(c.reason)] != before+1 {
			t.Errorf("%s: counts %v, want one more %s/%s", c.name, h.counts, c.what, c.reason)
		}
	}
	h.wantMatrix(t, "Ay me!")
	if len(h.xmpp.sent) != 1 {
		t.Errorf("sent to XMPP %d stanzas, want Alice's one", len(h.xmpp.sent))
	}
}

// XEP-0424 §3, Example 3 (and the older urn:xmpp:message-retract:0 in a
// XEP-0422 <apply-to/>, which xmppside decodes to the same Retract): the
// sender's retraction redacts the event. A retraction sent twice is one.
func TestRetractionFromXMPP(t *testing.T) {
	h := newHarness(t)
	h.handle(t, julietSays("origin-id-1", "I love you", nil))
	retract := julietSays("retract-message-1", "This person attempted to retract a previous message, but it's unsupported by your client.", func(m *XMPPMessage) { m.Retract = "origin-id-1" })
	h.handle(t, retract)
	h.handle(t, retract)
	h.wantMatrix(t, "I love you", "redact $ev1")
}

// XEP-0444 §3, Example 3 onwards: each <reactions/> is the sender's whole
// set. The ghost gets one m.reaction per key (m.annotation), and a key
// that left the set is redacted; the same set again changes nothing; an
// empty set removes all.
func TestReactionsFromXMPP(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 1) // Alice's message: $a1, which Juliet reacts to
	react := func(keys ...string) {
		h.handle(t, julietSays("", "", func(m *XMPPMessage) { m.ID = ""; m.Reactions = &XMPPReactions{ID: ids[0], Keys: keys} }))
	}
	react("👋", "🐢")
	react("👋", "🐢")
	react("🐢")
	react()
	h.wantMatrix(t, "react $a1 👋", "react $a1 🐢", "redact $ev1", "redact $ev2")
	if rs, _ := h.store.Reactions(context.Background(), 1, FromXMPP); len(rs) != 0 {
		t.Errorf("reactions left %+v", rs)
	}
}

// XEP-0461 §3, Example 1 and XEP-0428: a reply's quote fallback (cut out
// of the body by xmppside) is left out; the reply is m.in_reply_to. A
// reply to a message the bridge never saw is a message in its own right:
// it crosses as a plain one, its quote put back.
func TestReplyFromXMPP(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 1)
	h.handle(t, julietSays("r1", "Of course!", func(m *XMPPMessage) {
		m.Reply = &XMPPReply{To: aliceFrom, ID: ids[0], Fallback: "> line\n"}
	}))
	h.handle(t, julietSays("r2", "Me too", func(m *XMPPMessage) {
		m.Reply = &XMPPReply{ID: "gone", Fallback: "> something old\n"}
	}))
	h.wantMatrix(t, "reply $a1 Of course!", "> something old\nMe too")
}

// matrixRel is an event of Alice's in the portal that points at ref.
func matrixRel(evID string, kind EventKind, edit func(*MatrixEvent)) MatrixEvent {
	e := textEvent(evID, alice, "!dm:example.org", "")
	e.Kind = kind
	edit(&e)
	return e
}

// xmppOut is the stanza of the first of ids that went to XMPP.
func (h *harness) xmppOut(t *testing.T, ids []string) *OutMessage {
	t.Helper()
	for _, m := range h.xmpp.sent {
		if m.ID == ids[0] {
			return m
		}
	}
	t.Fatalf("%s was never sent", ids[0])
	return nil
}

func (h *harness) matrixEvents(t *testing.T, evts ...MatrixEvent) {
	t.Helper()
	if err := h.handleTxn(context.Background(), MatrixTxn{ID: fmt.Sprint("t", evts[0].ID), Events: evts}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
}

// Client-server API, event replacements: Alice's m.replace of her message
// is a XEP-0308 correction naming the original's id, with the new text;
// an edit of the edit names the original too. Her edit of Juliet's message
// is refused; an edit of a message older than DefaultEditMaxAge goes as a new
// message, "* " and the text.
func TestEditFromMatrix(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 1)
	h.handle(t, julietSays("j1", "Ay me!", nil))
	edit := func(evID string, of id.EventID, body string, ts time.Time) MatrixEvent {
		return matrixRel(evID, EventMessage, func(e *MatrixEvent) {
			e.Body, e.TS = "* "+body, ts
			e.Rel = MatrixRelation{Type: RelTypeReplace, Event: of, NewBody: body, NewMsgType: MsgText}
		})
	}
	t0 := time.UnixMilli(1700000000000)
	h.matrixEvents(t, edit("$e1", "$a1", "lines", t0.Add(time.Minute)))
	h.matrixEvents(t, edit("$e2", "$e1", "lines!", t0.Add(2*time.Minute)))
	h.matrixEvents(t, edit("$e3", "$ev1", "Ay you!", t0.Add(2*time.Minute)))
	h.matrixEvents(t, edit("$e4", "$a1", "late", t0.Add(DefaultEditMaxAge+time.Hour)))
	sent := h.xmpp.sent[1:]
	if len(sent) != 3 {
		t.Fatalf("sent %d stanzas after the message, want 3: %+v", len(sent), sent)
	}
	for i, want := range []struct{ replace, body string }{{ids[0], "lines"}, {ids[0], "lines!"}, {"", "* late"}} {
		if sent[i].Replace != want.replace || sent[i].Body != want.body || sent[i].Request != h.xmpp.sent[0].Request {
			t.Errorf("edit %d: replace %q body %q requests %+v, want %q %q and a message's requests", i, sent[i].Replace, sent[i].Body, sent[i].Request, want.replace, want.body)
		}
	}
	if h.counts["matrix_replace/"+string(ReasonNotAuthor)] != 1 {
		t.Errorf("counts %v: want Alice's edit of Juliet's message refused", h.counts)
	}
}

// m.in_reply_to becomes XEP-0461 <reply to id/> with a XEP-0428 quote of
// the message replied to; a reply to an event the bridge never carried
// is a plain message.
func TestReplyFromMatrix(t *testing.T) {
	h := newHarness(t)
	sentToJuliet(t, h, 0)
	h.handle(t, julietSays("j1", "Romeo, Romeo!\nWherefore art thou", nil))
	h.matrixEvents(t, matrixRel("$r1", EventMessage, func(e *MatrixEvent) { e.Body = "Here"; e.Rel.ReplyTo = "$ev1" }))
	h.matrixEvents(t, matrixRel("$r2", EventMessage, func(e *MatrixEvent) {
		e.Body = "> <@bob:example.org> old\n\nAnd here"
		e.Rel.ReplyTo = "$unknown"
	}))
	if len(h.xmpp.sent) != 2 {
		t.Fatalf("sent %+v", h.xmpp.sent)
	}
	r := h.xmpp.sent[0].Reply
	if r == nil || r.ID != "j1" || r.To.String() != julietJID || r.Quote != "> Romeo, Romeo!\n> Wherefore art thou\n" || h.xmpp.sent[0].Body != "Here" {
		t.Errorf("reply %+v body %q", r, h.xmpp.sent[0].Body)
	}
	if p := h.xmpp.sent[1]; p.Reply != nil || p.Body != "And here" {
		t.Errorf("reply to an unknown event: %+v", p)
	}
}

// m.reaction (m.annotation) becomes XEP-0444 <reactions/> with Alice's
// whole set, as it stands when the stanza goes; redacting one of her
// reactions sends the set without it; redacting her message retracts it
// (XEP-0424). Reactions and retractions ask for no receipt.
func TestReactionsAndRetractionFromMatrix(t *testing.T) {
	h := newHarness(t)
	msg := h.xmppOut(t, sentToJuliet(t, h, 1)) // Alice's $a1
	h.handle(t, julietSays("j1", "Good night", nil))
	reaction := func(evID, key string) MatrixEvent {
		return matrixRel(evID, EventReaction, func(e *MatrixEvent) {
			e.Rel = MatrixRelation{Type: RelTypeAnnotation, Event: "$ev1", Key: key}
		})
	}
	redaction := func(evID string, of id.EventID) MatrixEvent {
		return matrixRel(evID, EventRedaction, func(e *MatrixEvent) { e.Redacts = of })
	}
	h.matrixEvents(t, reaction("$x1", "👍"))
	h.matrixEvents(t, reaction("$x2", "🎉"))
	h.matrixEvents(t, redaction("$d1", "$x1"))
	h.matrixEvents(t, redaction("$d1", "$x1")) // pushed, then read by /sync
	h.matrixEvents(t, redaction("$d2", "$a1"))
	h.matrixEvents(t, redaction("$d3", "$ev1")) // Juliet's: not Alice's to retract
	sent := h.xmpp.sent[1:]
	if len(sent) != 4 {
		t.Fatalf("sent %d stanzas, want 3 reaction sets and the retraction", len(sent))
	}
	for i, want := range [][]string{{"👍"}, {"👍", "🎉"}, {"🎉"}} {
		r := sent[i].Reactions
		if r == nil || r.ID != "j1" || fmt.Sprint(r.Keys) != fmt.Sprint(want) || sent[i].Body != "" || sent[i].Request != (Requests{}) {
			t.Errorf("stanza %d: %+v, want the set %q on j1 and no body or requests", i, sent[i], want)
		}
	}
	if r := sent[3]; r.Retract != msg.ID || r.Request != (Requests{}) {
		t.Errorf("retraction %+v, want of %s", r, msg.ID)
	}
	if h.counts["matrix_redact/"+string(ReasonNotAuthor)] != 1 || h.counts["matrix_redact/"+string(ReasonDuplicate)] != 1 {
		t.Errorf("counts %v", h.counts)
	}
}

// The id map is the store's: a bridge started again on the same store
// links an edit to a message sent before the restart.
func TestEditAfterRestart(t *testing.T) {
	h := newHarness(t)
	h.handle(t, julietSays("bad1", "airlock", nil))
	h.withStore(h.store)
	h.handle(t, julietSays("good1", "window", func(m *XMPPMessage) { m.Replace = "bad1" }))
	h.wantMatrix(t, "airlock", "edit $ev1 window")
}
