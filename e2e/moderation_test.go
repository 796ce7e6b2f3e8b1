//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// Moderation in a group portal (XEP-0425 0.2), against Prosody's
// multi-user chat with the community mod_muc_moderation and Dendrite:
// Macbeth made the room (its owner, so a moderator), Banquo is in it,
// Alice joins through the bot. Then:
//   - Macbeth moderates Alice's message (§3): the room broadcasts it
//     (§3.1) and Alice sees her event redacted, with his reason;
//   - Macbeth makes her puppet a moderator (XEP-0045 §5.1 roles): the
//     bot gives her the power to redact in the portal; she redacts
//     Banquo's message: Banquo receives the room's moderation of it by
//     her puppet, with her reason, and the bridge does not redact it a
//     second time on Matrix;
//   - Macbeth takes the role back: so does the bot, the power;
//   - with the power from an admin of the portal room but a puppet no
//     moderator, her redaction is refused by the room (§3.2,
//     <forbidden/>): the bot says so in the portal, and Banquo's
//     message stays in the chat.
func TestGroupModeration(t *testing.T) {
	ctx := context.Background()
	alice := w.alice
	muc := "inverness@" + w.Prosody.MUCDomain
	send := func(c *peers.XMPPClient, stanza string) { t.Helper(); sendRaw(t, c, stanza) }
	macbeth := w.xmppUser(t, "macbeth", "moderation")
	banquo := w.xmppUser(t, "banquo", "moderation")
	joinMUC(t, macbeth, muc, "Macbeth")
	joinMUC(t, banquo, muc, "Banquo")
	portal := aliceJoinsGroup(t, muc)
	aliceNick := puppetNick(t, banquo, muc, "Macbeth", "Banquo")
	fromRoom := func(what string, c *peers.XMPPClient, match func(s *peers.Stanza) bool) *peers.Stanza {
		t.Helper()
		s, err := c.Wait(ctx, wait, match)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return s
	}
	isModeration := func(sid string) func(s *peers.Stanza) bool {
		return func(s *peers.Stanza) bool {
			return s.Name == "message" && s.From == muc && s.Has("urn:xmpp:message-moderate:0") && s.Has(`id="`+sid+`"`)
		}
	}
	redactionOf := func(ev id.EventID) func(e *event.Event) bool {
		return func(e *event.Event) bool {
			return e.RoomID == portal && e.Type == event.EventRedaction && redacts(e) == ev
		}
	}

	// XMPP → Matrix: Macbeth, the owner, moderates Alice's message.
	aEv, err := alice.SendText(ctx, portal, "Is this a dagger which I see before me?")
	if err != nil {
		t.Fatal(err)
	}
	fromAlice := fromRoom("Alice's message never reached the room", macbeth, func(s *peers.Stanza) bool {
		return s.Name == "message" && s.From == muc+"/"+aliceNick && strings.Contains(s.Body, "a dagger")
	})
	aSID := roomStanzaID(t, fromAlice, muc)
	send(macbeth, `<iq type='set' to='`+muc+`' id='mod1'><apply-to xmlns='urn:xmpp:fasten:0' id='`+aSID+`'>`+
		`<moderate xmlns='urn:xmpp:message-moderate:0'><retract xmlns='urn:xmpp:message-retract:0'/><reason>Out, damned spot!</reason></moderate></apply-to></iq>`)
	if res := fromRoom("no answer to Macbeth's moderation", macbeth, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "mod1" }); res.Type != "result" {
		t.Fatalf("the room refused its owner's moderation: %s", res.XML)
	}
	broadcast := fromRoom("Banquo never saw the room's moderation", banquo, isModeration(aSID))
	t.Logf("the room's moderation (XEP-0425 0.2 §3.1): %s", broadcast.XML)
	gone, err := alice.Wait(ctx, wait, redactionOf(aEv))
	if err != nil {
		t.Fatalf("Macbeth's moderation did not redact Alice's message: %v", err)
	}
	if r := gone.Content.AsRedaction(); r == nil || r.Reason != "Out, damned spot!" {
		t.Errorf("the redaction's reason is %+v, want Macbeth's", gone.Content.Raw)
	}
	if gone.Sender != w.IDs.Bot() && !w.IDs.IsGhost(gone.Sender) {
		t.Errorf("the redaction is %s's, want the bot's or Macbeth's ghost's", gone.Sender)
	}
	t.Logf("the moderation was redacted on Matrix by %s", gone.Sender)

	say := func(xid, body string) (id.EventID, string) {
		t.Helper()
		send(banquo, `<message type='groupchat' to='`+muc+`' id='`+xid+`'><body>`+body+`</body></message>`)
		reflected := fromRoom("the room did not reflect Banquo's message", banquo, func(s *peers.Stanza) bool { return s.Name == "message" && s.ID == xid })
		ev, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
			return e.RoomID == portal && e.Type == event.EventMessage && e.Content.AsMessage().Body == body
		})
		if err != nil {
			t.Fatalf("Banquo's message never reached the portal: %v", err)
		}
		return ev.ID, roomStanzaID(t, reflected, muc)
	}
	alicePower := func(level int) func(e *event.Event) bool {
		return func(e *event.Event) bool {
			if e.RoomID != portal || e.Type != event.StatePowerLevels || e.Sender != w.IDs.Bot() {
				return false
			}
			return e.Content.AsPowerLevels().GetUserLevel(alice.Client.UserID) == level
		}
	}
	setRole := func(id, role string) {
		t.Helper()
		send(macbeth, `<iq type='set' to='`+muc+`' id='`+id+`'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='`+peers.XMLEscape(aliceNick)+`' role='`+role+`'/></query></iq>`)
		if s := fromRoom("no answer to the role change", macbeth, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == id }); s.Type != "result" {
			t.Fatalf("Macbeth could not make Alice's puppet a %s: %s", role, s.XML)
		}
	}

	// Matrix → XMPP: Macbeth makes Alice's puppet a moderator; the bot
	// gives her the power to redact in the portal, and her redaction of
	// Banquo's message is her puppet's moderation of it.
	mark := alice.Mark()
	setRole("role1", "moderator")
	if _, err := alice.WaitSince(ctx, mark, wait, alicePower(50)); err != nil {
		t.Fatalf("the bot did not give Alice the power to redact when her puppet became a moderator: %v", err)
	}
	bEv, bSID := say("b1", "Thou hast it now: King, Cawdor, Glamis, all")
	if _, err := alice.Client.RedactEvent(ctx, portal, bEv, mautrix.ReqRedact{Reason: "Hence, horrible shadow!"}); err != nil {
		t.Fatal(err)
	}
	moderation := fromRoom("Banquo never received the moderation of his message", banquo, isModeration(bSID))
	t.Logf("Alice's moderation as the room broadcast it: %s", moderation.XML)
	if !moderation.Has(`by="`+muc+"/"+aliceNick+`"`) || !moderation.Has("Hence, horrible shadow!") || !moderation.Has("urn:xmpp:message-retract:0") {
		t.Errorf("the moderation does not name her puppet, her reason and a retraction: %s", moderation.XML)
	}
	// What Banquo says next reaches Matrix after the room's broadcast of
	// Alice's moderation: by then the bridge has read it, and it must not
	// have redacted his message a second time.
	say("b2", "I fear thou play'dst most foully for it")
	if n := len(alice.Events(redactionOf(bEv))); n != 1 {
		t.Errorf("Banquo's message was redacted %d times on Matrix, want once (Alice's own)", n)
	}

	// Macbeth takes the role back: so does the bot, the power.
	mark = alice.Mark()
	setRole("role2", "participant")
	if _, err := alice.WaitSince(ctx, mark, wait, alicePower(0)); err != nil {
		t.Fatalf("the bot did not take Alice's power back when her puppet stopped being a moderator: %v", err)
	}

	// Refused (§3.2): an admin of the portal room (here the test, as the
	// bot that made it) gives Alice the power again; her puppet is no
	// moderator, the room says <forbidden/>, and she is told.
	asBot(t).SetPowerLevel(ctx, portal, alice.Client.UserID, 50)
	cEv, cSID := say("b3", "Fail not our feast")
	mark = alice.Mark()
	if _, err := alice.Client.RedactEvent(ctx, portal, cEv, mautrix.ReqRedact{Reason: "Treason"}); err != nil {
		t.Fatal(err)
	}
	told, err := alice.WaitSince(ctx, mark, wait, func(e *event.Event) bool {
		return e.RoomID == portal && e.Sender == w.IDs.Bot() && e.Type == event.EventMessage &&
			strings.Contains(e.Content.AsMessage().Body, "did not retract the message")
	})
	if err != nil {
		t.Fatalf("Alice was not told that the room refused her moderation: %v", err)
	}
	t.Logf("the portal says: %s", told.Content.AsMessage().Body)
	if !strings.Contains(told.Content.AsMessage().Body, "not one of its moderators") {
		t.Errorf("the bot said %q, want that her puppet is no moderator", told.Content.AsMessage().Body)
	}
	if banquo.Count(isModeration(cSID)) != 0 {
		t.Errorf("the refused moderation of %s was carried out", cSID)
	}
}

// asBot is a client of the homeserver as the bridge's bot (its
// registration's as_token), for a test to act as an admin of a portal.
func asBot(t *testing.T) *botClient {
	t.Helper()
	reg, err := appservice.LoadRegistration(w.Bridge.Registr)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := mautrix.NewClient(w.Dendrite.URL, w.IDs.Bot(), reg.AppToken)
	if err != nil {
		t.Fatal(err)
	}
	return &botClient{t: t, cli: cli}
}

type botClient struct {
	t   *testing.T
	cli *mautrix.Client
}

// SetPowerLevel gives user level in room.
func (b *botClient) SetPowerLevel(ctx context.Context, room id.RoomID, user id.UserID, level int) {
	b.t.Helper()
	var pl event.PowerLevelsEventContent
	if err := b.cli.StateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		b.t.Fatal(err)
	}
	pl.SetUserLevel(user, level)
	if _, err := b.cli.SendStateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		b.t.Fatal(err)
	}
}
