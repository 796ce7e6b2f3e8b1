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
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
	"xmppbridge/internal/rig"
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

// slixmppDM starts slixmpp as user@localhost and a DM of Alice's with
// their ghost, which the ghost has joined.
func slixmppDM(t *testing.T, ctx context.Context, user string) (*peers.Slixmpp, id.RoomID) {
	t.Helper()
	client, err := w.StartSlixmpp(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	ghost := w.ghost(user + "@localhost")
	room, err := w.alice.CreateDM(ctx, ghost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.Wait(ctx, wait, peers.IsMembership(room, ghost, event.MembershipJoin)); err != nil {
		t.Fatalf("the ghost never joined: %v", err)
	}
	return client, room
}

// slixmppDownloads has client download u over HTTP and checks it got
// want; what names the file in a failure.
func slixmppDownloads(t *testing.T, ctx context.Context, client *peers.Slixmpp, u string, want []byte, what string) {
	t.Helper()
	if err := client.Do(ctx, wait, map[string]string{"cmd": "download", "url": u}); err != nil {
		t.Fatalf("slixmpp could not download %s: %v", u, err)
	}
	dl, err := client.Wait(ctx, wait, func(e peers.SlixmppEvent) bool { return e.Event == "downloaded" && e.URL == u })
	if err != nil {
		t.Fatal(err)
	}
	if dl.SHA256 != sha(want) || dl.Size != int64(len(want)) {
		t.Errorf("%s is %d bytes (sha256 %s), not the %d Alice sent", what, dl.Size, dl.SHA256, len(want))
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
	orsino, room := slixmppDM(t, ctx, "orsino")
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
		slixmppDownloads(t, ctx, orsino, msg.URL, f.data, "from the XMPP upload service "+f.name)
		if f.msgtype == event.MsgImage {
			if err := orsino.Do(ctx, wait, map[string]string{"cmd": "displayed", "to": w.puppet(t, alice.Client.UserID), "id": msg.ID}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := alice.Wait(ctx, wait, isRead(room, picEvent, w.ghost("orsino@localhost"))); err != nil {
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
// file is the one Alice sent; her edit of its caption is a XEP-0308
// correction in the chat carrying the file again.
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

	veil := testPNG(t, 5, 5, 42)
	aliceSendsGroupPicture(t, ctx, portal, olivia, muc+"/"+aliceNick, "veil.png", veil)

	// Her edit of its caption is a XEP-0308 correction in the chat that
	// carries the file again, the new caption as XEP-0066 <desc/>.
	// Her client's /sync may bring her own event after the chat has it.
	sent, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
		c := e.Content.AsMessage()
		return e.RoomID == portal && e.Sender == alice.Client.UserID && c != nil && c.MsgType == event.MsgImage && c.Body == "veil.png"
	})
	if err != nil {
		t.Fatalf("Alice's picture is not in her timeline: %v", err)
	}
	orig := sent.Content.AsMessage()
	newContent := &event.MessageEventContent{MsgType: event.MsgImage, Body: "The veil lifted", FileName: "veil.png", URL: orig.URL, Info: orig.Info}
	if _, err := alice.Client.SendMessageEvent(ctx, portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgImage, Body: "* The veil lifted", FileName: "veil.png", URL: orig.URL, Info: orig.Info,
		NewContent: newContent, RelatesTo: &event.RelatesTo{Type: event.RelReplace, EventID: sent.ID},
	}); err != nil {
		t.Fatal(err)
	}
	fix, err := olivia.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "message" && s.Type == "groupchat" && s.From == muc+"/"+aliceNick && s.Has(`urn:xmpp:message-correct:0`)
	})
	if err != nil {
		t.Fatalf("the caption's edit never reached the chat: %v", err)
	}
	var origID string
	for _, st := range olivia.Stanzas() {
		if st.Type == "groupchat" && st.From == muc+"/"+aliceNick && strings.HasSuffix(st.Body, "veil.png") && !st.Has(`urn:xmpp:message-correct:0`) {
			origID = st.ID
		}
	}
	if origID == "" || !fix.Has(`<replace xmlns="urn:xmpp:message-correct:0" id="`+origID+`"`) && !fix.Has(`id="`+origID+`" xmlns="urn:xmpp:message-correct:0"`) {
		t.Errorf("the correction does not name the picture's message %q: %s", origID, fix.XML)
	}
	if !fix.Has(`<url xmlns="jabber:x:oob">`+fix.Body+`</url>`) || !fix.Has(`The veil lifted</desc>`) {
		t.Errorf("the chat's correction has no XEP-0066 URL equal to its body, or not the new caption: %s", fix.XML)
	}
	if resp, body := httpGet(t, ctx, fix.Body, ""); resp.StatusCode != http.StatusOK || !bytes.Equal(body, veil) {
		t.Errorf("the correction's URL serves %s, %d bytes, not the %d Alice sent", resp.Status, len(body), len(veil))
	}
}

// aliceSendsGroupPicture has Alice send a picture of name and data to a
// group portal, and checks that the chat's message to client from her
// puppet's occupant JID carries a URL as body and in XEP-0066 <x/> (§3)
// from which data can be downloaded; it returns that URL.
func aliceSendsGroupPicture(t *testing.T, ctx context.Context, portal id.RoomID, client *peers.XMPPClient, from, name string, data []byte) string {
	t.Helper()
	up, err := w.alice.Client.UploadBytesWithName(ctx, data, "image/png", name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.Client.SendMessageEvent(ctx, portal, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgImage, Body: name, URL: up.ContentURI.CUString(), Info: &event.FileInfo{MimeType: "image/png", Size: len(data)},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := client.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "message" && s.Type == "groupchat" && s.From == from && strings.Contains(s.Body, name)
	})
	if err != nil {
		t.Fatalf("Alice's picture never reached the chat: %v", err)
	}
	if !got.Has(`<x xmlns="jabber:x:oob"><url xmlns="jabber:x:oob">` + got.Body + `</url>`) {
		t.Errorf("the chat's message has no XEP-0066 URL equal to its body: %s", got.XML)
	}
	if resp, body := httpGet(t, ctx, got.Body, ""); resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Errorf("the chat's URL serves %s, %d bytes, not the %d Alice sent", resp.Status, len(body), len(data))
	}
	return got.Body
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

// The second way a file from Matrix reaches XMPP (media.to_xmpp: serve):
// the bridge, restarted with it, gives Alice's picture and PDF URLs of its
// own under media.public_url instead of uploading them to Prosody, as the
// body and in XEP-0066 <x/> (§3) of the message to slixmpp. slixmpp
// downloads the picture from there and a plain HTTP client the PDF, each
// streamed by the bridge from Dendrite's authenticated media API: the
// bytes are Alice's, with their type, length and name, a HEAD gives the
// same headers (RFC 9110 §9.3.2), and a range of the PDF is that range
// (RFC 9110 §14.2). A URL with its media id, expiry
// or signature changed is refused (403) and counted. The key the bridge
// made is kept in its database: its URLs work after a restart. A file
// Alice sends to a group portal reaches the chat with such a URL too.
func TestMediaServedToXMPP(t *testing.T) {
	if err := peers.SlixmppAvailable(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	port, err := rig.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	public := "http://" + listen + "/files"
	restartWith(t, ctx, "media", map[string]any{"to_xmpp": "serve", "public_url": public, "serve_listen": listen})
	alice := w.alice
	feste, room := slixmppDM(t, ctx, "feste")
	pic := testPNG(t, 20, 10, 42)
	var pdfURL string
	for _, f := range []struct {
		name, typ string
		data      []byte
		msgtype   event.MessageType
	}{
		{"fool.png", "image/png", pic, event.MsgImage},
		{"twelfth night.pdf", "application/pdf", testPDF, event.MsgFile},
	} {
		up, err := alice.Client.UploadBytesWithName(ctx, f.data, f.typ, f.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Client.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{
			MsgType: f.msgtype, Body: f.name, URL: up.ContentURI.CUString(),
			Info: &event.FileInfo{MimeType: f.typ, Size: len(f.data)},
		}); err != nil {
			t.Fatal(err)
		}
		escaped := strings.ReplaceAll(f.name, " ", "%20")
		msg, err := feste.Wait(ctx, wait, func(e peers.SlixmppEvent) bool {
			return e.Event == "message" && strings.HasSuffix(e.URL, "/"+escaped)
		})
		if err != nil {
			t.Fatalf("%s never reached slixmpp with a XEP-0066 URL: %v", f.name, err)
		}
		if msg.Body != msg.URL || !strings.HasPrefix(msg.URL, public+"/localhost/"+up.ContentURI.FileID+"/") {
			t.Errorf("body %q, XEP-0066 URL %q: want the same, under %s naming the file", msg.Body, msg.URL, public)
		}
		if f.msgtype == event.MsgFile {
			pdfURL = msg.URL
			continue
		}
		slixmppDownloads(t, ctx, feste, msg.URL, f.data, "served by the bridge "+f.name)
	}

	resp, body := httpGet(t, ctx, pdfURL, "")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, testPDF) {
		t.Errorf("GET the PDF: %s, %d bytes, want 200 and the %d Alice sent", resp.Status, len(body), len(testPDF))
	}
	if resp.Header.Get("Content-Type") != "application/pdf" || resp.ContentLength != int64(len(testPDF)) ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="twelfth night.pdf"` {
		t.Errorf("GET the PDF: Content-Type %q, Content-Length %d, Content-Disposition %q", resp.Header.Get("Content-Type"), resp.ContentLength, resp.Header.Get("Content-Disposition"))
	}
	// HEAD, as Conversations asks before it downloads: the length
	// Dendrite gives, the type from the first bytes.
	head, err := http.Head(pdfURL)
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != http.StatusOK || head.ContentLength != int64(len(testPDF)) || head.Header.Get("Content-Type") != "application/pdf" {
		t.Errorf("HEAD the PDF: %s, Content-Length %d, Content-Type %q", head.Status, head.ContentLength, head.Header.Get("Content-Type"))
	}
	resp, body = httpGet(t, ctx, pdfURL, "bytes=9-20")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, testPDF[9:21]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 9-20/%d", len(testPDF)) {
		t.Errorf("GET bytes=9-20 of the PDF: %s %q (%s), want 206 %q", resp.Status, body, resp.Header.Get("Content-Range"), testPDF[9:21])
	}

	// server, media id, expiry, signature, name after the prefix
	parts := strings.Split(strings.TrimPrefix(pdfURL, public+"/"), "/")
	flip := func(s string) string {
		if s[len(s)-1] == 'a' {
			return s[:len(s)-1] + "b"
		}
		return s[:len(s)-1] + "a"
	}
	later := func(s string) string { n, _ := strconv.ParseInt(s, 10, 64); return strconv.FormatInt(n+3600, 10) }
	for i, change := range map[int]func(string) string{1: flip, 2: later, 3: flip} {
		p := append([]string(nil), parts...)
		p[i] = change(p[i])
		tampered := public + "/" + strings.Join(p, "/")
		if resp, _ := httpGet(t, ctx, tampered, ""); resp.StatusCode != http.StatusForbidden {
			t.Errorf("a tampered URL %s: %s, want 403", tampered, resp.Status)
		}
	}
	metrics := w.metrics(t)

	// The key the bridge generated is kept in its database: the URLs it
	// gave still work after a restart.
	if err := w.Bridge.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := w.Bridge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bridgeReady(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(wait); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the bridge does not listen on media.serve_listen after its restart: %v", err)
		}
	}
	if resp, body := httpGet(t, ctx, pdfURL, ""); resp.StatusCode != http.StatusOK || !bytes.Equal(body, testPDF) {
		t.Errorf("GET the PDF after a restart: %s, %d bytes", resp.Status, len(body))
	}

	if m := metrics; !strings.Contains(m, `xmppbridge_events_total{reason="bad_signature",what="media_serve"} 3`) ||
		!strings.Contains(m, `xmppbridge_events_total{reason="served",what="media_serve"} 4`) {
		t.Errorf("/metrics does not count 4 served and 3 refused media_serve:\n%s", grepLines(m, "media_serve"))
	}

	// A group portal's file takes the same way: the chat's message from
	// Alice's nick carries the bridge's URL as body and in <x/>.
	muc := "revels@" + w.Prosody.MUCDomain
	maria := w.xmppUser(t, "maria", "revels")
	joinMUC(t, maria, muc, "Maria")
	portal := w.aliceJoinsGroup(t, muc)
	nick := puppetNick(t, maria, muc, "Maria")
	if u := aliceSendsGroupPicture(t, ctx, portal, maria, muc+"/"+nick, "mask.png", testPNG(t, 6, 7, 11)); !strings.HasPrefix(u, public+"/") {
		t.Errorf("the chat's URL %s is not the bridge's", u)
	}
}

// httpGet is a GET of u, with a Range header unless rng is "".
func httpGet(t *testing.T, ctx context.Context, u, rng string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
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
