package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// Homeserver is what the mover asks of the homeserver (matrixside).
type Homeserver interface {
	UploadMedia(ctx context.Context, user id.UserID, body io.Reader, size int64, typ, name string) (string, error)
	DownloadMedia(ctx context.Context, uri string) (io.ReadCloser, int64, string, error)
}

// UploadService is what the mover asks of the XMPP server's upload
// service (xmppside.Uploader, XEP-0363).
type UploadService interface {
	Upload(ctx context.Context, from jid.JID, name string, size int64, typ string, body io.Reader) (string, error)
}

// Mover moves files between the sides: mapping.Media.
type Mover struct {
	Fetcher    *Fetcher
	Homeserver Homeserver
	Upload     UploadService
	// MaxBytes bounds a file from Matrix (the homeserver's own bound
	// is usually below it); TempDir is where files are spooled.
	MaxBytes int64
	TempDir  string
	// Serve, when set (media.to_xmpp: serve), gives files from Matrix
	// the bridge's own signed URLs instead of uploading them.
	Serve *SignedURLs
}

var _ mapping.Media = (*Mover)(nil)

// ToMatrix implements mapping.Media: fetched, spooled, uploaded as ghost.
func (m *Mover) ToMatrix(ctx context.Context, ghost id.UserID, url string) (*mapping.MediaFile, error) {
	f, err := m.Fetcher.Fetch(ctx, url)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	body, err := f.Reader()
	if err != nil {
		return nil, err
	}
	uri, err := m.Homeserver.UploadMedia(ctx, ghost, body, f.Size, f.Type, f.Name)
	if err != nil {
		return nil, err
	}
	return &mapping.MediaFile{URL: uri, Name: f.Name, Type: f.Type, Size: f.Size, Width: f.Width, Height: f.Height,
		Thumbnail: m.thumbnail(ctx, ghost, f)}, nil
}

// thumbnail makes a large picture's thumbnail and uploads it as ghost; a
// picture that cannot have one goes without (a client then shows the
// whole file): what went wrong is logged, not passed on.
func (m *Mover) thumbnail(ctx context.Context, ghost id.UserID, f *File) *mapping.MediaThumbnail {
	t, err := MakeThumbnail(f)
	if err == nil && t != nil {
		var uri string
		uri, err = m.Homeserver.UploadMedia(ctx, ghost, bytes.NewReader(t.Data), int64(len(t.Data)), t.Type, "thumbnail-"+f.Name)
		if err == nil {
			return &mapping.MediaThumbnail{URL: uri, Type: t.Type, Size: int64(len(t.Data)), Width: t.Width, Height: t.Height}
		}
	}
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("type", f.Type).Int("w", f.Width).Int("h", f.Height).Msg("The picture goes without a thumbnail")
	}
	return nil
}

// ToXMPP implements mapping.Media, and is the one place that decides the
// URL a file from Matrix has on XMPP: with Serve, the bridge's own signed
// URL of it (served); else downloaded from the homeserver, spooled
// (XEP-0363 asks for the size before the upload), put on the upload
// service as from. The homeserver's ErrNotConnected is not passed on: the
// job waits on the XMPP side, which is up.
func (m *Mover) ToXMPP(ctx context.Context, from jid.JID, src mapping.MediaFile) (*mapping.MediaFile, error) {
	if m.Serve != nil {
		return m.served(src)
	}
	body, size, typ, err := m.Homeserver.DownloadMedia(ctx, src.URL)
	if errors.Is(err, mapping.ErrNotConnected) {
		return nil, fmt.Errorf("download %s: the homeserver is away", src.URL)
	} else if err != nil {
		return nil, err
	}
	defer body.Close()
	if size > m.MaxBytes {
		return nil, fmt.Errorf("%w: %w: %d bytes, over media.max_file_mib", mapping.ErrPermanent, ErrTooLarge, size)
	}
	claimed := src.Type
	if claimed == "" {
		claimed = typ
	}
	name := src.Name
	if name == "" {
		name = "file"
	}
	f, err := Spool(body, m.MaxBytes, name, claimed, m.TempDir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := f.Reader()
	if err != nil {
		return nil, err
	}
	url, err := m.Upload.Upload(ctx, from, f.Name, f.Size, f.Type, r)
	if err != nil {
		return nil, err
	}
	return &mapping.MediaFile{URL: url, Name: f.Name, Type: f.Type, Size: f.Size, Width: f.Width, Height: f.Height}, nil
}

// served is src with its signed URL, which the bridge serves by
// downloading it when it is asked for (Server). Nothing is downloaded
// now: the size its sender claimed is checked against MaxBytes, the
// served bytes again when they are fetched.
func (m *Mover) served(src mapping.MediaFile) (*mapping.MediaFile, error) {
	if src.Size > m.MaxBytes {
		return nil, fmt.Errorf("%w: %w: %d bytes, over media.max_file_mib", mapping.ErrPermanent, ErrTooLarge, src.Size)
	}
	url, err := m.Serve.URL(src.URL, src.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", mapping.ErrPermanent, err)
	}
	return &mapping.MediaFile{URL: url, Name: safeName(src.Name), Type: src.Type, Size: src.Size}, nil
}
