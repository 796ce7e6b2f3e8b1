package config

import (
	"errors"
	"strings"
	"testing"

	"xmppbridge/mapping"
)

// The stranger budgets: the example's defaults are the core's
// (mapping.DefaultLimits), a value set reaches the core, and a budget
// under 1 is refused with its key (blocking a domain is how to refuse it
// everything).
func TestStrangerLimits(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	got, want := cfg.CoreLimits(), mapping.DefaultLimits
	if got.JIDPortals != want.JIDPortals || got.DomainPortals != want.DomainPortals || got.DomainGhosts != want.DomainGhosts || got.DomainSubscriptions != want.DomainSubscriptions {
		t.Errorf("defaults %+v, want the core's %+v", got, want)
	}
	cfg, err = Parse([]byte(minimal + "limits:\n    jid_new_portals_per_hour: 3\n    domain_new_portals_per_hour: 4\n    domain_new_ghosts_per_hour: 5\n    domain_subscriptions_per_hour: 6\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.CoreLimits(); l.JIDPortals != 3 || l.DomainPortals != 4 || l.DomainGhosts != 5 || l.DomainSubscriptions != 6 {
		t.Errorf("limits %+v, want 3, 4, 5, 6", l)
	}
	for _, key := range []string{"jid_new_portals_per_hour", "domain_new_portals_per_hour", "domain_new_ghosts_per_hour", "domain_subscriptions_per_hour"} {
		_, err := Parse([]byte(minimal + "limits:\n    " + key + ": 0\n"))
		var errs Errors
		if !errors.As(err, &errs) || !strings.Contains(err.Error(), "limits."+key+": must be at least 1") {
			t.Errorf("%s: 0 gave %v, want it refused by name", key, err)
		}
	}
}

// A Matrix user's budget of chats (groups.*): the example's defaults are
// the core's (mapping.DefaultGroupLimits), a value set reaches the core,
// and a budget under 1 is refused with its key.
func TestGroupLimits(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.GroupLimits(); got != mapping.DefaultGroupLimits {
		t.Errorf("defaults %+v, want the core's %+v", got, mapping.DefaultGroupLimits)
	}
	cfg, err = Parse([]byte(minimal + "groups:\n    max_rooms_per_user: 3\n    joins_per_user_per_hour: 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.GroupLimits(); got != (mapping.GroupLimits{MaxRoomsPerUser: 3, JoinsPerHour: 4}) {
		t.Errorf("limits %+v, want 3, 4", got)
	}
	for _, key := range []string{"max_rooms_per_user", "joins_per_user_per_hour"} {
		_, err := Parse([]byte(minimal + "groups:\n    " + key + ": 0\n"))
		if err == nil || !strings.Contains(err.Error(), "groups."+key+": must be at least 1") {
			t.Errorf("%s: 0 gave %v, want it refused by name", key, err)
		}
	}
}
