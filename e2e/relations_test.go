//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// docs/protocols.md: what points at a message crosses through the id map, with the
// real Prosody and Dendrite. From XMPP: a XEP-0308 correction is an
// m.replace of the original event, a XEP-0444 reaction an m.reaction on
// it, a XEP-0461 reply an m.in_reply_to without its XEP-0428 quote, a
// XEP-0424 retraction a redaction; a correction from a third JID changes
// nothing; a bridge restart between a message and its correction keeps
// the link.
func TestRelationsFromXMPP(t *testing.T) {
	ctx := context.Background()
	hero := w.xmppUser(t, "hero", "garden")
	room := openPortal(t, ctx, hero, "hero")
	ghost := w.ghost("hero@localhost")
	alice := w.alice
	puppet := peers.XMLEscape(w.puppet(t, alice.Client.UserID))
	send := func(c *peers.XMPPClient, raw string) {
		t.Helper()
		if err := c.SendRaw(ctx, raw); err != nil {
			t.Fatal(err)
		}
	}
	waitEvent := func(what string, match func(*event.Event) bool) *event.Event {
		t.Helper()
		evt, err := alice.Wait(ctx, wait, match)
		if err != nil {
			t.Fatalf("%s never reached Alice: %v", what, err)
		}
		return evt
	}

	// XEP-0393 styling becomes the formatted body.
	send(hero, `<message to='`+puppet+`' id='styled1' type='chat'><body>It is *my lady*, O it is _my love_!</body></message>`)
	styled := waitEvent("the styled message", peers.IsText(room, ghost, "It is *my lady*, O it is _my love_!"))
	if c := styled.Content.AsMessage(); c.Format != event.FormatHTML || !strings.Contains(c.FormattedBody, "<strong>") || !strings.Contains(c.FormattedBody, "<em>") {
		t.Errorf("styled message: format %q, formatted body %q", c.Format, c.FormattedBody)
	}
	send(hero, `<message to='`+puppet+`' id='bad1' type='chat'><body>But soft, what light through yonder airlock breaks?</body></message>`)
	original := waitEvent("the message", peers.IsText(room, ghost, "But soft, what light through yonder airlock breaks?"))

	// The bridge stops and starts between the message and its correction.
	if err := w.Bridge.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := w.Bridge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// XEP-0308 §3, Example 3, from Romeo first, who did not send it.
	romeo := w.xmppUser(t, "romeo", "relations")
	send(romeo, `<message to='`+puppet+`' id='good0' type='chat'><body>But soft, what light through yonder door breaks?</body><replace id='bad1' xmlns='urn:xmpp:message-correct:0'/></message>`)
	send(romeo, `<message to='`+puppet+`' id='retract0' type='chat'><retract id='bad1' xmlns='urn:xmpp:message-retract:1'/><body>/me retracted a previous message</body></message>`)
	send(hero, `<message to='`+puppet+`' id='good1' type='chat'><body>But soft, what light through yonder window breaks?</body><replace id='bad1' xmlns='urn:xmpp:message-correct:0'/></message>`)
	edit := waitEvent("the correction", func(e *event.Event) bool {
		c := e.Content.AsMessage()
		return e.RoomID == room && e.Sender == ghost && c.RelatesTo != nil && c.RelatesTo.Type == event.RelReplace
	})
	c := edit.Content.AsMessage()
	if c.RelatesTo.EventID != original.ID || c.NewContent == nil || c.NewContent.Body != "But soft, what light through yonder window breaks?" {
		t.Errorf("edit %s: relates to %s (want %s), new content %+v", edit.ID, c.RelatesTo.EventID, original.ID, c.NewContent)
	}

	// XEP-0444 §3, Example 3: a reaction, then the whole set again with
	// one more; the ghost adds only the new key.
	react := func(xid string, keys ...string) {
		var b strings.Builder
		for _, k := range keys {
			b.WriteString("<reaction>" + k + "</reaction>")
		}
		send(hero, `<message to='`+puppet+`' id='`+xid+`' type='chat'><reactions id='bad1' xmlns='urn:xmpp:reactions:0'>`+b.String()+`</reactions><store xmlns='urn:xmpp:hints'/></message>`)
	}
	isReaction := func(key string) func(*event.Event) bool {
		return func(e *event.Event) bool {
			if e.RoomID != room || e.Sender != ghost || e.Type != event.EventReaction {
				return false
			}
			r := e.Content.AsReaction()
			return r.RelatesTo.EventID == original.ID && r.RelatesTo.Key == key
		}
	}
	react("react1", "👋")
	wave := waitEvent("the reaction", isReaction("👋"))
	react("react2", "👋", "🐢")
	waitEvent("the second reaction", isReaction("🐢"))
	// Taking 👋 back redacts the ghost's reaction.
	react("react3", "🐢")
	waitEvent("the redaction of the reaction", func(e *event.Event) bool {
		return e.Type == event.EventRedaction && e.Sender == ghost && redacts(e) == wave.ID
	})
	if n := len(alice.Events(isReaction("👋"))); n != 1 {
		t.Errorf("%d 👋 reactions: the set was not sent as a difference", n)
	}

	// XEP-0461 §3 with a XEP-0428 fallback: a reply to Alice's message.
	if _, err := alice.SendText(ctx, room, "Speak again, bright angel"); err != nil {
		t.Fatal(err)
	}
	mine, err := hero.Wait(ctx, wait, isMessage(w.puppet(t, alice.Client.UserID), "Speak again, bright angel"))
	if err != nil {
		t.Fatal(err)
	}
	quote := "> Speak again, bright angel\n"
	send(hero, fmt.Sprintf(`<message to='%s' id='reply1' type='chat'><body>%sI will</body><reply to='%s' id='%s' xmlns='urn:xmpp:reply:0'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='%d'/></fallback></message>`,
		puppet, peers.XMLEscape(quote), puppet, mine.ID, len([]rune(quote))))
	reply := waitEvent("the reply", func(e *event.Event) bool {
		c := e.Content.AsMessage()
		return e.RoomID == room && e.Sender == ghost && c.RelatesTo != nil && c.RelatesTo.InReplyTo != nil
	})
	if c := reply.Content.AsMessage(); c.Body != "I will" || c.RelatesTo.InReplyTo.EventID == "" {
		t.Errorf("reply body %q in reply to %q: want the quote cut", c.Body, c.RelatesTo.InReplyTo.EventID)
	} else if ev, _ := alice.Wait(ctx, time.Second, peers.IsText(room, alice.Client.UserID, "Speak again, bright angel")); ev != nil && c.RelatesTo.InReplyTo.EventID != ev.ID {
		t.Errorf("reply to %s, want Alice's %s", c.RelatesTo.InReplyTo.EventID, ev.ID)
	}

	// XEP-0424 §3, Example 3: the retraction redacts the original.
	send(hero, `<message to='`+puppet+`' id='retract1' type='chat'><retract id='bad1' xmlns='urn:xmpp:message-retract:1'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/><body>This person attempted to retract a previous message, but it's unsupported by your client.</body><store xmlns='urn:xmpp:hints'/></message>`)
	retraction := waitEvent("the retraction", func(e *event.Event) bool {
		return e.Type == event.EventRedaction && redacts(e) == original.ID
	})
	if retraction.Sender != ghost {
		t.Errorf("the original was redacted by %s, not by the ghost of its sender", retraction.Sender)
	}
	if n := len(alice.Events(func(e *event.Event) bool { return e.Type == event.EventRedaction && redacts(e) == original.ID })); n != 1 {
		t.Errorf("the original was redacted %d times, want once (Romeo's retraction is not his to make)", n)
	}
	for _, e := range alice.Events(func(e *event.Event) bool { return e.RoomID == room }) {
		if c := e.Content.AsMessage(); c != nil && (strings.Contains(c.Body, "door") || strings.Contains(c.Body, "retract")) {
			t.Errorf("bridged as a message: %q", c.Body)
		}
	}
}

// messageFrom waits for a message to c from from (a bare JID or a full
// one's start) that match accepts; what names it in a failure.
func messageFrom(t *testing.T, ctx context.Context, c *peers.XMPPClient, from, what string, match func(*peers.Stanza) bool) *peers.Stanza {
	t.Helper()
	s, err := c.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "message" && strings.HasPrefix(s.From, from) && match(s) })
	if err != nil {
		t.Fatalf("%s never reached the XMPP client: %v", what, err)
	}
	return s
}

// aliceSends has Alice send an event of typ with content to room.
func aliceSends(t *testing.T, ctx context.Context, room id.RoomID, typ event.Type, content any) id.EventID {
	t.Helper()
	resp, err := w.alice.Client.SendMessageEvent(ctx, room, typ, content)
	if err != nil {
		t.Fatal(err)
	}
	return resp.EventID
}

// redacts is the event a redaction removes, wherever its room version
// puts it.
func redacts(e *event.Event) id.EventID {
	if e.Redacts != "" {
		return e.Redacts
	}
	if r := e.Content.AsRedaction(); r != nil {
		return r.Redacts
	}
	return ""
}

// docs/protocols.md, from Matrix: Alice's edit reaches the XMPP client as a
// XEP-0308 <replace/> of the original's id, her reaction as XEP-0444
// <reactions/> with her set, its redaction as the set without it (read by
// the bot's /sync: Dendrite pushes no redaction to application services),
// her reply as XEP-0461 <reply/> with a XEP-0428 quote, and the redaction
// of her message as a XEP-0424 <retract/>.
func TestRelationsFromMatrix(t *testing.T) {
	ctx := context.Background()
	claudio := w.xmppUser(t, "claudio", "church")
	room := openPortal(t, ctx, claudio, "claudio")
	alice := w.alice
	from := w.puppet(t, alice.Client.UserID)
	waitStanza := func(what string, match func(*peers.Stanza) bool) *peers.Stanza {
		t.Helper()
		return messageFrom(t, ctx, claudio, from, what, match)
	}
	sendEvent := func(typ event.Type, content any) id.EventID {
		t.Helper()
		return aliceSends(t, ctx, room, typ, content)
	}

	// A formatted body reaches XMPP as XEP-0393 styling.
	sendEvent(event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: "**Sigh no more**, ladies", Format: event.FormatHTML, FormattedBody: "<strong>Sigh no more</strong>, ladies"})
	waitStanza("the formatted message", func(s *peers.Stanza) bool { return s.Body == "*Sigh no more*, ladies" })

	ev, err := alice.SendText(ctx, room, "Is it not strange")
	if err != nil {
		t.Fatal(err)
	}
	msg := waitStanza("the message", func(s *peers.Stanza) bool { return s.Body == "Is it not strange" })

	sendEvent(event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "* Is it not strange?",
		NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "Is it not strange?"},
		RelatesTo:  &event.RelatesTo{Type: event.RelReplace, EventID: ev},
	})
	waitStanza("the edit", func(s *peers.Stanza) bool {
		return s.Body == "Is it not strange?" && s.Has(`urn:xmpp:message-correct:0`) && s.Has(`id="`+msg.ID+`"`)
	})

	// Claudio's first message, the one openPortal sent, by its event.
	first := alice.Events(peers.IsText(room, w.ghost("claudio@localhost"), "Wherefore art thou, Alice? (claudio)"))
	if len(first) == 0 {
		t.Fatal("the first message is not in Alice's timeline")
	}
	reaction := sendEvent(event.EventReaction, &event.ReactionEventContent{RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: first[0].ID, Key: "👍"}})
	waitStanza("the reaction", func(s *peers.Stanza) bool {
		return s.Has(`urn:xmpp:reactions:0`) && s.Has(`id="first-claudio"`) && s.Has("👍")
	})
	if _, err := alice.Client.RedactEvent(ctx, room, reaction); err != nil {
		t.Fatal(err)
	}
	waitStanza("the reaction's removal", func(s *peers.Stanza) bool {
		return s.Has(`urn:xmpp:reactions:0`) && s.Has(`id="first-claudio"`) && !s.Has("👍")
	})

	sendEvent(event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "I will not",
		RelatesTo: &event.RelatesTo{InReplyTo: &event.InReplyTo{EventID: first[0].ID}},
	})
	reply := waitStanza("the reply", func(s *peers.Stanza) bool { return s.Has(`urn:xmpp:reply:0`) })
	if !reply.Has(`id="first-claudio"`) || !reply.Has(`to="claudio@localhost"`) || !strings.HasPrefix(reply.Body, "> Wherefore art thou") || !strings.HasSuffix(reply.Body, "I will not") || !reply.Has(`urn:xmpp:fallback:0`) {
		t.Errorf("reply: %s", reply.XML)
	}

	if _, err := alice.Client.RedactEvent(ctx, room, ev, mautrix.ReqRedact{Reason: "wrong chat"}); err != nil {
		t.Fatal(err)
	}
	waitStanza("the retraction", func(s *peers.Stanza) bool {
		return s.Has(`urn:xmpp:message-retract:1`) && s.Has(`id="`+msg.ID+`"`)
	})
}
