package mapping_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// strangerHarness is a harness whose stranger budgets are limits, on a
// clock the test moves.
func strangerHarness(t *testing.T, limits Limits) (*harness, *FakeClock, *bytes.Buffer) {
	t.Helper()
	h := newHarness(t)
	clock := NewFakeClock(time.Unix(1700000000, 0))
	var log bytes.Buffer
	h.b.SetIntake(limits, clock.Now, zerolog.New(&log))
	return h, clock, &log
}

// note is a message with a body from the person from to the Matrix user
// to's puppet.
func note(from string, to id.UserID, msgID string) *XMPPMessage {
	puppet, err := testIDs.Puppet(to)
	if err != nil {
		panic(err)
	}
	return &XMPPMessage{ID: msgID, From: jid.MustParse(from + "/r"), To: puppet, Type: TypeChat, Body: "hi", HasBody: true}
}

// Strangers are budgeted: each message that would open a new portal spends
// one of the person's budget (limits.jid_new_portals_per_hour), one of
// their domain's (limits.domain_new_portals_per_hour) and, for a person
// without a ghost, one of the domain's new ghosts
// (limits.domain_new_ghosts_per_hour). A message past one is answered with
// RFC 6120 §8.3.3.18 <resource-constraint/>, type wait, and creates
// nothing; the budgets fill again with time.
func TestStrangerBudgets(t *testing.T) {
	users := []id.UserID{"@alice:example.org", "@bob:example.org", "@carol:example.org", "@dave:example.org"}
	type send struct {
		from string
		to   int // index in users
		// refused is the reason it is refused for, "" if accepted.
		refused Reason
	}
	for _, tc := range []struct {
		name   string
		limits Limits
		sends  []send
	}{
		{"one person writing to many users", Limits{JIDPortals: 2, DomainPortals: 100, DomainGhosts: 100}, []send{
			{"eve@evil.example", 0, ""}, {"eve@evil.example", 1, ""}, {"eve@evil.example", 2, ReasonJIDBudget},
			// Another person's budget is their own.
			{"mallory@evil.example", 2, ""},
		}},
		{"many accounts of one domain", Limits{JIDPortals: 100, DomainPortals: 3, DomainGhosts: 100}, []send{
			{"a@evil.example", 0, ""}, {"b@evil.example", 0, ""}, {"c@evil.example", 0, ""}, {"d@evil.example", 0, ReasonDomainBudget},
			// Another domain's budget is its own.
			{"juliet@capulet.lit", 0, ""},
		}},
		{"new ghosts of one domain", Limits{JIDPortals: 100, DomainPortals: 100, DomainGhosts: 2}, []send{
			{"a@evil.example", 0, ""}, {"b@evil.example", 0, ""}, {"c@evil.example", 0, ReasonGhostBudget},
			// A person with a ghost opening another portal makes none.
			{"a@evil.example", 1, ""}, {"b@evil.example", 1, ""},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _, _ := strangerHarness(t, tc.limits)
			ctx := context.Background()
			wantRooms := 0
			for i, s := range tc.sends {
				m := note(s.from, users[s.to], fmt.Sprintf("m%d", i))
				reply, err := h.b.HandleXMPPMessage(ctx, m)
				if err != nil {
					t.Fatal(err)
				}
				h.drain(t) // the portal exists before the next message
				if s.refused == "" {
					wantRooms++
					if reply != nil {
						t.Fatalf("message %d from %s to %s refused: %+v", i, s.from, users[s.to], reply.Error)
					}
				} else if reply == nil || reply.Type != TypeError || reply.Error.Type != "wait" || reply.Error.Condition != "resource-constraint" ||
					reply.ID != m.ID || !reply.To.Equal(m.From) || !reply.From.Equal(m.To) || reply.Error.Text == "" {
					t.Fatalf("message %d from %s to %s: reply %+v, want a <resource-constraint/> of type wait with a text", i, s.from, users[s.to], reply)
				}
				if h.matrix.rooms != wantRooms {
					t.Fatalf("after message %d: %d rooms, want %d", i, h.matrix.rooms, wantRooms)
				}
			}
			refused := map[Reason]int{}
			for _, s := range tc.sends {
				if s.refused != "" {
					refused[s.refused]++
				}
			}
			for reason, n := range refused {
				if got := h.counts["xmpp_message/"+string(reason)]; got != n {
					t.Errorf("xmpp_message/%s counted %d, want %d", reason, got, n)
				}
			}
			if len(h.matrix.texts) != wantRooms {
				t.Errorf("%d messages bridged, want %d", len(h.matrix.texts), wantRooms)
			}
		})
	}
}

// What a budget leaves alone: a person's further messages while the
// portal their first opens is on its way, the messages of a person with a
// portal, however spent the budgets are. They fill again at their rate,
// and a refusal by one spends none of the others (Romeo's own, refused by
// the domain's a minute before, is full when the domain's is).
func TestStrangerBudgetSparesPortalsAndRefills(t *testing.T) {
	h, clock, _ := strangerHarness(t, Limits{JIDPortals: 1, DomainPortals: 1, DomainGhosts: 1})
	ctx := context.Background()
	for i := range 3 { // before the outbox runs: one portal on its way
		if reply, err := h.b.HandleXMPPMessage(ctx, note("juliet@capulet.lit", alice, fmt.Sprintf("j%d", i))); err != nil || reply != nil {
			t.Fatalf("message %d of the first stranger: %v, %+v", i, err, reply)
		}
	}
	h.drain(t)
	if h.matrix.rooms != 1 || len(h.matrix.texts) != 3 {
		t.Fatalf("%d rooms, %d texts; want 1 and 3", h.matrix.rooms, len(h.matrix.texts))
	}
	if reply, _ := h.b.HandleXMPPMessage(ctx, note("romeo@capulet.lit", alice, "r0")); reply == nil {
		t.Fatal("a second stranger of the domain was let in past its budget")
	}
	if reply, _ := h.b.HandleXMPPMessage(ctx, note("juliet@capulet.lit", alice, "j9")); reply != nil {
		t.Fatalf("the message of a person with a portal was refused: %+v", reply.Error)
	}
	clock.Add(59 * time.Minute) // under one token an hour
	if reply, _ := h.b.HandleXMPPMessage(ctx, note("romeo@capulet.lit", alice, "r1")); reply == nil {
		t.Fatal("the budget filled again before its time")
	}
	clock.Add(time.Minute)
	if reply, _ := h.b.HandleXMPPMessage(ctx, note("romeo@capulet.lit", alice, "r2")); reply != nil {
		t.Fatalf("refused after an hour: %+v", reply.Error)
	}
	h.drain(t)
	if h.matrix.rooms != 2 {
		t.Errorf("%d rooms, want 2", h.matrix.rooms)
	}
}

// A Matrix user's own `start` is theirs to choose: it spends no budget,
// and the ghost it makes is known, so that the person's messages to
// others spend none of the domain's new ghosts.
func TestStartSpendsNoStrangerBudget(t *testing.T) {
	h, _, _ := strangerHarness(t, Limits{JIDPortals: 100, DomainPortals: 100, DomainGhosts: 1})
	ctx := context.Background()
	h.b.SpendNewGhost("capulet.lit") // the domain's one new ghost is spent
	if _, err := h.b.EnsurePortal(ctx, alice, jid.MustParse(julietJID)); err != nil {
		t.Fatal(err)
	}
	if reply, _ := h.b.HandleXMPPMessage(ctx, note(julietJID, "@bob:example.org", "b1")); reply != nil {
		t.Fatalf("the person of a started chat was refused a new ghost: %+v", reply.Error)
	}
}

// Refusals are logged once per interval, whatever their number.
func TestStrangerRefusalsLoggedOncePerInterval(t *testing.T) {
	h, clock, log := strangerHarness(t, Limits{JIDPortals: 1, DomainPortals: 100, DomainGhosts: 100})
	ctx := context.Background()
	_, _ = h.b.HandleXMPPMessage(ctx, note("eve@evil.example", alice, "e0"))
	h.drain(t)
	for i := range 50 {
		_, _ = h.b.HandleXMPPMessage(ctx, note("eve@evil.example", "@bob:example.org", fmt.Sprintf("e%d", i+1)))
	}
	if n := strings.Count(log.String(), "strangers"); n != 1 {
		t.Errorf("%d log lines about refusals, want 1:\n%s", n, log.String())
	}
	clock.Add(OverBudgetLogEvery)
	_, _ = h.b.HandleXMPPMessage(ctx, note("eve@evil.example", "@bob:example.org", "e99"))
	if n := strings.Count(log.String(), "strangers"); n != 2 {
		t.Errorf("%d log lines about refusals after an interval, want 2", n)
	}
	if h.counts["xmpp_message/"+string(ReasonJIDBudget)] != 51 {
		t.Errorf("counts %v, want 51 refusals", h.counts)
	}
}

// RFC 6121 §3.1.3: a subscription request a puppet approves of its own
// accord (xmpp.auto_subscribe) from a person without a portal spends
// their domain's budget (limits.domain_subscriptions_per_hour); past it,
// the request is denied (§3.1.4, "unsubscribed") and nothing is stored.
// A person with a portal spends nothing.
func TestStrangerSubscriptionBudget(t *testing.T) {
	h, _, _ := strangerHarness(t, Limits{DomainSubscriptions: 2})
	h.b.Config().Presence = autoPolicy
	ctx := context.Background()
	subscribe := func(from string) []string {
		return h.answers(t, &XMPPPresence{From: jid.MustParse(from + "/r"), To: alicePuppet, Type: PresenceSubscribe})
	}
	for _, from := range []string{"a@evil.example", "b@evil.example"} {
		if got := subscribe(from); len(got) == 0 || !strings.HasPrefix(got[0], "subscribed ") {
			t.Fatalf("%s within the budget: %q", from, got)
		}
	}
	if got := subscribe("c@evil.example"); len(got) != 1 || !strings.HasPrefix(got[0], "unsubscribed ") {
		t.Fatalf("past the budget: %q, want a denial", got)
	}
	if _, err := h.store.Subscription(ctx, alice, jid.MustParse("c@evil.example")); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused subscription was stored (%v)", err)
	}
	if h.counts["xmpp_presence/"+string(ReasonDomainBudget)] != 1 {
		t.Errorf("counts %v, want one xmpp_presence/%s", h.counts, ReasonDomainBudget)
	}
	if _, err := h.b.EnsurePortal(ctx, alice, jid.MustParse("d@evil.example")); err != nil {
		t.Fatal(err)
	}
	if got := subscribe("d@evil.example"); len(got) == 0 || !strings.HasPrefix(got[0], "subscribed ") {
		t.Errorf("a person with a portal, past the domain's budget: %q, want approved", got)
	}
}
