package media

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"xmppbridge/mapping"
)

// Serving: the second way a file from Matrix gets a URL an XMPP client can
// open (media.to_xmpp: serve). The bridge hands out a URL under
// media.public_url that names the file in the media repository (the mxc://
// server and media id), when the URL stops working, and its file name,
// all signed with HMAC-SHA256; whoever opens it gets the file the bridge
// downloads for them from the homeserver's authenticated media API, which
// no XMPP client can ask (it needs a Matrix access token), into a bounded
// temporary file (a seekable copy, which ranges need; the API is not
// asked for ranges, so that they do not depend on the homeserver). Nothing else is
// reachable through it: a URL the bridge did not sign names nothing.
//
// The URL is PUBLIC/SERVER/MEDIA_ID/EXPIRY/SIGNATURE/NAME, each part
// escaped as a path segment: the name last, so that a client that guesses
// a file's kind from its URL's extension sees the file's own.

// SignedURLs makes and checks the signed URLs of files from Matrix.
type SignedURLs struct {
	// Public is media.public_url, the address the URLs begin with, as
	// XMPP clients reach it (through a reverse proxy).
	Public *url.URL
	// Key signs the URLs (media.signing_key, else the one the bridge
	// generated and keeps in its database).
	Key []byte
	// Lifetime is how long a URL works (media.serve_expiry).
	Lifetime time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// The parts of a media URL the client-server API allows (Matrix
// specification, "Matrix Content (mxc://) URIs" and "Server Name"):
// a media id is of [A-Za-z0-9_-]; a server name a DNS name, an IPv4 or a
// bracketed IPv6 address, with an optional port.
var (
	mediaIDPattern    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	serverNamePattern = regexp.MustCompile(`^([A-Za-z0-9.-]{1,255}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?$`)
)

// ErrNotServable marks an mxc:// URI the bridge will not sign: not one,
// or with a server name or media id outside the specification's grammar.
var ErrNotServable = errors.New("not a servable mxc:// URI")

// URL is the signed URL of the file at mxc (an mxc:// URI) named name.
func (s *SignedURLs) URL(mxc, name string) (string, error) {
	server, mediaID, ok := splitMXC(mxc)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrNotServable, mxc)
	}
	name = safeName(name)
	expiry := strconv.FormatInt(s.now().Add(s.Lifetime).Unix(), 10)
	return strings.TrimSuffix(s.Public.String(), "/") + "/" + strings.Join([]string{
		url.PathEscape(server), url.PathEscape(mediaID), expiry, s.sign(server, mediaID, expiry, name), url.PathEscape(name)}, "/"), nil
}

// splitMXC is the server name and media id of an mxc:// URI, if both
// follow the specification's grammar.
func splitMXC(mxc string) (server, mediaID string, ok bool) {
	rest, found := strings.CutPrefix(mxc, "mxc://")
	if !found {
		return "", "", false
	}
	server, mediaID, found = strings.Cut(rest, "/")
	return server, mediaID, found && serverNamePattern.MatchString(server) && !strings.Contains(server, "..") && mediaIDPattern.MatchString(mediaID)
}

// sign is the signature of a URL's parts: HMAC-SHA256 under Key of the
// parts joined by NUL (which none of them holds, so that no two lists of
// parts sign alike), base64url without padding.
func (s *SignedURLs) sign(server, mediaID, expiry, name string) string {
	mac := hmac.New(sha256.New, s.Key)
	mac.Write([]byte("xmppbridge media v1\x00" + server + "\x00" + mediaID + "\x00" + expiry + "\x00" + name))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (s *SignedURLs) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// signedFile is what a checked URL names.
type signedFile struct {
	MXC     string
	Name    string
	Expires time.Time
}

// Why a URL is refused; each is a reason counted as media_serve.
var (
	errBadPath      = errors.New("bad_path")
	errBadSignature = errors.New("bad_signature")
	errExpired      = errors.New("expired")
)

// check is the file the URL path p (escaped, as the request has it) names,
// if the bridge signed it and it has not expired: errBadPath for a path
// that is not one of the bridge's URLs, errBadSignature for one whose
// signature is not the bridge's for its parts (tampered with, or made by
// someone without the key), errExpired for one past its expiry.
func (s *SignedURLs) check(p string) (*signedFile, error) {
	rest, ok := strings.CutPrefix(p, strings.TrimSuffix(s.Public.EscapedPath(), "/")+"/")
	if !ok {
		return nil, errBadPath
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 {
		return nil, errBadPath
	}
	for i, part := range parts {
		u, err := url.PathUnescape(part)
		if err != nil || u == "" || strings.ContainsAny(u, "/\\\x00") || u == "." || u == ".." {
			return nil, errBadPath
		}
		parts[i] = u
	}
	server, mediaID, expiry, sig, name := parts[0], parts[1], parts[2], parts[3], parts[4]
	mxc := "mxc://" + server + "/" + mediaID
	if _, _, ok := splitMXC(mxc); !ok || name != safeName(name) {
		return nil, errBadPath
	}
	exp, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil || strconv.FormatInt(exp, 10) != expiry {
		return nil, errBadPath
	}
	if !hmac.Equal([]byte(sig), []byte(s.sign(server, mediaID, expiry, name))) {
		return nil, errBadSignature
	}
	f := &signedFile{MXC: mxc, Name: name, Expires: time.Unix(exp, 0)}
	if !s.now().Before(f.Expires) {
		return f, errExpired
	}
	return f, nil
}

// Downloader is what the server asks of the homeserver: a file's body
// (Homeserver.DownloadMedia).
type Downloader interface {
	DownloadMedia(ctx context.Context, uri string) (body io.ReadCloser, size int64, typ string, err error)
}

// Server serves the files of signed URLs, each downloaded from the
// homeserver into a temporary file (at most MaxBytes, never in memory),
// its type read from its bytes, and served from there with its length,
// ranges (RFC 9110 §14) and its name.
type Server struct {
	URLs       *SignedURLs
	Homeserver Downloader
	MaxBytes   int64
	TempDir    string
	// Timeout bounds one download from the homeserver; Slots, how many
	// run at once (a request waits for a place up to SlotWait, then is
	// answered 503).
	Timeout  time.Duration
	Slots    chan struct{}
	SlotWait time.Duration
	Count    mapping.Counter
	Log      zerolog.Logger
}

// ServeDownloads is how many files the server downloads from the
// homeserver at once by default; SlotWait how long a request waits for
// one of those places.
const (
	ServeDownloads = 4
	ServeSlotWait  = 30 * time.Second
)

// NewServer is a Server with ServeDownloads places.
func NewServer(urls *SignedURLs, hs Downloader, maxBytes int64, tempDir string, timeout time.Duration, count mapping.Counter, log zerolog.Logger) *Server {
	return &Server{URLs: urls, Homeserver: hs, MaxBytes: maxBytes, TempDir: tempDir, Timeout: timeout,
		Slots: make(chan struct{}, ServeDownloads), SlotWait: ServeSlotWait, Count: count, Log: log}
}

// inlineTypes are the types a browser may show in its window rather than
// save: pictures, sound and film it only displays, and plain text. The
// rest is served as an attachment, so that no document the bridge serves
// runs in its origin (with the sandbox policy besides).
func inline(typ string) bool {
	switch {
	case typ == "image/svg+xml":
		return false
	case strings.HasPrefix(typ, "image/"), strings.HasPrefix(typ, "audio/"), strings.HasPrefix(typ, "video/"), typ == "text/plain":
		return true
	}
	return false
}

// ServeHTTP answers GET and HEAD of a signed URL; every refusal is
// logged and counted (media_serve).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := s.Log.With().Str("path", r.URL.EscapedPath()).Str("remote", r.RemoteAddr).Logger()
	refuse := func(code int, reason string, msg string) {
		log.Info().Int("status", code).Str("reason", reason).Msg(msg)
		s.Count("media_serve", reason)
		http.Error(w, http.StatusText(code), code)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		refuse(http.StatusMethodNotAllowed, "method", "Refused a request for a served file that was not GET or HEAD")
		return
	}
	f, err := s.URLs.check(r.URL.EscapedPath())
	switch {
	case errors.Is(err, errBadPath):
		refuse(http.StatusNotFound, err.Error(), "Refused a request for a served file: not one of the bridge's URLs")
		return
	case errors.Is(err, errBadSignature):
		refuse(http.StatusForbidden, err.Error(), "Refused a request for a served file: its signature is not the bridge's")
		return
	case errors.Is(err, errExpired):
		refuse(http.StatusGone, err.Error(), "Refused a request for a served file: its URL has expired (media.serve_expiry)")
		return
	}
	log = log.With().Str("mxc", f.MXC).Logger()

	wait := time.NewTimer(s.SlotWait)
	defer wait.Stop()
	select {
	case s.Slots <- struct{}{}:
	case <-wait.C:
		w.Header().Set("Retry-After", "30")
		refuse(http.StatusServiceUnavailable, "busy", "Refused a request for a served file: the bridge is downloading as many as it may at once")
		return
	case <-r.Context().Done():
		return
	}
	file, err := s.download(r.Context(), f, r.Method == http.MethodHead)
	<-s.Slots
	switch {
	case errors.Is(err, ErrTooLarge):
		refuse(http.StatusBadGateway, "too_large", "Refused a served file over media.max_file_mib")
		return
	case errors.Is(err, mapping.ErrPermanent):
		log.Info().Err(err).Msg("A served file is no longer in the media repository")
		refuse(http.StatusNotFound, "gone", "Refused a request for a served file the homeserver does not have")
		return
	case err != nil:
		log.Warn().Err(err).Msg("Could not download a served file from the homeserver")
		refuse(http.StatusBadGateway, "failed", "Refused a request for a served file: the homeserver did not give it")
		return
	}
	var body io.ReadSeeker
	if file.f != nil {
		defer file.Close()
		if body, err = file.Reader(); err != nil {
			refuse(http.StatusInternalServerError, "failed", "Could not read a served file back")
			return
		}
	}
	disposition := "attachment"
	if inline(file.Type) {
		disposition = "inline"
	}
	h := w.Header()
	h.Set("Content-Type", file.Type)
	h.Set("Content-Disposition", mime.FormatMediaType(disposition, map[string]string{"filename": f.Name}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	// A file of the media repository never changes: any cache may keep
	// it until its URL expires.
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d, immutable", max(0, int(time.Until(f.Expires).Seconds()))))
	tag := sha256.Sum256([]byte(f.MXC))
	h.Set("ETag", fmt.Sprintf(`"%x"`, tag[:12]))
	s.Count("media_serve", "served")
	log.Debug().Str("method", r.Method).Str("type", file.Type).Int64("size", file.Size).Str("range", r.Header.Get("Range")).Msg("Serving a file from Matrix")
	if body == nil { // a HEAD answered from the homeserver's length
		h.Set("Accept-Ranges", "bytes")
		h.Set("Content-Length", strconv.FormatInt(file.Size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, body)
}

// download spools the file f names from the homeserver, within Timeout.
// For a HEAD (head), whose answer has no body, only the first bytes are
// read, for the type, when the homeserver tells the length: clients such
// as Conversations ask for the size before the file, and that would
// otherwise download it twice. The File it returns then holds no file.
func (s *Server) download(ctx context.Context, f *signedFile, head bool) (*File, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	body, size, typ, err := s.Homeserver.DownloadMedia(ctx, f.MXC)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if size > s.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	if head && size >= 0 {
		first := make([]byte, sniffLen)
		n, err := io.ReadFull(body, first)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read the file: %w", err)
		}
		return &File{Name: f.Name, Type: sniff(first[:n], typ), Size: size}, nil
	}
	return Spool(body, s.MaxBytes, f.Name, typ, s.TempDir)
}

// Serve timeouts: a request's headers and body are small; the answer may
// be a large file to a slow client (100 MiB in half an hour is 57 KiB/s).
const (
	serveReadTimeout  = 30 * time.Second
	serveWriteTimeout = 30 * time.Minute
	serveIdleTimeout  = 2 * time.Minute
)

// Listen serves the signed URLs on addr (media.serve_listen) until ctx
// ends.
func (s *Server) Listen(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: serveReadTimeout, ReadTimeout: serveReadTimeout,
		WriteTimeout: s.Timeout + serveWriteTimeout, IdleTimeout: serveIdleTimeout}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	s.Log.Info().Str("address", addr).Str("public_url", s.URLs.Public.String()).Msg("Serving files from Matrix to XMPP")
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// KV is where the bridge keeps the signing key it generated (the
// database's kv table).
type KV interface {
	GetKV(ctx context.Context, key string) (string, error)
	SetKV(ctx context.Context, key, value string) error
}

// signingKeyKV is the kv key of the generated signing key.
const signingKeyKV = "media_signing_key"

// SigningKey is the key that signs served URLs: configured
// (media.signing_key) if it is set, else the one kept in kv, generated
// (32 random bytes) and kept there the first time, so that the URLs the
// bridge gave stay valid across its restarts.
func SigningKey(ctx context.Context, kv KV, configured string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	stored, err := kv.GetKV(ctx, signingKeyKV)
	if err == nil {
		if key, err := base64.StdEncoding.DecodeString(stored); err == nil && len(key) >= sha256.Size {
			return key, nil
		}
		return nil, fmt.Errorf("the media signing key in the database (kv %s) is damaged; remove it to have a new one made, which ends the URLs given", signingKeyKV)
	} else if !errors.Is(err, mapping.ErrNotFound) {
		return nil, fmt.Errorf("read the media signing key: %w", err)
	}
	key := make([]byte, sha256.Size)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := kv.SetKV(ctx, signingKeyKV, base64.StdEncoding.EncodeToString(key)); err != nil {
		return nil, fmt.Errorf("keep the media signing key: %w", err)
	}
	return key, nil
}
