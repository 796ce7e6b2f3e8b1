//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// bothWays has Alice write in room to the XMPP person user (logged in as
// c) and user answer her puppet: each message must arrive.
func bothWays(t *testing.T, ctx context.Context, room id.RoomID, user string, c *peers.XMPPClient) {
	t.Helper()
	alice := w.alice
	toXMPP := "Still there, " + user + "?"
	if _, err := alice.SendText(ctx, room, toXMPP); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, wait, isMessage(w.puppet(t, alice.Client.UserID), toXMPP)); err != nil {
		t.Fatalf("Alice's message in %s never reached %s: %v", room, user, err)
	}
	toMatrix := "Still here, says " + user
	if err := c.SendRaw(ctx, `<message to='`+peers.XMLEscape(w.puppet(t, alice.Client.UserID))+`' id='back-`+user+`' type='chat'><body>`+toMatrix+`</body></message>`); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, peers.IsText(room, w.ghost(user+"@localhost"), toMatrix)); err != nil {
		t.Fatalf("%s's answer never reached %s: %v", user, room, err)
	}
}

// Alice tries a group chat the way anyone would: a private room, one ghost
// invited, then a second. The bridge carries one XMPP contact per room for
// now, so the second ghost joins to say so in a notice, naming the contact
// the room already talks to, and leaves; the count says why (matrix_invite,
// second_ghost). The first portal keeps carrying messages both ways, and
// so does a DM Alice opens afterwards with a third person: the refused
// invite stops nobody (before, its portal could never be stored, and every
// transaction behind it waited for it forever).
func TestSecondGhostInRoomDeclines(t *testing.T) {
	ctx := context.Background()
	for _, u := range []string{"chorus", "apothecary", "capulet"} {
		if err := w.Prosody.Register(u, peers.Password); err != nil {
			t.Fatal(err)
		}
	}
	alice := w.alice
	first, second := w.ghost("chorus@localhost"), w.ghost("apothecary@localhost")
	chorus := w.xmppUser(t, "chorus", "globe")
	capulet := w.xmppUser(t, "capulet", "hall")

	created, err := alice.Client.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Verona", Invite: []id.UserID{first}})
	if err != nil {
		t.Fatal(err)
	}
	room := created.RoomID
	if _, err := alice.Wait(ctx, wait, peers.IsMembership(room, first, event.MembershipJoin)); err != nil {
		t.Fatalf("the first ghost never joined: %v", err)
	}
	mark := alice.Mark()
	if _, err := alice.Client.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: second}); err != nil {
		t.Fatal(err)
	}
	// It says why in the room (Dendrite drops the reason of a declined
	// invite), then leaves with the reason.
	said, err := alice.WaitSince(ctx, mark, wait, func(e *event.Event) bool {
		return e.RoomID == room && e.Sender == second && e.Type == event.EventMessage
	})
	if err != nil {
		t.Fatalf("the second ghost never said why it declines: %v", err)
	}
	if msg := said.Content.AsMessage(); msg.MsgType != event.MsgNotice || !strings.Contains(msg.Body, "one XMPP contact per room") || !strings.Contains(msg.Body, "chorus@localhost") {
		t.Errorf("the second ghost said %s %q; want a notice of the rule and the contact the room talks to", msg.MsgType, msg.Body)
	}
	if _, err := alice.WaitSince(ctx, mark, wait, peers.IsMembership(room, second, event.MembershipLeave)); err != nil {
		t.Fatalf("the second ghost never left: %v", err)
	}

	bothWays(t, ctx, room, "chorus", chorus)
	dm, err := alice.CreateDM(ctx, w.ghost("capulet@localhost"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, peers.IsMembership(dm, w.ghost("capulet@localhost"), event.MembershipJoin)); err != nil {
		t.Fatalf("the third ghost never joined its DM: %v", err)
	}
	bothWays(t, ctx, dm, "capulet", capulet)

	metrics := w.metrics(t)
	if !strings.Contains(metrics, `xmppbridge_events_total{reason="second_ghost",what="matrix_invite"} `) ||
		!strings.Contains(metrics, "\nxmppbridge_set_aside ") {
		t.Errorf("metrics: %s\n%s", grepLines(metrics, "second_ghost"), grepLines(metrics, "set_aside"))
	}
}

// A message from Matrix holding U+0000 (JSON's \u0000, which Dendrite
// takes and PostgreSQL would refuse in text) reaches XMPP without it, and
// the messages after it follow.
func TestNULBodyFromMatrix(t *testing.T) {
	ctx := context.Background()
	if err := w.Prosody.Register("sexton", peers.Password); err != nil {
		t.Fatal(err)
	}
	sexton := w.xmppUser(t, "sexton", "churchyard")
	ghost := w.ghost("sexton@localhost")
	room, err := w.alice.CreateDM(ctx, ghost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.Wait(ctx, wait, peers.IsMembership(room, ghost, event.MembershipJoin)); err != nil {
		t.Fatalf("the ghost never joined: %v", err)
	}
	content := map[string]any{"msgtype": "m.text", "body": "Hi\u0000 there"}
	if _, err := w.alice.Client.SendMessageEvent(ctx, room, event.EventMessage, content); err != nil {
		t.Fatal(err)
	}
	if _, err := sexton.Wait(ctx, wait, isMessage(w.puppet(t, w.alice.Client.UserID), "Hi there")); err != nil {
		t.Fatalf("the message with U+0000 never reached XMPP without it: %v", err)
	}
	bothWays(t, ctx, room, "sexton", sexton)
}
