package media

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"xmppbridge/mapping"
)

// The type of a file is what its bytes say (net/http's sniffing, the
// WHATWG algorithm), not what its sender claims; a claim counts only
// where the bytes say nothing and it names a kind the algorithm does not
// know well (audio, video, an application format), never markup or an
// image the bytes do not show. Markup goes as text.
func TestSniff(t *testing.T) {
	pic := pngOf(t, 1, 1)
	unknown := []byte{0x00, 0x01, 0x02, 0x03, 0xfe}
	// An MP4 file's first box, ftyp with its brand (ISO/IEC 14496-12 §4.3).
	mp4 := func(brand string) []byte {
		return append([]byte{0, 0, 0, 0x18, 'f', 't', 'y', 'p'}, []byte(brand+"\x00\x00\x00\x00"+brand+"mp42")...)
	}
	// An Ogg page (RFC 3533 §6) whose packet opens with the codec's header.
	ogg := func(codec string) []byte {
		return append([]byte("OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x13"), codec...)
	}
	webm := []byte{0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x86, 0x81, 0x01, 0x42, 0xf7, 0x81, 0x01, 0x42, 0xf2, 0x81, 0x04, 0x42, 0xf3, 0x81, 0x08, 0x42, 0x82, 0x84, 'w', 'e', 'b', 'm'}
	for _, c := range []struct {
		name    string
		head    []byte
		claimed string
		want    string
	}{
		{"a PNG claimed as HTML", pic, "text/html", "image/png"},
		{"a PNG claimed as nothing", pic, "", "image/png"},
		{"HTML claimed as a PNG", []byte("<html><script>alert(1)</script>"), "image/png", "text/plain"},
		{"XML", []byte("<?xml version='1.0'?><svg/>"), "image/svg+xml", "text/plain"},
		{"a PDF", []byte("%PDF-1.4\n"), "application/octet-stream", "application/pdf"},
		{"text", []byte("hello\n"), "", "text/plain"},
		{"unknown bytes claimed as video", unknown, "video/mp4; codecs=avc1", "video/mp4"},
		{"unknown bytes claimed as audio", unknown, "audio/ogg", "audio/ogg"},
		{"unknown bytes claimed as a document", unknown, "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.text"},
		{"unknown bytes claimed as an image", unknown, "image/png", "application/octet-stream"},
		{"unknown bytes claimed as HTML", unknown, "text/html", "application/octet-stream"},
		{"unknown bytes claimed as XHTML", unknown, "application/xhtml+xml", "application/octet-stream"},
		{"unknown bytes claimed as a script", unknown, "application/javascript", "application/octet-stream"},
		{"unknown bytes claimed as garbage", unknown, "not a type", "application/octet-stream"},
		// Containers of sound or pictures alike.
		{"an M4A voice message", mp4("M4A "), "", "audio/mp4"},
		{"an MP4 film", mp4("isom"), "video/mp4", "video/mp4"},
		{"an MP4 claimed as sound", mp4("isom"), "audio/mp4", "audio/mp4"},
		{"an Ogg Opus voice message", ogg("OpusHead"), "", "audio/ogg"},
		{"an Ogg Vorbis song", ogg("\x01vorbis"), "application/ogg", "audio/ogg"},
		{"an Ogg Theora film", ogg("\x80theora"), "", "video/ogg"},
		{"WebM claimed as sound", webm, "audio/webm; codecs=opus", "audio/webm"},
		{"WebM", webm, "", "video/webm"},
	} {
		if got := sniff(c.head, c.claimed); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// A spooled file is bounded, read again from its start for each upload,
// knows an image's pixels, and is gone once closed.
func TestSpool(t *testing.T) {
	pic := pngOf(t, 7, 5)
	f, err := Spool(bytes.NewReader(pic), int64(len(pic)), "p.png", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if f.Size != int64(len(pic)) || f.Type != "image/png" || f.Width != 7 || f.Height != 5 {
		t.Errorf("%+v: want %d bytes of image/png, 7×5", f, len(pic))
	}
	path := f.f.Name()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the temporary file is still there: %v", err)
	}
	if _, err := Spool(bytes.NewReader(pic), int64(len(pic))-1, "p.png", "", t.TempDir()); !errors.Is(err, ErrTooLarge) || !errors.Is(err, mapping.ErrPermanent) {
		t.Errorf("one byte over: %v, want ErrTooLarge", err)
	}
}

// What a stopped bridge left is removed once old; what is new, or not
// the bridge's, stays.
func TestCleanTemp(t *testing.T) {
	dir := t.TempDir()
	old, fresh, other := filepath.Join(dir, tempPrefix+"1"), filepath.Join(dir, tempPrefix+"2"), filepath.Join(dir, "keep")
	for _, p := range []string{old, fresh, other} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * time.Hour)
	_ = os.Chtimes(old, past, past)
	_ = os.Chtimes(other, past, past)
	if n := CleanTemp(dir, time.Hour); n != 1 {
		t.Errorf("removed %d, want 1", n)
	}
	for p, want := range map[string]bool{old: false, fresh: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s there: %t, want %t", p, err == nil, want)
		}
	}
}

// A name a sender chose names a file and nothing else.
func TestSafeName(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	for in, want := range map[string]string{
		"photo.jpg":        "photo.jpg",
		"../../etc/passwd": "_.._etc_passwd",
		"a\\b.png":         "a_b.png",
		"line\nbreak.txt":  "line_break.txt",
		"":                 "file",
		"...":              "file",
		"\xff\xfe.png":     "_.png",
		"Très cool.jpg":    "Très cool.jpg",
		long:               strings.Repeat("é", 127),
	} {
		if got := safeName(in); got != want {
			t.Errorf("safeName(%q) = %q, want %q", in, got, want)
		}
	}
}
