//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"xmppbridge/internal/peers"
)

// The operator's first hour: "bridge -g" run again with new tokens and
// the homeserver not told. The bridge refuses to start, exit status 1,
// with one line that names the homeserver's answer (M_UNKNOWN_TOKEN) and
// the registration file to give it. A message the apothecary writes while
// it is down is bounced to him by Prosody. Then the other way round: the
// bridge runs with the tokens it had, and Dendrite is restarted with the
// new registration (what an operator who gave it the file but kept the
// old config gets): the bridge holds what the apothecary writes, drops
// none and answers none, says so once at error level with what to do, and
// /health/ready says "token refused"; once Dendrite knows its token again,
// the held messages arrive, in order. The world is left as it was: the old
// tokens on both sides, the bridge running.
func TestStaleRegistrationLosesNothingSilently(t *testing.T) {
	ctx := context.Background()
	if err := w.Prosody.Register("apothecary", peers.Password); err != nil {
		t.Fatal(err)
	}
	apo := w.xmppUser(t, "apothecary", "shop")
	room := openPortal(t, ctx, apo, "apothecary")
	ghost := w.ghost("apothecary@localhost")
	puppet := peers.XMLEscape(w.puppet(t, w.alice.Client.UserID))
	send := func(id, body string) {
		t.Helper()
		if err := apo.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='%s' type='chat'><body>%s</body></message>`, puppet, id, body)); err != nil {
			t.Fatal(err)
		}
	}

	b := w.Bridge
	oldCfg, err := os.ReadFile(b.Config)
	if err != nil {
		t.Fatal(err)
	}
	oldReg, err := os.ReadFile(b.Registr)
	if err != nil {
		t.Fatal(err)
	}
	origLog := b.Log
	dendriteForgot, restored := false, false
	t.Cleanup(func() {
		if restored {
			return
		}
		_ = b.Stop()
		b.Log = origLog
		_ = os.WriteFile(b.Config, oldCfg, 0o600)
		_ = os.WriteFile(b.Registr, oldReg, 0o600)
		if dendriteForgot {
			if err := w.Dendrite.Restart(ctx); err != nil {
				t.Errorf("restore Dendrite: %v", err)
			}
		}
		if err := b.Start(ctx); err != nil {
			t.Errorf("restore the bridge: %v", err)
		}
	})

	// -g -new-tokens on the registration Dendrite has, bridge stopped.
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, b.Bin, "-g", "-new-tokens", "-c", b.Config, "-r", b.Registr).CombinedOutput()
	if err != nil {
		t.Fatalf("bridge -g -new-tokens: %v\n%s", err, out)
	}
	for _, want := range []string{"REPLACED the tokens", "restart the homeserver"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("-g -new-tokens said %q, nothing about %q", out, want)
		}
	}
	newReg, err := os.ReadFile(b.Registr)
	if err != nil {
		t.Fatal(err)
	}

	// Written while no bridge runs: Prosody answers the sender.
	send("while-down", "Are you there?")
	if _, err := apo.Wait(ctx, wait, isError("while-down")); err != nil {
		t.Errorf("the apothecary never heard that his message found no bridge: %v", err)
	}

	// The bridge refuses to start.
	runCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	refused := exec.CommandContext(runCtx, b.Bin, "-c", b.Config, "-r", b.Registr)
	refused.Dir = b.Dir
	out, err = refused.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the bridge with tokens the homeserver does not know: %v, want exit status 1\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	regAbs, _ := filepath.Abs(b.Registr)
	for _, want := range []string{"bridge: the homeserver at " + w.Dendrite.URL, "does not know this bridge's token", "M_UNKNOWN_TOKEN", "give it the registration file " + regAbs, "restart the homeserver"} {
		if !strings.Contains(last, want) {
			t.Errorf("its last line %q does not say %q", last, want)
		}
	}
	if strings.Contains(string(out), "Bridge started") {
		t.Error("the bridge started before it refused")
	}

	// The old tokens again on the bridge's side; Dendrite gets the new
	// registration and forgets the old token.
	logs := &lockedBuffer{}
	b.Log = io.MultiWriter(origLog, logs)
	if err := os.WriteFile(b.Config, oldCfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.Registr, oldReg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.Registr, newReg, 0o600); err != nil {
		t.Fatal(err)
	}
	dendriteForgot = true
	if err := w.Dendrite.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	send("held-1", "Such mortal drugs I have")
	send("held-2", "but Mantua's law is death")
	parts := readyUntil(t, http.StatusServiceUnavailable)
	if hs := parts["homeserver"]; !strings.HasPrefix(hs, "token refused: ") || !strings.Contains(hs, "M_UNKNOWN_TOKEN") {
		t.Errorf("/health/ready says the homeserver is %q, want token refused", hs)
	}
	const heldLine = "Sends to Matrix are held until it does"
	deadline := time.Now().Add(wait)
	for strings.Count(logs.String(), heldLine) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // more refused tries and probes meanwhile
	if n := strings.Count(logs.String(), heldLine); n != 1 {
		t.Errorf("the bridge said %d times that the homeserver refuses its token, want once", n)
	}
	if n := apo.Count(isError("held-1")) + apo.Count(isError("held-2")); n != 0 {
		t.Errorf("%d held messages were answered as failed, want none: they are held, not lost", n)
	}

	// Dendrite knows the bridge's token again: what was held arrives.
	if err := os.WriteFile(b.Registr, oldReg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.Dendrite.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	dendriteForgot = false
	first, err := w.alice.Wait(ctx, 2*wait, peers.IsText(room, ghost, "Such mortal drugs I have"))
	if err != nil {
		t.Fatalf("a message held while the homeserver refused the token never arrived: %v", err)
	}
	second, err := w.alice.Wait(ctx, wait, peers.IsText(room, ghost, "but Mantua's law is death"))
	if err != nil {
		t.Fatalf("the second held message never arrived: %v", err)
	}
	if first.Timestamp > second.Timestamp {
		t.Error("the held messages arrived out of order")
	}
	time.Sleep(2 * time.Second) // a second copy would have arrived by now
	if n := len(peers.Unique(w.alice.Events(peers.IsText(room, ghost, "Such mortal drugs I have")))); n != 1 {
		t.Errorf("the first held message arrived %d times, want once", n)
	}
	readyUntil(t, http.StatusOK)
	if !strings.Contains(logs.String(), "accepts the bridge's token again") {
		t.Error("the bridge never said that the homeserver accepts its token again")
	}
	if n := apo.Count(isError("held-1")) + apo.Count(isError("held-2")); n != 0 {
		t.Errorf("%d delivered messages were answered as failed", n)
	}

	// The bridge as it was, logging where it did.
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	b.Log = origLog
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	restored = true
}

// readyUntil polls /health/ready until it answers status, and returns what
// it says of each part.
func readyUntil(t *testing.T, status int) map[string]string {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get("http://" + w.MetricsAddr + "/health/ready")
		if err == nil {
			var parts map[string]string
			derr := json.NewDecoder(resp.Body).Decode(&parts)
			resp.Body.Close()
			if resp.StatusCode == status && derr == nil {
				return parts
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health/ready never answered %d", status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
