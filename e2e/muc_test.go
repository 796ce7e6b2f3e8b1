//go:build e2e

package e2e

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"

	"xmppbridge/internal/peers"
	"xmppbridge/internal/rig"
)

// What the rig's Prosody does in a multi-user chat, the facts group
// portals are to be built on, checked against the server itself rather
// than remembered: a join (XEP-0045 §7.2), the reflection of a message
// with the room's own stanza-id (XEP-0359 §3, stamped by muc_mam) and the
// sender's occupant-id (XEP-0421), and a displayed marker that names that
// stanza-id reaching the sender (XEP-0333 §"Groupchat": markers in a room
// refer to the room's id); an occupant's avatar hash in their presence,
// put there by their server (XEP-0398), and their vCard asked through
// the room (XEP-0054 to room/nick).
func TestProsodyMUCFacts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := rig.StartProsody(ctx, t.TempDir(), rig.LogWriter(t.Logf, "prosody: "))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	for _, u := range []string{"juliet", "romeo", "benvolio"} {
		if err := p.Register(u, "secret"); err != nil {
			t.Fatal(err)
		}
	}
	dial := func(user string) *peers.XMPPClient {
		c, err := peers.DialXMPP(ctx, p.Addr(), user, p.Domain, "phone", "secret")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	juliet, romeo := dial("juliet"), dial("romeo")
	send := func(c *peers.XMPPClient, stanza string) {
		t.Helper()
		if err := c.SendRaw(ctx, stanza); err != nil {
			t.Fatal(err)
		}
	}
	room := "coven@" + p.MUCDomain

	// §7.2: a join is presence to room/nick with the muc <x/>; asking for no
	// history (§7.2.15) is how a puppet joins without being sent the past.
	join := func(c *peers.XMPPClient, nick string) *peers.Stanza {
		t.Helper()
		send(c, `<presence to='`+room+`/`+nick+`'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`)
		self, err := c.Wait(ctx, 10*time.Second, func(s *peers.Stanza) bool {
			return s.Name == "presence" && s.From == room+"/"+nick && s.Has(`code="110"`)
		})
		if err != nil {
			t.Fatalf("%s's join: no self-presence (status 110, §7.2.2): %v", nick, err)
		}
		return self
	}
	first := join(juliet, "Juliet")
	t.Logf("the first occupant's self-presence: %s", first.XML)
	if !first.Has(`code="201"`) {
		t.Errorf("the room was not new to its first occupant (status 201, §10.1.1): %s", first.XML)
	}
	// §10.1.2: a new room may be locked until its owner configures it;
	// accepting the default configuration makes it an instant room.
	send(juliet, `<iq type='set' id='inst1' to='`+room+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`)
	if _, err := juliet.Wait(ctx, 10*time.Second, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "inst1" && s.Type == "result" }); err != nil {
		t.Fatalf("the instant room (§10.1.2): %v", err)
	}
	join(romeo, "Romeo")

	// XEP-0359 §3: the room stamps the message it reflects with a
	// stanza-id of its own (by the room's bare JID), beside the sender's
	// origin-id, and every occupant, the sender too, gets the same one.
	send(romeo, `<message type='groupchat' id='r1' to='`+room+`'><body>hello, coven</body>`+
		`<origin-id xmlns='urn:xmpp:sid:0' id='r1'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>`)
	reflected := func(c *peers.XMPPClient) string {
		t.Helper()
		s, err := c.Wait(ctx, 10*time.Second, func(s *peers.Stanza) bool {
			return s.Name == "message" && s.Type == "groupchat" && s.Body == "hello, coven"
		})
		if err != nil {
			t.Fatalf("no reflection: %v", err)
		}
		m := regexp.MustCompile(`<stanza-id[^>]*by="` + regexp.QuoteMeta(room) + `"[^>]*id="([^"]+)"|<stanza-id[^>]*id="([^"]+)"[^>]*by="` + regexp.QuoteMeta(room) + `"`).FindStringSubmatch(s.XML)
		if m == nil {
			t.Fatalf("the reflection has no stanza-id by the room: %s", s.XML)
		}
		if !s.Has(`<origin-id`) || s.From != room+"/Romeo" {
			t.Errorf("the reflection lost the origin-id or its sender: %s", s.XML)
		}
		// XEP-0421 §3: the room names the occupant by an id of its own,
		// stable across nick changes: Debian's Prosody 0.12.3 has it in
		// mod_muc (muc/occupant_id.lib.lua), so occupants need not be
		// known by nick alone.
		if !s.Has(`urn:xmpp:occupant-id:0`) {
			t.Errorf("the reflection has no XEP-0421 occupant-id: %s", s.XML)
		}
		return m[1] + m[2]
	}
	atJuliet, atRomeo := reflected(juliet), reflected(romeo)
	if atJuliet != atRomeo || atJuliet == "r1" {
		t.Errorf("stanza-ids: %q to Juliet, %q to Romeo; want one id of the room's, not the sender's", atJuliet, atRomeo)
	}

	// XEP-0333 §"Groupchat": a marker in a room names the room's stanza-id,
	// and the room passes it on to everyone, the sender of the message too.
	send(juliet, `<message type='groupchat' id='j1' to='`+room+`'><displayed xmlns='urn:xmpp:chat-markers:0' id='`+atJuliet+`'/></message>`)
	marker, err := romeo.Wait(ctx, 10*time.Second, func(s *peers.Stanza) bool {
		return s.Name == "message" && s.Has("urn:xmpp:chat-markers:0") && s.Has("displayed") && s.From == room+"/Juliet"
	})
	if err != nil {
		t.Fatalf("Juliet's marker did not reach Romeo: %v", err)
	}
	if !strings.Contains(marker.XML, atJuliet) {
		t.Errorf("the marker Romeo got does not name the room's id %q: %s", atJuliet, marker.XML)
	}
	t.Logf("a marker as an occupant gets it: %s", marker.XML)

	// XEP-0398 and XEP-0153 §3.1: the server of an occupant whose client
	// says nothing of an avatar (as this one) puts the hash of their
	// XEP-0084 avatar into their presence (Prosody 0.12's
	// mod_vcard_legacy), into a join too, and the room passes it on: an
	// empty <photo/> without one, the hash once they have one.
	photoOf := func(s *peers.Stanza) (string, bool) {
		_, photo, has := presenceProfile(s)
		return photo, has
	}
	romeoIn, err := juliet.Wait(ctx, 10*time.Second, func(s *peers.Stanza) bool { return s.Name == "presence" && s.From == room+"/Romeo" })
	if err != nil {
		t.Fatal(err)
	}
	if photo, has := photoOf(romeoIn); !has || photo != "" {
		t.Errorf("Romeo's join, without an avatar: photo %q (present %v), want an empty <photo/>: %s", photo, has, romeoIn.XML)
	}
	avatar := testAvatar(t)
	sum := sha1.Sum(avatar)
	hash := hex.EncodeToString(sum[:])
	setVCard(t, ctx, romeo, "vc-romeo", "Romeo", avatar)
	isRomeo := since(juliet, func(s *peers.Stanza) bool { return s.Name == "presence" && s.From == room+"/Romeo" })
	send(romeo, `<presence to='`+room+`/Romeo'/>`)
	again, err := juliet.Wait(ctx, 10*time.Second, isRomeo)
	if err != nil {
		t.Fatal(err)
	}
	if photo, _ := photoOf(again); photo != hash {
		t.Errorf("Romeo's presence after his vCard photo: photo %q, want its SHA-1 %s: %s", photo, hash, again.XML)
	}
	// XEP-0054 through the room: an occupant's vCard asked of their
	// occupant JID is sent on by the room to their bare real JID (from the
	// asker's occupant JID), so their server answers, and the answer comes
	// back from room/nick; a non-occupant asking is refused.
	send(juliet, `<iq type='get' id='vc1' to='`+room+`/Romeo'><vCard xmlns='vcard-temp'/></iq>`)
	card, err := juliet.Wait(ctx, 10*time.Second, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "vc1" })
	if err != nil {
		t.Fatalf("no answer to a vCard asked of an occupant: %v", err)
	}
	if card.Type != "result" || card.From != room+"/Romeo" || !strings.Contains(card.XML, base64.StdEncoding.EncodeToString(avatar)[:64]) {
		t.Errorf("Romeo's vCard through the room: %.300s, want a result from room/Romeo with his PHOTO", card.XML)
	}
	stranger := dial("benvolio")
	send(stranger, `<iq type='get' id='vc2' to='`+room+`/Romeo'><vCard xmlns='vcard-temp'/></iq>`)
	if refused, err := stranger.Wait(ctx, 10*time.Second, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "vc2" }); err != nil || refused.Type != "error" || !refused.Has("not-acceptable") {
		t.Errorf("a vCard asked of an occupant by a non-occupant: %v %v, want <not-acceptable/>", refused, err)
	}

	// XEP-0410 §3.1: an occupant asks its own occupant JID whether it is
	// still in the room. Prosody answers for the room: a result while it
	// is in; once it has left, <not-acceptable/> (§3.2: not joined).
	ping := func(c *peers.XMPPClient, id, nick string) *peers.Stanza {
		t.Helper()
		send(c, `<iq type='get' id='`+id+`' to='`+room+`/`+nick+`'><ping xmlns='urn:xmpp:ping'/></iq>`)
		answer, err := c.Wait(ctx, 10*time.Second, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == id })
		if err != nil {
			t.Fatalf("no answer to the self-ping %s: %v", id, err)
		}
		return answer
	}
	if a := ping(juliet, "sp1", "Juliet"); a.Type != "result" {
		t.Errorf("a self-ping while in the room: %s, want a result", a.XML)
	}
	send(juliet, `<presence type='unavailable' to='`+room+`/Juliet'/>`)
	if _, err := juliet.Wait(ctx, 10*time.Second, func(s *peers.Stanza) bool {
		return s.Name == "presence" && s.From == room+"/Juliet" && s.Type == "unavailable"
	}); err != nil {
		t.Fatal(err)
	}
	if a := ping(juliet, "sp2", "Juliet"); a.Type != "error" || !a.Has("not-acceptable") {
		t.Errorf("a self-ping after leaving: %s, want <not-acceptable/>", a.XML)
	}
}
