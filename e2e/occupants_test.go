//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/internal/peers"
)

// An occupant of a room without XEP-0421 occupant-ids (Prosody's MUC with
// muc_occupant_id = false) that its owner made non-anonymous
// (muc#roomconfig_whois "anyone"): the room shows every occupant's real
// JID (XEP-0045 §7.2.3, <item jid/>), and a join's own presence says so
// with status 100. Alice joins through the bot: Romeo's ghost is his real
// bare JID's, so his nick change keeps it (renamed) and what he says as
// Montague is his; Tybalt, who takes the nick Romeo left, is his own
// ghost, not Romeo's.
func TestGroupOccupantByRealJID(t *testing.T) {
	ctx := context.Background()
	alice := w.alice
	muc := "verona@" + w.Prosody.MUCNoIDDomain
	send := func(c *peers.XMPPClient, stanza string) { t.Helper(); sendRaw(t, c, stanza) }
	romeo := w.xmppUser(t, "romeo", "occupants")
	tybalt := w.xmppUser(t, "tybalt", "occupants")
	joinMUC(t, romeo, muc, "Romeo")
	send(romeo, `<iq type='set' id='whois' to='`+muc+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>`+
		`<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>`+
		`<field var='muc#roomconfig_whois'><value>anyone</value></field></x></query></iq>`)
	if res, err := romeo.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "whois" }); err != nil || res.Type != "result" {
		t.Fatalf("making the room non-anonymous: %v %v", res, err)
	}
	joinMUC(t, tybalt, muc, "Tybalt")
	// What the bridge builds on: the join's own presence says 100, and
	// the others' carry their real JIDs.
	self, err := tybalt.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "presence" && s.From == muc+"/Tybalt" && s.Has(`code="110"`)
	})
	if err != nil || !self.Has(`code="100"`) {
		t.Fatalf("Tybalt's own presence in a non-anonymous room has no status 100 (XEP-0045 §7.2.3): %v %v", self, err)
	}
	if s, err := tybalt.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "presence" && s.From == muc+"/Romeo" }); err != nil ||
		!s.Has(`jid="romeo@localhost/`) || s.Has("urn:xmpp:occupant-id:0") {
		t.Fatalf("Romeo's presence to Tybalt: want his real JID and no occupant-id: %v %v", s, err)
	}
	portal := aliceJoinsGroup(t, muc)
	puppetNick(t, romeo, muc, "Romeo", "Tybalt")
	ghostOf := func(bare string) id.UserID {
		g, err := w.IDs.OccupantGhost(jid.MustParse(muc), bare)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	romeoGhost, tybaltGhost := ghostOf("romeo@localhost"), ghostOf("tybalt@localhost")
	named := func(ghost id.UserID, nick string) func(e *event.Event) bool {
		return func(e *event.Event) bool {
			return e.RoomID == portal && e.Type == event.StateMember && e.GetStateKey() == string(ghost) &&
				strings.HasPrefix(e.Content.AsMember().Displayname, nick)
		}
	}
	if _, err := alice.Wait(ctx, wait, named(romeoGhost, "Romeo")); err != nil {
		t.Fatalf("Romeo's ghost is not his real JID's (%s): %v", romeoGhost, err)
	}
	said := func(body string) *event.Event {
		t.Helper()
		e, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
			return e.RoomID == portal && e.Type == event.EventMessage && e.Content.AsMessage().Body == body
		})
		if err != nil {
			t.Fatalf("%q never reached the portal: %v", body, err)
		}
		return e
	}

	// §7.6: Romeo becomes Montague, the same ghost, renamed.
	send(romeo, `<presence to='`+muc+`/Montague'/>`)
	if _, err := alice.Wait(ctx, wait, named(romeoGhost, "Montague")); err != nil {
		t.Errorf("Romeo's nick change did not rename his ghost: %v", err)
	}
	send(romeo, `<message type='groupchat' to='`+muc+`' id='r1'><body>Wherefore art thou?</body></message>`)
	if e := said("Wherefore art thou?"); e.Sender != romeoGhost {
		t.Errorf("Montague's message is %s's, want Romeo's ghost %s", e.Sender, romeoGhost)
	}
	// Tybalt takes the nick Romeo left: he is still Tybalt.
	send(tybalt, `<presence to='`+muc+`/Romeo'/>`)
	if _, err := romeo.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "presence" && s.From == muc+"/Romeo" && s.Has("tybalt@localhost")
	}); err != nil {
		t.Fatal(err)
	}
	send(tybalt, `<message type='groupchat' to='`+muc+`' id='t1'><body>I am Romeo now</body></message>`)
	if e := said("I am Romeo now"); e.Sender != tybaltGhost {
		t.Errorf("what Tybalt said as Romeo is %s's, want his own ghost %s", e.Sender, tybaltGhost)
	}
}
