package media

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	_ "image/gif"  // image.DecodeConfig reads the sizes of the image
	_ "image/jpeg" // types every Matrix client shows
	_ "image/png"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"xmppbridge/mapping"
)

// File is a file spooled to a temporary file, with what its bytes tell of
// it. Close removes it.
type File struct {
	Name          string
	Type          string // MIME, from its bytes (sniff)
	Size          int64
	Width, Height int // an image's, 0 if not known
	f             *os.File
}

// Reader is the file from its start, for one upload; it is an
// io.ReadSeeker, so a retry can read it again.
func (f *File) Reader() (io.ReadSeeker, error) {
	if _, err := f.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return f.f, nil
}

// Close removes the temporary file.
func (f *File) Close() error {
	err := f.f.Close()
	if rerr := os.Remove(f.f.Name()); err == nil {
		err = rerr
	}
	return err
}

// Spool copies r, at most max bytes, into a temporary file in dir and
// reads its type (sniff, claimed being what its sender said) and, for an
// image, its size. More than max is ErrTooLarge, wrapped with
// mapping.ErrPermanent.
func Spool(r io.Reader, max int64, name, claimed, dir string) (*File, error) {
	tmp, err := os.CreateTemp(dir, tempPrefix)
	if err != nil {
		return nil, fmt.Errorf("spool a file: %w", err)
	}
	file := &File{Name: safeName(name), f: tmp}
	n, err := io.Copy(tmp, io.LimitReader(r, max+1))
	switch {
	case err != nil:
		file.Close()
		return nil, fmt.Errorf("read the file: %w", err)
	case n > max:
		file.Close()
		return nil, fmt.Errorf("%w: %w: over %d bytes", mapping.ErrPermanent, ErrTooLarge, max)
	}
	file.Size = n
	head := make([]byte, sniffLen)
	k, _ := tmp.ReadAt(head, 0)
	file.Type = sniff(head[:k], claimed)
	if strings.HasPrefix(file.Type, "image/") {
		if _, err := tmp.Seek(0, io.SeekStart); err == nil {
			if cfg, _, err := image.DecodeConfig(bufio.NewReader(tmp)); err == nil {
				file.Width, file.Height = cfg.Width, cfg.Height
			}
		}
	}
	return file, nil
}

// sniffLen is how much of a file the sniffing algorithm reads (WHATWG
// MIME Sniffing §7: the resource header, 512 bytes).
const sniffLen = 512

// sniff is the MIME type of a file that begins with head, as
// http.DetectContentType reads it (the WHATWG sniffing algorithm), without
// parameters; markup as text/plain; a container that holds sound or
// pictures alike told apart (soundOrPicture). What a sender claims is
// taken only where the bytes say nothing (application/octet-stream) and
// the claim is of a kind the algorithm does not know well and no client
// would run: audio, video, or an application type other than the markup
// and scripts a browser would (an image claimed but not recognised stays
// a file: clients would fail to show it as one).
func sniff(head []byte, claimed string) string {
	typ, _, _ := mime.ParseMediaType(http.DetectContentType(head))
	c, _, err := mime.ParseMediaType(claimed)
	if err != nil {
		c = ""
	}
	switch typ {
	case "text/html", "text/xml":
		// Markup goes as the text it is: a media repository or upload
		// service that served it as markup would run what it holds.
		return "text/plain"
	case "video/mp4", "video/webm", "application/ogg":
		return soundOrPicture(typ, head, c)
	case "application/octet-stream":
	default:
		return typ
	}
	switch {
	case strings.HasPrefix(c, "audio/"), strings.HasPrefix(c, "video/"):
		return c
	case strings.HasPrefix(c, "application/") && !strings.Contains(c, "html") && !strings.Contains(c, "xml") &&
		!strings.Contains(c, "javascript") && !strings.Contains(c, "ecmascript"):
		return c
	}
	return typ
}

// soundOrPicture tells a voice message from a film in the containers that
// hold either, which the sniffing algorithm calls video/mp4, video/webm
// or application/ogg: by the MP4 brand of audio files (M4A, M4B), by the
// codec an Ogg file's first page names (Opus, Vorbis, Speex, FLAC: sound;
// Theora: pictures), else by what the sender claims, if it is sound.
// Conversations sends its voice messages in MP4, Dino and Gajim in Ogg
// Opus; as m.audio they are played as sound.
func soundOrPicture(typ string, head []byte, claimed string) string {
	switch typ {
	case "video/mp4":
		if len(head) >= 12 && (string(head[8:12]) == "M4A " || string(head[8:12]) == "M4B ") {
			return "audio/mp4"
		}
	case "application/ogg":
		for _, codec := range []string{"OpusHead", "\x01vorbis", "Speex   ", "\x7fFLAC"} {
			if bytes.Contains(head, []byte(codec)) {
				return "audio/ogg"
			}
		}
		if bytes.Contains(head, []byte("\x80theora")) {
			return "video/ogg"
		}
	}
	if strings.HasPrefix(claimed, "audio/") {
		return "audio/" + strings.TrimPrefix(strings.TrimPrefix(typ, "video/"), "application/")
	}
	return typ
}

// maxNameBytes bounds a file's name (most file systems' bound).
const maxNameBytes = 255

// safeName is name as a file name that names nothing else: no directory
// (a sender's "../x" or "a/b"), no control characters, valid UTF-8, at
// most maxNameBytes; "file" if nothing is left.
func safeName(name string) string {
	name = strings.ToValidUTF8(name, "_")
	name = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, name)
	name = strings.TrimLeft(strings.TrimSpace(name), ".")
	for len(name) > maxNameBytes {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	if name == "" {
		return "file"
	}
	return name
}

// tempPrefix names the bridge's temporary files.
const tempPrefix = "xmppbridge-media-"

// CleanTemp removes the temporary files in dir ("": the system's) that a
// bridge stopped in the middle of a transfer left, older than age: a
// transfer takes minutes at most (media.fetch_timeout, the upload's
// timeout), so an older one is no other bridge's at work. It returns how
// many it removed.
func CleanTemp(dir string, age time.Duration) int {
	if dir == "" {
		dir = os.TempDir()
	}
	paths, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
	n := 0
	for _, p := range paths {
		if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() && time.Since(st.ModTime()) > age && os.Remove(p) == nil {
			n++
		}
	}
	return n
}
