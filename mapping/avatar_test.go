package mapping_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// A ghost's avatar is uploaded only when its bytes are an image Matrix
// clients show (PNG, JPEG, GIF, WebP), sniffed, and with the type sniffed:
// what the remote claims (the vCard's TYPE, XEP-0054; the metadata's type,
// XEP-0084 §4.2.1) goes nowhere, since the media repository serves the
// bytes to every client as the type it was given. Anything else is
// refused and counted.
func TestGhostAvatarIsSniffed(t *testing.T) {
	for _, tc := range []struct {
		name, claimed, data string
		want                string // the type uploaded, "" for no upload
	}{
		{"PNG", "image/png", pngMagic + "face", "image/png"},
		{"PNG claimed as HTML", "text/html", pngMagic + "face", "image/png"},
		{"JPEG claimed as PNG", "image/png", jpegMagic + "face", "image/jpeg"},
		{"GIF", "image/gif", "GIF89a face", "image/gif"},
		{"WebP", "image/webp", "RIFF\x10\x00\x00\x00WEBPVP8 face", "image/webp"},
		{"HTML claimed as PNG", "image/png", "<html><script>alert(1)</script></html>", ""},
		{"SVG claimed as PNG", "image/png", `<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>`, ""},
		{"BMP", "image/bmp", "BM face", ""},
		{"text", "image/jpeg", "just words", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := presenceHarness(t, autoPolicy)
			h.xmpp.vcards = map[string]*VCard{julietJID: {FN: "Juliet", Photo: []byte(tc.data), PhotoType: tc.claimed}}
			if _, err := h.b.HandleXMPPMessage(context.Background(), chat("m1", "hello")); err != nil {
				t.Fatal(err)
			}
			h.drain(t)
			if tc.want == "" {
				if len(h.matrix.uploads) != 0 || h.counts["xmpp_vcard/photo_not_image"] != 1 {
					t.Errorf("uploads %q, counts %v: want none, and the refusal counted", h.matrix.uploads, h.counts)
				}
				return
			}
			if want := string(julietGhost) + " " + tc.want + " " + tc.data; len(h.matrix.uploads) != 1 || h.matrix.uploads[0] != want {
				t.Errorf("uploads %q, want [%q]", h.matrix.uploads, want)
			}
		})
	}
}

// XEP-0084 §4.2.1: avatar data whose SHA-1 is its id, but that is no
// image, is not uploaded; the ghost's avatar comes from the vCard then,
// as for data the puppet may not read.
func TestGhostAvatarFromPEPNotAnImage(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	ctx := context.Background()
	if _, err := h.b.HandleXMPPMessage(ctx, chat("m1", "hello")); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	asked := len(h.xmpp.asked)
	data := []byte("<html>not a face</html>")
	avatar := sha1Hex(data)
	h.xmpp.avatars = map[string][]byte{julietJID: data}
	m := &XMPPMessage{ID: "pep", From: jid.MustParse(julietJID), To: jid.MustParse(aliceFrom), Type: TypeHeadline, PEP: &PEPUpdate{Avatar: &avatar, AvatarType: "image/png"}}
	if _, err := h.b.HandleXMPPMessage(ctx, m); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if got := h.xmpp.asked[asked:]; len(h.matrix.uploads) != 0 || h.counts["xmpp_avatar/not_image"] != 1 || len(got) != 2 || strings.Contains(got[1], "avatar") {
		t.Errorf("uploads %q, asked %q, counts %v: want nothing uploaded, the refusal counted, the vCard asked", h.matrix.uploads, got, h.counts)
	}
}

// A profile job queued by an earlier version carries the claimed type: it
// is sniffed again before the upload.
func TestGhostProfileJobSniffsAgain(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct{ data, claimed, want string }{
		{pngMagic + "face", "text/html", "image/png"},
		{"<html></html>", "image/png", ""},
	} {
		payload, err := json.Marshal(GhostProfileArgs{JID: julietJID, SetPhoto: true, Photo: []byte(tc.data), PhotoType: tc.claimed, PhotoHash: sha1Hex([]byte(tc.data))})
		if err != nil {
			t.Fatal(err)
		}
		job := UserJob(JobGhostProfile, julietGhost, payload)
		h.matrix.uploads = nil
		if err := h.b.RunJob(context.Background(), job); err != nil {
			t.Fatal(err)
		}
		if tc.want == "" {
			if len(h.matrix.uploads) != 0 || h.counts["ghost_profile/avatar_not_image"] != 1 {
				t.Errorf("%q claimed %s: uploads %q, counts %v", tc.data, tc.claimed, h.matrix.uploads, h.counts)
			}
		} else if want := string(julietGhost) + " " + tc.want + " " + tc.data; len(h.matrix.uploads) != 1 || h.matrix.uploads[0] != want {
			t.Errorf("uploads %q, want [%q]", h.matrix.uploads, want)
		}
	}
}
