//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
	"xmppbridge/mapping"
)

// isStatus matches the bot's com.beeper.message_send_status on ev.
func isStatus(room id.RoomID, ev id.EventID, status event.MessageStatus) func(*event.Event) bool {
	return func(e *event.Event) bool {
		if e.RoomID != room || e.Type.Type != event.BeeperMessageStatus.Type {
			return false
		}
		c, ok := e.Content.Parsed.(*event.BeeperMessageStatusEventContent)
		return ok && c.RelatesTo.EventID == ev && c.Status == status
	}
}

// isRead matches an m.receipt giving user's m.read on ev.
func isRead(room id.RoomID, ev id.EventID, user id.UserID) func(*event.Event) bool {
	return func(e *event.Event) bool {
		if e.RoomID != room || e.Type.Type != event.EphemeralEventReceipt.Type {
			return false
		}
		rc, ok := e.Content.Parsed.(*event.ReceiptEventContent)
		if !ok {
			return false
		}
		_, ok = (*rc)[ev][event.ReceiptTypeRead][user]
		return ok
	}
}

// isTyping matches an m.typing in room whose users include user, or not.
func isTyping(room id.RoomID, user id.UserID, on bool) func(*event.Event) bool {
	return func(e *event.Event) bool {
		if e.RoomID != room || e.Type.Type != event.EphemeralEventTyping.Type {
			return false
		}
		tc, ok := e.Content.Parsed.(*event.TypingEventContent)
		if !ok {
			return false
		}
		found := false
		for _, u := range tc.UserIDs {
			found = found || u == user
		}
		return found == on
	}
}

// sendToJuliet has Alice send n messages into room and returns their event
// ids and the stanza ids Juliet's client saw them with.
func sendToJuliet(t *testing.T, ctx context.Context, juliet *peers.XMPPClient, room id.RoomID, alicePuppet, prefix string, n int) ([]id.EventID, []string) {
	t.Helper()
	var evs []id.EventID
	var xids []string
	for i := 1; i <= n; i++ {
		body := fmt.Sprintf("%s %d", prefix, i)
		ev, err := w.alice.SendText(ctx, room, body)
		if err != nil {
			t.Fatal(err)
		}
		st, err := juliet.Wait(ctx, wait, isMessage(alicePuppet, body))
		if err != nil {
			t.Fatal(err)
		}
		evs, xids = append(evs, ev), append(xids, st.ID)
	}
	return evs, xids
}

// XMPP receipts to Matrix (docs/protocols.md, XMPP → Matrix): Alice writes to Juliet; Juliet's client acknowledges in every
// way XMPP has, and Alice's client shows it: the delivery status event
// (Dendrite has no MSC4089, so the message_status fallback), the ghost's
// m.read, and typing on and off. A forged receipt from a third JID and a
// receipt for an unknown id change nothing.
func TestReceiptsFromXMPPReachMatrix(t *testing.T) {
	ctx := context.Background()
	juliet := w.xmppUser(t, "juliet", "receipts")
	tybalt := w.xmppUser(t, "tybalt", "forger")
	room := openPortal(t, ctx, juliet, "juliet")
	ghost := w.ghost("juliet@localhost")
	alicePuppet := w.puppet(t, w.alice.Client.UserID)

	// Alice sends three messages; Juliet's client sees their stanza ids.
	evs, xids := sendToJuliet(t, ctx, juliet, room, alicePuppet, "receipts", 3)
	send := func(c *peers.XMPPClient, payload string) {
		t.Helper()
		if err := c.SendRaw(ctx, fmt.Sprintf(`<message to='%s'>%s</message>`, peers.XMLEscape(alicePuppet), payload)); err != nil {
			t.Fatal(err)
		}
	}
	// Forged: Tybalt acknowledges a message that went to Juliet; and
	// Juliet acknowledges an id the bridge never used.
	send(tybalt, `<received xmlns='urn:xmpp:receipts' id='`+xids[0]+`'/>`)
	send(juliet, `<received xmlns='urn:xmpp:receipts' id='no-such-message'/>`)
	// XEP-0184 on the second message, XEP-0022 delivered on the third.
	send(juliet, `<received xmlns='urn:xmpp:receipts' id='`+xids[1]+`'/>`)
	send(juliet, `<x xmlns='jabber:x:event'><delivered/><id>`+xids[2]+`</id></x>`)
	for _, ev := range evs[1:] {
		st, err := w.alice.Wait(ctx, wait, isStatus(room, ev, event.MessageStatusSuccess))
		if err != nil {
			t.Fatalf("no delivery status for %s: %v", ev, err)
		}
		c := st.Content.Parsed.(*event.BeeperMessageStatusEventContent)
		if st.Sender != w.IDs.Bot() || c.DeliveredToUsers == nil || len(*c.DeliveredToUsers) != 1 || (*c.DeliveredToUsers)[0] != ghost {
			t.Errorf("status %s from %s delivered to %v; want the bot, [%s]", st.ID, st.Sender, c.DeliveredToUsers, ghost)
		}
	}
	if n := len(w.alice.Events(isStatus(room, evs[0], event.MessageStatusSuccess))); n != 0 {
		t.Errorf("the forged receipt made %d status events", n)
	}

	// x:event displayed on the first, then XEP-0333 displayed on the second.
	send(juliet, `<x xmlns='jabber:x:event'><displayed/><id>`+xids[0]+`</id></x>`)
	if _, err := w.alice.Wait(ctx, wait, isRead(room, evs[0], ghost)); err != nil {
		t.Fatalf("no m.read by the ghost on the first message: %v", err)
	}
	send(juliet, `<displayed xmlns='urn:xmpp:chat-markers:0' id='`+xids[1]+`'/>`)
	if _, err := w.alice.Wait(ctx, wait, isRead(room, evs[1], ghost)); err != nil {
		t.Fatalf("no m.read by the ghost on the second message: %v", err)
	}

	// Composing (XEP-0022 §3.2.4), then its cancellation.
	mark := w.alice.Mark()
	send(juliet, `<x xmlns='jabber:x:event'><composing/><id>`+xids[2]+`</id></x>`)
	if _, err := w.alice.WaitSince(ctx, mark, wait, isTyping(room, ghost, true)); err != nil {
		t.Fatalf("the ghost never typed: %v", err)
	}
	mark = w.alice.Mark()
	send(juliet, `<x xmlns='jabber:x:event'><id>`+xids[2]+`</id></x>`)
	if _, err := w.alice.WaitSince(ctx, mark, wait, isTyping(room, ghost, false)); err != nil {
		t.Fatalf("the ghost never stopped typing: %v", err)
	}
}

// A client catching up on a conversation marks every message it shows
// (XEP-0333 §4: a marker means all messages up to it are displayed). The
// bridge posts the ghost's m.read on the newest, whatever order the markers
// come in, and never moves it back (Matrix receipts module: m.read is "up
// to"): an older marker afterwards raises no receipt at all.
func TestMarkerBurstReachesMatrixAsOneRead(t *testing.T) {
	ctx := context.Background()
	juliet := w.xmppUser(t, "juliet", "catchup")
	room := openPortal(t, ctx, juliet, "juliet")
	ghost := w.ghost("juliet@localhost")
	alicePuppet := w.puppet(t, w.alice.Client.UserID)
	evs, xids := sendToJuliet(t, ctx, juliet, room, alicePuppet, "catch up", 20)
	marker := func(x string) string {
		return fmt.Sprintf(`<message to='%s'><displayed xmlns='urn:xmpp:chat-markers:0' id='%s'/></message>`, peers.XMLEscape(alicePuppet), x)
	}
	for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 19, 10, 11, 12, 13, 14, 15, 16, 17, 18} {
		if err := juliet.SendRaw(ctx, marker(xids[i])); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.alice.Wait(ctx, wait, isRead(room, evs[19], ghost)); err != nil {
		t.Fatalf("no m.read by the ghost on the newest message: %v", err)
	}
	mark := w.alice.Mark()
	if err := juliet.SendRaw(ctx, marker(xids[5])); err != nil {
		t.Fatal(err)
	}
	// Then a new message, marked: its m.read goes out in the room's lane
	// behind anything the old marker could have raised.
	ev, err := w.alice.SendText(ctx, room, "caught up")
	if err != nil {
		t.Fatal(err)
	}
	st, err := juliet.Wait(ctx, wait, isMessage(alicePuppet, "caught up"))
	if err != nil {
		t.Fatal(err)
	}
	if err := juliet.SendRaw(ctx, marker(st.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.WaitSince(ctx, mark, wait, isRead(room, ev, ghost)); err != nil {
		t.Fatalf("no m.read by the ghost on the new message: %v", err)
	}
	for _, ev := range evs[:19] {
		if _, err := w.alice.WaitSince(ctx, mark, 0, isRead(room, ev, ghost)); err == nil {
			t.Errorf("the ghost's m.read moved back to %s", ev)
		}
	}
}

// docs/protocols.md: the puppet speaks from one full JID, as every XMPP account
// does, and a client that answers that full JID is heard: profanity sends
// its XEP-0184 receipt to the sender's full JID, and a reply with <im-ng/>
// to it (XEP-0409 §4: for that client only) is the puppet's own resource.
func TestPuppetSpeaksFromAFullJID(t *testing.T) {
	ctx := context.Background()
	juliet := w.xmppUser(t, "juliet", "fulljid")
	room := openPortal(t, ctx, juliet, "juliet")
	ghost := w.ghost("juliet@localhost")
	alicePuppet := w.puppet(t, w.alice.Client.UserID)
	speaker := alicePuppet + "/" + mapping.PuppetResource

	ev, err := w.alice.SendText(ctx, room, "From a full JID")
	if err != nil {
		t.Fatal(err)
	}
	got, err := juliet.Wait(ctx, wait, isMessage(alicePuppet, "From a full JID"))
	if err != nil {
		t.Fatal(err)
	}
	if got.From != speaker {
		t.Fatalf("the message came from %q, want the puppet's full JID %q", got.From, speaker)
	}
	// The receipt to the full JID it came from, as profanity sends it.
	if err := juliet.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='rcpt-full'><received xmlns='urn:xmpp:receipts' id='%s'/></message>`, peers.XMLEscape(got.From), got.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.Wait(ctx, wait, isStatus(room, ev, event.MessageStatusSuccess)); err != nil {
		t.Fatalf("the receipt to the puppet's full JID did not reach Alice: %v", err)
	}
	if err := juliet.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='imng-own' type='chat'><body>Back to your resource</body><im-ng xmlns='urn:xmpp:im-ng:0'/></message>`, peers.XMLEscape(got.From))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.Wait(ctx, wait, peers.IsText(room, ghost, "Back to your resource")); err != nil {
		t.Fatalf("a reply with im-ng to the puppet's own resource was not bridged: %v", err)
	}
	if n := juliet.Count(isError("imng-own")) + juliet.Count(isError("rcpt-full")); n != 0 {
		t.Errorf("%d error stanzas reached the client", n)
	}
}
