//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// everything is what Juliet's client asks for on each message: XEP-0184,
// every XEP-0022 event, and XEP-0333.
const everything = `<request xmlns='urn:xmpp:receipts'/><x xmlns='jabber:x:event'><offline/><delivered/><displayed/><composing/></x><markable xmlns='urn:xmpp:chat-markers:0'/>`

// Receipt kinds as Juliet's client sees them, for counting.
func kindOf(s *peers.Stanza) string {
	switch {
	case s.Name != "message" || s.Body != "":
		return ""
	case s.Has(`<received xmlns="urn:xmpp:receipts"`):
		return "received"
	case s.Has(`<delivered`) && s.Has(`jabber:x:event`):
		return "x-delivered"
	case s.Has(`<displayed`) && s.Has(`jabber:x:event`):
		return "x-displayed"
	case s.Has(`<displayed xmlns="urn:xmpp:chat-markers:0"`):
		return "marker"
	case s.Has(`<composing xmlns="http://jabber.org/protocol/chatstates"`):
		return "chatstate-composing"
	case s.Has(`<composing`) && s.Has(`jabber:x:event`):
		return "x-composing"
	}
	return "other"
}

// receiptsFor lists, in arrival order, the kinds of receipt Juliet got
// from from about the message with stanza id xid.
func receiptsFor(c *peers.XMPPClient, from, xid string) []string {
	var out []string
	for _, s := range c.Stanzas() {
		if !strings.HasPrefix(s.From, from) {
			continue
		}
		k := kindOf(s)
		if k != "" && k != "chatstate-composing" && (s.Has(`id="`+xid+`"`) || s.Has(`>`+xid+`</id>`)) {
			out = append(out, k)
		}
	}
	return out
}

// writeThree has user send three messages asking for everything and
// returns the room and the Matrix events they became.
func writeThree(t *testing.T, ctx context.Context, c *peers.XMPPClient, user, prefix string) (id.RoomID, []id.EventID, []string) {
	t.Helper()
	room := openPortal(t, ctx, c, user)
	ghost := w.ghost(user + "@localhost")
	var evs []id.EventID
	var xids []string
	for i := 1; i <= 3; i++ {
		xid := fmt.Sprintf("%s-%d", prefix, i)
		body := fmt.Sprintf("%s message %d", prefix, i)
		if err := c.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='%s' type='chat'><body>%s</body>%s</message>`, peers.XMLEscape(w.puppet(t, w.alice.Client.UserID)), xid, body, everything)); err != nil {
			t.Fatal(err)
		}
		e, err := w.alice.Wait(ctx, wait, peers.IsText(room, ghost, body))
		if err != nil {
			t.Fatal(err)
		}
		evs, xids = append(evs, e.ID), append(xids, xid)
	}
	return room, evs, xids
}

func waitReceipts(t *testing.T, ctx context.Context, c *peers.XMPPClient, from, xid string, want []string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) && len(receiptsFor(c, from, xid)) < len(want) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // anything extra would come now
	if got := receiptsFor(c, from, xid); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("receipts for %s: %v, want %v", xid, got, want)
	}
}

// Matrix receipts to XMPP (docs/protocols.md, Matrix → XMPP) through /sync (Dendrite pushes no ephemeral events): Alice reads
// the second of three messages. m.read is "up to", XEP-0022 is per message:
// the first two get their delivery receipts (reading implies delivery),
// then <displayed/> each; the second, the newest markable, gets the one
// XEP-0333 marker; the third gets nothing. Alice types: Juliet sees it.
func TestMatrixReadReachesXMPP(t *testing.T) {
	ctx := context.Background()
	merc := w.xmppUser(t, "mercutio", "phone")
	room, evs, xids := writeThree(t, ctx, merc, "mercutio", "mer")
	puppet := w.puppet(t, w.alice.Client.UserID)

	if err := w.alice.Client.SendReceipt(ctx, room, evs[1], event.ReceiptTypeRead, struct{}{}); err != nil {
		t.Fatal(err)
	}
	waitReceipts(t, ctx, merc, puppet, xids[0], []string{"received", "x-delivered", "x-displayed"})
	waitReceipts(t, ctx, merc, puppet, xids[1], []string{"received", "x-delivered", "x-displayed", "marker"})
	if got := receiptsFor(merc, puppet, xids[2]); len(got) != 0 {
		t.Errorf("the unread third message got %v", got)
	}
	// A private read receipt never leaves Matrix.
	if err := w.alice.Client.SendReceipt(ctx, room, evs[2], event.ReceiptTypeReadPrivate, struct{}{}); err != nil {
		t.Fatal(err)
	}

	// Alice types: XEP-0085 composing, and XEP-0022 composing against the
	// newest message that asked for it.
	if _, err := w.alice.Client.UserTyping(ctx, room, true, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := merc.Wait(ctx, wait, func(s *peers.Stanza) bool { return kindOf(s) == "chatstate-composing" }); err != nil {
		t.Fatal(err)
	}
	if _, err := merc.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return kindOf(s) == "x-composing" && s.Has(">"+xids[2]+"</id>")
	}); err != nil {
		t.Fatal(err)
	}
	_, _ = w.alice.Client.UserTyping(ctx, room, false, 0)
	if got := receiptsFor(merc, puppet, xids[2]); fmt.Sprint(got) != "[x-composing]" {
		t.Errorf("the third message got %v; m.read.private must stay on Matrix", got)
	}
}

// Restart the bridge between Alice's read and its translation: the read is
// translated once the bridge is back (the sync token and the inbox are
// durable), and nothing is sent twice.
func TestMatrixReadAcrossBridgeRestart(t *testing.T) {
	ctx := context.Background()
	ben := w.xmppUser(t, "benvolio", "phone")
	room, evs, xids := writeThree(t, ctx, ben, "benvolio", "ben")
	puppet := w.puppet(t, w.alice.Client.UserID)

	if err := w.alice.Client.SendReceipt(ctx, room, evs[0], event.ReceiptTypeRead, struct{}{}); err != nil {
		t.Fatal(err)
	}
	// The first is the newest markable message read: it gets the marker.
	waitReceipts(t, ctx, ben, puppet, xids[0], []string{"received", "x-delivered", "x-displayed", "marker"})

	if err := w.Bridge.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := w.alice.Client.SendReceipt(ctx, room, evs[2], event.ReceiptTypeRead, struct{}{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Bridge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitReceipts(t, ctx, ben, puppet, xids[1], []string{"received", "x-delivered", "x-displayed"})
	waitReceipts(t, ctx, ben, puppet, xids[2], []string{"received", "x-delivered", "x-displayed", "marker"})
	// And the first one, already acknowledged, was not again.
	if got := receiptsFor(ben, puppet, xids[0]); fmt.Sprint(got) != "[received x-delivered x-displayed marker]" {
		t.Errorf("first message after the restart: %v", got)
	}
}
