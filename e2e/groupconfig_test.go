//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/internal/peers"
)

// The rest of a chat's state and of its joins, against Prosody's
// multi-user chat and Dendrite: the room's name both ways (XEP-0045
// §10.2, §10.2.1), its history at the time it was said (§7.2.15,
// XEP-0203), and a Matrix user's budget of chats.

// isConfigChange is the room muc's notice that its configuration changed
// (§10.2.1: from the room itself, status 104).
func isConfigChange(muc string) func(*peers.Stanza) bool {
	return func(s *peers.Stanza) bool {
		return s.Name == "message" && s.From == muc && s.Has(`code="104"`)
	}
}

// chatWithAlice has the XMPP user make the chat muc, joining it as nick
// (its owner), and Alice join it through the bot; it returns the user's
// client, once Alice's puppet is in, and the portal.
func chatWithAlice(t *testing.T, muc, user, nick string) (*peers.XMPPClient, id.RoomID) {
	t.Helper()
	c := w.xmppUser(t, user, "chat")
	joinMUC(t, c, muc, nick)
	portal := w.aliceJoinsGroup(t, muc)
	puppetNick(t, c, muc, nick)
	return c, portal
}

// ask has c send iq (with id) and waits for its answer.
func ask(t *testing.T, c *peers.XMPPClient, iqID, iq string) *peers.Stanza {
	t.Helper()
	sendRaw(t, c, iq)
	answer, err := c.Wait(context.Background(), wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == iqID })
	if err != nil {
		t.Fatalf("no answer to %s: %v", iqID, err)
	}
	return answer
}

// XEP-0045 §10.2 both ways, against Prosody 0.12.3: Leonato, the room's
// owner (he made it), renames it; Prosody tells every occupant with a
// message from the room with status 104 (§10.2.1), and the portal's
// m.room.name follows, set by the bot. Alice renames the portal: her
// puppet is no owner, Prosody refuses its request for the form
// (<forbidden/>), the bot says so and puts the room's name back. Made an
// owner (§10.9, muc#admin), her puppet's rename goes through: the room's
// name is hers, told with 104, and nothing comes back to the room.
func TestGroupRoomNameBothWays(t *testing.T) {
	ctx := context.Background()
	alice := w.alice
	muc := "verona@" + w.Prosody.MUCDomain
	leonato, portal := chatWithAlice(t, muc, "leonato", "Leonato")
	isName := func(name string, by id.UserID) func(*event.Event) bool {
		return func(e *event.Event) bool {
			return e.RoomID == portal && e.Type == event.StateRoomName && e.Content.AsRoomName().Name == name && (by == "" || e.Sender == by)
		}
	}

	// §10.2: the owner's rename (the form's FORM_TYPE and the name: Prosody
	// changes what a submission names).
	ask(t, leonato, "name1", `<iq type='set' id='name1' to='`+muc+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>`+
		`<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>`+
		`<field var='muc#roomconfig_roomname'><value>Fair Verona</value></field></x></query></iq>`)
	notice, err := leonato.Wait(ctx, wait, isConfigChange(muc))
	if err != nil {
		t.Fatalf("Prosody told no configuration change: %v", err)
	}
	t.Logf("Prosody's notice of a configuration change: %s", notice.XML)
	if _, err := alice.Wait(ctx, wait, isName("Fair Verona", w.IDs.Bot())); err != nil {
		t.Fatalf("the room's new name never became the portal's: %v", err)
	}

	// Alice's rename, her puppet no owner: refused, said, put back.
	mark := alice.Mark()
	if _, err := alice.Client.SendStateEvent(ctx, portal, event.StateRoomName, "", &event.RoomNameEventContent{Name: "Verona Beach"}); err != nil {
		t.Fatalf("Alice may not name the portal: %v", err)
	}
	if _, err := alice.WaitSince(ctx, mark, wait, func(e *event.Event) bool {
		return e.RoomID == portal && e.Sender == w.IDs.Bot() && e.Type == event.EventMessage &&
			strings.Contains(e.Content.AsMessage().Body, "did not take the name "+string(alice.Client.UserID)+" gave this room: only its owners may change it")
	}); err != nil {
		t.Errorf("the bot did not say the chat refused Alice's name: %v", err)
	}
	if _, err := alice.WaitSince(ctx, mark, wait, isName("Fair Verona", w.IDs.Bot())); err != nil {
		t.Errorf("the portal's name was not put back to the room's: %v", err)
	}

	// §10.9: Leonato makes her puppet an owner; her rename goes through.
	puppet := w.Puppet(alice.Client.UserID)
	if a := ask(t, leonato, "own1", `<iq type='set' id='own1' to='`+muc+`'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='owner' jid='`+peers.XMLEscape(puppet)+`'/></query></iq>`); a.Type != "result" {
		t.Fatalf("Prosody did not make the puppet an owner: %s", a.XML)
	}
	mark = alice.Mark()
	before := leonato.Count(isConfigChange(muc))
	if _, err := alice.Client.SendStateEvent(ctx, portal, event.StateRoomName, "", &event.RoomNameEventContent{Name: "Verona Beach"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for leonato.Count(isConfigChange(muc)) == before && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if leonato.Count(isConfigChange(muc)) == before {
		t.Fatal("Alice's rename never reached the room")
	}
	info := ask(t, leonato, "info1", `<iq type='get' id='info1' to='`+muc+`'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if !info.Has(`name="Verona Beach"`) {
		t.Errorf("the room's name after Alice's rename: %s", info.XML)
	}
	// What follows is quiet: no second change, no refusal, and the portal
	// keeps Alice's name (the bot sets nothing: it is the room's).
	time.Sleep(2 * time.Second)
	if n := leonato.Count(isConfigChange(muc)); n != before+1 {
		t.Errorf("%d configuration changes after Alice's rename, want 1", n-before)
	}
	if refused := alice.Events(func(e *event.Event) bool {
		return e.RoomID == portal && e.Sender == w.IDs.Bot() && e.Type == event.EventMessage && strings.Contains(e.Content.AsMessage().Body, "did not take the name")
	}); len(refused) != 1 {
		t.Errorf("the bot said %d refusals, want the first one only", len(refused))
	}
	if _, err := alice.WaitSince(ctx, mark, time.Second, func(e *event.Event) bool {
		return e.RoomID == portal && e.Type == event.StateRoomName && e.Sender == w.IDs.Bot()
	}); err == nil {
		t.Error("the bot named the portal again after Alice's rename went through")
	}
}

// XEP-0045 §7.2.15 with XEP-0203: what Margaret says while the bridge is
// down reaches Matrix when its puppet rejoins asking for history since,
// at the time she said it (origin_server_ts from the room's <delay/>
// stamp, through the application service API's ts: Dendrite 0.15.2
// takes it), not at the time the bridge came back. The history Prosody
// sends carries <delay from='ROOM' stamp=…/>, as a second join of hers
// asking for it shows.
func TestGroupHistoryAtItsTime(t *testing.T) {
	ctx := context.Background()
	alice := w.alice
	muc := "padua@" + w.Prosody.MUCDomain
	margaret, portal := chatWithAlice(t, muc, "margaret", "Margaret")
	sendRaw(t, margaret, `<message type='groupchat' to='`+muc+`' id='m1'><body>Troth, I think you would make a good husband</body></message>`)
	if _, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
		return e.RoomID == portal && e.Type == event.EventMessage && strings.Contains(e.Content.AsMessage().Body, "good husband")
	}); err != nil {
		t.Fatalf("Margaret's first message never reached the portal: %v", err)
	}

	w.killBridge(t, margaret)
	said := time.Now()
	sendRaw(t, margaret, `<message type='groupchat' to='`+muc+`' id='m-down'><body>God match me with a good dancer!</body></message>`)
	if _, err := margaret.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "message" && s.ID == "m-down" }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	restarted := time.Now()
	if err := w.Bridge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
		return e.RoomID == portal && e.Type == event.EventMessage && strings.Contains(e.Content.AsMessage().Body, "good dancer")
	})
	if err != nil {
		t.Fatalf("what was said while the bridge was down never reached Matrix: %v", err)
	}
	at := time.UnixMilli(got.Timestamp)
	t.Logf("said at %s, the bridge back at %s, posted at %s", said.Format(time.RFC3339Nano), restarted.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
	if at.Before(said.Add(-2*time.Second)) || !at.Before(restarted.Add(-2*time.Second)) {
		t.Errorf("posted at %s, want about %s (when it was said), not after %s", at, said, restarted)
	}

	// What Prosody sends as history, seen by a client of Margaret's.
	hist := w.xmppUser(t, "margaret", "history2")
	sendRaw(t, hist, `<presence to='`+muc+`/Margaret2'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='1'/></x></presence>`)
	old, err := hist.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "message" && strings.Contains(s.Body, "good dancer")
	})
	if err != nil {
		t.Fatalf("no history: %v", err)
	}
	t.Logf("Prosody's history: %s", old.XML)
	if !old.Has(`urn:xmpp:delay`) || !old.Has(`from="`+muc+`"`) {
		t.Errorf("the history carries no <delay/> from the room: %s", old.XML)
	}
}

// A Matrix user's budget of chats (groups.max_rooms_per_user, here 1):
// Pedro, a new Matrix user, joins one chat through the bot; the bot
// refuses his `join` of a second, saying why, and his puppet never comes
// into it; his join of a third chat's room by its alias (a room the
// homeserver's alias query had the bridge make) is refused the same way
// in that room.
func TestGroupJoinBudget(t *testing.T) {
	ctx := context.Background()
	restartWith(t, ctx, "groups", map[string]any{"max_rooms_per_user": 1, "joins_per_user_per_hour": 5})
	cli, err := w.Dendrite.RegisterUser(ctx, "pedro", peers.Password)
	if err != nil {
		t.Fatal(err)
	}
	pedro := peers.NewMatrixUser(ctx, cli)
	t.Cleanup(pedro.Close)
	first, second, third := "messina-gate@"+w.Prosody.MUCDomain, "messina-hall@"+w.Prosody.MUCDomain, "messina-garden@"+w.Prosody.MUCDomain
	leonato := w.xmppUser(t, "leonato", "budget")
	joinMUC(t, leonato, first, "Leonato")
	joinMUC(t, leonato, second, "Leonato")
	if _, err := pedro.JoinGroup(ctx, wait, w.IDs.Bot(), first); err != nil {
		t.Fatal(err)
	}
	puppetNick(t, leonato, first, "Leonato")

	mgmt, err := pedro.CreateDM(ctx, w.IDs.Bot())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pedro.Wait(ctx, wait, peers.IsMembership(mgmt, w.IDs.Bot(), event.MembershipJoin)); err != nil {
		t.Fatal(err)
	}
	if _, err := pedro.SendText(ctx, mgmt, "join "+second); err != nil {
		t.Fatal(err)
	}
	if _, err := pedro.Wait(ctx, wait, func(e *event.Event) bool {
		return e.RoomID == mgmt && e.Sender == w.IDs.Bot() && strings.Contains(e.Content.AsMessage().Body, "does not join "+second+": their puppet is in 1 chats")
	}); err != nil {
		t.Errorf("the bot did not refuse the second chat: %v", err)
	}

	alias := w.IDs.GroupAlias(jid.MustParse(third))
	joined, err := pedro.Client.JoinRoom(ctx, string(alias), nil)
	if err != nil {
		t.Fatalf("Pedro's join of %s: %v", alias, err)
	}
	if _, err := pedro.Wait(ctx, wait, func(e *event.Event) bool {
		return e.RoomID == joined.RoomID && e.Sender == w.IDs.Bot() && strings.Contains(e.Content.AsMessage().Body, "does not join "+third)
	}); err != nil {
		t.Errorf("the bot did not say in the alias's room that Pedro's puppet does not join: %v", err)
	}
	time.Sleep(2 * time.Second)
	if n := leonato.Count(func(s *peers.Stanza) bool {
		return s.Name == "presence" && strings.HasPrefix(s.From, second+"/") && s.From != second+"/Leonato"
	}); n != 0 {
		t.Errorf("Pedro's puppet came into the chat past his budget")
	}
}
