//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// presenceProfile reads XEP-0172's <nick/> and XEP-0153's <photo/> of a
// presence; hasPhoto is false when it has no vcard-temp:x:update.
func presenceProfile(s *peers.Stanza) (nick, photo string, hasPhoto bool) {
	var p struct {
		Nick   string `xml:"http://jabber.org/protocol/nick nick"`
		Update *struct {
			Photo string `xml:"photo"`
		} `xml:"vcard-temp:x:update x"`
	}
	if xml.Unmarshal([]byte(s.XML), &p) != nil {
		return "", "", false
	}
	if p.Update == nil {
		return p.Nick, "", false
	}
	return p.Nick, p.Update.Photo, true
}

// testAvatar is a PNG of 200×200 pixels, larger than the 96 a side the
// bridge asks the homeserver for.
func testAvatar(t *testing.T) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 200, 200))
	for x := range 200 {
		for y := range 200 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// XEP-0172 and XEP-0153: a Matrix user's display name and avatar reach the XMPP people
// subscribed to her puppet when she changes them. Dendrite sends the
// change as her m.room.member "join" again, into the portal; the puppet's
// presence then carries the name (XEP-0172 <nick/>) and the SHA-1 of its
// vCard's PHOTO (XEP-0153 §3.1), and the vCard (XEP-0054) has both, the
// photo being the homeserver's thumbnail of her avatar, fetched through
// the authenticated media API.
func TestMatrixProfileReachesXMPP(t *testing.T) {
	ctx := context.Background()
	cli, carol := matrixUser(t, ctx, "carol")
	montague := w.xmppUser(t, "montague", "verona")
	interested(t, ctx, montague)
	puppet := w.puppet(t, cli.UserID)
	ghost := w.ghost("montague@" + w.Prosody.Domain)
	room, err := carol.CreateDM(ctx, ghost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Wait(ctx, wait, peers.IsMembership(room, ghost, event.MembershipJoin)); err != nil {
		t.Fatalf("the ghost never joined: %v", err)
	}
	if err := montague.SendRaw(ctx, fmt.Sprintf(`<presence to='%s' type='subscribe' id='sub-m'/>`, peers.XMLEscape(puppet))); err != nil {
		t.Fatal(err)
	}
	if _, err := montague.Wait(ctx, wait, isPresence(puppet, "subscribed")); err != nil {
		t.Fatalf("no subscribed: %v", err)
	}

	renamed := since(montague, func(s *peers.Stanza) bool {
		nick, _, _ := presenceProfile(s)
		return isPresence(ofResource(puppet), "")(s) && nick == "Carol of Verona"
	})
	if err := cli.SetDisplayName(ctx, "Carol of Verona"); err != nil {
		t.Fatal(err)
	}
	pres, err := montague.Wait(ctx, wait, renamed)
	if err != nil {
		t.Fatalf("the new display name never reached XMPP in the puppet's presence: %v", err)
	}
	if _, photo, ok := presenceProfile(pres); !ok || photo != "" {
		t.Errorf("presence without an avatar: photo %q (present %v), want an empty <photo/>: %s", photo, ok, pres.XML)
	}

	up, err := cli.UploadBytes(ctx, testAvatar(t), "image/png")
	if err != nil {
		t.Fatal(err)
	}
	withAvatar := since(montague, func(s *peers.Stanza) bool {
		_, photo, _ := presenceProfile(s)
		return isPresence(ofResource(puppet), "")(s) && photo != ""
	})
	if err := cli.SetAvatarURL(ctx, up.ContentURI); err != nil {
		t.Fatal(err)
	}
	pres, err = montague.Wait(ctx, wait, withAvatar)
	if err != nil {
		t.Fatalf("the new avatar never reached XMPP in the puppet's presence: %v", err)
	}
	nick, hash, _ := presenceProfile(pres)
	if nick != "Carol of Verona" {
		t.Errorf("presence with the avatar has nick %q", nick)
	}
	sum := sha1.Sum(thumbnail(t, ctx, cli, up.ContentURI))
	if hash != hex.EncodeToString(sum[:]) {
		t.Errorf("presence photo hash %s, the thumbnail's SHA-1 is %x", hash, sum)
	}

	if err := montague.SendRaw(ctx, `<iq type='get' id='vc-m' to='`+peers.XMLEscape(puppet)+`'><vCard xmlns='vcard-temp'/></iq>`); err != nil {
		t.Fatal(err)
	}
	res, err := montague.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "vc-m" })
	if err != nil {
		t.Fatal(err)
	}
	fn, typ, photo := vCardOf(t, res)
	vsum := sha1.Sum(photo)
	if fn != "Carol of Verona" || !strings.HasPrefix(typ, "image/") || hex.EncodeToString(vsum[:]) != hash {
		t.Errorf("vCard FN %q PHOTO %s of %d bytes (SHA-1 %x), want the presence's hash %s: %s", fn, typ, len(photo), vsum, hash, res.XML)
	}
}

// matrixUser registers name on the rig's Dendrite, its client following
// its sync for the length of the test.
func matrixUser(t *testing.T, ctx context.Context, name string) (*mautrix.Client, *peers.MatrixUser) {
	t.Helper()
	cli, err := w.Dendrite.RegisterUser(ctx, name, peers.Password)
	if err != nil {
		t.Fatal(err)
	}
	u := peers.NewMatrixUser(ctx, cli)
	t.Cleanup(u.Close)
	return cli, u
}

// thumbnail is the homeserver's thumbnail of uri at 96 a side, which the
// bridge gives a puppet's vCard as its PHOTO.
func thumbnail(t *testing.T, ctx context.Context, cli *mautrix.Client, uri id.ContentURI) []byte {
	t.Helper()
	resp, err := cli.DownloadThumbnail(ctx, uri, 96, 96, mautrix.DownloadThumbnailExtra{Method: "scale"})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	thumb, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return thumb
}

// vCardOf reads the vCard (XEP-0054 §3.1) of the IQ result res: its FN,
// and its PHOTO's TYPE and bytes.
func vCardOf(t *testing.T, res *peers.Stanza) (fn, typ string, photo []byte) {
	t.Helper()
	var card struct {
		VCard struct {
			FN    string `xml:"FN"`
			Photo struct {
				Type   string `xml:"TYPE"`
				BinVal string `xml:"BINVAL"`
			} `xml:"PHOTO"`
		} `xml:"vcard-temp vCard"`
	}
	if err := xml.Unmarshal([]byte(res.XML), &card); err != nil {
		t.Fatal(err)
	}
	photo, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(card.VCard.Photo.BinVal), ""))
	if err != nil {
		t.Fatalf("PHOTO BINVAL: %v", err)
	}
	return card.VCard.FN, card.VCard.Photo.Type, photo
}

// ghostProfile is the ghost's display name and avatar on Dendrite.
func ghostProfile(t *testing.T, ctx context.Context, ghost id.UserID) (string, id.ContentURI) {
	t.Helper()
	p, err := w.alice.Client.GetProfile(ctx, ghost)
	if err != nil {
		t.Fatal(err)
	}
	return p.DisplayName, p.AvatarURL
}

// waitGhostAvatar waits until the ghost's avatar is an image whose bytes
// are want.
func waitGhostAvatar(t *testing.T, ctx context.Context, ghost id.UserID, want []byte) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		_, url := ghostProfile(t, ctx, ghost)
		if !url.IsEmpty() {
			got, err := w.alice.Client.DownloadBytes(ctx, url)
			if err == nil && bytes.Equal(got, want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ghost's avatar is %q, not the vCard's photo", url)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setVCard publishes c's vCard (XEP-0054 §3.2), which Prosody keeps.
func setVCard(t *testing.T, ctx context.Context, c *peers.XMPPClient, id, nick string, photo []byte) {
	t.Helper()
	if err := c.SendRaw(ctx, `<iq type='set' id='`+id+`'><vCard xmlns='vcard-temp'><FN>Prince Escalus</FN><NICKNAME>`+nick+
		`</NICKNAME><PHOTO><TYPE>image/png</TYPE><BINVAL>`+base64.StdEncoding.EncodeToString(photo)+`</BINVAL></PHOTO></vCard></iq>`); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == id }); err != nil || res.Type != "result" {
		t.Fatalf("vCard not stored: %v %v", res, err)
	}
}

// XEP-0054 and XEP-0153: an XMPP person's ghost takes the name and photo of their vCard
// (XEP-0054), fetched by the puppet when the portal is made, uploaded to
// Dendrite's media repository; when their presence announces another
// photo (XEP-0153 §3.2, the hash of the new one), the ghost's avatar
// follows.
func TestGhostTakesTheVCard(t *testing.T) {
	ctx := context.Background()
	escalus := w.xmppUser(t, "escalus", "verona")
	photo1 := testAvatar(t)
	setVCard(t, ctx, escalus, "vc-1", "Escalus", photo1)
	ghost := w.ghost("escalus@" + w.Prosody.Domain)
	openPortal(t, ctx, escalus, "escalus")
	deadline := time.Now().Add(wait)
	for name, _ := ghostProfile(t, ctx, ghost); name != "Escalus (XMPP)"; name, _ = ghostProfile(t, ctx, ghost) {
		if time.Now().After(deadline) {
			t.Fatalf("the ghost is named %q, not after the vCard's NICKNAME", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitGhostAvatar(t, ctx, ghost, photo1)

	var buf bytes.Buffer
	img := image.NewRGBA(image.Rect(0, 0, 48, 48))
	for x := range 48 {
		img.Set(x, x, color.RGBA{255, 0, 0, 255})
	}
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	photo2 := buf.Bytes()
	setVCard(t, ctx, escalus, "vc-2", "Escalus", photo2)
	sum := sha1.Sum(photo2)
	if err := escalus.SendRaw(ctx, `<presence to='`+peers.XMLEscape(w.puppet(t, w.alice.Client.UserID))+`'><x xmlns='vcard-temp:x:update'><photo>`+hex.EncodeToString(sum[:])+`</photo></x></presence>`); err != nil {
		t.Fatal(err)
	}
	waitGhostAvatar(t, ctx, ghost, photo2)
}

// XEP-0172 §4.5 and XEP-0163: the puppets ask for their
// contacts' nicknames with "+notify" in their entity capabilities, so
// Prosody's PEP service sends Alice's puppet Lawrence's nickname when he
// publishes it (the puppet being subscribed to him); his ghost takes it.
func TestGhostTakesThePEPNick(t *testing.T) {
	ctx := context.Background()
	lawrence := w.xmppUser(t, "lawrence", "cell")
	interested(t, ctx, lawrence)
	puppet := w.puppet(t, w.alice.Client.UserID)
	room := openPortal(t, ctx, lawrence, "lawrence")
	// He approves the puppet's request, then asks for its presence: the
	// puppet's answer carries its caps, which Prosody resolves.
	if _, err := lawrence.Wait(ctx, wait, isPresence(puppet, "subscribe")); err != nil {
		t.Fatalf("the puppet never asked for a subscription: %v", err)
	}
	for _, p := range []string{`<presence to='%s' type='subscribed'/>`, `<presence to='%s' type='subscribe'/>`} {
		if err := lawrence.SendRaw(ctx, fmt.Sprintf(p, peers.XMLEscape(puppet))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := lawrence.Wait(ctx, wait, isPresence(ofResource(puppet), "")); err != nil {
		t.Fatalf("no presence of the puppet: %v", err)
	}
	// Published whether or not Prosody has resolved the caps yet: once
	// it has, it sends the last item (XEP-0163 §4.3.4).
	if err := lawrence.SendRaw(ctx, `<iq type='set' id='pub-nick'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='http://jabber.org/protocol/nick'><item><nick xmlns='http://jabber.org/protocol/nick'>Friar Lawrence</nick></item></publish></pubsub></iq>`); err != nil {
		t.Fatal(err)
	}
	if res, err := lawrence.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "pub-nick" }); err != nil || res.Type != "result" {
		t.Fatalf("nick not published: %v %v", res, err)
	}
	ghost := w.ghost("lawrence@" + w.Prosody.Domain)
	named := func(e *event.Event) bool {
		if e.RoomID != room || e.Type != event.StateMember || e.StateKey == nil || *e.StateKey != string(ghost) {
			return false
		}
		name, _ := e.Content.Raw["displayname"].(string)
		return name == "Friar Lawrence (XMPP)"
	}
	if _, err := w.alice.Wait(ctx, wait, named); err != nil {
		t.Fatalf("the ghost never took the PEP nick: %v", err)
	}
}

// XEP-0084: a client that publishes its avatar only as PEP data
// and metadata (as Conversations and Dino do) gets it on its ghost: the
// puppet, which asked for metadata notifications (+notify), is told of the
// new avatar, and Prosody gives the same image as the vCard's PHOTO.
func TestGhostTakesTheXEP0084Avatar(t *testing.T) {
	ctx := context.Background()
	benedick := w.xmppUser(t, "benedick", "padua")
	interested(t, ctx, benedick)
	puppet := w.puppet(t, w.alice.Client.UserID)
	openPortal(t, ctx, benedick, "benedick")
	if _, err := benedick.Wait(ctx, wait, isPresence(puppet, "subscribe")); err != nil {
		t.Fatalf("the puppet never asked for a subscription: %v", err)
	}
	for _, p := range []string{`<presence to='%s' type='subscribed'/>`, `<presence to='%s' type='subscribe'/>`} {
		if err := benedick.SendRaw(ctx, fmt.Sprintf(p, peers.XMLEscape(puppet))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := benedick.Wait(ctx, wait, isPresence(ofResource(puppet), "")); err != nil {
		t.Fatalf("no presence of the puppet: %v", err)
	}
	img := testAvatar(t)
	sum := sha1.Sum(img)
	hash := hex.EncodeToString(sum[:])
	publish := func(id, node, item string) {
		t.Helper()
		if err := benedick.SendRaw(ctx, `<iq type='set' id='`+id+`'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='`+node+`'>`+item+`</publish></pubsub></iq>`); err != nil {
			t.Fatal(err)
		}
		if res, err := benedick.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == id }); err != nil || res.Type != "result" {
			t.Fatalf("%s not published: %v %v", node, res, err)
		}
	}
	// XEP-0084 §4.1 and §4.2: the data first, then the metadata.
	publish("av-data", "urn:xmpp:avatar:data", `<item id='`+hash+`'><data xmlns='urn:xmpp:avatar:data'>`+base64.StdEncoding.EncodeToString(img)+`</data></item>`)
	publish("av-meta", "urn:xmpp:avatar:metadata", fmt.Sprintf(`<item id='%s'><metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='%d' id='%s' height='200' width='200' type='image/png'/></metadata></item>`, hash, len(img), hash))
	waitGhostAvatar(t, ctx, w.ghost("benedick@"+w.Prosody.Domain), img) // Taken from the data item itself (XEP-0084 §4.4): Benedick's PEP
	// service lets the puppet read it, as a subscribed contact.
	metrics := w.metrics(t)
	if !strings.Contains(metrics, `xmppbridge_events_total{reason="from_pep",what="xmpp_avatar"}`) {
		t.Errorf("the avatar did not come from the XEP-0084 data item: %s", grepLines(metrics, "xmpp_avatar"))
	}
}

// grepLines is the lines of text that contain sub.
func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// XEP-0356: Prosody grants the component its users' rosters
// (mod_privilege, roster "both"), so a portal puts Alice's puppet into
// Beatrice's roster under Alice's display name, in the group "Matrix",
// with no subscription made up; clients that read no XEP-0172 nick
// (profanity, mcabber) show that name.
func TestPuppetInTheRoster(t *testing.T) {
	ctx := context.Background()
	beatrice := w.xmppUser(t, "beatrice", "orchard")
	openPortal(t, ctx, beatrice, "beatrice")
	name, err := w.alice.Client.GetOwnDisplayName(ctx)
	if err != nil {
		t.Fatal(err)
	}
	puppet := w.puppet(t, w.alice.Client.UserID)
	deadline := time.Now().Add(wait)
	for i := 0; ; i++ {
		qid := fmt.Sprintf("roster-%d", i)
		if err := beatrice.SendRaw(ctx, `<iq type='get' id='`+qid+`'><query xmlns='jabber:iq:roster'/></iq>`); err != nil {
			t.Fatal(err)
		}
		res, err := beatrice.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == qid })
		if err != nil {
			t.Fatal(err)
		}
		if res.Has(`jid="`+peers.XMLEscape(puppet)+`"`) && res.Has(`name="`+peers.XMLEscape(name.DisplayName)+`"`) && res.Has(">Matrix</group>") {
			if !res.Has(`subscription="none"`) && !res.Has(`subscription="to"`) && !res.Has(`subscription="from"`) && !res.Has(`subscription="both"`) {
				t.Errorf("roster item without a subscription state: %s", res.XML)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the puppet never showed in the roster as %q: %s", name.DisplayName, res.XML)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
