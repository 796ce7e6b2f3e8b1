package matrixside

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"

	"xmppbridge/mapping"
)

// decodeOne decodes a room event as a transaction's are.
func decodeOne(t *testing.T, raw string) mapping.MatrixEvent {
	t.Helper()
	evt := &event.Event{}
	if err := json.Unmarshal([]byte(raw), evt); err != nil {
		t.Fatal(err)
	}
	evt.Type.Class = event.MessageEventType
	if err := evt.Content.ParseRaw(evt.Type); err != nil {
		t.Fatal(err)
	}
	return coreEvent(evt)
}

// The client-server API's examples of m.image (m.room.message msgtypes)
// and m.sticker, a file in v1.10's caption form, and an encrypted file
// ("file" instead of "url", "Sending encrypted attachments").
func TestFileDecoded(t *testing.T) {
	for _, c := range []struct {
		name, raw string
		msgtype   string
		want      mapping.MatrixFile
	}{
		{"m.image", `{"content":{"body":"filename.jpg","info":{"h":398,"mimetype":"image/jpeg","size":31037,"w":394},"msgtype":"m.image","url":"mxc://example.org/JWEIFJgwEIhweiWJE"},"event_id":"$143273582443PhrSn:example.org","origin_server_ts":1432735824653,"room_id":"!jEsUZKDJdhlrceRyVU:example.org","sender":"@example:example.org","type":"m.room.message","unsigned":{"age":1234}}`,
			mapping.MsgImage, mapping.MatrixFile{URL: "mxc://example.org/JWEIFJgwEIhweiWJE", Name: "filename.jpg", Type: "image/jpeg", Size: 31037}},
		{"m.sticker", `{"content":{"body":"Landing","info":{"h":200,"mimetype":"image/png","size":73602,"thumbnail_info":{"h":200,"mimetype":"image/png","size":73602,"w":140},"thumbnail_url":"mxc://matrix.org/sHhqkFCvSkFwtmvtETOtKnLP","w":140},"url":"mxc://matrix.org/sHhqkFCvSkFwtmvtETOtKnLP"},"event_id":"$143273582443PhrSn:example.org","origin_server_ts":1432735824653,"room_id":"!jEsUZKDJdhlrceRyVU:example.org","sender":"@example:example.org","type":"m.sticker"}`,
			mapping.MsgSticker, mapping.MatrixFile{URL: "mxc://matrix.org/sHhqkFCvSkFwtmvtETOtKnLP", Name: "Landing", Type: "image/png", Size: 73602}},
		{"a caption", `{"content":{"body":"the contract","filename":"contract.pdf","info":{"mimetype":"application/pdf","size":10},"msgtype":"m.file","url":"mxc://example.org/pdf"},"event_id":"$c","room_id":"!r:example.org","sender":"@a:example.org","type":"m.room.message"}`,
			mapping.MsgFile, mapping.MatrixFile{URL: "mxc://example.org/pdf", Name: "contract.pdf", Type: "application/pdf", Size: 10, Caption: "the contract"}},
		{"encrypted", `{"content":{"body":"secret.png","msgtype":"m.image","file":{"v":"v2","url":"mxc://example.org/enc","key":{"kty":"oct","k":"x","alg":"A256CTR","ext":true,"key_ops":["encrypt","decrypt"]},"iv":"x","hashes":{"sha256":"x"}}},"event_id":"$e","room_id":"!r:example.org","sender":"@a:example.org","type":"m.room.message"}`,
			mapping.MsgImage, mapping.MatrixFile{URL: "mxc://example.org/enc", Encrypted: true, Name: "secret.png"}},
	} {
		got := decodeOne(t, c.raw)
		if got.Kind != mapping.EventMessage || got.MsgType != c.msgtype || got.File == nil || *got.File != c.want {
			t.Errorf("%s: kind %v msgtype %q file %+v, want %q %+v", c.name, got.Kind, got.MsgType, got.File, c.msgtype, c.want)
		}
	}
	if got := decodeOne(t, `{"content":{"body":"hi","msgtype":"m.text"},"event_id":"$t","room_id":"!r:example.org","sender":"@a:example.org","type":"m.room.message"}`); got.File != nil {
		t.Errorf("a text has a file: %+v", got.File)
	}
}

// A file's message as the bridge posts it: the msgtype, the mxc URI, its
// info, and the name as filename only when the body is a caption.
func TestMediaContent(t *testing.T) {
	f := &mapping.MediaFile{URL: "mxc://example.org/x", Name: "a.png", Type: "image/png", Size: 5, Width: 2, Height: 3, MsgType: mapping.MsgImage}
	c := mediaContent("a.png", f)
	if c.MsgType != event.MsgImage || c.URL != "mxc://example.org/x" || c.FileName != "" || c.Info.MimeType != "image/png" || c.Info.Size != 5 || c.Info.Width != 2 || c.Info.Height != 3 {
		t.Errorf("%+v %+v", c, c.Info)
	}
	if c := mediaContent("look", f); c.Body != "look" || c.FileName != "a.png" {
		t.Errorf("captioned: body %q filename %q", c.Body, c.FileName)
	}
	if c.Info.ThumbnailURL != "" || c.Info.ThumbnailInfo != nil {
		t.Errorf("a picture without a thumbnail has one: %+v", c.Info)
	}
	// m.image info: thumbnail_url and thumbnail_info (client-server API).
	f.Thumbnail = &mapping.MediaThumbnail{URL: "mxc://example.org/t", Type: "image/jpeg", Size: 4, Width: 800, Height: 600}
	c = mediaContent("a.png", f)
	if ti := c.Info.ThumbnailInfo; c.Info.ThumbnailURL != "mxc://example.org/t" || ti == nil || ti.MimeType != "image/jpeg" || ti.Size != 4 || ti.Width != 800 || ti.Height != 600 {
		t.Errorf("thumbnail_url %q thumbnail_info %+v", c.Info.ThumbnailURL, c.Info.ThumbnailInfo)
	}
}

// A file is fetched through the authenticated media API (v1.11); from a
// homeserver that does not know that path (M_UNRECOGNIZED, older than
// v1.11), through /media/v3.
func TestDownloadMedia(t *testing.T) {
	for _, old := range []bool{false, true} {
		var paths []string
		h := newStandInHomeserver(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			paths = append(paths, r.URL.Path)
			switch {
			case strings.HasPrefix(r.URL.Path, "/_matrix/client/v1/media/download/") && old:
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`)
			case strings.HasSuffix(r.URL.Path, "/download/example.org/abc"):
				w.Header().Set("Content-Type", "image/png")
				_, _ = io.WriteString(w, "bytes")
			default:
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"errcode":"M_NOT_FOUND","error":"no"}`)
			}
		}), Delivery{})
		body, _, typ, err := h.DownloadMedia(context.Background(), "mxc://example.org/abc")
		if err != nil {
			t.Fatalf("old %t: %v (%q)", old, err, paths)
		}
		data, _ := io.ReadAll(body)
		body.Close()
		if string(data) != "bytes" || typ != "image/png" {
			t.Errorf("old %t: %q %q", old, data, typ)
		}
		want := []string{"/_matrix/client/v1/media/download/example.org/abc"}
		if old {
			want = append(want, "/_matrix/media/v3/download/example.org/abc")
		}
		if !slices.Equal(paths, want) {
			t.Errorf("old %t: asked %q, want %q", old, paths, want)
		}
	}
	h := newStandInHomeserver(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"errcode":"M_NOT_FOUND","error":"no"}`)
	}), Delivery{})
	if _, _, _, err := h.DownloadMedia(context.Background(), "mxc://example.org/gone"); !errors.Is(err, mapping.ErrPermanent) {
		t.Errorf("a file the homeserver does not have: %v, want ErrPermanent", err)
	}
}
