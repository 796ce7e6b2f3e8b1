//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"xmppbridge/internal/peers"
)

// restartWithLimits restarts the bridge with the limits.* keys of limits
// set on top of its configuration, and after the test with the
// configuration it had. The stranger budgets are in memory, so each start
// begins with them full.
func restartWithLimits(t *testing.T, ctx context.Context, limits map[string]int) {
	t.Helper()
	values := map[string]any{}
	for k, v := range limits {
		values[k] = v
	}
	restartWith(t, ctx, "limits", values)
}

// restartWith restarts the bridge with the keys of values set in section
// on top of its configuration, and after the test with the configuration
// it had.
func restartWith(t *testing.T, ctx context.Context, name string, values map[string]any) {
	t.Helper()
	orig, err := os.ReadFile(w.Bridge.Config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(orig, &cfg); err != nil {
		t.Fatal(err)
	}
	section, _ := cfg[name].(map[string]any)
	if section == nil {
		section = map[string]any{}
	}
	for k, v := range values {
		section[k] = v
	}
	cfg[name] = section
	changed, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	restart := func(data []byte) error {
		if err := w.Bridge.Stop(); err != nil {
			return err
		}
		if err := os.WriteFile(w.Bridge.Config, data, 0o600); err != nil {
			return err
		}
		if err := w.Bridge.Start(ctx); err != nil {
			return err
		}
		return bridgeReady(ctx)
	}
	t.Cleanup(func() {
		if err := restart(orig); err != nil {
			t.Errorf("restart the bridge with its own configuration: %v", err)
		}
	})
	if err := restart(changed); err != nil {
		t.Fatal(err)
	}
}

// bridgeReady waits until the bridge says it is ready (/health/ready):
// connected to Prosody, so that a message to a puppet reaches it rather
// than Prosody's error for a component away.
func bridgeReady(ctx context.Context) error {
	var last string
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.MetricsAddr+"/health/ready", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = string(body)
	}
	return fmt.Errorf("the bridge is not ready after %s: %s", wait, last)
}

// Strangers are budgeted per domain: with limits.domain_new_portals_per_hour
// at 2, accounts of one XMPP server writing to Alice for the first time open
// two portals; the third and fourth get RFC 6120 §8.3.3.18
// <resource-constraint/> (type wait) on their message, and no room, no
// invite, no ghost; the refusals are counted; a portal that existed before
// goes on working as ever.
func TestStrangersPastTheDomainBudget(t *testing.T) {
	ctx := context.Background()
	alicePuppet := w.puppet(t, w.alice.Client.UserID)
	users := []string{"budgetfriend", "budget1", "budget2", "budget3", "budget4"}
	for _, u := range users {
		if err := w.Prosody.Register(u, peers.Password); err != nil {
			t.Fatal(err)
		}
	}
	friend := w.xmppUser(t, "budgetfriend", "home")
	room := openPortal(t, ctx, friend, "budgetfriend")

	restartWithLimits(t, ctx, map[string]int{"domain_new_portals_per_hour": 2})
	mark := w.alice.Mark()
	clients := map[string]*peers.XMPPClient{}
	for _, u := range users[1:] {
		clients[u] = w.xmppUser(t, u, "script")
	}
	// In turn, so that which two are let in is known.
	for i, u := range users[1:] {
		body := "Hello from " + u
		if err := clients[u].SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='budget-%d' type='chat'><body>%s</body></message>`, peers.XMLEscape(alicePuppet), i, body)); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			if _, err := w.alice.WaitSince(ctx, mark, wait, peers.IsInvite(w.alice.Client.UserID, w.ghost(u+"@localhost"))); err != nil {
				t.Fatalf("%s, within the budget, opened no portal: %v", u, err)
			}
			continue
		}
		e, err := clients[u].Wait(ctx, wait, isError(fmt.Sprintf("budget-%d", i)))
		if err != nil {
			t.Fatalf("%s, past the budget, got no error: %v", u, err)
		}
		if !e.Has("resource-constraint") || !e.Has(`type="wait"`) {
			t.Errorf("%s's error is not a <resource-constraint/> of type wait: %s", u, e.XML)
		}
	}

	// The portal from before the budget ran out works both ways.
	if err := friend.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='budget-friend' type='chat'><body>Still friends</body></message>`, peers.XMLEscape(alicePuppet))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.Wait(ctx, wait, peers.IsText(room, w.ghost("budgetfriend@localhost"), "Still friends")); err != nil {
		t.Fatalf("the existing portal stopped working: %v", err)
	}
	if _, err := w.alice.SendText(ctx, room, "So we are"); err != nil {
		t.Fatal(err)
	}
	if _, err := friend.Wait(ctx, wait, isMessage(alicePuppet, "So we are")); err != nil {
		t.Fatalf("the existing portal no longer reaches XMPP: %v", err)
	}

	// By now an invite of the refused would have come (their messages
	// went before the friend's, through the same read loop).
	for _, u := range users[3:] {
		ghost := w.ghost(u + "@localhost")
		if n := len(w.alice.Events(peers.IsInvite(w.alice.Client.UserID, ghost))); n != 0 {
			t.Errorf("%s, refused, invited Alice %d times", u, n)
		}
		if _, err := w.alice.Client.GetProfile(ctx, ghost); err == nil {
			t.Errorf("%s, refused, has a ghost account %s", u, ghost)
		}
	}
	metrics := w.metrics(t)
	if want := `xmppbridge_events_total{reason="domain_budget",what="xmpp_message"} 2`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q", want)
	}
}
