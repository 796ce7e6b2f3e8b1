package matrixside

import (
	"context"
	"fmt"
	"io"
	"mime"
	"strings"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"xmppbridge/mapping"
)

// DisplayName is user's display name, from their profile.
func (h *Homeserver) DisplayName(ctx context.Context, user id.UserID) (string, error) {
	resp, err := h.AS.BotClient().GetDisplayName(ctx, user)
	if err != nil {
		return "", err
	}
	return resp.DisplayName, nil
}

// Profile implements mapping.MatrixSide: GET /profile/{userId}.
func (h *Homeserver) Profile(ctx context.Context, user id.UserID) (string, string, error) {
	resp, err := h.AS.BotClient().GetProfile(ctx, user)
	if err != nil {
		return "", "", h.classify(ctx, err)
	}
	return resp.DisplayName, resp.AvatarURL.String(), nil
}

// Avatar implements mapping.MatrixSide: a thumbnail through the
// authenticated media API (GET /_matrix/client/v1/media/thumbnail, as the
// bridge's bot; the unauthenticated /media/v3 is frozen on homeservers
// that follow Matrix 1.11), scaled to fit size×size.
func (h *Homeserver) Avatar(ctx context.Context, avatarURL string, size, maxBytes int) ([]byte, string, error) {
	uri, err := id.ParseContentURI(avatarURL)
	if err != nil || uri.IsEmpty() {
		return nil, "", fmt.Errorf("%w: not an mxc:// URI: %q", mapping.ErrPermanent, avatarURL)
	}
	resp, err := h.AS.BotClient().DownloadThumbnail(ctx, uri, size, size, mautrix.DownloadThumbnailExtra{Method: "scale"})
	if err != nil {
		return nil, "", h.classify(ctx, fmt.Errorf("fetch %s: %w", avatarURL, err))
	}
	defer resp.Body.Close()
	typ, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if !strings.HasPrefix(typ, "image/") {
		return nil, "", fmt.Errorf("%w: %s is %q, not an image", mapping.ErrPermanent, avatarURL, typ)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(maxBytes)+1))
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s: %w", avatarURL, err)
	}
	if len(data) > maxBytes {
		return nil, "", fmt.Errorf("%w: the thumbnail of %s is over %d bytes", mapping.ErrPermanent, avatarURL, maxBytes)
	}
	return data, typ, nil
}

// UploadAvatar implements mapping.MatrixSide: POST /_matrix/media/v3/upload
// as the ghost, so that the media is the ghost's own.
func (h *Homeserver) UploadAvatar(ctx context.Context, ghost id.UserID, data []byte, mimeType string) (string, error) {
	intent, err := h.intent(ctx, ghost)
	if err != nil {
		return "", err
	}
	if mimeType == "" {
		mimeType = "application/octet-stream"
	}
	resp, err := intent.UploadBytes(ctx, data, mimeType)
	if err != nil {
		return "", h.classify(ctx, err)
	}
	return resp.ContentURI.String(), nil
}

// SetGhostAvatar implements mapping.MatrixSide.
func (h *Homeserver) SetGhostAvatar(ctx context.Context, ghost id.UserID, url string) error {
	intent, err := h.intent(ctx, ghost)
	if err != nil {
		return err
	}
	var uri id.ContentURI
	if url != "" {
		if uri, err = id.ParseContentURI(url); err != nil {
			return fmt.Errorf("%w: %w", mapping.ErrPermanent, err)
		}
	}
	return h.classify(ctx, intent.SetAvatarURL(ctx, uri))
}
