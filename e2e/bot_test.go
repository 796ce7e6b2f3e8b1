//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// The bot (docs/users.md, The bot's commands): Alice DMs the bot. help answers; start seacoal@localhost opens
// a working portal; start not a jid answers an error and creates nothing;
// list names seacoal; receipts off stops her m.read from reaching XMPP and
// receipts on restores it. Every answer is an m.notice from the bot, with
// an HTML body.
func TestBotInAManagementRoom(t *testing.T) {
	ctx := context.Background()
	alice := w.alice
	bot := w.IDs.Bot()
	room, err := alice.CreateDM(ctx, bot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, peers.IsMembership(room, bot, event.MembershipJoin)); err != nil {
		t.Fatalf("the bot never joined its DM: %v", err)
	}
	ask := func(text, want string) *event.Event {
		t.Helper()
		mark := alice.Mark()
		if _, err := alice.SendText(ctx, room, text); err != nil {
			t.Fatal(err)
		}
		e, err := alice.WaitSince(ctx, mark, wait, func(e *event.Event) bool {
			c := e.Content.AsMessage()
			return e.RoomID == room && e.Sender == bot && c.MsgType == event.MsgNotice && strings.Contains(c.Body, want)
		})
		if err != nil {
			t.Fatalf("%q: no notice saying %q: %v", text, want, err)
		}
		if c := e.Content.AsMessage(); c.Format != event.FormatHTML || c.FormattedBody == "" {
			t.Errorf("%q: the answer has no HTML body: %+v", text, c)
		}
		return e
	}
	ask("help", "start <jid>")
	invites := len(alice.Events(func(e *event.Event) bool {
		return e.Type == event.StateMember && e.Content.AsMember().Membership == event.MembershipInvite
	}))
	ask("start not a jid", "is not the address of an XMPP person")

	seacoal := w.xmppUser(t, "seacoal", "watch")
	ghost := w.ghost("seacoal@localhost")
	ask("start seacoal@localhost", "Opened a chat with seacoal@localhost")
	invite, err := alice.Wait(ctx, wait, peers.IsInvite(alice.Client.UserID, ghost))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(alice.Events(func(e *event.Event) bool {
		return e.Type == event.StateMember && e.Content.AsMember().Membership == event.MembershipInvite
	})); n != invites+1 {
		t.Errorf("%d invites since the bad start, want only seacoal's", n-invites)
	}
	portal := invite.RoomID
	if _, err := alice.Client.JoinRoomByID(ctx, portal); err != nil {
		t.Fatal(err)
	}
	if got := ask("list", "seacoal@localhost").Content.AsMessage().Body; !strings.Contains(got, string(portal)) {
		t.Errorf("list: %q", got)
	}
	// A working portal: Seacoal's message reaches it, asking for a
	// displayed marker (XEP-0333).
	puppet := peers.XMLEscape(w.puppet(t, alice.Client.UserID))
	read := func(xid string) id.EventID {
		t.Helper()
		body := "Are you good men and true? " + xid
		if err := seacoal.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='%s' type='chat'><body>%s</body><markable xmlns='urn:xmpp:chat-markers:0'/></message>`, puppet, xid, body)); err != nil {
			t.Fatal(err)
		}
		e, err := alice.Wait(ctx, wait, peers.IsText(portal, ghost, body))
		if err != nil {
			t.Fatal(err)
		}
		if err := alice.Client.SendReceipt(ctx, portal, e.ID, event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		return e.ID
	}
	displayed := func(xid string) func(*peers.Stanza) bool {
		return func(s *peers.Stanza) bool {
			return s.Name == "message" && s.Has("urn:xmpp:chat-markers:0") && s.Has("<displayed") && s.Has(`id="`+xid+`"`)
		}
	}
	ask("receipts off", "no longer reach XMPP")
	read("s1")
	ask("receipts on", "reach XMPP again")
	read("s2")
	if _, err := seacoal.Wait(ctx, wait, displayed("s2")); err != nil {
		t.Fatalf("with receipts on again, Alice's read never reached XMPP: %v", err)
	}
	if n := seacoal.Count(displayed("s1")); n != 0 {
		t.Errorf("Alice's read of s1, with her receipts off, reached XMPP")
	}
}
