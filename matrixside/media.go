package matrixside

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/mapping"
)

// UploadMedia puts a file into the media repository as user (POST
// /_matrix/media/v3/upload, with its name), streamed from body, which may
// be read again from its start for a retry if it is an io.ReadSeeker;
// it returns the mxc:// URI.
func (h *Homeserver) UploadMedia(ctx context.Context, user id.UserID, body io.Reader, size int64, typ, name string) (string, error) {
	intent, err := h.intent(ctx, user)
	if err != nil {
		return "", err
	}
	resp, err := intent.UploadMedia(ctx, mautrix.ReqUploadMedia{Content: body, ContentLength: size, ContentType: typ, FileName: name})
	if err != nil {
		return "", h.classify(ctx, fmt.Errorf("upload %s: %w", name, err))
	}
	return resp.ContentURI.String(), nil
}

// DownloadMedia opens the file of an mxc:// URI through the authenticated
// media API (GET /_matrix/client/v1/media/download, client-server API
// v1.11, as the bot: the unauthenticated /media/v3 path is frozen on
// homeservers that follow v1.11; Dendrite 0.15.2 serves the new one), or,
// from a homeserver older than v1.11 that does not know that path
// (M_UNRECOGNIZED), the v3 one; it returns its body, its length (-1 if
// not given) and its Content-Type. The caller closes the body.
func (h *Homeserver) DownloadMedia(ctx context.Context, uri string) (io.ReadCloser, int64, string, error) {
	mxc, err := id.ParseContentURI(uri)
	if err != nil || mxc.IsEmpty() {
		return nil, 0, "", fmt.Errorf("%w: not an mxc:// URI: %q", mapping.ErrPermanent, uri)
	}
	bot := h.AS.BotClient()
	resp, err := bot.Download(ctx, mxc)
	if errors.Is(err, mautrix.MUnrecognized) {
		_, resp, err = bot.MakeFullRequestWithResp(ctx, mautrix.FullRequest{Method: http.MethodGet,
			URL: bot.BuildURL(mautrix.MediaURLPath{"v3", "download", mxc.Homeserver, mxc.FileID}), DontReadResponse: true})
	}
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden) {
			return nil, 0, "", fmt.Errorf("%w: download %s: %w", mapping.ErrPermanent, uri, err)
		}
		return nil, 0, "", h.classify(ctx, fmt.Errorf("download %s: %w", uri, err))
	}
	typ, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return resp.Body, resp.ContentLength, typ, nil
}

// mediaContent is the content of a file's message (client-server API,
// m.image, m.video, m.audio, m.file): the body, and the file's name as
// filename where the body is a caption (v1.10, "Media captions").
func mediaContent(body string, f *mapping.MediaFile) *event.MessageEventContent {
	c := &event.MessageEventContent{MsgType: event.MessageType(f.MsgType), Body: body, URL: id.ContentURIString(f.URL),
		Info: &event.FileInfo{MimeType: f.Type, Size: int(f.Size), Width: f.Width, Height: f.Height}}
	if t := f.Thumbnail; t != nil {
		c.Info.ThumbnailURL = id.ContentURIString(t.URL)
		c.Info.ThumbnailInfo = &event.FileInfo{MimeType: t.Type, Size: int(t.Size), Width: t.Width, Height: t.Height}
	}
	if body != f.Name {
		c.FileName = f.Name
	}
	return c
}

// fileOf is the file of a message's content, nil for one without.
func fileOf(c *event.MessageEventContent) *mapping.MatrixFile {
	f := &mapping.MatrixFile{URL: string(c.URL), Name: c.FileName, Caption: ""}
	if c.File != nil {
		f.Encrypted, f.URL = true, string(c.File.URL)
	}
	if f.Name == "" {
		f.Name = c.Body
	} else if c.Body != c.FileName {
		f.Caption = c.Body
	}
	if c.Info != nil {
		f.Type, f.Size = c.Info.MimeType, int64(c.Info.Size)
	}
	return f
}
