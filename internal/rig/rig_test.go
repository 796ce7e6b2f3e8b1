//go:build e2e

package rig

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

func TestProsody(t *testing.T) {
	if err := ProsodyAvailable(); err != nil {
		t.Fatal(err)
	}
	testXMPPServer(t, func(ctx context.Context) (XMPPServer, error) {
		p, err := StartProsody(ctx, t.TempDir(), LogWriter(t.Logf, ""))
		if err != nil {
			return nil, err
		}
		return p, nil
	}, 5222, 5269, 5347, 5280, 5281)
}

func TestEjabberd(t *testing.T) {
	if err := EjabberdAvailable(); err != nil {
		t.Fatal(err)
	}
	testXMPPServer(t, func(ctx context.Context) (XMPPServer, error) {
		e, err := StartEjabberd(ctx, t.TempDir(), LogWriter(t.Logf, ""))
		if err != nil {
			return nil, err
		}
		if e.APIPort == 5280 || e.APIPort == 5443 {
			t.Errorf("ejabberd's API on its default port %d", e.APIPort)
		}
		return e, nil
	}, 5222, 5269, 5347, 5280, 5443)
}

// testXMPPServer starts a server, and checks that it uses none of the
// default ports given (a system server may hold them), that an account
// registered on it logs in with PLAIN without TLS and the component
// handshake works, and that both survive a restart and a stop and start
// on the same ports.
func testXMPPServer(t *testing.T, startServer func(context.Context) (XMPPServer, error), defaultPorts ...int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	start := time.Now()
	srv, err := startServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	h := srv.Host()
	t.Logf("%s up in %v: c2s %s, component %s", h.Software, time.Since(start), h.Addr(), h.ComponentAddr())
	for _, port := range []int{h.C2SPort, h.ComponentPort} {
		if slices.Contains(defaultPorts, port) {
			t.Errorf("%s uses default port %d", h.Software, port)
		}
	}

	start = time.Now()
	if err := srv.Register("alice", "secret"); err != nil {
		t.Fatal(err)
	}
	t.Logf("registering an account took %v", time.Since(start))

	check := func() {
		t.Helper()
		if err := c2sPlainAuth(h.Addr(), h.Domain, "alice", "secret"); err != nil {
			t.Errorf("c2s: %v", err)
		}
		if err := c2sPlainAuth(h.Addr(), h.Domain, "alice", "wrong"); err == nil {
			t.Errorf("c2s: wrong password accepted")
		}
		if err := componentHandshake(h.ComponentAddr(), h.ComponentDomain, h.ComponentSecret); err != nil {
			t.Errorf("component: %v", err)
		}
	}
	check()

	start = time.Now()
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s restarted in %v", h.Software, time.Since(start))
	check() // the account survived, on the same ports

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", h.Addr()); err == nil {
		c.Close()
		t.Errorf("c2s port still open after Stop")
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	check()

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := srv.Restart(ctx); err == nil {
		t.Errorf("Restart after Close succeeded")
	}
}

func TestDendrite(t *testing.T) {
	if err := DendriteAvailable(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	dir := t.TempDir()
	asToken, hsToken := randomToken(), randomToken()
	reg := filepath.Join(dir, "registration.yaml")
	err := os.WriteFile(reg, []byte(fmt.Sprintf(`id: t
url: http://127.0.0.1:9
as_token: %s
hs_token: %s
sender_localpart: tbot
rate_limited: false
receive_ephemeral: true
namespaces:
  users:
    - exclusive: true
      regex: '@_t_.*:localhost'
`, asToken, hsToken)), 0o600)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	d, err := StartDendrite(ctx, filepath.Join(dir, "dendrite"), []string{reg}, LogWriter(t.Logf, ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	t.Logf("dendrite up in %v at %s", time.Since(start), d.URL)

	alice, err := d.RegisterUser(ctx, "alice", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	whoami := func(cli *mautrix.Client, want id.UserID) {
		t.Helper()
		resp, err := cli.Whoami(ctx)
		if err != nil {
			t.Errorf("whoami %s: %v", want, err)
			return
		}
		if resp.UserID != want {
			t.Errorf("whoami = %s, want %s", resp.UserID, want)
		}
	}
	whoami(alice, d.UserID("alice"))

	// The registration was loaded: its token works, and its namespace is
	// closed to ordinary registration.
	bot, err := d.Client(d.UserID("tbot"), asToken)
	if err != nil {
		t.Fatal(err)
	}
	whoami(bot, d.UserID("tbot"))
	if _, err := d.RegisterUser(ctx, "_t_puppet", "pw-pw-pw-pw"); err == nil {
		t.Errorf("registered a user in the appservice's exclusive namespace")
	}

	start = time.Now()
	if err := d.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("dendrite restarted in %v", time.Since(start))
	whoami(alice, d.UserID("alice")) // same port, same data
	whoami(bot, d.UserID("tbot"))
	bob, err := d.RegisterUser(ctx, "bob", "bob-password")
	if err != nil {
		t.Fatal(err)
	}
	whoami(bob, d.UserID("bob"))

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := alice.Whoami(ctx); err == nil {
		t.Errorf("dendrite still answers after Close")
	}
}

// TestTemporaryDirs checks that servers started without a dir clean up
// after themselves.
func TestTemporaryDirs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := StartProsody(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := StartDendrite(ctx, "", nil, nil)
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	for _, c := range []interface{ Close() error }{p, d} {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}
	for _, dir := range []string{p.Dir, d.Dir} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", dir, err)
		}
	}
}

// c2sPlainAuth opens a client stream and authenticates with SASL PLAIN
// without TLS, as the rig's configuration allows.
func c2sPlainAuth(addr, domain, user, pass string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	fmt.Fprintf(c, `<?xml version='1.0'?><stream:stream to='%s' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`, domain)
	features, err := readUntil(r, "</stream:features>")
	if err != nil {
		return fmt.Errorf("stream features: %w", err)
	}
	if !strings.Contains(features, "<mechanism>PLAIN</mechanism>") {
		return fmt.Errorf("PLAIN not offered: %s", features)
	}
	creds := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	fmt.Fprintf(c, `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>`, creds)
	answer, err := readUntil(r, "/>")
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if !strings.Contains(answer, "<success") {
		return fmt.Errorf("auth refused: %s", answer)
	}
	return nil
}

var streamID = regexp.MustCompile(`\sid=['"]([^'"]+)['"]`)

// componentHandshake performs the XEP-0114 handshake.
func componentHandshake(addr, domain, secret string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	fmt.Fprintf(c, `<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>`, domain)
	header, err := readUntil(r, ">")
	for err == nil && !strings.Contains(header, "<stream:stream") {
		var more string
		more, err = readUntil(r, ">")
		header += more
	}
	if err != nil {
		return fmt.Errorf("stream header: %w", err)
	}
	m := streamID.FindStringSubmatch(header[strings.Index(header, "<stream:stream"):])
	if m == nil {
		return fmt.Errorf("no stream id in %s", header)
	}
	sum := sha1.Sum([]byte(m[1] + secret))
	fmt.Fprintf(c, `<handshake>%s</handshake>`, hex.EncodeToString(sum[:]))
	answer, err := readUntil(r, ">")
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if !strings.HasPrefix(strings.TrimSpace(answer), "<handshake") {
		return fmt.Errorf("handshake refused: %s", answer)
	}
	return nil
}

func readUntil(r *bufio.Reader, end string) (string, error) {
	var b strings.Builder
	for !strings.HasSuffix(b.String(), end) {
		c, err := r.ReadByte()
		if err != nil {
			return b.String(), err
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}
