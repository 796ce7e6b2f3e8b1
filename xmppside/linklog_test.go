package xmppside

import (
	"context"
	"strings"
	"testing"
	"time"

	"xmppbridge/internal/logtest"
	"xmppbridge/internal/standin"
	"xmppbridge/mapping"
)

// logged is what the component logged into b.
func logged(t *testing.T, b *tapBuffer) func() []logtest.Line {
	return func() []logtest.Line {
		b.mu.Lock()
		defer b.mu.Unlock()
		return logtest.Parse(t, string(b.sent))
	}
}

// runComponent runs c (its log in logs) until the test ends.
func runComponent(t *testing.T, c *Component, logs *logtest.Buffer) {
	t.Helper()
	c.Log = logs.Logger()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

const (
	refusedFirst   = "The XMPP server refused the component's secret: xmpp.secret"
	refusedAgain   = "The XMPP server refused the component again"
	refusedSummary = "The XMPP server still refuses the component's secret"
)

// XEP-0114 §3: a server that does not accept the handshake sends a
// <not-authorized/> stream error. That is a configuration error, said once
// at error level naming the key to fix; the tries after it, with backoff,
// are at debug, with an error-level summary now and then.
func TestARefusedSecretIsSaidOnceThenSummarised(t *testing.T) {
	srv, err := standin.NewXMPPServer("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	r := newStreamRig(t, mapping.PresencePolicy{})
	r.c.Address, r.c.Secret = srv.Addr, "not the secret"
	r.c.MaxBackoff, r.c.outageEvery = 20*time.Millisecond, 200*time.Millisecond
	logs := &logtest.Buffer{}
	runComponent(t, r.c, logs)
	lines := logs.Wait(t, "five refusals and a summary", func(ls []logtest.Line) bool {
		return logtest.Count(ls, "debug", refusedAgain) >= 5 && logtest.Count(ls, "error", refusedSummary) >= 1
	})
	if n := logtest.Count(lines, "error", refusedFirst); n != 1 {
		t.Errorf("the refusal was explained %d times, want once:\n%+v", n, lines)
	}
	for _, l := range lines {
		if l.Level == "warn" || (l.Level == "error" && !strings.HasPrefix(l.Message, refusedFirst) && !strings.HasPrefix(l.Message, refusedSummary)) {
			t.Errorf("unexpected %s line %q", l.Level, l.Message)
		}
	}
	if srv.Connections() != 0 {
		t.Errorf("%d sessions with a wrong secret", srv.Connections())
	}
}

// A server that closes the stream (Prosody stopping closes the connection
// without </stream:stream>) is an expected event: info, not a warning;
// the component reconnects. A stream that breaks on bad XML is a warning.
func TestTheServerClosingTheStreamIsInfo(t *testing.T) {
	r := newLinkRig(t)
	r.srv.Drop()
	lines := logtest.Wait(t, "the reconnection", logged(t, r.logs), func(ls []logtest.Line) bool {
		return logtest.Count(ls, "info", "XMPP component connected") == 2
	})
	if n := logtest.Count(lines, "info", "The XMPP server closed the stream; reconnecting"); n != 1 {
		t.Errorf("%d info lines say the server closed the stream, want 1:\n%+v", n, lines)
	}
	for _, l := range lines {
		if l.Level == "warn" || l.Level == "error" {
			t.Errorf("unexpected %s line %q", l.Level, l.Message)
		}
	}
	if err := r.srv.Write(`<message from='juliet@capulet.lit' to='` + pupBare + `'><body>a < b</body></message>`); err != nil {
		t.Fatal(err)
	}
	logtest.Wait(t, "a warning for the broken stream", logged(t, r.logs), func(ls []logtest.Line) bool {
		return logtest.Count(ls, "warn", "XMPP component stream ended with an error") == 1
	})
}

// A server out of reach is said once when it has been away for the
// grace (here at once), then only summarised; only its first failed try
// is at info.
func TestAnUnreachableServerIsSaidOnceThenSummarised(t *testing.T) {
	srv, err := standin.NewXMPPServer("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr
	srv.Close() // nothing listens there: every dial is refused
	r := newStreamRig(t, mapping.PresencePolicy{})
	r.c.Address, r.c.Secret = addr, "s3cret"
	r.c.MaxBackoff, r.c.outageGrace, r.c.outageEvery = 20*time.Millisecond, time.Nanosecond, 200*time.Millisecond
	logs := &logtest.Buffer{}
	runComponent(t, r.c, logs)
	lines := logs.Wait(t, "five tries and a summary", func(ls []logtest.Line) bool {
		return logtest.Count(ls, "debug", "Cannot connect to the XMPP server yet") >= 5 && logtest.Count(ls, "warn", "The XMPP server is still unreachable") >= 1
	})
	if n := logtest.Count(lines, "warn", "Cannot connect to the XMPP server's component port"); n != 1 {
		t.Errorf("the outage was said %d times, want once:\n%+v", n, lines)
	}
	if n := logtest.Count(lines, "info", "Cannot connect to the XMPP server yet"); n != 1 {
		t.Errorf("%d failed tries said at info, want the first one only", n)
	}
}

// A server that answers but has no component of the bridge's domain
// (RFC 6120 §4.9.3.6 <host-unknown/>) is a mistake in xmpp.domain, not a
// server out of reach: said once at error level with what to fix.
func TestAnUnknownDomainIsSaidOnce(t *testing.T) {
	srv, err := standin.NewXMPPServer("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	srv.Domain = "other.example"
	r := newStreamRig(t, mapping.PresencePolicy{})
	r.c.Address, r.c.Secret = srv.Addr, "s3cret"
	r.c.MaxBackoff, r.c.outageEvery = 20*time.Millisecond, 200*time.Millisecond
	logs := &logtest.Buffer{}
	runComponent(t, r.c, logs)
	const first = "The XMPP server has no component of this domain: xmpp.domain"
	lines := logs.Wait(t, "five refusals", func(ls []logtest.Line) bool {
		return logtest.Count(ls, "debug", refusedAgain) >= 5
	})
	if n := logtest.Count(lines, "error", first); n != 1 {
		t.Errorf("the unknown domain was explained %d times, want once:\n%+v", n, lines)
	}
	for _, l := range lines {
		if l.Level == "warn" || strings.Contains(l.Message, "Cannot connect") {
			t.Errorf("unexpected %s line %q: the server answered", l.Level, l.Message)
		}
	}
}
