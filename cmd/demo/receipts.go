package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// demoReceipts shows receipts crossing both ways: Juliet's client
// acknowledges Alice's message (XEP-0184 received, XEP-0333 displayed) and
// Alice sees it delivered and read; Alice reads Juliet's message and
// Juliet's client gets the receipts it asked for.
func demoReceipts(ctx context.Context, w *peers.World, juliet *peers.XMPPClient, room id.RoomID, fromAlice *peers.Stanza) error {
	alice := w.Alice
	ghost := w.Ghost("juliet@localhost")
	puppet := w.Puppet(alice.Client.UserID)
	aliceEvent, err := alice.Wait(ctx, timeout, func(e *event.Event) bool {
		return e.RoomID == room && e.Sender == alice.Client.UserID && e.Type == event.EventMessage
	})
	if err != nil {
		return err
	}

	// XMPP -> Matrix.
	for _, payload := range []string{
		`<received xmlns='urn:xmpp:receipts' id='` + fromAlice.ID + `'/>`,
		`<displayed xmlns='urn:xmpp:chat-markers:0' id='` + fromAlice.ID + `'/>`,
	} {
		out := fmt.Sprintf(`<message to='%s'>%s</message>`, peers.XMLEscape(puppet), payload)
		step("Juliet's client acknowledges Alice's message:\n    %s", out)
		if err := juliet.SendRaw(ctx, out); err != nil {
			return err
		}
	}
	status, err := alice.Wait(ctx, timeout, func(e *event.Event) bool {
		c, ok := e.Content.Parsed.(*event.BeeperMessageStatusEventContent)
		return e.RoomID == room && ok && c.RelatesTo.EventID == aliceEvent.ID && c.Status == event.MessageStatusSuccess
	})
	if err != nil {
		return err
	}
	c := status.Content.Parsed.(*event.BeeperMessageStatusEventContent)
	step("Alice's client shows her message delivered: %s from %s, status %s, delivered_to_users %v\n    (Dendrite has no MSC4089 m.delivery, so the bridge uses the message_status fallback)",
		status.Type.Type, status.Sender, c.Status, *c.DeliveredToUsers)
	if _, err := alice.Wait(ctx, timeout, func(e *event.Event) bool {
		rc, ok := e.Content.Parsed.(*event.ReceiptEventContent)
		if !ok || e.RoomID != room {
			return false
		}
		_, read := (*rc)[aliceEvent.ID][event.ReceiptTypeRead][ghost]
		return read
	}); err != nil {
		return err
	}
	step("Alice's client shows Juliet's read marker (m.read by %s) on %s", ghost, aliceEvent.ID)

	// Matrix -> XMPP.
	julietEvent, err := alice.Wait(ctx, timeout, func(e *event.Event) bool {
		return e.RoomID == room && e.Sender == ghost && e.Type == event.EventMessage
	})
	if err != nil {
		return err
	}
	step("Alice reads Juliet's message %s (m.read)", julietEvent.ID)
	mark := len(juliet.Stanzas())
	if err := alice.Client.SendReceipt(ctx, room, julietEvent.ID, event.ReceiptTypeRead, struct{}{}); err != nil {
		return err
	}
	// Juliet asked for XEP-0184, XEP-0022 delivered+displayed and XEP-0333.
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n := countReceipts(juliet.Stanzas()[mark:]); n >= 4 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	var got []string
	for _, s := range juliet.Stanzas()[mark:] {
		if s.Name == "message" && s.Body == "" {
			got = append(got, s.XML)
		}
	}
	if len(got) == 0 {
		return fmt.Errorf("no receipts reached Juliet")
	}
	step("Juliet's client receives the receipts she asked for (%d stanzas):\n    %s", len(got), strings.Join(got, "\n    "))
	return nil
}

func countReceipts(ss []*peers.Stanza) int {
	n := 0
	for _, s := range ss {
		if s.Name == "message" && s.Body == "" && (s.Has("urn:xmpp:receipts") || s.Has("jabber:x:event") || s.Has("chat-markers")) {
			n++
		}
	}
	return n
}
