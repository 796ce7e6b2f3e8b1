//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

const wait = 45 * time.Second

var nmtoken = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)

func isMessage(from, body string) func(*peers.Stanza) bool {
	return func(s *peers.Stanza) bool {
		return s.Name == "message" && strings.HasPrefix(s.From, from) && s.Body == body
	}
}

func isError(id string) func(*peers.Stanza) bool {
	return func(s *peers.Stanza) bool { return s.Name == "message" && s.Type == "error" && s.ID == id }
}

// openPortal has Juliet write to Alice for the first time: the ghost invites
// Alice to a DM, Alice joins, the message is there. It returns the room.
func openPortal(t *testing.T, ctx context.Context, juliet *peers.XMPPClient, user string) id.RoomID {
	t.Helper()
	alice := w.alice
	ghost := w.ghost(user + "@localhost")
	body := "Wherefore art thou, Alice? (" + user + ")"
	if err := juliet.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='first-%s' type='chat'><body>%s</body><request xmlns='urn:xmpp:receipts'/></message>`,
		peers.XMLEscape(w.puppet(t, alice.Client.UserID)), user, body)); err != nil {
		t.Fatal(err)
	}
	invite, err := alice.Wait(ctx, wait, peers.IsInvite(alice.Client.UserID, ghost))
	if err != nil {
		t.Fatal(err)
	}
	if !invite.Content.AsMember().IsDirect {
		t.Errorf("the invite of %s is not marked is_direct", invite.RoomID)
	}
	if _, err := alice.Client.JoinRoomByID(ctx, invite.RoomID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, peers.IsText(invite.RoomID, ghost, body)); err != nil {
		t.Fatalf("message from XMPP never appeared in the portal: %v", err)
	}
	return invite.RoomID
}

// A message each way (docs/protocols.md), the room is a DM from
// the ghost, the XMPP side gets a chat message from the puppet that asks
// for every receipt.
func TestMessagesBothWays(t *testing.T) {
	ctx := context.Background()
	juliet := w.xmppUser(t, "juliet", "balcony")
	room := openPortal(t, ctx, juliet, "juliet")
	alicePuppet := w.puppet(t, w.alice.Client.UserID)

	ev, err := w.alice.SendText(ctx, room, "It is the east, and Juliet is the sun")
	if err != nil {
		t.Fatal(err)
	}
	got, err := juliet.Wait(ctx, wait, isMessage(alicePuppet, "It is the east, and Juliet is the sun"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != "chat" || !nmtoken.MatchString(got.ID) || strings.Contains(got.ID, string(ev)) {
		t.Errorf("type %q id %q: want chat and a fresh NMTOKEN id", got.Type, got.ID)
	}
	for _, want := range []string{`urn:xmpp:receipts`, `jabber:x:event`, `urn:xmpp:chat-markers:0`, `urn:xmpp:sid:0`} {
		if !got.Has(want) {
			t.Errorf("stanza lacks %s: %s", want, got.XML)
		}
	}
	if !got.Has(`id="`+got.ID+`"`) || strings.Count(got.XML, got.ID) < 2 {
		t.Errorf("origin-id does not repeat the id: %s", got.XML)
	}
}

// A Matrix user opens the portal by inviting the ghost; the ghost joins and
// her messages reach the XMPP person.
func TestPortalFromMatrixInvite(t *testing.T) {
	ctx := context.Background()
	romeo := w.xmppUser(t, "romeo", "orchard")
	ghost := w.ghost("romeo@localhost")
	room, err := w.alice.CreateDM(ctx, ghost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.Wait(ctx, wait, peers.IsMembership(room, ghost, event.MembershipJoin)); err != nil {
		t.Fatalf("the ghost never joined: %v", err)
	}
	if _, err := w.alice.SendText(ctx, room, "O Romeo, Romeo"); err != nil {
		t.Fatal(err)
	}
	if _, err := romeo.Wait(ctx, wait, isMessage(w.puppet(t, w.alice.Client.UserID), "O Romeo, Romeo")); err != nil {
		t.Fatal(err)
	}
	// And his answer lands in the same room, no second invite.
	if err := romeo.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='r-1' type='chat'><body>Call me but love</body></message>`, peers.XMLEscape(w.puppet(t, w.alice.Client.UserID)))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.Wait(ctx, wait, peers.IsText(room, ghost, "Call me but love")); err != nil {
		t.Fatal(err)
	}
	if n := len(peers.Rooms(w.alice.Events(peers.IsInvite(w.alice.Client.UserID, ghost)))); n != 0 {
		t.Errorf("the ghost invited Alice %d times to a room she opened", n)
	}
}

// Refusals on the XMPP side: a message to a puppet of nobody, and one to a
// full puppet JID with <im-ng/> (XEP-0409 §4), come back as
// <service-unavailable/>; a resent id is bridged once.
func TestXMPPRefusalsAndDuplicates(t *testing.T) {
	ctx := context.Background()
	tybalt := w.xmppUser(t, "tybalt", "street")
	room := openPortal(t, ctx, tybalt, "tybalt")
	ghost := w.ghost("tybalt@localhost")
	alicePuppet := w.puppet(t, w.alice.Client.UserID)

	send := func(raw string) {
		t.Helper()
		if err := tybalt.SendRaw(ctx, raw); err != nil {
			t.Fatal(err)
		}
	}
	send(`<message to='nobody@` + w.Prosody.ComponentDomain + `' id='u-1' type='chat'><body>anyone?</body></message>`)
	send(`<message to='` + peers.XMLEscape(alicePuppet) + `/phone' id='imng-1' type='chat'><body>only your phone</body><im-ng xmlns='urn:xmpp:im-ng:0'/></message>`)
	for _, id := range []string{"u-1", "imng-1"} {
		e, err := tybalt.Wait(ctx, wait, isError(id))
		if err != nil {
			t.Fatal(err)
		}
		if !e.Has("service-unavailable") {
			t.Errorf("error for %s is not service-unavailable: %s", id, e.XML)
		}
	}
	// The same id twice (a client resending), then a fresh one.
	send(`<message to='` + peers.XMLEscape(alicePuppet) + `' id='d-1' type='chat'><body>Turn thee, Benvolio</body></message>`)
	send(`<message to='` + peers.XMLEscape(alicePuppet) + `' id='d-1' type='chat'><body>Turn thee, Benvolio</body></message>`)
	send(`<message to='` + peers.XMLEscape(alicePuppet) + `/desk' id='d-2' type='chat'><body>to a resource, without im-ng</body></message>`)
	if _, err := w.alice.Wait(ctx, wait, peers.IsText(room, ghost, "to a resource, without im-ng")); err != nil {
		t.Fatal(err)
	}
	if n := len(peers.Unique(w.alice.Events(peers.IsText(room, ghost, "Turn thee, Benvolio")))); n != 1 {
		t.Errorf("resent message appeared %d times, want 1", n)
	}
	if n := len(w.alice.Events(peers.IsText(room, ghost, "only your phone"))); n != 0 {
		t.Errorf("the im-ng full-JID message was bridged")
	}
}

// The component answers disco#info for a puppet with the features
// docs/protocols.md lists for the puppets (receipts, x:event, markers,
// IM-NG, stanza ids, chat states).
func TestDiscoInfoOfPuppet(t *testing.T) {
	ctx := context.Background()
	juliet := w.xmppUser(t, "juliet", "disco")
	if err := juliet.SendRaw(ctx, `<iq type='get' id='disco-1' to='`+peers.XMLEscape(w.puppet(t, w.alice.Client.UserID))+`'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`); err != nil {
		t.Fatal(err)
	}
	res, err := juliet.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "disco-1" })
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"urn:xmpp:receipts", "jabber:x:event", "urn:xmpp:chat-markers:0", "urn:xmpp:im-ng:0", "urn:xmpp:sid:0", "http://jabber.org/protocol/chatstates"} {
		if res.Type != "result" || !res.Has(`var="`+f+`"`) {
			t.Errorf("disco#info lacks %s: %s", f, res.XML)
		}
	}
}

// XEP-0172 §4.2: the XMPP person's <nick/> becomes their
// ghost's display name, which Alice's client shows.
func TestGhostNamedAfterTheNick(t *testing.T) {
	ctx := context.Background()
	mercutio := w.xmppUser(t, "mercutio", "mab")
	room := openPortal(t, ctx, mercutio, "mercutio")
	ghost := w.ghost("mercutio@localhost")
	if err := mercutio.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='nick-1' type='chat'><body>Queen Mab</body><nick xmlns='http://jabber.org/protocol/nick'>Mercutio</nick></message>`,
		peers.XMLEscape(w.puppet(t, w.alice.Client.UserID)))); err != nil {
		t.Fatal(err)
	}
	named := func(e *event.Event) bool {
		if e.RoomID != room || e.Type != event.StateMember || e.StateKey == nil || *e.StateKey != string(ghost) {
			return false
		}
		name, _ := e.Content.Raw["displayname"].(string)
		return name == "Mercutio (XMPP)"
	}
	if _, err := w.alice.Wait(ctx, wait, named); err != nil {
		t.Fatalf("the ghost never took the nick as its name: %v", err)
	}
}

// XEP-0054: a client asking for the puppet's vCard gets its
// Matrix user's display name, as the bridge stored it from Dendrite.
func TestPuppetVCardHasTheDisplayName(t *testing.T) {
	ctx := context.Background()
	juliet := w.xmppUser(t, "juliet", "vcard")
	name, err := w.alice.Client.GetDisplayName(ctx, w.alice.Client.UserID)
	if err != nil || name.DisplayName == "" {
		t.Fatalf("Alice's display name on Dendrite: %+v, %v", name, err)
	}
	// The card goes only to people with a portal with Alice.
	openPortal(t, ctx, juliet, "juliet")
	vCardNamed(t, ctx, juliet, w.alice.Client.UserID, name.DisplayName)
}
