package media

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

func picture(t *testing.T, typ string, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := 0; x < w; x += 7 {
		for y := 0; y < h; y += 5 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 90, 255})
		}
	}
	var b bytes.Buffer
	var err error
	if typ == "image/jpeg" {
		err = jpeg.Encode(&b, img, nil)
	} else {
		err = png.Encode(&b, img)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func spooled(t *testing.T, data []byte) *File {
	t.Helper()
	f, err := Spool(bytes.NewReader(data), 1<<30, "p", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// A picture larger than 800×600 gets a thumbnail that fits the box, its
// proportions kept, in its own kind (JPEG for JPEG, else PNG), whose
// bytes decode to the size thumbnail_info gives (client-server API,
// m.image info: thumbnail_url, thumbnail_info); one that fits gets none.
func TestMakeThumbnail(t *testing.T) {
	for _, c := range []struct {
		typ        string
		w, h       int
		tw, th     int
		wantThumb  bool
		decodeType string
	}{
		{"image/png", 1600, 1200, 800, 600, true, "png"},
		{"image/jpeg", 2000, 500, 800, 200, true, "jpeg"},
		{"image/png", 300, 1200, 150, 600, true, "png"},
		{"image/png", 800, 600, 0, 0, false, ""},
		{"image/jpeg", 640, 480, 0, 0, false, ""},
	} {
		f := spooled(t, picture(t, c.typ, c.w, c.h))
		th, err := MakeThumbnail(f)
		if err != nil {
			t.Fatalf("%s %d×%d: %v", c.typ, c.w, c.h, err)
		}
		if (th != nil) != c.wantThumb {
			t.Fatalf("%s %d×%d: thumbnail %v, want one: %v", c.typ, c.w, c.h, th != nil, c.wantThumb)
		}
		if th == nil {
			continue
		}
		cfg, kind, err := image.DecodeConfig(bytes.NewReader(th.Data))
		if err != nil || kind != c.decodeType || th.Type != "image/"+kind || cfg.Width != c.tw || cfg.Height != c.th || th.Width != c.tw || th.Height != c.th {
			t.Errorf("%s %d×%d: thumbnail %s %d×%d decoding as %s %d×%d (%v), want %s %d×%d",
				c.typ, c.w, c.h, th.Type, th.Width, th.Height, kind, cfg.Width, cfg.Height, err, c.decodeType, c.tw, c.th)
		}
	}
}

// A picture whose header announces more pixels than maxDecodedBytes (a
// decompression bomb: a few bytes that would decode to gigabytes) gets
// no thumbnail and is never decoded; one whose pixels are broken is an
// error, and the file still goes, without one.
func TestMakeThumbnailRefuses(t *testing.T) {
	bomb := picture(t, "image/png", 900, 700)
	// IHDR (after the 8-byte signature and the chunk's length and type)
	// says 30000×30000, with its CRC made again.
	binary.BigEndian.PutUint32(bomb[16:], 30000)
	binary.BigEndian.PutUint32(bomb[20:], 30000)
	binary.BigEndian.PutUint32(bomb[29:], crc32.ChecksumIEEE(bomb[12:29]))
	f := spooled(t, bomb)
	if f.Width != 30000 {
		t.Fatalf("the bomb reads as %d×%d", f.Width, f.Height)
	}
	if th, err := MakeThumbnail(f); th != nil || err != nil {
		t.Errorf("a 30000×30000 PNG: thumbnail %v, error %v; want neither", th != nil, err)
	}

	broken := picture(t, "image/png", 900, 700)
	broken = append(broken[:60:60], bytes.Repeat([]byte{0xAB}, 500)...)
	if th, err := MakeThumbnail(spooled(t, broken)); th != nil || err == nil {
		t.Errorf("a PNG with broken pixels: thumbnail %v, error %v; want an error", th != nil, err)
	}
}
