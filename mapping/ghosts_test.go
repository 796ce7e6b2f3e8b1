package mapping_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// The signatures that open a PNG and a JPEG file.
const (
	pngMagic  = "\x89PNG\r\n\x1a\n"
	jpegMagic = "\xff\xd8\xff"
)

func sha1Hex(b []byte) string {
	sum := sha1.Sum(b)
	return hex.EncodeToString(sum[:])
}

// Juliet's ghost takes the name and the photo of her vCard (XEP-0054) when
// her portal is made, asked for by Alice's puppet; her presence with
// another photo's hash (XEP-0153 §3.2) has the vCard fetched again and the
// new photo uploaded, once; the same hash fetches nothing; an empty one
// (no avatar) takes the ghost's away; a XEP-0172 nick outranks the
// vCard's name; and only a person with a portal makes the bridge ask.
func TestGhostProfileFromVCard(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	ctx := context.Background()
	photo1, photo2 := []byte(pngMagic+"one"), []byte(jpegMagic+"two")
	h.xmpp.vcards = map[string]*VCard{julietJID: {Nickname: "Jules", FN: "Juliet Capulet", Photo: photo1, PhotoType: "image/png"}}
	if _, err := h.b.HandleXMPPMessage(ctx, chat("m1", "Wherefore art thou?")); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.asked) != 1 || h.xmpp.asked[0] != aliceFrom+" "+julietJID {
		t.Fatalf("vCards asked %q, want one of %s as %s", h.xmpp.asked, julietJID, aliceFrom)
	}
	if got := h.matrix.ghostNames; len(got) != 1 || got[0] != string(julietGhost)+" Jules" {
		t.Errorf("ghost names %q, want the vCard's NICKNAME", got)
	}
	if len(h.matrix.uploads) != 1 || h.matrix.uploads[0] != string(julietGhost)+" image/png "+string(photo1) || h.matrix.ghostAvatars[julietGhost] != "mxc://example.org/up1" {
		t.Fatalf("uploads %q, avatar %q", h.matrix.uploads, h.matrix.ghostAvatars[julietGhost])
	}

	presence := func(hash string) {
		t.Helper()
		p := &XMPPPresence{From: jid.MustParse(julietJID + "/balcony"), To: jid.MustParse(alicePup), Photo: &hash}
		if _, err := h.b.HandleXMPPPresence(ctx, p); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
	}
	presence(sha1Hex(photo1))
	if len(h.xmpp.asked) != 1 {
		t.Errorf("the photo the ghost has fetched the vCard again: %q", h.xmpp.asked)
	}

	h.xmpp.vcards[julietJID] = &VCard{Nickname: "Jules", Photo: photo2, PhotoType: "image/jpeg"}
	presence(sha1Hex(photo2))
	if len(h.matrix.uploads) != 2 || !strings.HasSuffix(h.matrix.uploads[1], "image/jpeg "+string(photo2)) || h.matrix.ghostAvatars[julietGhost] != "mxc://example.org/up2" {
		t.Errorf("after a new photo: uploads %q, avatar %q", h.matrix.uploads, h.matrix.ghostAvatars[julietGhost])
	}
	if len(h.matrix.ghostNames) != 1 {
		t.Errorf("the same name given again: %q", h.matrix.ghostNames)
	}

	h.xmpp.vcards[julietJID] = &VCard{Nickname: "Jules"}
	presence("")
	if url, ok := h.matrix.ghostAvatars[julietGhost]; !ok || url != "" || len(h.matrix.uploads) != 2 {
		t.Errorf("after the avatar is gone: avatar %q (set %v), uploads %q", url, ok, h.matrix.uploads)
	}

	// A nick (XEP-0172 §4.2) names the ghost; a vCard does not rename it.
	m := chat("m2", "A rose by any other name")
	m.Nick = "J."
	if _, err := h.b.HandleXMPPMessage(ctx, m); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	h.xmpp.vcards[julietJID] = &VCard{Nickname: "Someone Else", Photo: photo1, PhotoType: "image/png"}
	presence(sha1Hex(photo1))
	if got := h.matrix.ghostNames; len(got) != 2 || got[1] != string(julietGhost)+" J." {
		t.Errorf("ghost names %q, want the nick last", got)
	}
	if len(h.matrix.uploads) != 3 {
		t.Errorf("the photo came back but was not uploaded: %q", h.matrix.uploads)
	}

	// Romeo has no portal with Alice: his presence makes nothing fetched.
	asked := len(h.xmpp.asked)
	hash := sha1Hex(photo2)
	if _, err := h.b.HandleXMPPPresence(ctx, &XMPPPresence{From: jid.MustParse("romeo@montague.lit/orchard"), To: jid.MustParse(alicePup), Photo: &hash}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.asked) != asked {
		t.Errorf("a person without a portal had their vCard fetched: %q", h.xmpp.asked[asked:])
	}
}

// A person without a vCard (item-not-found) keeps the ghost's name, the
// JID, and gets no avatar; a photo too large is left out.
func TestGhostProfileWithoutVCard(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	ctx := context.Background()
	if _, err := h.b.HandleXMPPMessage(ctx, chat("m1", "Wherefore art thou?")); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.asked) != 1 || len(h.matrix.ghostNames)+len(h.matrix.uploads)+len(h.matrix.ghostAvatars) != 0 {
		t.Errorf("asked %q; names %q, uploads %q, avatars %v: want nothing set", h.xmpp.asked, h.matrix.ghostNames, h.matrix.uploads, h.matrix.ghostAvatars)
	}
	big := make([]byte, MaxGhostPhotoBytes+1)
	h.xmpp.vcards = map[string]*VCard{julietJID: {FN: "Juliet", Photo: big, PhotoType: "image/png"}}
	hash := sha1Hex(big)
	if _, err := h.b.HandleXMPPPresence(ctx, &XMPPPresence{From: jid.MustParse(julietJID + "/balcony"), To: jid.MustParse(alicePup), Photo: &hash}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.matrix.uploads) != 0 || h.counts["xmpp_vcard/photo_too_large"] != 1 || len(h.matrix.ghostNames) != 1 {
		t.Errorf("uploads %d, counts %v, names %q: want the FN, no photo", len(h.matrix.uploads), h.counts, h.matrix.ghostNames)
	}
}

// XEP-0163 notifications from Juliet's PEP service to Alice's puppet: her
// nick (XEP-0172 §4.5) names her ghost; new avatar metadata (XEP-0084
// §4.2) has the puppet ask for the data item (§4.4), whose image, if its
// SHA-1 is the id, becomes the ghost's avatar, and her vCard fetched where
// the puppet may not read it; they come as headlines, which are otherwise
// dropped; from someone without a portal they change nothing.
func TestGhostProfileFromPEP(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	ctx := context.Background()
	if _, err := h.b.HandleXMPPMessage(ctx, chat("m1", "Wherefore art thou?")); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	asked := len(h.xmpp.asked)
	pep := func(from string, u PEPUpdate) {
		t.Helper()
		m := &XMPPMessage{ID: "pep", From: jid.MustParse(from), To: jid.MustParse(aliceFrom), Type: TypeHeadline, PEP: &u}
		if _, err := h.b.HandleXMPPMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
	}
	nick, avatar := "Jules", "111f4b3c50d7b0df729d299bc6f8e9ef9066971f"
	pep(julietJID, PEPUpdate{Nick: &nick})
	if got := h.matrix.ghostNames; len(got) != 1 || got[0] != string(julietGhost)+" Jules" {
		t.Errorf("ghost names %q, want the PEP nick", got)
	}
	pep(julietJID, PEPUpdate{Avatar: &avatar, AvatarType: "image/png"})
	if got := h.xmpp.asked[asked:]; len(got) != 2 || !strings.HasSuffix(got[0], "avatar "+avatar) || strings.Contains(got[1], "avatar") {
		t.Errorf("asked %q, want the data item, then (refused) the vCard", got)
	}
	img := []byte("\x89PNG\r\n\x1a\n Juliet's face")
	id := sha1Hex(img)
	h.xmpp.avatars = map[string][]byte{julietJID: img}
	uploads := len(h.matrix.uploads)
	pep(julietJID, PEPUpdate{Avatar: &id, AvatarType: "image/png"})
	if len(h.matrix.uploads) != uploads+1 || h.counts["xmpp_avatar/from_pep"] != 1 || len(h.xmpp.asked) != asked+3 {
		t.Errorf("uploads %d, asked %q, counts %v: want the data item uploaded, no vCard", len(h.matrix.uploads)-uploads, h.xmpp.asked[asked:], h.counts)
	}
	asked = len(h.xmpp.asked)
	other := "Romeo"
	pep("romeo@montague.lit", PEPUpdate{Nick: &other, Avatar: &avatar})
	if len(h.matrix.ghostNames) != 1 || len(h.xmpp.asked) != asked || h.counts["xmpp_pep/"+string(ReasonNoPortal)] != 1 {
		t.Errorf("a person without a portal changed something: names %q, asked %q, counts %v", h.matrix.ghostNames, h.xmpp.asked, h.counts)
	}
}

// vcardsAsked is what h's core asked of XMPP people, less the chats'
// names.
func vcardsAsked(h *harness) []string {
	return slices.DeleteFunc(slices.Clone(h.xmpp.asked), func(a string) bool { return strings.HasSuffix(a, " name") })
}

// An occupant's presence in a chat carries the hash of their vCard photo
// (XEP-0153 §3.1; Prosody 0.12 puts it in for its users, XEP-0398): their
// vCard is asked of room/nick by the listening puppet, and the photo is
// their ghost's avatar; the same hash again asks nothing (§3.2: only
// another one is fetched), in a new run too; an empty one takes the
// avatar away. A photo too large, a vCard the room or server will not
// give, are refusals, counted, and not asked again for that hash; and
// each change spends the chat service's budget of new ghosts.
func TestOccupantAvatar(t *testing.T) {
	h := groupHarness(t, alice)
	photo := []byte(pngMagic + "beatrice")
	hash := sha1Hex(photo)
	h.xmpp.vcards = map[string]*VCard{lounge + "/Beatrice": {FN: "Beatrice", Photo: photo, PhotoType: "image/png"}}
	ghost, _ := testIDs.OccupantGhost(jid.MustParse(lounge), "occ-b")
	with := func(p *XMPPPresence, hash string) *XMPPPresence { p.Photo = &hash; return p }
	h.feed(t, with(occupantIn("Beatrice", "occ-b", alicePup), hash))
	if want := []string{aliceFrom + " " + lounge + "/Beatrice"}; !slices.Equal(vcardsAsked(h), want) {
		t.Fatalf("vCards asked %q, want %q", vcardsAsked(h), want)
	}
	if len(h.matrix.uploads) != 1 || h.matrix.uploads[0] != string(ghost)+" image/png "+string(photo) || h.matrix.ghostAvatars[ghost] != "mxc://example.org/up1" {
		t.Fatalf("uploads %q, avatar %q: want the photo as the occupant's ghost's", h.matrix.uploads, h.matrix.ghostAvatars[ghost])
	}
	if slices.Contains(h.matrix.ghostNames, string(ghost)+" Beatrice (XMPP)") || !slices.Contains(h.matrix.ghostNames, string(ghost)+" Beatrice") {
		t.Errorf("ghost names %q: want the nick, not the vCard's name", h.matrix.ghostNames)
	}
	h.feed(t, with(occupantIn("Beatrice", "occ-b", alicePup), hash))
	if len(vcardsAsked(h)) != 1 {
		t.Errorf("the same hash asked again: %q", vcardsAsked(h))
	}

	// A new run, its puppet in again, knows the hash from the store.
	h.withStore(h.store)
	if err := h.b.Rejoin(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	join := h.xmpp.presences[len(h.xmpp.presences)-1]
	h.feed(t, &XMPPPresence{From: join.To, To: join.From, MUC: &MUCPresence{Statuses: []int{110}}},
		with(occupantIn("Beatrice", "occ-b", alicePup), hash))
	if len(vcardsAsked(h)) != 1 || len(h.matrix.uploads) != 1 {
		t.Errorf("after a restart the same hash asked %q, uploaded %q", vcardsAsked(h), h.matrix.uploads)
	}

	h.b.SetIntake(Limits{PeerRate: 100, PeerBurst: 100, Pending: 100, JIDPortals: 10, DomainPortals: 10, DomainGhosts: 3, DomainSubscriptions: 10}, time.Now, zerolog.Nop())

	h.feed(t, with(occupantIn("Beatrice", "occ-b", alicePup), ""))
	if url, ok := h.matrix.ghostAvatars[ghost]; !ok || url != "" || len(vcardsAsked(h)) != 1 {
		t.Errorf("after an empty <photo/>: avatar %q (set %v), asked %q", url, ok, vcardsAsked(h))
	}

	big := make([]byte, MaxGhostPhotoBytes+1)
	copy(big, pngMagic)
	h.xmpp.vcards[lounge+"/Claudio"] = &VCard{Photo: big, PhotoType: "image/png"}
	for range 2 {
		h.feed(t, with(occupantIn("Claudio", "occ-c", alicePup), sha1Hex(big)))
	}
	// Dogberry's server keeps no vCard: the room passes on its error, and
	// his ghost keeps the avatar it has.
	dogberry, _ := testIDs.OccupantGhost(jid.MustParse(lounge), "occ-d")
	h.matrix.ghostAvatars[dogberry] = "mxc://example.org/before"
	for range 2 {
		h.feed(t, with(occupantIn("Dogberry", "occ-d", alicePup), sha1Hex([]byte("d"))))
	}
	if url := h.matrix.ghostAvatars[dogberry]; url != "mxc://example.org/before" {
		t.Errorf("after an error answer, the ghost's avatar is %q", url)
	}
	if len(vcardsAsked(h)) != 3 || len(h.matrix.uploads) != 1 || h.counts["xmpp_vcard/photo_too_large"] != 1 || h.counts["occupant_avatar/no_vcard"] != 1 {
		t.Errorf("asked %q, %d uploads, counts %v: want each asked once, nothing uploaded", vcardsAsked(h), len(h.matrix.uploads), h.counts)
	}

	// XEP-0153 §3.1: the hash is a hex SHA-1; a presence with anything
	// else asks nothing and keeps nothing.
	for _, bad := range []string{"not-a-hash", strings.Repeat("ab", 4096)} {
		h.feed(t, with(occupantIn("Seacoal", "occ-s", alicePup), bad))
	}
	if len(vcardsAsked(h)) != 3 || h.counts["occupant_avatar/bad_hash"] != 2 {
		t.Errorf("with hashes that are not SHA-1: asked %q, counts %v", vcardsAsked(h), h.counts)
	}

	// The budget of conference.capulet.lit is spent (3: Beatrice's empty
	// photo, Claudio's, Dogberry's): Verges's avatar waits for a later presence.
	h.xmpp.vcards[lounge+"/Verges"] = &VCard{Photo: photo}
	h.feed(t, with(occupantIn("Verges", "occ-v", alicePup), hash))
	if len(vcardsAsked(h)) != 3 || h.counts["occupant_avatar/"+string(ReasonGhostBudget)] != 1 {
		t.Errorf("past the budget: asked %q, counts %v", vcardsAsked(h), h.counts)
	}
}
