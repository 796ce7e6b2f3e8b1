package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// demoMedia shows a picture crossing each way. Juliet's client does what
// Conversations and Gajim do: it uploads the picture to Prosody's
// XEP-0363 service and sends the GET URL as the body and in XEP-0066; the
// bridge fetches it and posts an m.image as her ghost, whose bytes Alice
// downloads through the authenticated media API. Alice's picture goes up to
// the same service as her puppet, and Juliet downloads it from the URL
// her client is sent.
func demoMedia(ctx context.Context, w *peers.World, juliet *peers.XMPPClient, room id.RoomID) error {
	alice := w.Alice
	ghost := w.Ghost("juliet@localhost")
	pic := peers.PNG(64, 48, 7)
	url, err := juliet.Upload(ctx, timeout, w.Prosody.UploadDomain, "balcony.png", "image/png", pic)
	if err != nil {
		return err
	}
	step("Juliet's client uploads balcony.png (%d bytes) to %s (XEP-0363) and gets the URL %s", len(pic), w.Prosody.UploadDomain, url)
	out := fmt.Sprintf(`<message to='%s' id='juliet-pic' type='chat'><body>%s</body><x xmlns='jabber:x:oob'><url>%s</url></x></message>`,
		peers.XMLEscape(w.Puppet(alice.Client.UserID)), peers.XMLEscape(url), peers.XMLEscape(url))
	step("Juliet sends it (XEP-0066):\n    %s", out)
	if err := juliet.SendRaw(ctx, out); err != nil {
		return err
	}
	img, err := alice.Wait(ctx, timeout, func(e *event.Event) bool {
		c := e.Content.AsMessage()
		return e.RoomID == room && e.Sender == ghost && e.Type == event.EventMessage && c != nil && c.MsgType == event.MsgImage
	})
	if err != nil {
		return fmt.Errorf("no m.image from Juliet's ghost: %w", err)
	}
	c := img.Content.AsMessage()
	mxc, err := c.URL.Parse()
	if err != nil {
		return fmt.Errorf("the m.image's url %q: %w", c.URL, err)
	}
	got, err := alice.Client.DownloadBytes(ctx, mxc)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, pic) {
		return fmt.Errorf("the m.image %s is %d bytes, not the %d Juliet uploaded", c.URL, len(got), len(pic))
	}
	step("Alice sees %s: m.image %q %s (%s, %d bytes, %d×%d); she downloads it: the same %d bytes",
		img.ID, c.Body, c.URL, c.Info.MimeType, c.Info.Size, c.Info.Width, c.Info.Height, len(got))

	mine := peers.PNG(32, 32, 42)
	up, err := alice.Client.UploadBytesWithName(ctx, mine, "image/png", "sun.png")
	if err != nil {
		return err
	}
	ev, err := alice.Client.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgImage, Body: "sun.png", URL: up.ContentURI.CUString(),
		Info: &event.FileInfo{MimeType: "image/png", Size: len(mine), Width: 32, Height: 32},
	})
	if err != nil {
		return err
	}
	step("Alice sends an m.image %s (sun.png, %d bytes, %s)", ev.EventID, len(mine), up.ContentURI)
	st, err := juliet.Wait(ctx, timeout, func(s *peers.Stanza) bool {
		return s.Name == "message" && strings.Contains(s.Body, "sun.png") && s.Has("jabber:x:oob")
	})
	if err != nil {
		return fmt.Errorf("Alice's picture never reached Juliet: %w", err)
	}
	step("Juliet receives (the bridge put the file on %s as Alice's puppet):\n    %s", w.Prosody.UploadDomain, st.XML)
	data, err := peers.Download(ctx, timeout, st.Body)
	if err != nil {
		return err
	}
	if !bytes.Equal(data, mine) {
		return fmt.Errorf("%s serves %d bytes, not the %d Alice sent", st.Body, len(data), len(mine))
	}
	step("Juliet's client downloads %s: the same %d bytes", st.Body, len(data))
	return nil
}
