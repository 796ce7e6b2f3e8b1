//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"xmppbridge/internal/peers"
)

// XEP-0153 §3.1 and XEP-0054 §3.1 through a chat (XEP-0045): a Matrix
// member's avatar reaches the occupants of a chat she joins. Viola sets
// an avatar with her Matrix client and joins, through the bot, a chat
// Ursula made; her puppet's presence in the room carries the SHA-1 of
// the homeserver's 96-pixel thumbnail of it, and Ursula's vCard query of
// the puppet's occupant JID (room/nick), which Prosody 0.12's room sends
// on to the puppet's bare JID from Ursula's occupant JID, is answered
// with a PHOTO of those bytes and her display name.
func TestMemberAvatarInAGroup(t *testing.T) {
	ctx := context.Background()
	cli, viola := matrixUser(t, ctx, "viola")
	if err := cli.SetDisplayName(ctx, "Viola"); err != nil {
		t.Fatal(err)
	}
	up, err := cli.UploadBytes(ctx, testAvatar(t), "image/png")
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.SetAvatarURL(ctx, up.ContentURI); err != nil {
		t.Fatal(err)
	}
	thumb := thumbnail(t, ctx, cli, up.ContentURI)
	sum := sha1.Sum(thumb)
	hash := hex.EncodeToString(sum[:])

	muc := "illyria@" + w.Prosody.MUCDomain
	ursula := w.xmppUser(t, "ursula", "illyria")
	joinMUC(t, ursula, muc, "Ursula")
	if _, err := viola.JoinGroup(ctx, wait, w.IDs.Bot(), muc); err != nil {
		t.Fatal(err)
	}
	// Her join, or the presence that follows it once her profile is
	// stored, carries the hash.
	pres, err := ursula.Wait(ctx, wait, func(s *peers.Stanza) bool {
		_, photo, _ := presenceProfile(s)
		return s.Name == "presence" && strings.HasPrefix(s.From, muc+"/") && s.From != muc+"/Ursula" && s.Type == "" && photo == hash
	})
	if err != nil {
		t.Fatalf("Viola's puppet never gave the chat her avatar's hash %s: %v", hash, err)
	}
	occupant := pres.From
	t.Logf("the puppet's presence in the chat: %s", pres.XML)

	if err := ursula.SendRaw(ctx, `<iq type='get' id='vc-viola' to='`+peers.XMLEscape(occupant)+`'><vCard xmlns='vcard-temp'/></iq>`); err != nil {
		t.Fatal(err)
	}
	res, err := ursula.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "vc-viola" })
	if err != nil {
		t.Fatalf("no answer to the vCard query of %s: %v", occupant, err)
	}
	if res.Type != "result" || res.From != occupant {
		t.Fatalf("the vCard of %s: %s", occupant, res.XML)
	}
	fn, typ, photo := vCardOf(t, res)
	if fn != "Viola" || !strings.HasPrefix(typ, "image/") || !bytes.Equal(photo, thumb) {
		t.Errorf("the vCard through the chat: FN %q, PHOTO %s of %d bytes; want Viola and the thumbnail of her avatar (%d bytes)",
			fn, typ, len(photo), len(thumb))
	}
}

// XEP-0045 §10.1.2: a chat a Matrix member's join makes is an instant
// room. Alice joins, through the bot, a chat that does not exist; her
// puppet's join makes it (status 201, §10.1.1) and Prosody 0.12 keeps it
// locked (`muc_room_locking`, on by default, for 300 s), answering every
// other join <item-not-found/> (§7.2.13), until its owner submits the
// configuration: the bridge accepts the default. Then Sebastian joins it
// as a second occupant (no 201 for him: the room is not new) and a
// message of his reaches Alice's portal.
func TestGroupMadeByAJoinIsUnlocked(t *testing.T) {
	ctx := context.Background()
	muc := "orsino@" + w.Prosody.MUCDomain
	portal := w.aliceJoinsGroup(t, muc)
	sebastian := w.xmppUser(t, "sebastian", "orsino")
	// The chat exists once the puppet's join made it (XEP-0030: its
	// disco#info answers a result, locked or not; item-not-found before).
	deadline := time.Now().Add(wait)
	for made := false; !made; {
		if time.Now().After(deadline) {
			t.Fatalf("Alice's puppet never made the chat")
		}
		answer := since(sebastian, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "disco-orsino" })
		sendRaw(t, sebastian, `<iq type='get' id='disco-orsino' to='`+muc+`'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
		s, err := sebastian.Wait(ctx, wait, answer)
		if err != nil {
			t.Fatal(err)
		}
		if made = s.Type == "result"; !made {
			time.Sleep(500 * time.Millisecond)
		}
	}
	// The request goes after the puppet's join is in: a join of
	// Sebastian's before it may still be refused, so he tries a few
	// times, for far less than the lock's 300 s.
	var self *peers.Stanza
	refused := 0
	deadline = time.Now().Add(wait)
	for self == nil && time.Now().Before(deadline) {
		answer := since(sebastian, func(s *peers.Stanza) bool {
			return s.Name == "presence" && s.From == muc+"/Sebastian" && (s.Type == "error" || s.Has(`code="110"`))
		})
		sendRaw(t, sebastian, `<presence to='`+muc+`/Sebastian'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`)
		s, err := sebastian.Wait(ctx, wait, answer)
		switch {
		case err != nil:
			t.Fatalf("no answer to Sebastian's join: %v", err)
		case s.Type == "error":
			if refused++; refused == 1 {
				t.Logf("Sebastian's join refused (tried again each second): %s", s.XML)
			}
			time.Sleep(time.Second)
		default:
			self = s
		}
	}
	if self == nil {
		t.Fatalf("the chat Alice's join made stayed locked")
	}
	if self.Has(`code="201"`) {
		t.Fatalf("Sebastian made the chat, not Alice's puppet: %s", self.XML)
	}
	mark := w.alice.Mark()
	sendRaw(t, sebastian, `<message type='groupchat' id='seb1' to='`+muc+`'><body>If music be the food of love, play on</body></message>`)
	if _, err := w.alice.WaitSince(ctx, mark, wait, func(e *event.Event) bool {
		return e.RoomID == portal && e.Type == event.EventMessage && e.Content.AsMessage().Body == "If music be the food of love, play on"
	}); err != nil {
		t.Fatalf("Sebastian's message never reached the portal: %v", err)
	}
}
