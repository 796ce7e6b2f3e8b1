package database

import (
	"bytes"
	"testing"

	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// A puppet's profile is stored whole, replaced whole, photo and all, and
// kept per user; no photo reads back as none.
func TestPuppetProfile(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		_, err := s.PuppetProfile(ctx, alice)
		wantNotFound(t, "PuppetProfile on empty store", err)

		check := func(what string, want mapping.Profile) {
			t.Helper()
			got, err := s.PuppetProfile(ctx, want.MXID)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if got.MXID != want.MXID || got.Name != want.Name || got.AvatarURL != want.AvatarURL ||
				!bytes.Equal(got.Photo, want.Photo) || got.PhotoType != want.PhotoType || got.PhotoHash != want.PhotoHash {
				t.Errorf("%s = %+v, want %+v", what, *got, want)
			}
		}
		withPhoto := mapping.Profile{MXID: alice, Name: "Alice", AvatarURL: "mxc://example.org/a", Photo: []byte{0x89, 'P', 'N', 'G', 0}, PhotoType: "image/png", PhotoHash: "01ab"}
		must(t, s.SetPuppetProfile(ctx, &withPhoto))
		check("stored", withPhoto)
		renamed := mapping.Profile{MXID: alice, Name: "Alice Liddell"}
		must(t, s.SetPuppetProfile(ctx, &renamed))
		check("replaced, without a photo", renamed)
		other := mapping.Profile{MXID: dave, Name: "Dave", AvatarURL: "mxc://example.org/d"}
		must(t, s.SetPuppetProfile(ctx, &other))
		check("another user", other)
		check("the first, unchanged", renamed)
	})
}

// A ghost's profile is kept per JID as given, replaced whole: a person's
// bare JID, and an occupant's room/key apart from the room's own.
func TestGhostProfile(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		_, err := s.GhostProfile(ctx, bob)
		wantNotFound(t, "GhostProfile on empty store", err)
		check := func(what string, want mapping.GhostProfile) {
			t.Helper()
			got, err := s.GhostProfile(ctx, want.JID)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if !got.JID.Equal(want.JID) || got.Name != want.Name || got.NamedByNick != want.NamedByNick || got.PhotoHash != want.PhotoHash || got.AvatarURL != want.AvatarURL {
				t.Errorf("%s = %+v, want %+v", what, *got, want)
			}
		}
		first := mapping.GhostProfile{JID: bob, Name: "Bob", PhotoHash: "ab12", AvatarURL: "mxc://example.org/b"}
		must(t, s.SetGhostProfile(ctx, &first))
		check("stored", first)
		nicked := mapping.GhostProfile{JID: bob, Name: "Bob", NamedByNick: true}
		must(t, s.SetGhostProfile(ctx, &nicked))
		check("replaced", nicked)
		room := jid.MustParse("lounge@conference.example.org")
		occupant := mapping.GhostProfile{JID: jid.MustParse("lounge@conference.example.org/occ-1"), PhotoHash: "cd34", AvatarURL: "mxc://example.org/o"}
		must(t, s.SetGhostProfile(ctx, &occupant))
		check("an occupant's", occupant)
		_, err = s.GhostProfile(ctx, room)
		wantNotFound(t, "the room's own, beside an occupant's", err)
	})
}
