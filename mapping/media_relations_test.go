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

// A file's message is a row of the id map like any other: receipts,
// replies, reactions and retractions name it as they name text, both
// ways. Juliet's picture is XEP-0066 §3's example; Alice's file is a PDF.

// julietsPicture has Juliet send XEP-0066 §3's picture asking for every
// receipt, posted on Matrix as $ev1 (an m.image).
func julietsPicture(t *testing.T, h *harness) {
	t.Helper()
	_ = h.store.PutPortal(context.Background(), DirectPortal(dm, alice, jid.MustParse(julietJID), time.Now().Add(-time.Hour)))
	pic := withOOB("pic1", oobExampleURL, oobExampleURL)
	pic.Requests = all
	h.handle(t, pic)
	if got := h.matrixBodies(); len(got) != 1 || !strings.HasPrefix(got[0], MsgImage+" mxc://example.org/license ") {
		t.Fatalf("posted %q, want the picture as $ev1", got)
	}
}

// alicesFile has Alice send a PDF to Juliet; it returns the id of the
// stanza it became on XMPP.
func alicesFile(t *testing.T, h *harness) string {
	t.Helper()
	_ = h.store.PutPortal(context.Background(), DirectPortal(dm, alice, jid.MustParse(julietJID), time.Now().Add(-time.Hour)))
	pdf := textEvent("$pdf", alice, dm, "sonnet.pdf")
	pdf.MsgType, pdf.File = MsgFile, &MatrixFile{URL: "mxc://example.org/sonnet", Name: "sonnet.pdf", Type: "application/pdf", Size: 99}
	h.matrixEvents(t, pdf)
	if len(h.xmpp.sent) != 1 || h.xmpp.sent[0].OOB == nil {
		t.Fatalf("sent %+v, want the file", h.xmpp.sent)
	}
	return h.xmpp.sent[0].ID
}

// Matrix → XMPP, on a picture Juliet sent: Alice's m.read raises the
// receipts it asked for (XEP-0184 §4 <received/>, XEP-0022 x:event,
// XEP-0333 §3 <displayed/>); her reply is a XEP-0461 <reply/> to its id,
// her m.reaction a XEP-0444 <reactions/> on it; Juliet's XEP-0424
// retraction redacts it; Alice may not redact it (not hers).
func TestMediaFromXMPPRelations(t *testing.T) {
	h, _ := mediaHarness(t)
	h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, ReadImpliesDelivered: true, MaxDisplayedPerRead: 50}
	julietsPicture(t, h)
	to := " to " + julietJID
	got := h.ephemeral(t, receiptEvent(dm, "$ev1", ReceiptRead, alice, ""))
	want := []string{"received pic1" + to, "x-delivered pic1" + to, "x-displayed pic1" + to, "marker pic1" + to}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("m.read of the picture raised %q, want %q", got, want)
	}

	h.matrixEvents(t, matrixRel("$r1", EventMessage, func(e *MatrixEvent) { e.Body = "Where was this?"; e.Rel.ReplyTo = "$ev1" }))
	h.matrixEvents(t, matrixRel("$x1", EventReaction, func(e *MatrixEvent) {
		e.Rel = MatrixRelation{Type: RelTypeAnnotation, Event: "$ev1", Key: "👍"}
	}))
	sent := h.xmpp.sent[len(h.xmpp.sent)-2:]
	if r := sent[0].Reply; r == nil || r.ID != "pic1" || r.To.String() != julietJID || sent[0].Body != "Where was this?" {
		t.Errorf("reply to the picture: %+v, want XEP-0461 <reply to=%s id=pic1/>", sent[0], julietJID)
	}
	if r := sent[1].Reactions; r == nil || r.ID != "pic1" || fmt.Sprint(r.Keys) != "[👍]" {
		t.Errorf("reaction to the picture: %+v, want XEP-0444 <reactions id=pic1> 👍", sent[1])
	}

	h.matrixEvents(t, matrixRel("$d1", EventRedaction, func(e *MatrixEvent) { e.Redacts = "$ev1" }))
	if h.counts["matrix_redact/"+string(ReasonNotAuthor)] != 1 {
		t.Errorf("counts %v: want Alice's redaction of Juliet's picture refused", h.counts)
	}
	h.handle(t, julietSays("retract-pic1", "", func(m *XMPPMessage) { m.Retract = "pic1" }))
	if got := h.matrixBodies(); got[len(got)-1] != "redact $ev1" {
		t.Errorf("sent to Matrix %q, want Juliet's retraction as the redaction of $ev1", got)
	}
}

// XMPP → Matrix, on a file Alice sent: Juliet's XEP-0184 §4 <received/>
// is a delivery on its event, XEP-0333 §3 <displayed/> and x:event
// <displayed/> (XEP-0022) the ghost's m.read, a XEP-0461 <reply/> to its
// id an m.in_reply_to, a XEP-0444 <reactions/> an m.reaction; Alice's
// redaction of it is a XEP-0424 retraction of the stanza.
func TestMediaFromMatrixRelations(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   func(m *XMPPMessage, x string)
		want func(h *harness) []string
	}{
		{"XEP-0184 §4 received", func(m *XMPPMessage, x string) { m.Acks = []XMPPAck{{Wire: WireReceived, ID: x}} },
			func(h *harness) []string { return h.matrix.deliveries }},
		{"XEP-0333 §3 displayed", func(m *XMPPMessage, x string) { m.Acks = []XMPPAck{{Wire: WireMarkerDisplayed, ID: x}} },
			func(h *harness) []string { return h.matrix.reads }},
		{"XEP-0022 x:event displayed", func(m *XMPPMessage, x string) { m.Acks = []XMPPAck{{Wire: WireEventDisplayed, ID: x}} },
			func(h *harness) []string { return h.matrix.reads }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := mediaHarness(t)
			x := alicesFile(t, h)
			h.handle(t, receipt(func(m *XMPPMessage) { tc.in(m, x) }))
			if got, want := tc.want(h), "!dm:example.org "+string(julietGhost)+" $pdf"; len(got) != 1 || got[0] != want {
				t.Errorf("receipts on Matrix %q, want [%q]", got, want)
			}
		})
	}

	h, _ := mediaHarness(t)
	x := alicesFile(t, h)
	h.handle(t, julietSays("r1", "Thy sonnet!", func(m *XMPPMessage) { m.Reply = &XMPPReply{To: aliceFrom, ID: x} }))
	h.handle(t, julietSays("", "", func(m *XMPPMessage) { m.ID = ""; m.Reactions = &XMPPReactions{ID: x, Keys: []string{"❤"}} }))
	h.wantMatrix(t, "reply $pdf Thy sonnet!", "react $pdf ❤")
	h.matrixEvents(t, matrixRel("$d1", EventRedaction, func(e *MatrixEvent) { e.Redacts = id.EventID("$pdf") }))
	if r := h.xmpp.sent[len(h.xmpp.sent)-1]; r.Retract != x {
		t.Errorf("Alice's redaction of her file sent %+v, want a XEP-0424 retraction of %s", r, x)
	}
}

// XEP-0308 §3 on a picture Juliet sent: a correction replaces the whole
// message, and XMPP clients show its new body in place of the file.
// Matrix is told the same: an m.replace of the picture's event with the
// new text (client-server API, "Event replacements"), or, for a
// correction that carries a file (XEP-0066 §3's <x/>), an m.replace
// whose m.new_content is that file, fetched as any, with the words as
// its caption.
func TestMediaCorrectedFromXMPP(t *testing.T) {
	h, m := mediaHarness(t)
	julietsPicture(t, h)
	h.handle(t, julietSays("fix1", "Wrong picture, sorry", func(m *XMPPMessage) { m.Replace = "pic1" }))
	h.handle(t, julietSays("fix2", oobExampleBody+" "+oobExampleURL, func(m *XMPPMessage) {
		m.Replace, m.OOB = "pic1", &OOB{URL: oobExampleURL}
	}))
	got := h.matrixBodies()
	want := []string{"edit $ev1 Wrong picture, sorry", "edit $ev1 m.image mxc://example.org/license " + oobExampleBody + " filename=psa-license.jpg"}
	if len(got) != 3 || got[1] != want[0] || got[2] != want[1] {
		t.Errorf("sent to Matrix %q, want the picture, then %q", got, want)
	}
	if len(m.fetched) != 2 {
		t.Errorf("fetched %q, want the picture's file and the correction's", m.fetched)
	}
}
