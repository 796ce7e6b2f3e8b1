//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"xmppbridge/internal/peers"
)

// Group portals on ejabberd 23.01 (Debian's) and Dendrite, in a world of
// their own (ejabberd, a second Dendrite, a second bridge), started once
// for all the steps: what ejabberd's mod_muc does (mucFacts), then the
// group tests that run on Prosody too (groupPortal, groupRelations,
// groupRoomState, groupJoinByAlias, groupJoinWithNickAndPassword,
// groupOccupantByRealJID), each
// expecting what ejabberd does where it differs (mucTraits), and a room
// without stanza-ids, as ejabberd makes rooms by default.
func TestEjabberdGroups(t *testing.T) {
	start := time.Now()
	ew, logPath, err := startWorld(peers.WorldOptions{Ejabberd: true, XMPPUsers: []string{"juliet", "romeo", "benvolio", "tybalt", "beatrice", "claudio", "macbeth", "banquo", "dogberry", "benedick", "hero"}})
	if err != nil {
		t.Fatalf("setting up ejabberd, Dendrite and the bridge: %v", err)
	}
	t.Cleanup(func() {
		ew.Stop()
		if msg := keepLogs(logPath, t.Failed()); msg != "" {
			t.Log(msg)
		}
	})
	t.Logf("ejabberd, Dendrite and the bridge up in %v", time.Since(start))
	t.Run("MUCFacts", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		mucFacts(ctx, t, ew.Server)
	})
	for _, step := range []struct {
		name string
		run  func(*testing.T, *world)
	}{
		{"GroupPortal", groupPortal},
		{"GroupRelations", groupRelations},
		{"GroupRoomState", groupRoomState},
		{"GroupJoinByAlias", groupJoinByAlias},
		{"GroupJoinWithNickAndPassword", groupJoinWithNickAndPassword},
		{"GroupOccupantByRealJID", groupOccupantByRealJID},
		{"GroupWithoutStanzaIDs", groupWithoutStanzaIDs},
	} {
		t.Run(step.name, func(t *testing.T) { step.run(t, ew) })
	}
	// The room's own presence (mucTraits.roomPresence) came to every
	// puppet that joined, and was taken for the room's, not an occupant's.
	if !strings.Contains(ew.metrics(t), `xmppbridge_events_total{reason="room_itself",what="muc_presence"}`) {
		t.Errorf("/metrics lacks the room's own presence, muc_presence/room_itself")
	}
}

// An ejabberd room that does not archive (its room option mam off, as
// ejabberd makes rooms by default) stamps no stanza-id (XEP-0359 §3):
// Hero turns it off in the chat she made; Alice's message reaches her,
// its reflection carries no stanza-id, and the bridge counts it
// no_stanza_id and marks no message sent: nothing in the room could name
// it.
func groupWithoutStanzaIDs(t *testing.T, w *world) {
	ctx := context.Background()
	muc := "orchard@" + w.Server.Host().MUCDomain
	hero := w.xmppUser(t, "hero", "orchard")
	joinMUC(t, hero, muc, "Hero")
	sendRaw(t, hero, `<iq type='set' id='nomam' to='`+muc+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>`+
		`<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>`+
		`<field var='mam'><value>0</value></field></x></query></iq>`)
	if res, err := hero.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "nomam" }); err != nil || res.Type != "result" {
		t.Fatalf("turning the room's archive off: %v %v", res, err)
	}
	portal := w.aliceJoinsGroup(t, muc)
	aliceNick := puppetNick(t, hero, muc, "Hero")
	ev, err := w.alice.SendText(ctx, portal, "Look where Beatrice, like a lapwing, runs")
	if err != nil {
		t.Fatal(err)
	}
	got, err := hero.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "message" && s.From == muc+"/"+aliceNick && strings.Contains(s.Body, "like a lapwing")
	})
	if err != nil {
		t.Fatalf("Alice's message never reached the room: %v", err)
	}
	if got.RoomStanzaID(muc) != "" {
		t.Fatalf("a room without its archive stamped a stanza-id: %s", got.XML)
	}
	const counted = `xmppbridge_events_total{reason="no_stanza_id",what="xmpp_message"}`
	for deadline := time.Now().Add(wait); !strings.Contains(w.metrics(t), counted); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the reflection without a stanza-id was never counted (%s)", counted)
		}
	}
	if sent := w.alice.Events(isStatus(portal, ev, event.MessageStatusSuccess)); len(sent) != 0 {
		t.Errorf("Alice's message was marked sent by a reflection without a stanza-id: %v", sent[0].Content.Raw)
	}
}
