//go:build e2e

package e2e

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/event"

	"xmppbridge/internal/peers"
)

// A person who gives no name (no XEP-0172 nick, no vCard) is named after
// her JID's local part with " (XMPP)" (docs/protocols.md, "Names and avatars") on Dendrite too,
// which gives every account it registers its localpart as display name:
// her profile and her membership in the portal both say so.
func TestGhostOfANamelessPersonIsNamedAfterHerJID(t *testing.T) {
	ctx := context.Background()
	// An account of her own: no other test has given her a name.
	if err := w.Prosody.Register("oatcake", peers.Password); err != nil {
		t.Fatal(err)
	}
	oatcake := w.xmppUser(t, "oatcake", "watch")
	room := openPortal(t, ctx, oatcake, "oatcake")
	ghost := w.ghost("oatcake@localhost")
	const want = "oatcake (XMPP)"

	profile, err := w.alice.Client.GetDisplayName(ctx, ghost)
	if err != nil {
		t.Fatal(err)
	}
	if profile.DisplayName != want {
		t.Errorf("the profile of %s names her %q, want %q", ghost, profile.DisplayName, want)
	}
	var member event.MemberEventContent
	if err := w.alice.Client.StateEvent(ctx, room, event.StateMember, string(ghost), &member); err != nil {
		t.Fatal(err)
	}
	if member.Displayname != want {
		t.Errorf("her m.room.member in the portal names her %q, want %q", member.Displayname, want)
	}
}
