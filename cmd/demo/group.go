package main

import (
	"context"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// demoGroup shows a group portal: Beatrice and Benedick are in an XMPP
// chat room (XEP-0045); Alice joins it through the bot's `join`. A message
// crosses each way, Alice's read becomes one displayed marker that every
// occupant sees, and Benedick's marker becomes his ghost's read receipt.
func demoGroup(ctx context.Context, w *peers.World) error {
	alice := w.Alice
	muc := "messina@" + w.Prosody.MUCDomain
	clients := map[string]*peers.XMPPClient{}
	for _, who := range []string{"beatrice", "benedick"} {
		c, err := w.XMPP(ctx, who, "group")
		if err != nil {
			return err
		}
		defer c.Close()
		nick := strings.ToUpper(who[:1]) + who[1:]
		if err := c.JoinMUC(ctx, timeout, muc, nick); err != nil {
			return err
		}
		clients[nick] = c
	}
	beatrice, benedick := clients["Beatrice"], clients["Benedick"]
	step("Beatrice and Benedick (XMPP) are in the chat room %s; Alice tells the bridge's bot `join %s`", muc, muc)
	portal, err := alice.JoinGroup(ctx, timeout, w.IDs.Bot(), muc)
	if err != nil {
		return err
	}
	in, err := beatrice.Wait(ctx, timeout, func(s *peers.Stanza) bool {
		return s.Name == "presence" && strings.HasPrefix(s.From, muc+"/") && s.Type == "" &&
			s.From != muc+"/Beatrice" && s.From != muc+"/Benedick"
	})
	if err != nil {
		return fmt.Errorf("Alice's puppet never joined the chat: %w", err)
	}
	nick := strings.TrimPrefix(in.From, muc+"/")
	step("Alice joined the room %s the bot opened; her puppet is in the chat as %q", portal, nick)

	out := `<message type='groupchat' to='` + muc + `' id='bea-1'><body>I wonder that you will still be talking, Signior Benedick</body><markable xmlns='urn:xmpp:chat-markers:0'/></message>`
	step("Beatrice says in the room:\n    %s", out)
	if err := beatrice.SendRaw(ctx, out); err != nil {
		return err
	}
	got, err := alice.Wait(ctx, timeout, func(e *event.Event) bool {
		return e.RoomID == portal && e.Type == event.EventMessage && strings.Contains(e.Content.AsMessage().Body, "still be talking")
	})
	if err != nil {
		return err
	}
	step("Alice sees %s from Beatrice's ghost %s: %q", got.ID, got.Sender, got.Content.AsMessage().Body)

	if err := alice.Client.SendReceipt(ctx, portal, got.ID, event.ReceiptTypeRead, struct{}{}); err != nil {
		return err
	}
	marker, err := benedick.Wait(ctx, timeout, func(s *peers.Stanza) bool {
		return s.Name == "message" && s.From == muc+"/"+nick && s.Has(`<displayed`)
	})
	if err != nil {
		return err
	}
	step("Alice reads it; every occupant gets one displayed marker (XEP-0333) naming the room's stanza-id:\n    %s", marker.XML)

	ev, err := alice.SendText(ctx, portal, "What, my dear Lady Disdain! are you yet living?")
	if err != nil {
		return err
	}
	heard, err := benedick.Wait(ctx, timeout, func(s *peers.Stanza) bool {
		return s.Name == "message" && s.From == muc+"/"+nick && strings.Contains(s.Body, "Lady Disdain")
	})
	if err != nil {
		return err
	}
	step("Alice sends %s; Benedick receives it from her puppet:\n    %s", ev, heard.XML)
	sid := heard.RoomStanzaID(muc)
	out = `<message type='groupchat' to='` + muc + `' id='ben-1'><displayed xmlns='urn:xmpp:chat-markers:0' id='` + sid + `'/></message>`
	step("Benedick's client marks it displayed, by the room's stanza-id:\n    %s", out)
	if err := benedick.SendRaw(ctx, out); err != nil {
		return err
	}
	var reader id.UserID
	if _, err := alice.Wait(ctx, timeout, func(e *event.Event) bool {
		c, ok := e.Content.Parsed.(*event.ReceiptEventContent)
		if !ok || e.RoomID != portal {
			return false
		}
		for u := range (*c)[ev][event.ReceiptTypeRead] {
			if w.IDs.IsGhost(u) {
				reader = u
				return true
			}
		}
		return false
	}); err != nil {
		return err
	}
	step("Alice's client shows her message read (m.read) by Benedick's ghost %s", reader)
	return nil
}
