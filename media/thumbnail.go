package media

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"sync"

	"golang.org/x/image/draw"
)

// A thumbnail (client-server API, m.image: info.thumbnail_url and
// thumbnail_info) is made for a picture larger than thumbBox, so that a
// client shows it without fetching the whole file: scaled to fit the
// box (800×600, the size Element asks a homeserver for), as JPEG for a
// JPEG, as PNG (which keeps transparency) for a PNG or GIF.
const thumbWidth, thumbHeight = 800, 600

// maxDecodedBytes bounds the memory a picture may decode to: larger ones
// get no thumbnail. One is decoded at a time (thumbMu), so that thumbnails
// cost the bridge at most this much memory whatever is in flight: 36 MiB
// is a 12-megapixel JPEG (4032×3024, what phone cameras take) at the 3
// bytes a pixel of its worst case, or a 9-megapixel 8-bit PNG.
const maxDecodedBytes = 36 << 20

var thumbMu sync.Mutex

// Thumbnail is a scaled-down copy of a picture.
type Thumbnail struct {
	Data          []byte
	Type          string
	Width, Height int
}

// MakeThumbnail makes f's thumbnail, or nil when it needs none (not a
// PNG, JPEG or GIF, or no larger than the box) or may not have one (more
// pixels than maxDecodedBytes allows). An error: its bytes do not decode.
func MakeThumbnail(f *File) (*Thumbnail, error) {
	if f.Width <= thumbWidth && f.Height <= thumbHeight {
		return nil, nil
	}
	r, err := f.Reader()
	if err != nil {
		return nil, err
	}
	cfg, _, err := image.DecodeConfig(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("read %s for its thumbnail: %w", f.Type, err)
	}
	if decodedSize(cfg) > maxDecodedBytes {
		return nil, nil
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	thumbMu.Lock()
	defer thumbMu.Unlock()
	src, _, err := image.Decode(bufio.NewReader(io.LimitReader(r, f.Size)))
	if err != nil {
		return nil, fmt.Errorf("decode %s for its thumbnail: %w", f.Type, err)
	}
	b := src.Bounds()
	w, h := fit(b.Dx(), b.Dy(), thumbWidth, thumbHeight)
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), src, b, draw.Src, nil)
	var out bytes.Buffer
	t := &Thumbnail{Width: w, Height: h}
	if f.Type == "image/jpeg" {
		t.Type, err = "image/jpeg", jpeg.Encode(&out, dst, &jpeg.Options{Quality: 80})
	} else {
		t.Type, err = "image/png", (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&out, dst)
	}
	if err != nil {
		return nil, fmt.Errorf("encode the thumbnail: %w", err)
	}
	t.Data = out.Bytes()
	return t, nil
}

// decodedSize is the most memory a picture of cfg takes once decoded by
// the standard library, by its colour model: JPEG's YCbCr at 3 bytes a
// pixel (4:4:4; cameras' 4:2:0 takes half), CMYK and 8-bit RGBA at 4,
// 16-bit at 8, a palette or grey at 1 or 2.
func decodedSize(cfg image.Config) int64 {
	per := int64(4)
	switch cfg.ColorModel {
	case color.YCbCrModel:
		per = 3
	case color.RGBA64Model, color.NRGBA64Model:
		per = 8
	case color.GrayModel:
		per = 1
	case color.Gray16Model:
		per = 2
	default:
		if _, ok := cfg.ColorModel.(color.Palette); ok {
			per = 1
		}
	}
	return int64(cfg.Width) * int64(cfg.Height) * per
}

// fit is w×h scaled to fit a box of bw×bh, its proportions kept.
func fit(w, h, bw, bh int) (int, int) {
	if w*bh > h*bw { // wider than the box
		return bw, max(1, h*bw/w)
	}
	return max(1, w*bh/h), bh
}
