package xmppside

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"xmppbridge/internal/standin"
	"xmppbridge/mapping"
)

// logLine is one line of the component's JSON log.
type logLine struct {
	Level, Message string
}

func (b *tapBuffer) lines(t *testing.T) []logLine {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []logLine
	for _, l := range strings.Split(strings.TrimSpace(string(b.sent)), "\n") {
		if l == "" {
			continue
		}
		var ll logLine
		if err := json.Unmarshal([]byte(l), &ll); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, ll)
	}
	return out
}

// count is how many lines have level and a message that starts with msg.
func count(lines []logLine, level, msg string) int {
	n := 0
	for _, l := range lines {
		if l.Level == level && strings.HasPrefix(l.Message, msg) {
			n++
		}
	}
	return n
}

// runComponent runs c (its log in logs) until the test ends.
func runComponent(t *testing.T, c *Component, logs *tapBuffer) {
	t.Helper()
	c.Log = zerolog.New(logs)
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

// waitLog waits until ok holds of the component's log lines.
func waitLog(t *testing.T, logs *tapBuffer, what string, ok func([]logLine) bool) []logLine {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		lines := logs.lines(t)
		if ok(lines) {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log never showed %s:\n%+v", what, lines)
		}
	}
}

const (
	refusedFirst   = "The XMPP server refused the component's secret: xmpp.secret"
	refusedAgain   = "The XMPP server refused the component's secret again"
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
	logs := &tapBuffer{}
	runComponent(t, r.c, logs)
	lines := waitLog(t, logs, "five refusals and a summary", func(ls []logLine) bool {
		return count(ls, "debug", refusedAgain) >= 5 && count(ls, "error", refusedSummary) >= 1
	})
	if n := count(lines, "error", refusedFirst); n != 1 {
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
	lines := waitLog(t, r.logs, "the reconnection", func(ls []logLine) bool {
		return count(ls, "info", "XMPP component connected") == 2
	})
	if n := count(lines, "info", "The XMPP server closed the stream; reconnecting"); n != 1 {
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
	waitLog(t, r.logs, "a warning for the broken stream", func(ls []logLine) bool {
		return count(ls, "warn", "XMPP component stream ended with an error") == 1
	})
}

// A server out of reach is said once when it has been away for the
// grace (here at once), then only summarised, and its return is said.
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
	logs := &tapBuffer{}
	runComponent(t, r.c, logs)
	lines := waitLog(t, logs, "five tries and a summary", func(ls []logLine) bool {
		return count(ls, "debug", "Cannot connect to the XMPP server yet") >= 5 && count(ls, "warn", "The XMPP server is still unreachable") >= 1
	})
	if n := count(lines, "warn", "Cannot connect to the XMPP server's component port"); n != 1 {
		t.Errorf("the outage was said %d times, want once:\n%+v", n, lines)
	}
}
