package main

import (
	"bytes"
	"image"
	_ "image/png"
	"net/http"
	"testing"

	"xmppbridge/internal/standin"
)

// The media shape's file is a PNG by its header (its type and pixels are
// read from it, as from a photograph) of exactly the size asked.
func TestMediaFile(t *testing.T) {
	b := mediaFile(64)
	if len(b) != 64<<10 {
		t.Fatalf("%d bytes, want %d", len(b), 64<<10)
	}
	cfg, typ, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil || typ != "png" || cfg.Width != 64 || cfg.Height != 48 {
		t.Errorf("DecodeConfig: %v %s %dx%d, want a 64x48 png", err, typ, cfg.Width, cfg.Height)
	}
}

// The relay's file goes whole to the stand-in homeserver's media upload
// (read and dropped there), then is posted; the stand-in takes the upload
// under both paths and names the file by an mxc:// URI.
func TestRelayMovesAFile(t *testing.T) {
	data := mediaFile(256)
	files := newMediaServer(data)
	defer files.Close()
	hs := standin.NewHomeserver()
	defer hs.Close()
	mc := &mediaCount{}
	hs.Seen = mc.seen
	if err := relayOneFile(http.DefaultClient, hs.URL, relayMedia{link: files.URL + "/f/pic0.png", room: "!r0:example.org", ghost: relayGhost("p0@xmpp.example")}); err != nil {
		t.Fatal(err)
	}
	if hs.Count("upload") != 1 || mc.uploads.Load() != 1 || mc.got() != 1 || files.gets.Load() != 1 {
		t.Errorf("uploads %d (seen %d), posts %d, fetches %d: want one of each", hs.Count("upload"), mc.uploads.Load(), mc.got(), files.gets.Load())
	}
	if hs.Bytes() < int64(len(data)) {
		t.Errorf("the homeserver read %d bytes, fewer than the file's %d", hs.Bytes(), len(data))
	}
	resp, err := http.Post(hs.URL+"/_matrix/client/v1/media/upload", "image/png", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hs.Count("upload") != 2 {
		t.Errorf("the upload under /_matrix/client/v1/media/upload was counted as %d uploads in all, want 2", hs.Count("upload"))
	}
}
