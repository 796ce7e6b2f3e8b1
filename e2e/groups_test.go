//go:build e2e

package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/internal/peers"
)

// A group portal against Prosody's multi-user chat (XEP-0045) and
// Dendrite: Beatrice and Claudio are occupants of a room; Alice tells the
// bot `join`, accepts the invite, and her puppet joins the room. Then,
// both ways:
//   - Beatrice's markable message reaches the room as her ghost's;
//   - Alice's m.read on it becomes one XEP-0333 <displayed/> from her
//     puppet to the room naming the room's stanza-id (XEP-0333 §3,
//     "groupchat": a marker in a room refers to the id the room gave),
//     which every occupant sees once;
//   - Alice's message reaches the occupants as groupchat, markable and
//     asking no receipt (XEP-0184 §5.3: not in groupchat), and the room's
//     reflection marks it sent on Matrix;
//   - Claudio's displayed marker naming the room's stanza-id of Alice's
//     message becomes his ghost's m.read on her event;
//   - killed (SIGKILL) and started again, the bridge is back in the room;
//   - Alice leaves the room, and her puppet the chat.
func TestGroupPortal(t *testing.T) {
	ctx := context.Background()
	alice := w.alice
	muc := "messina@" + w.Prosody.MUCDomain
	send := func(c *peers.XMPPClient, stanza string) {
		t.Helper()
		if err := c.SendRaw(ctx, stanza); err != nil {
			t.Fatal(err)
		}
	}
	beatrice := w.xmppUser(t, "beatrice", "group")
	claudio := w.xmppUser(t, "claudio", "group")
	joinMUC(t, beatrice, muc, "Beatrice")
	joinMUC(t, claudio, muc, "Claudio")
	portal := aliceJoinsGroup(t, muc)
	// Her puppet joins the room: the occupants see it come.
	puppetIn, err := beatrice.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "presence" && strings.HasPrefix(s.From, muc+"/") && s.Type == "" &&
			s.From != muc+"/Beatrice" && s.From != muc+"/Claudio"
	})
	if err != nil {
		t.Fatalf("Alice's puppet never joined the chat: %v", err)
	}
	aliceNick := strings.TrimPrefix(puppetIn.From, muc+"/")
	t.Logf("Alice's puppet is in the chat as %q", aliceNick)

	// XMPP → Matrix: Beatrice's message, as her ghost's.
	send(beatrice, `<message type='groupchat' to='`+muc+`' id='b1'><body>Is it possible he should know what he is, and be so?</body><markable xmlns='urn:xmpp:chat-markers:0'/></message>`)
	reflected, err := beatrice.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "message" && s.ID == "b1" && s.From == muc+"/Beatrice" })
	if err != nil {
		t.Fatalf("the room did not reflect Beatrice's message: %v", err)
	}
	bSID := roomStanzaID(t, reflected, muc)
	got, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
		return e.RoomID == portal && e.Type == event.EventMessage && strings.Contains(e.Content.AsMessage().Body, "be so?")
	})
	if err != nil {
		t.Fatalf("Beatrice's message never reached the portal: %v", err)
	}
	if !w.IDs.IsGhost(got.Sender) {
		t.Errorf("Beatrice's message came from %s, not a ghost", got.Sender)
	}
	if _, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
		return e.RoomID == portal && e.Type == event.StateMember && e.GetStateKey() == string(got.Sender) &&
			strings.HasPrefix(e.Content.AsMember().Displayname, "Beatrice")
	}); err != nil {
		t.Errorf("Beatrice's ghost is not named after her nick: %v", err)
	}

	// Matrix → XMPP: Alice's m.read, one groupchat marker by stanza-id.
	if err := alice.Client.SendReceipt(ctx, portal, got.ID, event.ReceiptTypeRead, struct{}{}); err != nil {
		t.Fatal(err)
	}
	isAliceMarker := func(s *peers.Stanza) bool {
		return s.Name == "message" && s.From == muc+"/"+aliceNick && s.Type == "groupchat" &&
			s.Has(`urn:xmpp:chat-markers:0`) && s.Has(`<displayed`)
	}
	marker, err := beatrice.Wait(ctx, wait, isAliceMarker)
	if err != nil {
		t.Fatalf("Alice's m.read did not reach the room as a displayed marker: %v", err)
	}
	if !marker.Has(`id="`+bSID+`"`) && !marker.Has(`id='`+bSID+`'`) {
		t.Errorf("the marker does not name the room's stanza-id %s (XEP-0333 §3, groupchat): %s", bSID, marker.XML)
	}
	if _, err := claudio.Wait(ctx, wait, isAliceMarker); err != nil {
		t.Errorf("Claudio did not see Alice's marker: %v", err)
	}

	// Matrix → XMPP: Alice's message, and its reflection marks it sent.
	ev, err := alice.SendText(ctx, portal, "Sigh no more, ladies, sigh no more")
	if err != nil {
		t.Fatal(err)
	}
	fromAlice, err := claudio.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "message" && s.From == muc+"/"+aliceNick && strings.Contains(s.Body, "Sigh no more")
	})
	if err != nil {
		t.Fatalf("Alice's message never reached the room: %v", err)
	}
	if fromAlice.Type != "groupchat" || !fromAlice.Has("urn:xmpp:chat-markers:0") || fromAlice.Has("urn:xmpp:receipts") {
		t.Errorf("Alice's message in the room: want groupchat, markable, no XEP-0184 request: %s", fromAlice.XML)
	}
	aSID := roomStanzaID(t, fromAlice, muc)
	if _, err := alice.Wait(ctx, wait, isStatus(portal, ev, event.MessageStatusSuccess)); err != nil {
		t.Errorf("the room's reflection did not mark Alice's message sent: %v", err)
	}

	// XMPP → Matrix: Claudio's marker, his ghost's m.read on her event.
	send(claudio, `<message type='groupchat' to='`+muc+`' id='c1'><displayed xmlns='urn:xmpp:chat-markers:0' id='`+aSID+`'/></message>`)
	var claudioGhost id.UserID
	if _, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
		if e.RoomID != portal || e.Type.Type != event.EphemeralEventReceipt.Type {
			return false
		}
		rc, ok := e.Content.Parsed.(*event.ReceiptEventContent)
		if !ok {
			return false
		}
		for u := range (*rc)[ev][event.ReceiptTypeRead] {
			if w.IDs.IsGhost(u) && u != got.Sender {
				claudioGhost = u
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("Claudio's marker did not become his ghost's m.read: %v", err)
	}
	t.Logf("Claudio's ghost %s read Alice's message", claudioGhost)

	// Killed and started again, the bridge has the puppet back in the
	// chat by itself, and what the room says reaches Matrix again.
	w.Bridge.Kill()
	if err := w.Bridge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	send(beatrice, `<message type='groupchat' to='`+muc+`' id='b2'><body>I wonder that you will still be talking, Signior Benedick</body></message>`)
	if _, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
		return e.RoomID == portal && e.Type == event.EventMessage && strings.Contains(e.Content.AsMessage().Body, "still be talking")
	}); err != nil {
		t.Fatalf("after a restart, the room's messages no longer reach Matrix: %v", err)
	}

	// Alice leaves the room: her puppet leaves the chat.
	if _, err := alice.Client.LeaveRoom(ctx, portal); err != nil {
		t.Fatal(err)
	}
	if _, err := beatrice.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "presence" && s.From == muc+"/"+aliceNick && s.Type == "unavailable"
	}); err != nil {
		t.Errorf("Alice left the room, her puppet stayed in the chat: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if n := claudio.Count(isAliceMarker); n != 1 {
		t.Errorf("Claudio saw %d markers from Alice, want 1", n)
	}
}

// joinMUC has c join the chat muc as nick (XEP-0045 §7.2.1, no history),
// configuring it as an instant room (§10.1.2) if it is new.
func joinMUC(t *testing.T, c *peers.XMPPClient, muc, nick string) {
	t.Helper()
	ctx := context.Background()
	if err := c.SendRaw(ctx, `<presence to='`+muc+`/`+nick+`'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`); err != nil {
		t.Fatal(err)
	}
	self, err := c.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "presence" && s.From == muc+"/"+nick && s.Has(`code="110"`)
	})
	if err != nil {
		t.Fatalf("%s's join (XEP-0045 §7.2.2): %v", nick, err)
	}
	if self.Has(`code="201"`) {
		if err := c.SendRaw(ctx, `<iq type='set' id='inst-`+nick+`' to='`+muc+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "inst-"+nick }); err != nil {
			t.Fatal(err)
		}
	}
}

// aliceJoinsGroup has Alice tell the bot `join muc` (and more, the nick
// and password) in a room of her own with it, and join the room it
// invites her to, the chat's portal.
func aliceJoinsGroup(t *testing.T, muc string, more ...string) id.RoomID {
	t.Helper()
	ctx := context.Background()
	alice, bot := w.alice, w.IDs.Bot()
	mgmt, err := alice.CreateDM(ctx, bot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, peers.IsMembership(mgmt, bot, event.MembershipJoin)); err != nil {
		t.Fatalf("the bot never joined its DM: %v", err)
	}
	mark := alice.Mark()
	if _, err := alice.SendText(ctx, mgmt, strings.Join(append([]string{"join", muc}, more...), " ")); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitSince(ctx, mark, wait, func(e *event.Event) bool {
		return e.RoomID == mgmt && e.Sender == bot && strings.Contains(e.Content.AsMessage().Body, "Opened the chat "+muc)
	}); err != nil {
		t.Fatalf("the bot did not answer the join: %v", err)
	}
	invite, err := alice.WaitSince(ctx, mark, wait, func(e *event.Event) bool {
		return e.RoomID != mgmt && e.Type == event.StateMember && e.GetStateKey() == string(alice.Client.UserID) &&
			e.Content.AsMember().Membership == event.MembershipInvite && e.Sender == bot
	})
	if err != nil {
		t.Fatalf("no invite into the chat's room: %v", err)
	}
	if _, err := alice.Client.JoinRoomByID(ctx, invite.RoomID); err != nil {
		t.Fatal(err)
	}
	return invite.RoomID
}

var stanzaIDRe = regexp.MustCompile(`<stanza-id [^>]*>`)

// roomStanzaID is the XEP-0359 stanza-id the room muc stamped s with.
func roomStanzaID(t *testing.T, s *peers.Stanza, muc string) string {
	t.Helper()
	for _, el := range stanzaIDRe.FindAllString(s.XML, -1) {
		if strings.Contains(el, `by="`+muc+`"`) {
			if m := regexp.MustCompile(`id="([^"]+)"`).FindStringSubmatch(el); m != nil {
				return m[1]
			}
		}
	}
	t.Fatalf("no stanza-id by %s on %s", muc, s.XML)
	return ""
}

// A terminal client in a group portal: Verges, on profanity 0.13 in tmux,
// joins a chat Dogberry made; Alice joins it through the bot. Verges reads
// Alice's message on his screen, under her puppet's nick, and what he
// types reaches Alice's room as his ghost's.
func TestProfanityInAGroup(t *testing.T) {
	if err := peers.ProfanityAvailable(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice := w.alice
	muc := "watch@" + w.Prosody.MUCDomain
	dogberry := w.xmppUser(t, "dogberry", "group")
	joinMUC(t, dogberry, muc, "Dogberry")
	p, err := w.StartProfanity(ctx, "verges")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Line("/join " + muc + " nick Verges"); err != nil {
		t.Fatal(err)
	}
	if _, err := dogberry.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "presence" && s.From == muc+"/Verges" }); err != nil {
		t.Fatalf("profanity did not join the chat: %v", err)
	}
	portal := aliceJoinsGroup(t, muc)
	puppetIn, err := dogberry.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "presence" && strings.HasPrefix(s.From, muc+"/") && s.Type == "" &&
			s.From != muc+"/Dogberry" && s.From != muc+"/Verges"
	})
	if err != nil {
		t.Fatalf("Alice's puppet never joined the chat: %v", err)
	}
	aliceNick := strings.TrimPrefix(puppetIn.From, muc+"/")
	if _, err := alice.SendText(ctx, portal, "Are you good men and true?"); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitScreen(ctx, wait, aliceNick+": Are you good men and true?"); err != nil {
		t.Fatalf("profanity does not show Alice's message in the room: %v", err)
	}
	if err := p.Line("Yea, or else it were pity but they should suffer salvation"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
		return e.RoomID == portal && e.Type == event.EventMessage && w.IDs.IsGhost(e.Sender) &&
			strings.Contains(e.Content.AsMessage().Body, "suffer salvation")
	}); err != nil {
		t.Fatalf("what Verges typed never reached Alice: %v", err)
	}
}

// Joining a chat by its alias (Matrix AS API §Querying room aliases):
// Alice, never invited, joins #_xmpp_ and the chat's address; Dendrite
// asks the bridge about the alias, the bridge makes the chat's portal
// with it, and the join lands there. Her puppet joins the chat (XEP-0045
// §7.2.1), and messages cross both ways.
func TestGroupJoinByAlias(t *testing.T) {
	ctx := context.Background()
	alice := w.alice
	muc := "constables@" + w.Prosody.MUCDomain
	dogberry := w.xmppUser(t, "dogberry", "alias")
	joinMUC(t, dogberry, muc, "Dogberry")
	alias := w.IDs.GroupAlias(jid.MustParse(muc))
	if !strings.HasPrefix(string(alias), "#_xmpp_constables=40"+w.Prosody.MUCDomain+":") {
		t.Fatalf("alias %s", alias)
	}
	joined, err := alice.Client.JoinRoom(ctx, string(alias), nil)
	if err != nil {
		t.Fatalf("Alice's join of %s: %v", alias, err)
	}
	portal := joined.RoomID
	// Only the bridge could have made the alias: the room is the bot's,
	// and public (no invite was needed).
	if create, err := alice.Client.FullStateEvent(ctx, portal, event.StateCreate, ""); err != nil || create.Sender != w.IDs.Bot() {
		t.Errorf("the room's m.room.create: %v, %v; want the bot's", create, err)
	}
	if rules, err := alice.Client.FullStateEvent(ctx, portal, event.StateJoinRules, ""); err != nil || rules.Content.AsJoinRules().JoinRule != event.JoinRulePublic {
		t.Errorf("the room's join rules: %v, %v; want public", rules, err)
	}
	puppetIn, err := dogberry.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "presence" && strings.HasPrefix(s.From, muc+"/") && s.Type == "" && s.From != muc+"/Dogberry"
	})
	if err != nil {
		t.Fatalf("Alice's puppet never joined the chat: %v", err)
	}
	aliceNick := strings.TrimPrefix(puppetIn.From, muc+"/")

	if _, err := alice.SendText(ctx, portal, "Are you good men and true?"); err != nil {
		t.Fatal(err)
	}
	if _, err := dogberry.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "message" && s.From == muc+"/"+aliceNick && s.Type == "groupchat" && strings.Contains(s.Body, "good men and true")
	}); err != nil {
		t.Fatalf("Alice's message never reached the chat: %v", err)
	}
	if err := dogberry.SendRaw(ctx, `<message type='groupchat' to='`+muc+`' id='d1'><body>Yea, or else it were pity but they should suffer salvation</body></message>`); err != nil {
		t.Fatal(err)
	}
	got, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
		return e.RoomID == portal && e.Type == event.EventMessage && strings.Contains(e.Content.AsMessage().Body, "suffer salvation")
	})
	if err != nil {
		t.Fatalf("Dogberry's message never reached the portal: %v", err)
	}
	if !w.IDs.IsGhost(got.Sender) {
		t.Errorf("Dogberry's message came from %s, not a ghost", got.Sender)
	}
	// The alias names the portal: asked again, it is the same room.
	if again, err := alice.Client.ResolveAlias(ctx, alias); err != nil || again.RoomID != portal {
		t.Errorf("%s resolves to %v (%v), want %s", alias, again, err, portal)
	}
}

// The bot's join with a nick and the room's password (XEP-0045 §7.2.6):
// Benedick made a room with a password (§10.2, muc#roomconfig_roomsecret),
// which refuses Hero without it (not-authorized); Alice tells the bot
// `join room Margaret cauldronburn`, and her puppet is in the room as
// Margaret, and what she says reaches Benedick.
func TestGroupJoinWithNickAndPassword(t *testing.T) {
	ctx := context.Background()
	muc := "masque@" + w.Prosody.MUCDomain
	benedick := w.xmppUser(t, "benedick", "masque")
	joinMUC(t, benedick, muc, "Benedick")
	if err := benedick.SendRaw(ctx, `<iq type='set' id='secret' to='`+muc+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>`+
		`<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>`+
		`<field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field>`+
		`<field var='muc#roomconfig_roomsecret'><value>cauldronburn</value></field></x></query></iq>`); err != nil {
		t.Fatal(err)
	}
	if res, err := benedick.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "secret" }); err != nil || res.Type != "result" {
		t.Fatalf("setting the room's password: %v %v", res, err)
	}
	hero := w.xmppUser(t, "hero", "masque")
	if err := hero.SendRaw(ctx, `<presence to='`+muc+`/Hero'><x xmlns='http://jabber.org/protocol/muc'/></presence>`); err != nil {
		t.Fatal(err)
	}
	if _, err := hero.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "presence" && s.Type == "error" && s.Has("not-authorized")
	}); err != nil {
		t.Fatalf("the room let Hero in without its password: %v", err)
	}

	portal := aliceJoinsGroup(t, muc, "Margaret", "cauldronburn")
	if _, err := benedick.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "presence" && s.From == muc+"/Margaret" && s.Type == ""
	}); err != nil {
		t.Fatalf("Alice's puppet never joined as Margaret: %v", err)
	}
	if _, err := w.alice.SendText(ctx, portal, "Speak low if you speak love"); err != nil {
		t.Fatal(err)
	}
	if _, err := benedick.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "message" && s.From == muc+"/Margaret" && strings.Contains(s.Body, "Speak low")
	}); err != nil {
		t.Fatalf("Alice's message never reached the room: %v", err)
	}

	// Benedick kicks Margaret (§8.2; the room keeps an occupant whose
	// component went away, so only this puts her out); killed and started
	// again, the bridge has her puppet back in the room as Margaret, which
	// the room lets in only with the password the bridge kept.
	isMargaret := func(typ string) func(s *peers.Stanza) bool {
		return func(s *peers.Stanza) bool { return s.Name == "presence" && s.From == muc+"/Margaret" && s.Type == typ }
	}
	if err := benedick.SendRaw(ctx, `<iq type='set' id='kick' to='`+muc+`'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Margaret' role='none'/></query></iq>`); err != nil {
		t.Fatal(err)
	}
	if _, err := benedick.Wait(ctx, wait, isMargaret("unavailable")); err != nil {
		t.Fatalf("Margaret was not kicked: %v", err)
	}
	in := benedick.Count(isMargaret(""))
	w.Bridge.Kill()
	if err := w.Bridge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(wait); benedick.Count(isMargaret("")) == in; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after a restart, Alice's puppet is not back in the room as Margaret")
		}
	}
}
