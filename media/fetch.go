// Package media moves the files of messages between the two sides (the
// core's mapping.Media): it fetches the files XMPP people link to
// (XEP-0066) under the bounds a URL anyone may send needs, downloads
// Matrix users' files from the homeserver, spools each to a temporary
// file so that none is held in memory, tells its type from its bytes,
// and uploads it to the other side.
package media

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"syscall"
	"time"

	"xmppbridge/mapping"
)

// Policy is what the fetcher of remote URLs may do (config: media.*).
type Policy struct {
	// MaxBytes bounds a file; larger ones are not fetched.
	MaxBytes int64
	// AllowHTTP lets plain http:// URLs be fetched; else only https.
	AllowHTTP bool
	// AllowNets are networks the fetcher may reach although they are
	// private, loopback or otherwise not the public internet (a test
	// rig, an upload service on the LAN).
	AllowNets []netip.Prefix
	// Timeout bounds one fetch, from the dial to the last byte.
	Timeout time.Duration
	// TempDir is where files are spooled ("": the system's).
	TempDir string
}

// ErrRefused marks a URL the fetcher will not fetch: its scheme, or an
// address it resolves or redirects to that is not public. It comes
// wrapped with mapping.ErrPermanent.
var ErrRefused = errors.New("refused")

// ErrTooLarge marks a file over Policy.MaxBytes; it comes wrapped with
// mapping.ErrPermanent.
var ErrTooLarge = errors.New("too large")

// maxRedirects bounds the redirects one fetch follows.
const maxRedirects = 5

// Fetcher fetches the URLs XMPP people send. Every address it connects to
// is checked as it is dialled (Policy.AllowNets, nonPublic), so that a
// name that resolves to a private address, a redirect to one, or a DNS
// answer that changes between a check and the dial (rebinding) reach
// nothing the policy does not allow.
type Fetcher struct {
	policy Policy
	client *http.Client
}

// NewFetcher makes a fetcher that keeps p.
func NewFetcher(p Policy) *Fetcher {
	f := &Fetcher{policy: p}
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: f.control}
	transport := &http.Transport{
		// No proxy from the environment: the address checked must be the
		// one the request goes to.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConns:          16,
		IdleConnTimeout:       30 * time.Second,
	}
	f.client = &http.Client{Transport: transport, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("%w: more than %d redirects", ErrRefused, maxRedirects)
		}
		return f.checkURL(req.URL)
	}}
	return f
}

// control refuses, as the connection is about to be made, an address
// that is not public unless the policy lists its network.
func (f *Fetcher) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read the address %q", ErrRefused, address)
	}
	ip := ap.Addr().Unmap()
	for _, n := range f.policy.AllowNets {
		if n.Contains(ip) {
			return nil
		}
	}
	if nonPublic(ip) {
		return fmt.Errorf("%w: %s is not a public address", ErrRefused, ip)
	}
	return nil
}

// notPublicNets are the networks, beyond those netip classifies, that are
// not the public internet (RFC 6890's special-purpose registries): shared
// address space, benchmarking, the reserved and documentation ranges, and
// the NAT64 prefix (which may reach an IPv4 address of any kind).
var notPublicNets = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// nonPublic tells whether ip is an address a URL from a stranger must not
// reach: loopback, private, link-local, multicast, unspecified, or one of
// notPublicNets.
func nonPublic(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, n := range notPublicNets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// checkURL refuses a URL of a scheme the policy does not allow.
func (f *Fetcher) checkURL(u *url.URL) error {
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && f.policy.AllowHTTP:
	default:
		return fmt.Errorf("%w: scheme %q (media.allow_http allows http)", ErrRefused, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%w: no host", ErrRefused)
	}
	return nil
}

// Fetch gets raw, spooled to a temporary file (Spool) with its type told
// by its bytes. Errors wrapping mapping.ErrPermanent will not pass with
// time: refused (ErrRefused), too large (ErrTooLarge), a client error
// answered (4xx); others (a timeout, a 5xx) may.
func (f *Fetcher) Fetch(ctx context.Context, raw string) (*File, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: %w", mapping.ErrPermanent, ErrRefused, err)
	}
	if err := f.checkURL(u); err != nil {
		return nil, fmt.Errorf("%w: %w", mapping.ErrPermanent, err)
	}
	ctx, cancel := context.WithTimeout(ctx, f.policy.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", mapping.ErrPermanent, err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrRefused) {
			return nil, fmt.Errorf("%w: %w", mapping.ErrPermanent, err)
		}
		return nil, fmt.Errorf("fetch: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("fetch: HTTP %d", resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: fetch: HTTP %d", mapping.ErrPermanent, resp.StatusCode)
	case resp.ContentLength > f.policy.MaxBytes:
		return nil, fmt.Errorf("%w: %w: %d bytes, over media.max_file_mib", mapping.ErrPermanent, ErrTooLarge, resp.ContentLength)
	}
	return Spool(resp.Body, f.policy.MaxBytes, nameOf(resp.Request.URL), resp.Header.Get("Content-Type"), f.policy.TempDir)
}

// nameOf is the file name a URL gives: its path's last segment,
// unescaped, or "file" for none.
func nameOf(u *url.URL) string {
	name := path.Base(u.Path)
	if name == "." || name == "/" || name == "" {
		return "file"
	}
	return strings.ToValidUTF8(name, "_")
}
