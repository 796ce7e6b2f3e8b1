package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/rs/zerolog"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// repository is a media repository of files by mxc:// URI, each with the
// Content-Type the homeserver would give; it counts the downloads.
type repository struct {
	mu        sync.Mutex
	files     map[string][]byte
	types     map[string]string
	downloads int
	cut       int
}

func (r *repository) DownloadMedia(_ context.Context, uri string) (io.ReadCloser, int64, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, ok := r.files[uri]
	if !ok {
		return nil, 0, "", fmt.Errorf("%w: download %s: M_NOT_FOUND", mapping.ErrPermanent, uri)
	}
	r.downloads++
	body := io.Reader(bytes.NewReader(data))
	if r.cut > 0 {
		// The connection breaks after cut bytes.
		body = io.MultiReader(bytes.NewReader(data[:r.cut]), iotest.ErrReader(errors.New("connection reset")))
	}
	return io.NopCloser(body), int64(len(data)), r.types[uri], nil
}

// counts is a mapping.Counter that keeps what it counted.
type counts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counts) count(what, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[what+"/"+reason]++
}

func (c *counts) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// servedWorld is a Server on httptest under /media, the clock at now.
type servedWorld struct {
	srv    *Server
	http   *httptest.Server
	repo   *repository
	counts *counts
	now    time.Time
}

func newServed(t *testing.T) *servedWorld {
	t.Helper()
	w := &servedWorld{repo: &repository{files: map[string][]byte{}, types: map[string]string{}}, counts: &counts{n: map[string]int{}},
		now: time.Unix(1_800_000_000, 0)}
	mux := http.NewServeMux()
	w.http = httptest.NewServer(mux)
	t.Cleanup(w.http.Close)
	public, _ := url.Parse(w.http.URL + "/media")
	urls := &SignedURLs{Public: public, Key: []byte("0123456789abcdef0123456789abcdef"), Lifetime: time.Hour, Now: func() time.Time { return w.now }}
	w.srv = NewServer(urls, w.repo, 1000, os.TempDir(), 5*time.Second, w.counts.count, zerolog.Nop())
	mux.Handle("/", w.srv)
	return w
}

func (w *servedWorld) add(mxc string, data []byte, typ string) {
	w.repo.files[mxc], w.repo.types[mxc] = data, typ
}

func (w *servedWorld) sign(t *testing.T, mxc, name string) string {
	t.Helper()
	u, err := w.srv.URLs.URL(mxc, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func get(t *testing.T, u string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// A signed URL gives its file with the type its bytes show (the
// homeserver's claim only where they show nothing; markup as text),
// its length, and its name in Content-Disposition (RFC 6266 §4.1,
// attachment unless it is a picture, sound, film or plain text a
// browser only displays).
func TestServedFile(t *testing.T) {
	w := newServed(t)
	pic, pdf := pngOf(t, 4, 3), []byte("%PDF-1.4\n%%EOF\n")
	w.add("mxc://localhost/picture", pic, "application/octet-stream")
	w.add("mxc://localhost/letter", pdf, "application/pdf")
	w.add("mxc://example.org:8448/page", []byte("<html><script>alert(1)</script></html>"), "text/html")
	for _, c := range []struct {
		mxc, name   string
		data        []byte
		typ         string
		disposition string
	}{
		{"mxc://localhost/picture", "shipwreck.png", pic, "image/png", "inline"},
		{"mxc://localhost/letter", "Viola's letter.pdf", pdf, "application/pdf", "attachment"},
		{"mxc://example.org:8448/page", "page.html", nil, "text/plain", "inline"},
	} {
		u := w.sign(t, c.mxc, c.name)
		if !strings.HasSuffix(u, "/"+url.PathEscape(c.name)) {
			t.Errorf("URL %s does not end in the file's name", u)
		}
		resp, body := get(t, u)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", c.name, resp.Status)
		}
		if c.data != nil && !bytes.Equal(body, c.data) {
			t.Errorf("%s: %d bytes, not the %d in the repository", c.name, len(body), len(c.data))
		}
		if got := resp.Header.Get("Content-Type"); got != c.typ {
			t.Errorf("%s: Content-Type %q, want %q", c.name, got, c.typ)
		}
		if resp.ContentLength != int64(len(body)) {
			t.Errorf("%s: Content-Length %d for %d bytes", c.name, resp.ContentLength, len(body))
		}
		d, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
		if err != nil || d != c.disposition || params["filename"] != c.name {
			t.Errorf("%s: Content-Disposition %q, want %s with its name", c.name, resp.Header.Get("Content-Disposition"), c.disposition)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") {
			t.Errorf("%s: headers %v lack nosniff and the sandbox", c.name, resp.Header)
		}
	}
	if n := w.counts.get("media_serve/served"); n != 3 {
		t.Errorf("media_serve/served counted %d times, want 3", n)
	}
}

// Range requests (RFC 9110 §14.2, §15.3.7): a part of the file as 206
// Partial Content with its Content-Range; a range past the end, 416
// (§15.5.17); If-Range with the ETag the file was served with still
// gives the part (§13.1.5).
func TestServedRange(t *testing.T) {
	w := newServed(t)
	data := []byte("%PDF-1.4 0123456789abcdefghijklmnopqrstuvwxyz %%EOF")
	w.add("mxc://localhost/doc", data, "application/pdf")
	u := w.sign(t, "mxc://localhost/doc", "doc.pdf")
	resp, body := get(t, u, "Range", "bytes=9-18")
	if resp.StatusCode != http.StatusPartialContent || string(body) != string(data[9:19]) {
		t.Errorf("bytes=9-18: %s %q, want 206 %q", resp.Status, body, data[9:19])
	}
	if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 9-18/%d", len(data)); got != want {
		t.Errorf("Content-Range %q, want %q", got, want)
	}
	if resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("Accept-Ranges %q", resp.Header.Get("Accept-Ranges"))
	}
	resp, body = get(t, u, "Range", "bytes=-5")
	if resp.StatusCode != http.StatusPartialContent || string(body) != "%%EOF" {
		t.Errorf("bytes=-5: %s %q", resp.Status, body)
	}
	resp, _ = get(t, u, "Range", "bytes=1000-")
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("bytes=1000-: %s, want 416", resp.Status)
	}
	full, _ := get(t, u)
	resp, body = get(t, u, "Range", "bytes=0-3", "If-Range", full.Header.Get("ETag"))
	if full.Header.Get("ETag") == "" || resp.StatusCode != http.StatusPartialContent || string(body) != "%PDF" {
		t.Errorf("If-Range %q: %s %q", full.Header.Get("ETag"), resp.Status, body)
	}
}

// Nothing but what the bridge signed is reachable: a URL whose server,
// media id, expiry, name or signature was changed, or signed with another
// key, is 403; an expired one 410; a path that is not one of the bridge's
// URLs (other segments, a traversal, a media id outside the grammar of
// the client-server API's "Matrix Content (mxc://) URIs") 404; each
// counted, and none of them reaches the homeserver.
func TestServedRefusals(t *testing.T) {
	w := newServed(t)
	w.add("mxc://localhost/picture", pngOf(t, 2, 2), "image/png")
	w.add("mxc://localhost/secret", []byte("not signed for anyone"), "text/plain")
	u := w.sign(t, "mxc://localhost/picture", "pic.png")
	prefix := w.http.URL + "/media/"
	parts := strings.Split(strings.TrimPrefix(u, prefix), "/") // server, id, expiry, signature, name
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return prefix + strings.Join(p, "/")
	}
	other := *w.srv.URLs
	other.Key = []byte("another key, another key, another key")
	forged, _ := other.URL("mxc://localhost/secret", "secret.txt")
	sig := parts[3]
	flipped := "A" + sig[1:]
	if sig[0] == 'A' {
		flipped = "B" + sig[1:]
	}
	for _, c := range []struct {
		name   string
		url    string
		status int
		reason string
	}{
		{"another media id", with(1, "secret"), http.StatusForbidden, "bad_signature"},
		{"another server", with(0, "example.org"), http.StatusForbidden, "bad_signature"},
		{"a later expiry", with(2, fmt.Sprint(w.now.Add(100*time.Hour).Unix())), http.StatusForbidden, "bad_signature"},
		{"another name", with(4, "pic.html"), http.StatusForbidden, "bad_signature"},
		{"a changed signature", with(3, flipped), http.StatusForbidden, "bad_signature"},
		{"a signature cut short", with(3, sig[:20]), http.StatusForbidden, "bad_signature"},
		{"signed with another key", forged, http.StatusForbidden, "bad_signature"},
		{"a traversal", with(1, "..") + "/../../etc/passwd", http.StatusNotFound, "bad_path"},
		{"an escaped traversal", with(1, "%2e%2e%2fsecret"), http.StatusNotFound, "bad_path"},
		{"a media id outside the grammar", with(1, "pic.png"), http.StatusNotFound, "bad_path"},
		{"a segment too few", prefix + strings.Join(parts[:4], "/"), http.StatusNotFound, "bad_path"},
		{"an expiry not a number", with(2, "tomorrow"), http.StatusNotFound, "bad_path"},
		{"outside the prefix", w.http.URL + "/other/" + strings.Join(parts, "/"), http.StatusNotFound, "bad_path"},
	} {
		resp, _ := get(t, c.url)
		if resp.StatusCode != c.status {
			t.Errorf("%s (%s): %s, want %d", c.name, c.url, resp.Status, c.status)
		}
	}
	if got := w.counts.get("media_serve/bad_signature"); got != 7 {
		t.Errorf("media_serve/bad_signature counted %d, want 7", got)
	}
	if got := w.counts.get("media_serve/bad_path"); got < 5 {
		t.Errorf("media_serve/bad_path counted %d, want at least 5 (some traversals are cleaned into other paths by the mux)", got)
	}

	// The same URL once its time is past: gone.
	w.now = w.now.Add(time.Hour)
	if resp, _ := get(t, u); resp.StatusCode != http.StatusGone {
		t.Errorf("an expired URL: %s, want 410", resp.Status)
	}
	if w.counts.get("media_serve/expired") != 1 {
		t.Errorf("the expired URL was not counted")
	}
	if w.repo.downloads != 0 {
		t.Errorf("%d downloads from the homeserver for refused URLs", w.repo.downloads)
	}
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader("x"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v, want 405", resp, err)
	}
}

// What the homeserver cannot give: a file it does not have (404), one
// over the bound (502, counted too_large); and while every place for a
// download is taken, 503 with Retry-After.
func TestServedFailures(t *testing.T) {
	w := newServed(t)
	w.add("mxc://localhost/big", bytes.Repeat([]byte("x"), 1001), "text/plain")
	if resp, _ := get(t, w.sign(t, "mxc://localhost/gone", "gone.png")); resp.StatusCode != http.StatusNotFound || w.counts.get("media_serve/gone") != 1 {
		t.Errorf("a file the homeserver does not have: %s", resp.Status)
	}
	if resp, _ := get(t, w.sign(t, "mxc://localhost/big", "big.txt")); resp.StatusCode != http.StatusBadGateway || w.counts.get("media_serve/too_large") != 1 {
		t.Errorf("a file over the bound: %s", resp.Status)
	}
	w.srv.SlotWait = 10 * time.Millisecond
	for range cap(w.srv.Slots) {
		w.srv.Slots <- struct{}{}
	}
	resp, _ := get(t, w.sign(t, "mxc://localhost/big", "big.txt"))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || w.counts.get("media_serve/busy") != 1 {
		t.Errorf("all places taken: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
}

// HEAD (RFC 9110 §9.3.2) gives the headers a GET would, its length the
// homeserver's, without the file: only its first bytes are read, for its
// type, so a client that asks for the size first (as Conversations does)
// does not have the bridge download the file twice. Here the homeserver's
// connection breaks after those bytes: HEAD still answers, GET cannot.
func TestServedHead(t *testing.T) {
	w := newServed(t)
	data := append(pngOf(t, 30, 30), bytes.Repeat([]byte{0}, 700)...)
	w.add("mxc://localhost/picture", data, "application/octet-stream")
	u := w.sign(t, "mxc://localhost/picture", "pic.png")
	w.repo.cut = sniffLen
	resp, err := http.Head(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(data)) || resp.Header.Get("Content-Type") != "image/png" ||
		resp.Header.Get("Accept-Ranges") != "bytes" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "inline") {
		t.Errorf("HEAD: %s, Content-Length %d, headers %v; want 200, %d, image/png", resp.Status, resp.ContentLength, resp.Header, len(data))
	}
	if resp, _ := get(t, u); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET over a broken connection: %s, want 502", resp.Status)
	}
	w.repo.cut = 0
	if resp, body := get(t, u); resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Errorf("GET: %s, %d bytes", resp.Status, len(body))
	}
}

// Only mxc:// URIs whose server name and media id follow the
// client-server API's grammar are signed.
func TestSignOnlyMXC(t *testing.T) {
	w := newServed(t)
	for _, bad := range []string{"https://localhost/x", "mxc://localhost/", "mxc://../x", "mxc://localhost/a/b", "mxc://localhost/a.b", "mxc://host name/x"} {
		if u, err := w.srv.URLs.URL(bad, "x"); err == nil {
			t.Errorf("%q signed as %s", bad, u)
		}
	}
	for _, good := range []string{"mxc://localhost/abcXYZ_-09", "mxc://[::1]:8448/x", "mxc://1.2.3.4/x", "mxc://matrix.example.org:443/x"} {
		if _, err := w.srv.URLs.URL(good, "x"); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}

// With serving chosen, the mover gives a file from Matrix the signed URL
// without moving it (the rest of the path, the message with the URL as
// body and in XEP-0066, is the upload's); a file claimed over the bound
// is refused for good.
func TestMoverServes(t *testing.T) {
	w := newServed(t)
	m := &Mover{Serve: w.srv.URLs, MaxBytes: 1000}
	f, err := m.ToXMPP(context.Background(), jid.MustParse("alice@matrix.example.org"),
		mapping.MediaFile{URL: "mxc://localhost/picture", Name: "a/b.png", Type: "image/png", Size: 10, Caption: "look"})
	if err != nil {
		t.Fatal(err)
	}
	if want := w.sign(t, "mxc://localhost/picture", "a_b.png"); f.URL != want || f.Name != "a_b.png" {
		t.Errorf("URL %s name %q, want %s", f.URL, f.Name, want)
	}
	_, err = m.ToXMPP(context.Background(), jid.MustParse("alice@matrix.example.org"), mapping.MediaFile{URL: "mxc://localhost/big", Size: 1001})
	if !errors.Is(err, mapping.ErrPermanent) {
		t.Errorf("a file over the bound: %v, want ErrPermanent", err)
	}
	if w.repo.downloads != 0 {
		t.Errorf("the mover downloaded %d files", w.repo.downloads)
	}
}

// kv is a KV in memory.
type kv map[string]string

func (k kv) GetKV(_ context.Context, key string) (string, error) {
	if v, ok := k[key]; ok {
		return v, nil
	}
	return "", mapping.ErrNotFound
}

func (k kv) SetKV(_ context.Context, key, value string) error { k[key] = value; return nil }

// The signing key is the configured one, else one generated at the first
// start and kept, the same at every start after.
func TestSigningKey(t *testing.T) {
	ctx := context.Background()
	store := kv{}
	if key, err := SigningKey(ctx, store, "configured key configured key 12"); err != nil || string(key) != "configured key configured key 12" || len(store) != 0 {
		t.Errorf("configured: %q %v, store %v", key, err, store)
	}
	first, err := SigningKey(ctx, store, "")
	if err != nil || len(first) != 32 {
		t.Fatalf("generated: %x %v", first, err)
	}
	again, err := SigningKey(ctx, store, "")
	if err != nil || !bytes.Equal(first, again) {
		t.Errorf("second start: %x %v, want the kept %x", again, err, first)
	}
	store[signingKeyKV] = "short"
	if _, err := SigningKey(ctx, store, ""); err == nil {
		t.Errorf("a damaged kept key was taken")
	}
}
