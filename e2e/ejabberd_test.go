//go:build e2e

package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
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
	ew, logPath, err := startWorld(peers.WorldOptions{Ejabberd: true, XMPPUsers: []string{"juliet", "romeo", "benvolio", "beatrice", "claudio", "macbeth", "banquo", "dogberry", "benedick", "hero"}})
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
	t.Run("MUCFacts", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		mucFacts(ctx, t, ew.Server)
	})
	for _, step := range []struct {
		name string
		run  func(*testing.T, *world)
	}{
		{"GroupPortal", groupPortal},
		{"GroupRelations", groupRelations},
		{"GroupRoomState", groupRoomState},
		{"GroupJoinByAlias", groupJoinByAlias},
		{"GroupJoinWithNickAndPassword", groupJoinWithNickAndPassword},
	} {
		t.Run(step.name, func(t *testing.T) { step.run(t, ew) })
	}
	// The room's own presence (mucTraits.roomPresence) came to every
	// puppet that joined, and was taken for the room's, not an occupant's.
	resp, err := http.Get("http://" + ew.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	if want := `xmppbridge_events_total{reason="room_itself",what="muc_presence"}`; !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
