package mapping_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// What a Matrix member's puppet shows a chat of itself (groups.go,
// profiles.go) and what its join asks of a room it made (roomname.go).

// photoHash is the XEP-0153 §3.1 hash of img: its hex SHA-1.
func photoHash(img []byte) string {
	sum := sha1.Sum(img)
	return hex.EncodeToString(sum[:])
}

// roomPresences are the presences sent to the chat lounge.
func roomPresences(h *harness) []*OutPresence {
	var out []*OutPresence
	for _, p := range h.xmpp.presences {
		if p.To.Bare().Equal(jid.MustParse(lounge)) {
			out = append(out, p)
		}
	}
	return out
}

// selfPresence feeds the room's own presence of the puppet's join
// (XEP-0045 §7.2.2, status 110 and those given).
func selfPresence(t *testing.T, h *harness, join *OutPresence, statuses ...int) {
	t.Helper()
	if _, err := h.b.HandleXMPPPresence(context.Background(), &XMPPPresence{From: join.To, To: join.From,
		MUC: &MUCPresence{Statuses: append([]int{110}, statuses...)}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
}

// XEP-0153 §3.1 in a chat: a member's puppet joins with the hash of
// her avatar as her 1:1 presence has it (no XEP-0172 nick: the room
// knows her by her nick there), and when the avatar changes (a member
// event in any of her portals) tells each chat it is in the new hash
// with a presence to its occupant JID (XEP-0045 §7.7, no muc <x/>: that
// would be a join), once. An occupant's vCard query, which the room
// sends on from the asker's occupant JID (XEP-0054 §3.1 through
// XEP-0045), is answered with her card; nobody else's is.
func TestGroupMemberAvatar(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	a1, a2 := []byte("\x89PNG\r\n\x1a\n one"), []byte("\x89PNG\r\n\x1a\n two")
	h.matrix.images = map[string][]byte{"mxc://example.org/a1": a1, "mxc://example.org/a2": a2}
	must(h.store.PutPortal(ctx, &Portal{RoomID: loungeRoom, Kind: PortalGroup, JID: jid.MustParse(lounge), Members: []Member{{ID: MatrixMember(testIDs.Bot())}}}))
	must(h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{})))
	must(h.handleTxn(ctx, MatrixTxn{ID: "j1", Events: []MatrixEvent{profileMember(loungeRoom, alice, "Alice", "mxc://example.org/a1")}}))
	h.drain(t)
	if p, err := h.store.PuppetProfile(ctx, alice); err != nil || p.PhotoHash != photoHash(a1) {
		t.Fatalf("the profile her join into the portal gives: %+v, %v", p, err)
	}
	sent := roomPresences(h)
	if len(sent) == 0 || !sent[0].JoinMUC || sent[0].Nick != "" {
		t.Fatalf("her puppet's join is %+v", sent)
	}
	join := sent[0]
	selfPresence(t, h, join)
	// Whether the join carried the hash (her profile stored first) or a
	// presence after it did, the chat was told it once.
	var told []string
	for _, p := range roomPresences(h) {
		if p.Photo != nil {
			told = append(told, *p.Photo)
		}
		if !p.JoinMUC && (!p.To.Equal(join.To) || p.From.String() != aliceFrom || p.Type != PresenceAvailable || p.Nick != "") {
			t.Errorf("a presence to the chat that is no join: %+v", p)
		}
	}
	if len(told) != 1 || told[0] != photoHash(a1) {
		t.Errorf("the chat was told the hashes %q, want %s once", told, photoHash(a1))
	}

	// Occupants ask her vCard through the room.
	for _, c := range []struct {
		asker string
		want  bool
	}{
		{lounge + "/Ursula", true},
		{lounge, false},                                // the room itself, no occupant
		{"other@conference.capulet.lit/Ursula", false}, // a chat her puppet is not in
		{"mallory@evil.example/x", false},
	} {
		card, err := h.b.PuppetCard(ctx, alice, jid.MustParse(c.asker))
		switch {
		case c.want && (err != nil || card.Name != "Alice" || string(card.Photo) != string(a1)):
			t.Errorf("%s: the card %q with %d bytes of photo, %v; want hers", c.asker, card.Name, len(card.Photo), err)
		case !c.want && !errors.Is(err, ErrNotFound):
			t.Errorf("%s: %+v, %v; want ErrNotFound", c.asker, card, err)
		}
	}
	if _, err := h.b.PuppetCard(ctx, bob, jid.MustParse(lounge+"/Ursula")); !errors.Is(err, ErrNotFound) {
		t.Errorf("the card of a puppet not in the chat, to an occupant: %v, want ErrNotFound", err)
	}

	// A new avatar, told in her direct portal: the chat hears it.
	h.xmpp.presences = nil
	must(h.handleTxn(ctx, MatrixTxn{ID: "p2", Events: []MatrixEvent{profileMember("!dm:example.org", alice, "Alice", "mxc://example.org/a2")}}))
	h.drain(t)
	sent = roomPresences(h)
	if len(sent) != 1 || sent[0].JoinMUC || !sent[0].To.Equal(join.To) || sent[0].Photo == nil || *sent[0].Photo != photoHash(a2) {
		t.Fatalf("after her new avatar the chat got %+v, want one presence with %s", sent, photoHash(a2))
	}
	// The room's reflection of it (status 110 again) asks nothing more.
	selfPresence(t, h, join)
	if n := len(roomPresences(h)); n != 1 {
		t.Errorf("%d presences to the chat after the reflection, want 1", n)
	}
}

// The avatar changes while the room has yet to take the join, which
// carried the old hash (or none): the chat is told the new one once the
// join is in (XEP-0045 §7.2.2), not before, since a presence without
// the muc <x/> to a chat one is not in is a join (§7.2.1).
func TestGroupMemberAvatarDuringTheJoin(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a1 := []byte("\x89PNG\r\n\x1a\n one")
	h.matrix.images = map[string][]byte{"mxc://example.org/a1": a1}
	if err := h.store.PutPortal(ctx, &Portal{RoomID: loungeRoom, Kind: PortalGroup, JID: jid.MustParse(lounge), Members: []Member{{ID: MatrixMember(testIDs.Bot())}}}); err != nil {
		t.Fatal(err)
	}
	if err := h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{})); err != nil {
		t.Fatal(err)
	}
	if err := h.handleTxn(ctx, MatrixTxn{ID: "j1", Events: []MatrixEvent{profileMember(loungeRoom, alice, "Alice", "")}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	sent := roomPresences(h)
	if len(sent) != 1 || !sent[0].JoinMUC {
		t.Fatalf("the join: %+v", sent)
	}
	join := sent[0]
	if err := h.handleTxn(ctx, MatrixTxn{ID: "p1", Events: []MatrixEvent{profileMember("!dm:example.org", alice, "Alice", "mxc://example.org/a1")}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if n := len(roomPresences(h)); n != 1 {
		t.Fatalf("%d presences to the chat before it took the join, want the join only", n)
	}
	selfPresence(t, h, join)
	sent = roomPresences(h)
	if len(sent) != 2 || sent[1].JoinMUC || sent[1].Photo == nil || *sent[1].Photo != photoHash(a1) {
		t.Fatalf("after the join was in: %+v, want one presence with %s", sent[1:], photoHash(a1))
	}
}

// XEP-0045 §10.1.2: the own presence of a join that made the chat
// (status 201, §10.1.1) has the puppet, its owner, accept the default
// configuration (an instant room), which unlocks it for others; a join
// into a chat that was there asks nothing. A refusal leaves the chat
// locked: the bot says so in the portal, and it is counted.
func TestGroupInstantRoom(t *testing.T) {
	for _, c := range []struct {
		name     string
		statuses []int
		answer   error
		asked    bool
		refused  string
	}{
		{"a chat that was there", nil, nil, false, ""},
		{"a chat the join made", []int{201}, nil, true, ""},
		{"refused", []int{201}, fmt.Errorf("%w: %w", ErrPermanent, &StanzaError{Type: "auth", Condition: "forbidden"}), true, "forbidden"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			h.xmpp.instantAnswer = c.answer
			if err := h.store.PutPortal(ctx, &Portal{RoomID: loungeRoom, Kind: PortalGroup, JID: jid.MustParse(lounge), Members: []Member{{ID: MatrixMember(testIDs.Bot())}}}); err != nil {
				t.Fatal(err)
			}
			if err := h.handleTxn(ctx, MatrixTxn{ID: "j1", Events: []MatrixEvent{memberEvent(alice, loungeRoom, alice, MembershipJoin)}}); err != nil {
				t.Fatal(err)
			}
			h.drain(t)
			selfPresence(t, h, roomPresences(h)[0], c.statuses...)
			want := []string(nil)
			if c.asked {
				want = []string{aliceFrom + " " + lounge}
			}
			if fmt.Sprint(h.xmpp.instants) != fmt.Sprint(want) {
				t.Errorf("instant rooms asked %q, want %q", h.xmpp.instants, want)
			}
			said := false
			for _, n := range h.matrix.notices {
				said = said || strings.HasPrefix(n, string(loungeRoom)+" "+string(testIDs.Bot())) && strings.Contains(n, "stays locked")
			}
			if said != (c.refused != "") || c.refused != "" && h.counts["muc_instant/refused_"+c.refused] != 1 {
				t.Errorf("the bot said the chat is locked: %v; counts %v", said, h.counts)
			}
		})
	}
}
