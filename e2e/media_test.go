//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	_ "image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// testPNG is a w×h PNG, different for each seed.
func testPNG(t *testing.T, w, h int, seed uint8) []byte {
	t.Helper()
	return peers.PNG(w, h, seed)
}

// testPDF is a small PDF document (net/http's sniffing knows it by its
// "%PDF-" signature).
var testPDF = []byte("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// isFile matches a ghost's m.room.message of msgtype in room.
func isFile(room id.RoomID, sender id.UserID, msgtype event.MessageType) func(*event.Event) bool {
	return func(e *event.Event) bool {
		if e.RoomID != room || e.Sender != sender || e.Type != event.EventMessage {
			return false
		}
		c := e.Content.AsMessage()
		return c != nil && c.MsgType == msgtype
	}
}

// XEP-0066 §3 and XEP-0363 from a real client: slixmpp uploads to
// Prosody's mod_http_file_share and sends the GET URL as the body and in
// <x xmlns='jabber:x:oob'/>, as Conversations does. The bridge fetches it
// and posts an m.image as the ghost whose bytes, downloaded by Alice
// through the authenticated media API, are the ones uploaded, with its
// type, size and pixels in info (client-server API, m.image); a PDF with
// words of the sender's is an m.file with the words as caption and the
// name as filename (v1.10 media captions). A link the bridge cannot fetch,
// and an aesgcm:// link (an encrypted file), arrive as their text.
func TestMediaFromXMPP(t *testing.T) {
	if err := peers.SlixmppAvailable(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice := w.alice
	puppet := w.puppet(t, alice.Client.UserID)
	viola, err := w.StartSlixmpp(ctx, "viola")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(viola.Close)
	ghost := w.ghost("viola@localhost")
	dir := t.TempDir()
	pic := testPNG(t, 40, 30, 7)
	picPath := filepath.Join(dir, "shipwreck.png")
	pdfPath := filepath.Join(dir, "letter.pdf")
	if err := os.WriteFile(picPath, pic, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pdfPath, testPDF, 0o644); err != nil {
		t.Fatal(err)
	}

	if err := viola.Do(ctx, wait, map[string]string{"cmd": "send_file", "to": puppet, "path": picPath, "type": "image/png", "service": w.Prosody.UploadDomain}); err != nil {
		t.Fatalf("slixmpp did not upload the picture: %v", err)
	}
	invite, err := alice.Wait(ctx, wait, peers.IsInvite(alice.Client.UserID, ghost))
	if err != nil {
		t.Fatal(err)
	}
	room := invite.RoomID
	if _, err := alice.Client.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	img, err := alice.Wait(ctx, wait, isFile(room, ghost, event.MsgImage))
	if err != nil {
		t.Fatalf("no m.image from the ghost: %v", err)
	}
	c := img.Content.AsMessage()
	if c.Body != "shipwreck.png" || c.Info == nil || c.Info.MimeType != "image/png" || c.Info.Size != len(pic) || c.Info.Width != 40 || c.Info.Height != 30 {
		t.Errorf("m.image body %q info %+v: want shipwreck.png, image/png, %d bytes, 40×30", c.Body, c.Info, len(pic))
	}
	got := download(t, ctx, alice.Client, c.URL)
	if sha(got) != sha(pic) {
		t.Errorf("the picture on Matrix is %d bytes, not the %d uploaded", len(got), len(pic))
	}

	// With words of her own, the body is a caption.
	if err := viola.Do(ctx, wait, map[string]string{"cmd": "send_file", "to": puppet, "path": pdfPath, "type": "application/pdf", "service": w.Prosody.UploadDomain, "body": "My father had a daughter"}); err != nil {
		t.Fatalf("slixmpp did not upload the PDF: %v", err)
	}
	file, err := alice.Wait(ctx, wait, isFile(room, ghost, event.MsgFile))
	if err != nil {
		t.Fatalf("no m.file from the ghost: %v", err)
	}
	c = file.Content.AsMessage()
	if c.FileName != "letter.pdf" || !strings.Contains(c.Body, "My father had a daughter") || c.Info == nil || c.Info.MimeType != "application/pdf" {
		t.Errorf("m.file filename %q body %q info %+v: want letter.pdf, the caption, application/pdf", c.FileName, c.Body, c.Info)
	}
	if got := download(t, ctx, alice.Client, c.URL); !bytes.Equal(got, testPDF) {
		t.Errorf("the PDF on Matrix is %d bytes, not the %d uploaded", len(got), len(testPDF))
	}

	// What cannot be fetched stays a link: nothing is dropped.
	for _, link := range []string{"http://127.0.0.1:1/gone.png", "aesgcm://127.0.0.1/secret.png#0011223344"} {
		client := w.xmppUser(t, "viola", "raw")
		if err := client.SendRaw(ctx, `<message type='chat' id='link-`+sha([]byte(link))[:8]+`' to='`+peers.XMLEscape(puppet)+`'><body>`+link+`</body><x xmlns='jabber:x:oob'><url>`+link+`</url></x></message>`); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Wait(ctx, wait, peers.IsText(room, ghost, link)); err != nil {
			t.Errorf("%s never reached Matrix as its text: %v", link, err)
		}
	}
}

func download(t *testing.T, ctx context.Context, cli *mautrix.Client, uri id.ContentURIString) []byte {
	t.Helper()
	mxc, err := uri.Parse()
	if err != nil {
		t.Fatalf("not an mxc URI: %q", uri)
	}
	data, err := cli.DownloadBytes(ctx, mxc)
	if err != nil {
		t.Fatalf("download %s: %v", uri, err)
	}
	return data
}

// The other way: Alice sends a picture, a PDF and a sticker; the bridge
// downloads each from Dendrite's authenticated media API and uploads it
// to Prosody's XEP-0363 service as her puppet; slixmpp gets a message whose
// body is the URL and whose XEP-0066 <x/> has the same URL, and
// downloads from it the bytes Alice uploaded. Its XEP-0333 displayed
// marker on the picture is the ghost's m.read of Alice's m.image. An
// encrypted file (client-server API: "file" instead of "url") cannot be
// carried: its sender sees a failure status.
func TestMediaFromMatrix(t *testing.T) {
	if err := peers.SlixmppAvailable(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice := w.alice
	orsino, err := w.StartSlixmpp(ctx, "orsino")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(orsino.Close)
	ghost := w.ghost("orsino@localhost")
	room, err := alice.CreateDM(ctx, ghost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, peers.IsMembership(room, ghost, event.MembershipJoin)); err != nil {
		t.Fatalf("the ghost never joined: %v", err)
	}
	pic := testPNG(t, 16, 24, 99)
	files := []struct {
		name, typ string
		data      []byte
		msgtype   event.MessageType
		evtype    event.Type
	}{
		{"music.png", "image/png", pic, event.MsgImage, event.EventMessage},
		{"sonnet.pdf", "application/pdf", testPDF, event.MsgFile, event.EventMessage},
		// A sticker is an image of an event type of its own (m.sticker).
		{"willow", "image/png", testPNG(t, 8, 8, 5), "", event.EventSticker},
	}
	var picEvent id.EventID
	for _, f := range files {
		up, err := alice.Client.UploadBytesWithName(ctx, f.data, f.typ, f.name)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := alice.Client.SendMessageEvent(ctx, room, f.evtype, &event.MessageEventContent{
			MsgType: f.msgtype, Body: f.name, URL: up.ContentURI.CUString(),
			Info: &event.FileInfo{MimeType: f.typ, Size: len(f.data)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if f.msgtype == event.MsgImage {
			picEvent = ev.EventID
		}
		msg, err := orsino.Wait(ctx, wait, func(e peers.SlixmppEvent) bool {
			return e.Event == "message" && e.URL != "" && strings.Contains(e.URL, f.name)
		})
		if err != nil {
			t.Fatalf("%s never reached slixmpp with a XEP-0066 URL: %v", f.name, err)
		}
		if msg.Body != msg.URL {
			t.Errorf("body %q, XEP-0066 URL %q: want the same", msg.Body, msg.URL)
		}
		if err := orsino.Do(ctx, wait, map[string]string{"cmd": "download", "url": msg.URL}); err != nil {
			t.Fatalf("slixmpp could not download %s: %v", msg.URL, err)
		}
		dl, err := orsino.Wait(ctx, wait, func(e peers.SlixmppEvent) bool { return e.Event == "downloaded" && e.URL == msg.URL })
		if err != nil {
			t.Fatal(err)
		}
		if dl.SHA256 != sha(f.data) || dl.Size != int64(len(f.data)) {
			t.Errorf("%s from the XMPP upload service is %d bytes (sha256 %s), not the %d Alice sent", f.name, dl.Size, dl.SHA256, len(f.data))
		}
		if f.msgtype == event.MsgImage {
			if err := orsino.Do(ctx, wait, map[string]string{"cmd": "displayed", "to": w.puppet(t, alice.Client.UserID), "id": msg.ID}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := alice.Wait(ctx, wait, isRead(room, picEvent, ghost)); err != nil {
		t.Errorf("slixmpp's displayed marker on the picture never became the ghost's m.read: %v", err)
	}

	enc, err := alice.Client.SendMessageEvent(ctx, room, event.EventMessage, map[string]any{
		"msgtype": "m.image", "body": "secret.png",
		"file": map[string]any{"v": "v2", "url": "mxc://localhost/nothing", "key": map[string]any{"k": "x"}, "iv": "x", "hashes": map[string]any{"sha256": "x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, isStatus(room, enc.EventID, event.MessageStatusFail)); err != nil {
		t.Errorf("an encrypted file got no failure status: %v", err)
	}
}

// What the media kind builds on in Prosody 0.12's mod_http_file_share
// (XEP-0363): the server's disco#items lists the upload component (§3,
// Example 1-2), whose disco#info has the feature and a max-file-size form
// (§3, Example 4); a slot (§4) has a GET and a PUT URL on the
// address the rig gives (http_external_url), and an Authorization header
// for the PUT.
func TestProsodyUploadFacts(t *testing.T) {
	ctx := context.Background()
	c := w.xmppUser(t, "viola", "facts")
	ask := func(id, stanza string) *peers.Stanza {
		t.Helper()
		if err := c.SendRaw(ctx, stanza); err != nil {
			t.Fatal(err)
		}
		got, err := c.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == id })
		if err != nil {
			t.Fatalf("no answer to %s: %v", id, err)
		}
		t.Logf("%s", got.XML)
		return got
	}
	items := ask("items", `<iq type='get' id='items' to='`+w.Prosody.Domain+`'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	if !items.Has(`jid="` + w.Prosody.UploadDomain + `"`) {
		t.Errorf("disco#items of %s does not list %s", w.Prosody.Domain, w.Prosody.UploadDomain)
	}
	info := ask("info", `<iq type='get' id='info' to='`+w.Prosody.UploadDomain+`'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	for _, want := range []string{`var="urn:xmpp:http:upload:0"`, `var="max-file-size"`} {
		if !info.Has(want) {
			t.Errorf("disco#info of the upload service lacks %s", want)
		}
	}
	slot := ask("slot", `<iq type='get' id='slot' to='`+w.Prosody.UploadDomain+`'><request xmlns='urn:xmpp:http:upload:0' filename='a b.png' size='3' content-type='image/png'/></iq>`)
	for _, want := range []string{`<put xmlns="urn:xmpp:http:upload:0" url="http://127.0.0.1:`, `<get xmlns="urn:xmpp:http:upload:0" url="http://127.0.0.1:`, `name="Authorization">Bearer `} {
		if !slot.Has(want) {
			t.Errorf("the slot lacks %s", want)
		}
	}
}

// In a group portal too: an occupant's file (XEP-0066 in a groupchat
// message, after a XEP-0363 upload) is an m.image of their ghost with the
// bytes uploaded, and a member's picture reaches the chat as a groupchat
// message from their puppet with the URL as body and in XEP-0066, whose
// file is the one Alice sent.
func TestGroupMedia(t *testing.T) {
	ctx := context.Background()
	alice := w.alice
	muc := "gallery@" + w.Prosody.MUCDomain
	olivia := w.xmppUser(t, "olivia", "gallery")
	joinMUC(t, olivia, muc, "Olivia")
	portal := w.aliceJoinsGroup(t, muc)
	aliceNick := puppetNick(t, olivia, muc, "Olivia")

	pic := testPNG(t, 12, 9, 3)
	url, err := olivia.Upload(ctx, wait, w.Prosody.UploadDomain, "portrait.png", "image/png", pic)
	if err != nil {
		t.Fatal(err)
	}
	sendRaw(t, olivia, `<message type='groupchat' to='`+muc+`' id='gm1'><body>`+url+`</body><x xmlns='jabber:x:oob'><url>`+url+`</url></x></message>`)
	img, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
		c := e.Content.AsMessage()
		return e.RoomID == portal && e.Type == event.EventMessage && c != nil && c.MsgType == event.MsgImage
	})
	if err != nil {
		t.Fatalf("Olivia's picture never reached the portal as an m.image: %v", err)
	}
	if got := download(t, ctx, alice.Client, img.Content.AsMessage().URL); !bytes.Equal(got, pic) {
		t.Errorf("the picture on Matrix is %d bytes, not the %d uploaded", len(got), len(pic))
	}

	mine := testPNG(t, 5, 5, 42)
	up, err := alice.Client.UploadBytesWithName(ctx, mine, "image/png", "veil.png")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Client.SendMessageEvent(ctx, portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgImage, Body: "veil.png", URL: up.ContentURI.CUString(), Info: &event.FileInfo{MimeType: "image/png", Size: len(mine)},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := olivia.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "message" && s.Type == "groupchat" && s.From == muc+"/"+aliceNick && strings.Contains(s.Body, "veil.png")
	})
	if err != nil {
		t.Fatalf("Alice's picture never reached the chat: %v", err)
	}
	if !got.Has(`<x xmlns="jabber:x:oob"><url xmlns="jabber:x:oob">` + got.Body + `</url>`) {
		t.Errorf("the chat's message has no XEP-0066 URL equal to its body: %s", got.XML)
	}
	if data, err := peers.Download(ctx, wait, got.Body); err != nil || !bytes.Equal(data, mine) {
		t.Errorf("the chat's URL serves %d bytes (%v), not the %d Alice sent", len(data), err, len(mine))
	}
}

// A slow file holds nothing else: while the bridge fetches Sebastian's
// picture from a server that has not finished sending it, Valentine's
// message and Sebastian's own next one reach Alice; the picture follows
// once its server is done, the bytes it sent.
func TestMediaFetchBlocksNothing(t *testing.T) {
	ctx := context.Background()
	alice := w.alice
	puppet := w.puppet(t, alice.Client.UserID)
	pic := testPNG(t, 20, 20, 11)
	release := make(chan struct{})
	asked := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Length", fmt.Sprint(len(pic)))
		_, _ = rw.Write(pic[:10])
		rw.(http.Flusher).Flush()
		asked <- struct{}{}
		<-release
		_, _ = rw.Write(pic[10:])
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	sebastian := w.xmppUser(t, "sebastian", "shore")
	valentine := w.xmppUser(t, "valentine", "shore")
	sRoom := openPortal(t, ctx, sebastian, "sebastian")
	aRoom := openPortal(t, ctx, valentine, "valentine")
	link := srv.URL + "/twin.png"
	sendRaw(t, sebastian, `<message type='chat' id='slow-1' to='`+peers.XMLEscape(puppet)+`'><body>`+link+`</body><x xmlns='jabber:x:oob'><url>`+link+`</url></x></message>`)
	select {
	case <-asked:
	case <-time.After(wait):
		t.Fatal("the bridge never fetched the picture")
	}
	sendRaw(t, valentine, `<message type='chat' id='slow-2' to='`+peers.XMLEscape(puppet)+`'><body>I do not know thee</body></message>`)
	sendRaw(t, sebastian, `<message type='chat' id='slow-3' to='`+peers.XMLEscape(puppet)+`'><body>Do I stand there?</body></message>`)
	if _, err := alice.Wait(ctx, wait, peers.IsText(aRoom, w.ghost("valentine@localhost"), "I do not know thee")); err != nil {
		t.Fatalf("another person's message waited for the fetch: %v", err)
	}
	if _, err := alice.Wait(ctx, wait, peers.IsText(sRoom, w.ghost("sebastian@localhost"), "Do I stand there?")); err != nil {
		t.Fatalf("the sender's next message waited for the fetch: %v", err)
	}
	if n := len(alice.Events(isFile(sRoom, w.ghost("sebastian@localhost"), event.MsgImage))); n != 0 {
		t.Fatal("the picture was posted before its server finished sending it")
	}
	close(release)
	img, err := alice.Wait(ctx, wait, isFile(sRoom, w.ghost("sebastian@localhost"), event.MsgImage))
	if err != nil {
		t.Fatalf("the picture never came: %v", err)
	}
	if got := download(t, ctx, alice.Client, img.Content.AsMessage().URL); !bytes.Equal(got, pic) {
		t.Errorf("the picture on Matrix is %d bytes, not the %d served", len(got), len(pic))
	}
}

// A large picture gets a thumbnail (client-server API, m.image info:
// thumbnail_url, thumbnail_info): the bridge scales a 1,200×900 PNG sent
// with XEP-0066 to fit 800×600 and uploads it beside the picture as the
// ghost, so that a client shows it without fetching the whole file; Alice
// downloads both from Dendrite, the picture with the bytes sent.
func TestMediaThumbnail(t *testing.T) {
	ctx := context.Background()
	alice := w.alice
	bassanio := w.xmppUser(t, "bassanio", "gallery")
	room := openPortal(t, ctx, bassanio, "bassanio")
	ghost := w.ghost("bassanio@localhost")
	pic := testPNG(t, 1200, 900, 17)
	url, err := bassanio.Upload(ctx, wait, w.Prosody.UploadDomain, "belmont.png", "image/png", pic)
	if err != nil {
		t.Fatal(err)
	}
	sendRaw(t, bassanio, `<message type='chat' id='thumb-1' to='`+peers.XMLEscape(w.puppet(t, alice.Client.UserID))+`'><body>`+url+`</body><x xmlns='jabber:x:oob'><url>`+url+`</url></x></message>`)
	img, err := alice.Wait(ctx, wait, isFile(room, ghost, event.MsgImage))
	if err != nil {
		t.Fatalf("no m.image: %v", err)
	}
	c := img.Content.AsMessage()
	if got := download(t, ctx, alice.Client, c.URL); !bytes.Equal(got, pic) {
		t.Errorf("the picture on Matrix is %d bytes, not the %d sent", len(got), len(pic))
	}
	ti := c.Info.ThumbnailInfo
	if c.Info.ThumbnailURL == "" || ti == nil || ti.MimeType != "image/png" || ti.Width != 800 || ti.Height != 600 {
		t.Fatalf("thumbnail_url %q thumbnail_info %+v: want an 800×600 image/png", c.Info.ThumbnailURL, ti)
	}
	thumb := download(t, ctx, alice.Client, c.Info.ThumbnailURL)
	cfg, kind, err := image.DecodeConfig(bytes.NewReader(thumb))
	if err != nil || kind != "png" || cfg.Width != 800 || cfg.Height != 600 || len(thumb) != ti.Size {
		t.Errorf("the thumbnail is %s %d×%d, %d bytes (%v); its info says %+v", kind, cfg.Width, cfg.Height, len(thumb), err, ti)
	}
}
