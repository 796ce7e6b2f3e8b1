//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"xmppbridge/internal/peers"
)

// Group portals on ejabberd 23.01 (Debian's) and Dendrite, in a world of
// their own (ejabberd, a second Dendrite, a second bridge), started once
// for both steps: what ejabberd's mod_muc does (mucFacts), then the life
// of a group portal (groupPortal), the same steps as on Prosody.
func TestEjabberdGroups(t *testing.T) {
	start := time.Now()
	ew, logPath, err := startWorld(peers.WorldOptions{Ejabberd: true, XMPPUsers: []string{"juliet", "romeo", "beatrice", "claudio"}})
	if err != nil {
		t.Fatalf("setting up ejabberd, Dendrite and the bridge: %v", err)
	}
	t.Cleanup(func() {
		ew.Stop()
		if msg := keepLogs(logPath, t.Failed()); msg != "" {
			t.Log(msg)
		}
	})
	t.Logf("ejabberd, Dendrite and the bridge up in %v", time.Since(start))
	muc := ew.Server.Host().MUCDomain
	t.Run("MUCFacts", func(t *testing.T) {
		// ejabberd 23.01 has no XEP-0421 (mod_muc_occupantid came in
		// 23.10), and answers a self-ping from an occupant that has left
		// with <not-acceptable/>, as Prosody does.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		mucFacts(ctx, t, ew.Server, false, "not-acceptable")
	})
	t.Run("GroupPortal", func(t *testing.T) {
		groupPortal(t, ew, "messina@"+muc)
	})
}
