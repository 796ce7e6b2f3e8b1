package mapping_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// profileMember is Alice's m.room.member "join" again with a new profile,
// as the client-server API sends a change of displayname or avatar_url
// (m.room.member: "the user's profile ... changed") into each of her rooms.
func profileMember(room id.RoomID, user id.UserID, name, avatar string) MatrixEvent {
	evt := memberEvent(user, room, user, MembershipJoin)
	evt.ID = id.EventID("$p-" + name + avatar)
	evt.DisplayName, evt.AvatarURL = name, avatar
	return evt
}

// A change of the portal user's display name or avatar reaches the people
// subscribed to her puppet: its presence carries the name as XEP-0172
// <nick/> and the photo's hash as XEP-0153 §3.1 <x><photo/></x>, its vCard
// (XEP-0054) the name and the photo; a member event that changes nothing,
// or of somebody else, or outside a portal, sends nothing.
func TestProfileFromMatrix(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	img := []byte("\x89PNG\r\n\x1a\n a small avatar")
	h.matrix.images = map[string][]byte{"mxc://example.org/a1": img}
	if err := h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{})); err != nil {
		t.Fatal(err)
	}
	if err := h.store.SetSubscriptionFrom(ctx, alice, jid.MustParse(julietJID), true); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(img)
	hash := hex.EncodeToString(sum[:])
	steps := []struct {
		name     string
		evt      MatrixEvent
		nick     string // of the presence sent; "" for none sent
		photo    string
		fetches  int // avatars fetched so far
		cardName string
		cardPic  bool // the vCard has a PHOTO
	}{
		{"name and avatar set", profileMember("!dm:example.org", alice, "Alice L", "mxc://example.org/a1"), "Alice L", hash, 1, "Alice L", true},
		{"the same again (another room's copy)", profileMember("!dm:example.org", alice, "Alice L", "mxc://example.org/a1"), "", "", 1, "Alice L", true},
		{"renamed, same avatar: not fetched again", profileMember("!dm:example.org", alice, "Alice Liddell", "mxc://example.org/a1"), "Alice Liddell", hash, 1, "Alice Liddell", true},
		{"avatar removed: an empty photo", profileMember("!dm:example.org", alice, "Alice Liddell", ""), "Alice Liddell", "", 1, "Alice Liddell", false},
		{"an avatar the homeserver will not give: none", profileMember("!dm:example.org", alice, "Alice Liddell", "mxc://example.org/gone"), "Alice Liddell", "", 2, "Alice Liddell", false},
		{"somebody else's profile", profileMember("!dm:example.org", "@bob:example.org", "Bob", ""), "", "", 2, "Alice Liddell", false},
		{"outside a portal", profileMember("!other:example.org", alice, "Alice Elsewhere", ""), "", "", 2, "Alice Liddell", false},
	}
	for i, s := range steps {
		h.xmpp.presences = nil
		if err := h.handleTxn(ctx, MatrixTxn{ID: "p" + string(rune('a'+i)), Events: []MatrixEvent{s.evt}}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		h.drain(t)
		switch {
		case s.nick == "" && len(h.xmpp.presences) != 0:
			t.Errorf("%s: presence sent %+v, want none", s.name, *h.xmpp.presences[0])
		case s.nick != "" && len(h.xmpp.presences) != 1:
			t.Errorf("%s: %d presences sent, want 1", s.name, len(h.xmpp.presences))
		case s.nick != "":
			p := h.xmpp.presences[0]
			if p.From.String() != aliceFrom || p.To.String() != julietJID || p.Type != PresenceAvailable || p.Nick != s.nick || p.Photo == nil || *p.Photo != s.photo {
				t.Errorf("%s: presence %+v (photo %v), want from %s nick %q photo %q", s.name, *p, p.Photo, aliceFrom, s.nick, s.photo)
			}
		}
		if h.matrix.avatarFetches != s.fetches {
			t.Errorf("%s: %d avatars fetched, want %d", s.name, h.matrix.avatarFetches, s.fetches)
		}
		card, err := h.b.PuppetCard(ctx, alice, jid.MustParse(julietJID+"/balcony"))
		if err != nil {
			t.Fatalf("%s: vCard: %v", s.name, err)
		}
		if card.Name != s.cardName || s.cardPic != (len(card.Photo) > 0) {
			t.Errorf("%s: vCard %q with %d bytes of photo, want %q", s.name, card.Name, len(card.Photo), s.cardName)
		}
	}
}

// A new portal looks its user's profile up, so that the puppet's vCard and
// presence show it before she ever changes it; a probe is answered with it
// (RFC 6121 §4.3.2 rule 3, with XEP-0172 and XEP-0153's elements).
func TestProfileLookedUpForANewPortal(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.matrix.names = map[id.UserID]string{alice: "Alice"}
	h.matrix.avatars = map[id.UserID]string{alice: "mxc://example.org/a1"}
	h.matrix.images = map[string][]byte{"mxc://example.org/a1": []byte("img")}
	if err := h.handleTxn(ctx, MatrixTxn{ID: "t1", Events: []MatrixEvent{memberEvent(alice, "!dm:example.org", julietGhost, MembershipInvite)}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	p, err := h.store.PuppetProfile(ctx, alice)
	if err != nil || p.Name != "Alice" || string(p.Photo) != "img" {
		t.Fatalf("stored profile %+v, %v", p, err)
	}
	if err := h.store.SetSubscriptionFrom(ctx, alice, jid.MustParse(julietJID), true); err != nil {
		t.Fatal(err)
	}
	out, err := h.b.HandleXMPPPresence(ctx, &XMPPPresence{From: jid.MustParse(julietJID + "/balcony"), To: jid.MustParse(alicePup), Type: PresenceProbe})
	if err != nil || len(out) != 1 || out[0].Nick != "Alice" || out[0].Photo == nil || *out[0].Photo != p.PhotoHash {
		t.Fatalf("probe answered %v, %v; want the profile in it", out, err)
	}
}

// XEP-0054 §3.1: a puppet's vCard is answered from what the bridge
// stored, and only to a person with a portal with its user; to anyone else
// it does not exist (ErrNotFound, what the component answers for a user who
// does not exist, RFC 6120 §8.3.3.7 item-not-found), whether or not the
// user does. The homeserver is never asked: a live lookup would tell a
// stranger which users exist, and hold up the XMPP read loop.
func TestPuppetCardOnlyForPortalPeers(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	// A live lookup would find these: none may show.
	h.matrix.names = map[id.UserID]string{alice: "Alice Live", "@bob:example.org": "Bob Live"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{})))
	must(h.store.PutPortal(ctx, DirectPortal("!bob:example.org", "@bob:example.org", jid.MustParse(julietJID), time.Time{})))
	must(h.store.PutPortal(ctx, DirectPortal("!spam:example.org", alice, jid.MustParse("eve@spam.example"), time.Time{})))
	must(h.store.SetPuppetProfile(ctx, &Profile{MXID: alice, Name: "Alice Liddell"}))
	for _, c := range []struct {
		name  string
		mxid  id.UserID
		asker string
		want  string // the card's name; "" for ErrNotFound
	}{
		{"a peer with a portal, at a resource", alice, julietJID + "/balcony", "Alice Liddell"},
		{"a peer with a portal, bare", alice, julietJID, "Alice Liddell"},
		{"a portal but no stored profile: the user ID", "@bob:example.org", julietJID, "@bob:example.org"},
		{"a stranger, an existing user", alice, "mallory@evil.example/x", ""},
		{"a stranger, a user nobody knows", "@nobody:example.org", "mallory@evil.example/x", ""},
		{"a peer of another user", "@bob:example.org", "romeo@montague.lit", ""},
		{"a portal from a blocked domain", alice, "eve@spam.example", ""},
	} {
		card, err := h.b.PuppetCard(ctx, c.mxid, jid.MustParse(c.asker))
		switch {
		case c.want == "" && !errors.Is(err, ErrNotFound):
			t.Errorf("%s: %+v, %v; want ErrNotFound", c.name, card, err)
		case c.want != "" && (err != nil || card.Name != c.want):
			t.Errorf("%s: %+v, %v; want the name %q", c.name, card, err, c.want)
		}
	}
}
