//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// A file's message is a row of the id map like any other, with the real
// Prosody and Dendrite, both ways. Perdita's picture (XEP-0363 upload,
// XEP-0066 link): Alice's m.read becomes her XEP-0333 marker on it, Alice's
// reaction a XEP-0444 <reactions/> on its id, her reply a XEP-0461
// <reply/>; Perdita's XEP-0308 correction with the file and new words is
// an m.replace whose m.new_content is the picture, captioned, and her
// XEP-0424 retraction redacts the m.image. Alice's
// picture: Perdita's XEP-0184 <received/> and XEP-0333 <displayed/> on
// its stanza become its delivery and the ghost's m.read, her XEP-0444
// reaction an m.reaction on it; Alice's edit of its caption is a XEP-0308
// correction of its stanza whose body is still a URL of the file, in
// XEP-0066 <x/> with the new caption as <desc/>, from which the file can
// be downloaded; her redaction of it a XEP-0424 retraction.
func TestMediaRelations(t *testing.T) {
	ctx := context.Background()
	alice := w.alice
	perdita := w.xmppUser(t, "perdita", "bohemia")
	room := openPortal(t, ctx, perdita, "perdita")
	ghost := w.ghost("perdita@localhost")
	puppet := w.puppet(t, alice.Client.UserID)
	fromPuppet := func(what string, match func(*peers.Stanza) bool) *peers.Stanza {
		t.Helper()
		return messageFrom(t, ctx, perdita, puppet, what, match)
	}
	waitEvent := func(what string, match func(*event.Event) bool) *event.Event {
		t.Helper()
		e, err := alice.Wait(ctx, wait, match)
		if err != nil {
			t.Fatalf("%s never reached Alice: %v", what, err)
		}
		return e
	}
	sendEvent := func(typ event.Type, content any) id.EventID {
		t.Helper()
		return aliceSends(t, ctx, room, typ, content)
	}

	// Perdita's picture, asking for every receipt.
	pic := testPNG(t, 10, 10, 21)
	url, err := perdita.Upload(ctx, wait, w.Prosody.UploadDomain, "flowers.png", "image/png", pic)
	if err != nil {
		t.Fatal(err)
	}
	sendRaw(t, perdita, `<message type='chat' id='pic-1' to='`+peers.XMLEscape(puppet)+`'><body>`+url+`</body><x xmlns='jabber:x:oob'><url>`+url+`</url></x>`+everything+`</message>`)
	img := waitEvent("Perdita's picture", isFile(room, ghost, event.MsgImage))

	// XEP-0333 §3: Alice's m.read is the marker on the picture.
	if err := alice.Client.SendReceipt(ctx, room, img.ID, event.ReceiptTypeRead, struct{}{}); err != nil {
		t.Fatal(err)
	}
	waitReceipts(t, ctx, perdita, puppet, "pic-1", []string{"received", "x-delivered", "x-displayed", "marker"})
	// XEP-0444 §3 and XEP-0461 §3 on the picture's id.
	sendEvent(event.EventReaction, &event.ReactionEventContent{RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: img.ID, Key: "🌸"}})
	fromPuppet("the reaction to the picture", func(s *peers.Stanza) bool {
		return s.Has(`urn:xmpp:reactions:0`) && s.Has(`id="pic-1"`) && s.Has("🌸")
	})
	sendEvent(event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: "Where did you find them?", RelatesTo: &event.RelatesTo{InReplyTo: &event.InReplyTo{EventID: img.ID}}})
	if r := fromPuppet("the reply to the picture", func(s *peers.Stanza) bool { return s.Has(`urn:xmpp:reply:0`) }); !r.Has(`id="pic-1"`) || !r.Has(`to="perdita@localhost"`) {
		t.Errorf("reply to the picture: %s", r.XML)
	}
	// XEP-0308 §3 with the file in XEP-0066 <x/> again and words: an
	// m.replace whose m.new_content is the picture, captioned.
	sendRaw(t, perdita, `<message type='chat' id='fix-pic-1' to='`+peers.XMLEscape(puppet)+`'><body>Flowers for you `+url+`</body><x xmlns='jabber:x:oob'><url>`+url+`</url></x><replace id='pic-1' xmlns='urn:xmpp:message-correct:0'/></message>`)
	fixed := waitEvent("the picture's correction", func(e *event.Event) bool {
		c := e.Content.AsMessage()
		return e.Sender == ghost && c != nil && c.RelatesTo != nil && c.RelatesTo.Type == event.RelReplace && c.RelatesTo.EventID == img.ID
	})
	if n := fixed.Content.AsMessage().NewContent; n == nil || n.MsgType != event.MsgImage || n.Body != "Flowers for you" || n.FileName != "flowers.png" || n.URL == "" {
		t.Errorf("the correction's m.new_content %+v: want the picture captioned", n)
	} else if got := download(t, ctx, alice.Client, n.URL); !bytes.Equal(got, pic) {
		t.Errorf("the corrected picture is %d bytes, not the %d uploaded", len(got), len(pic))
	}
	// XEP-0424 §3: Perdita takes her picture back.
	sendRaw(t, perdita, `<message type='chat' id='retract-pic-1' to='`+peers.XMLEscape(puppet)+`'><retract id='pic-1' xmlns='urn:xmpp:message-retract:1'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/><body>This person attempted to retract a previous message, but it's unsupported by your client.</body><store xmlns='urn:xmpp:hints'/></message>`)
	if red := waitEvent("the picture's retraction", func(e *event.Event) bool { return e.Type == event.EventRedaction && redacts(e) == img.ID }); red.Sender != ghost {
		t.Errorf("the picture was redacted by %s, not by the ghost of its sender", red.Sender)
	}

	// Alice's picture, with a caption.
	mine := testPNG(t, 12, 6, 22)
	up, err := alice.Client.UploadBytesWithName(ctx, mine, "image/png", "statue.png")
	if err != nil {
		t.Fatal(err)
	}
	content := func(caption string) *event.MessageEventContent {
		return &event.MessageEventContent{MsgType: event.MsgImage, Body: caption, FileName: "statue.png", URL: up.ContentURI.CUString(), Info: &event.FileInfo{MimeType: "image/png", Size: len(mine)}}
	}
	picEvent := sendEvent(event.EventMessage, content("The statue"))
	sent := fromPuppet("Alice's picture", func(s *peers.Stanza) bool { return s.Has(`jabber:x:oob`) && s.Has(`The statue</desc>`) })
	if !strings.HasSuffix(sent.Body, "statue.png") || !sent.Has(`<url xmlns="jabber:x:oob">`+sent.Body+`</url>`) {
		t.Errorf("Alice's picture: %s", sent.XML)
	}
	to := peers.XMLEscape(puppet)
	sendRaw(t, perdita, `<message to='`+to+`'><received xmlns='urn:xmpp:receipts' id='`+sent.ID+`'/></message>`)
	waitEvent("the delivery of Alice's picture", func(e *event.Event) bool {
		if !isStatus(room, picEvent, event.MessageStatusSuccess)(e) {
			return false
		}
		c := e.Content.Parsed.(*event.BeeperMessageStatusEventContent)
		return c.DeliveredToUsers != nil && len(*c.DeliveredToUsers) == 1 && (*c.DeliveredToUsers)[0] == ghost
	})
	sendRaw(t, perdita, `<message to='`+to+`'><displayed xmlns='urn:xmpp:chat-markers:0' id='`+sent.ID+`'/></message>`)
	waitEvent("the ghost's m.read of Alice's picture", isRead(room, picEvent, ghost))
	sendRaw(t, perdita, `<message type='chat' id='react-statue' to='`+to+`'><reactions id='`+sent.ID+`' xmlns='urn:xmpp:reactions:0'><reaction>😮</reaction></reactions><store xmlns='urn:xmpp:hints'/></message>`)
	waitEvent("Perdita's reaction to Alice's picture", func(e *event.Event) bool {
		if e.Sender != ghost || e.Type != event.EventReaction {
			return false
		}
		r := e.Content.AsReaction()
		return r.RelatesTo.EventID == picEvent && r.RelatesTo.Key == "😮"
	})

	// Client-server API "Event replacements" of the caption (as Element
	// sends it): XEP-0308 §3 with the file again.
	edited := content("* The statue moves")
	edited.NewContent = content("The statue moves")
	edited.RelatesTo = &event.RelatesTo{Type: event.RelReplace, EventID: picEvent}
	sendEvent(event.EventMessage, edited)
	fix := fromPuppet("the caption's correction", func(s *peers.Stanza) bool { return s.Has(`urn:xmpp:message-correct:0`) })
	if !fix.Has(`id="`+sent.ID+`"`) || !strings.HasSuffix(fix.Body, "statue.png") || !fix.Has(`<url xmlns="jabber:x:oob">`+fix.Body+`</url>`) || !fix.Has(`The statue moves</desc>`) {
		t.Errorf("the caption's correction: %s", fix.XML)
	}
	if resp, body := httpGet(t, ctx, fix.Body, ""); resp.StatusCode != 200 || !bytes.Equal(body, mine) {
		t.Errorf("the correction's URL serves %s, %d bytes, not the %d Alice sent", resp.Status, len(body), len(mine))
	}

	if _, err := alice.Client.RedactEvent(ctx, room, picEvent); err != nil {
		t.Fatal(err)
	}
	fromPuppet("the retraction of Alice's picture", func(s *peers.Stanza) bool {
		return s.Has(`urn:xmpp:message-retract:1`) && s.Has(`id="`+sent.ID+`"`)
	})
}

// XEP-0447 §3.1 from a client: Florizel shares a picture he uploaded to
// Prosody with a <file-sharing/> whose url-data source is its URL and
// whose XEP-0446 metadata names it and describes it, with no body (as
// Example 1, and a jinglepub source the bridge ignores). Alice gets an
// m.image of the bytes uploaded, the description as caption and the
// metadata's name as filename. A share whose only source is a jinglepub
// goes as its fallback body.
func TestStatelessFileSharing(t *testing.T) {
	ctx := context.Background()
	alice := w.alice
	florizel := w.xmppUser(t, "florizel", "sheepshearing")
	room := openPortal(t, ctx, florizel, "florizel")
	ghost := w.ghost("florizel@localhost")
	to := peers.XMLEscape(w.puppet(t, alice.Client.UserID))
	pic := testPNG(t, 14, 8, 23)
	url, err := florizel.Upload(ctx, wait, w.Prosody.UploadDomain, "upload.png", "image/png", pic)
	if err != nil {
		t.Fatal(err)
	}
	sendRaw(t, florizel, `<message to='`+to+`' id='sharing-a-file' type='chat'><file-sharing xmlns='urn:xmpp:sfs:0' disposition='inline'>`+
		`<file xmlns='urn:xmpp:file:metadata:0'><media-type>image/jpeg</media-type><name>shearing.png</name><size>99999</size>`+
		`<dimensions>4096x2160</dimensions><desc>Photo from the feast.</desc></file><sources>`+
		`<url-data xmlns='http://jabber.org/protocol/url-data' target='`+peers.XMLEscape(url)+`'/>`+
		`<jinglepub xmlns='urn:xmpp:jinglepub:1' from='florizel@localhost/sheepshearing' id='9559976B'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'/></jinglepub>`+
		`</sources></file-sharing><store xmlns='urn:xmpp:hints'/></message>`)
	img, err := alice.Wait(ctx, wait, isFile(room, ghost, event.MsgImage))
	if err != nil {
		t.Fatalf("the shared file never reached Alice as an m.image: %v", err)
	}
	c := img.Content.AsMessage()
	if c.Body != "Photo from the feast." || c.FileName != "shearing.png" || c.Info == nil || c.Info.MimeType != "image/png" || c.Info.Width != 14 || c.Info.Height != 8 {
		t.Errorf("m.image body %q filename %q info %+v: want the desc, the metadata's name, the bytes' type and pixels", c.Body, c.FileName, c.Info)
	}
	if got := download(t, ctx, alice.Client, c.URL); !bytes.Equal(got, pic) {
		t.Errorf("the picture on Matrix is %d bytes, not the %d uploaded", len(got), len(pic))
	}

	sendRaw(t, florizel, `<message to='`+to+`' id='sharing-by-jingle' type='chat'><file-sharing xmlns='urn:xmpp:sfs:0'>`+
		`<file xmlns='urn:xmpp:file:metadata:0'><name>song.ogg</name></file><sources>`+
		`<jinglepub xmlns='urn:xmpp:jinglepub:1' from='florizel@localhost/sheepshearing' id='A1'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'/></jinglepub>`+
		`</sources></file-sharing><body>A song for you (song.ogg)</body></message>`)
	if _, err := alice.Wait(ctx, wait, peers.IsText(room, ghost, "A song for you (song.ogg)")); err != nil {
		t.Errorf("a share by jingle only never reached Alice as its fallback body: %v", err)
	}
}
