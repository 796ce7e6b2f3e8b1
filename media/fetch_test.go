package media

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"xmppbridge/mapping"
)

// loopback is the network httptest listens on, for a policy that allows it.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

func policy(allow []netip.Prefix) Policy {
	return Policy{MaxBytes: 1000, AllowHTTP: true, AllowNets: allow, Timeout: 5 * time.Second, TempDir: os.TempDir()}
}

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// A URL anyone may send reaches no private or loopback address: not
// directly, not through a name that resolves to one, not through a
// redirect to one, and not in the IPv4-mapped form of one; only the
// networks the configuration lists (media.allow_networks).
func TestFetchRefusesNonPublicAddresses(t *testing.T) {
	pic := pngOf(t, 3, 2)
	target := serve(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(pic) })
	port := target.URL[strings.LastIndexByte(target.URL, ':')+1:]
	redirect := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.2:"+port+"/pic.png", http.StatusFound)
	})
	for _, c := range []struct {
		name  string
		url   string
		allow []netip.Prefix
	}{
		{"loopback, not allowed", target.URL + "/pic.png", nil},
		{"a name that resolves to loopback", "http://localhost:" + port + "/pic.png", nil},
		{"a redirect to a loopback address outside the allowed one", redirect.URL + "/go", loopback},
		{"the IPv4-mapped form of a loopback address", "http://[::ffff:127.0.0.1]:" + port + "/pic.png", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := NewFetcher(policy(c.allow)).Fetch(context.Background(), c.url)
			if err == nil {
				f.Close()
				t.Fatal("fetched")
			}
			if !errors.Is(err, ErrRefused) || !errors.Is(err, mapping.ErrPermanent) {
				t.Errorf("error %v: want ErrRefused and ErrPermanent", err)
			}
		})
	}
	f, err := NewFetcher(policy(loopback)).Fetch(context.Background(), target.URL+"/pic.png")
	if err != nil {
		t.Fatalf("allowed network refused: %v", err)
	}
	defer f.Close()
	if f.Name != "pic.png" || f.Type != "image/png" || f.Size != int64(len(pic)) || f.Width != 3 || f.Height != 2 {
		t.Errorf("file %+v: want pic.png, image/png, %d bytes, 3×2", f, len(pic))
	}
	r, err := f.Reader()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(r); !bytes.Equal(got, pic) {
		t.Error("the spooled file is not what was served")
	}
}

// nonPublic is the rule the dial hook applies, address by address.
func TestNonPublic(t *testing.T) {
	for _, c := range []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true}, {"10.1.2.3", true}, {"172.16.0.1", true}, {"192.168.1.1", true},
		{"169.254.169.254", true}, // cloud metadata
		{"100.64.0.1", true}, {"0.0.0.0", true}, {"224.0.0.1", true}, {"240.0.0.1", true},
		{"::1", true}, {"fe80::1", true}, {"fc00::1", true}, {"::", true}, {"64:ff9b::a00:1", true},
		{"8.8.8.8", false}, {"2001:4860:4860::8888", false}, {"93.184.216.34", false},
	} {
		if got := nonPublic(netip.MustParseAddr(c.ip)); got != c.want {
			t.Errorf("nonPublic(%s) = %t, want %t", c.ip, got, c.want)
		}
	}
	f := NewFetcher(policy(nil))
	if err := f.control("tcp4", "[::ffff:10.0.0.1]:443", nil); !errors.Is(err, ErrRefused) {
		t.Errorf("an IPv4-mapped private address dialled: %v", err)
	}
	if err := f.control("tcp4", "8.8.8.8:443", nil); err != nil {
		t.Errorf("a public address refused: %v", err)
	}
}

// Only https, and http where media.allow_http says so.
func TestFetchSchemes(t *testing.T) {
	for _, c := range []struct {
		url       string
		allowHTTP bool
	}{
		{"http://example.org/a.png", false},
		{"ftp://example.org/a.png", true},
		{"file:///etc/passwd", true},
		{"aesgcm://example.org/a.png#00", true},
	} {
		p := policy(nil)
		p.AllowHTTP = c.allowHTTP
		if _, err := NewFetcher(p).Fetch(context.Background(), c.url); !errors.Is(err, ErrRefused) {
			t.Errorf("%s (allow_http %t): %v, want ErrRefused", c.url, c.allowHTTP, err)
		}
	}
	u, _ := url.Parse("https://example.org/x")
	if err := NewFetcher(policy(nil)).checkURL(u); err != nil {
		t.Errorf("https refused: %v", err)
	}
}

// A file over media.max_file_mib is not fetched, whether its size is
// announced or not; a server's refusal is final, its trouble is not, and
// neither is one that does not answer in time.
func TestFetchBounds(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 1001)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/announced":
			_, _ = w.Write(big)
		case "/chunked":
			w.(http.Flusher).Flush() // no Content-Length
			_, _ = w.Write(big)
		case "/gone":
			http.NotFound(w, r)
		case "/busy":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/slow":
			time.Sleep(time.Second)
			_, _ = w.Write([]byte("late"))
		}
	})
	f := NewFetcher(policy(loopback))
	for _, path := range []string{"/announced", "/chunked"} {
		if _, err := f.Fetch(context.Background(), srv.URL+path); !errors.Is(err, ErrTooLarge) || !errors.Is(err, mapping.ErrPermanent) {
			t.Errorf("%s: %v, want ErrTooLarge and ErrPermanent", path, err)
		}
	}
	if _, err := f.Fetch(context.Background(), srv.URL+"/gone"); !errors.Is(err, mapping.ErrPermanent) {
		t.Errorf("404: %v, want ErrPermanent", err)
	}
	if _, err := f.Fetch(context.Background(), srv.URL+"/busy"); err == nil || errors.Is(err, mapping.ErrPermanent) {
		t.Errorf("503: %v, want an error that may pass", err)
	}
	p := policy(loopback)
	p.Timeout = 200 * time.Millisecond
	if _, err := NewFetcher(p).Fetch(context.Background(), srv.URL+"/slow"); err == nil || errors.Is(err, mapping.ErrPermanent) {
		t.Errorf("past the timeout: %v, want an error that may pass", err)
	}
}
