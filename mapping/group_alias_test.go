package mapping_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// The alias of lounge's portal (Identities.GroupAlias).
const loungeAlias = id.RoomAlias("#_xmpp_lounge=40conference.capulet.lit:example.org")

// Matrix AS API §Querying room aliases: the homeserver asks about an
// alias in the namespace; the bridge makes the chat's room with that
// alias, as the bot, and says it exists. A user who then joins it, never
// invited, joins the chat as their puppet (XEP-0045 §7.2.1).
func TestAliasQueryMakesTheChatsRoom(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	exists, err := h.b.QueryAlias(ctx, loungeAlias)
	if err != nil || !exists {
		t.Fatalf("QueryAlias = %v, %v; want true", exists, err)
	}
	if want := "group lounge  alias " + string(loungeAlias); len(h.matrix.created) != 1 || h.matrix.created[0] != want {
		t.Fatalf("made %q, want [%q]", h.matrix.created, want)
	}
	p, err := h.store.GroupPortal(ctx, jid.MustParse(lounge))
	if err != nil || p.Member(MatrixMember(testIDs.Bot())) == nil {
		t.Fatalf("portal %+v, %v; want the chat's, the bot in it", p, err)
	}
	if len(h.matrix.invites) != 0 {
		t.Errorf("invited %q: a room joined by its alias invites no one", h.matrix.invites)
	}
	// Asked again (two joins at once): the room is not made twice.
	if exists, err := h.b.QueryAlias(ctx, loungeAlias); err != nil || !exists || len(h.matrix.created) != 1 {
		t.Errorf("again: %v, %v, made %q", exists, err, h.matrix.created)
	}
	if h.counts["alias_query/created"] != 1 {
		t.Errorf("counts %v", h.counts)
	}

	if err := h.handleTxn(ctx, MatrixTxn{ID: "j", Events: []MatrixEvent{memberEvent(alice, p.RoomID, alice, MembershipJoin)}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.presences) != 1 || !h.xmpp.presences[0].JoinMUC || !h.xmpp.presences[0].To.Bare().Equal(jid.MustParse(lounge)) ||
		h.xmpp.presences[0].From.String() != alicePup+"/matrix" {
		t.Fatalf("presences %+v, want Alice's puppet's join of %s", h.xmpp.presences, lounge)
	}
}

// Matrix AS API §Querying room aliases: a chat that has a portal already
// (made by the bot's join) gets the alias added to that room, and no
// second room.
func TestAliasQueryOfAnExistingPortal(t *testing.T) {
	h := groupHarness(t)
	exists, err := h.b.QueryAlias(context.Background(), loungeAlias)
	if err != nil || !exists {
		t.Fatalf("QueryAlias = %v, %v; want true", exists, err)
	}
	if want := string(loungeAlias) + " " + string(loungeRoom); len(h.matrix.created) != 0 || len(h.matrix.aliases) != 1 || h.matrix.aliases[0] != want {
		t.Errorf("made %q, aliases %q; want no room and [%q]", h.matrix.created, h.matrix.aliases, want)
	}
}

// Matrix AS API §Querying room aliases: an alias the bridge will not make
// is "not found" (false, no error): counted, and nothing made.
func TestAliasQueryRefusals(t *testing.T) {
	for _, tc := range []struct {
		alias  string
		reason Reason
	}{
		{"#lounge:example.org", ReasonNotGroupAlias},
		{"#_xmpp_lounge=40conference.capulet.lit:other.org", ReasonNotGroupAlias},
		{"#_xmpp_conference.capulet.lit:example.org", ReasonNotGroupAlias},                 // a service, no room (XEP-0045 §4.2)
		{"#_xmpp_lounge=40conference.capulet.lit=2fnick:example.org", ReasonNotGroupAlias}, // an occupant's address
		{"#_xmpp_=zz:example.org", ReasonNotGroupAlias},
		{"#_xmpp_alice=5c3aexample.org=40matrix.example.org:example.org", ReasonNotGroupAlias}, // a puppet
		{"#_xmpp_x=40spam.example:example.org", ReasonBlockedDomain},
	} {
		t.Run(tc.alias, func(t *testing.T) {
			h := newHarness(t)
			exists, err := h.b.QueryAlias(context.Background(), id.RoomAlias(tc.alias))
			if err != nil || exists {
				t.Fatalf("QueryAlias = %v, %v; want false, no error", exists, err)
			}
			if len(h.matrix.created) != 0 || len(h.matrix.aliases) != 0 || h.counts["alias_query/"+string(tc.reason)] != 1 {
				t.Errorf("made %q, aliases %q, counts %v; want nothing made and %s counted", h.matrix.created, h.matrix.aliases, h.counts, tc.reason)
			}
		})
	}
}

// The rooms strangers may have made by alias: those of one chat service
// spend its budget of new portals (limits.domain_new_portals_per_hour),
// and so do those of all services together (a stranger may name a new
// service each time); a chat that has its room spends nothing.
func TestAliasQueryBudgetOfAService(t *testing.T) {
	ctx := context.Background()
	budget := func() *harness {
		h := newHarness(t)
		h.b.SetIntake(Limits{PeerRate: 1, PeerBurst: 1, Pending: 1, JIDPortals: 10, DomainPortals: 2, DomainGhosts: 10, DomainSubscriptions: 10}, time.Now, zerolog.Nop())
		return h
	}
	for name, rooms := range map[string][]string{
		"one service":   {"a@conference.capulet.lit", "b@conference.capulet.lit", "c@conference.capulet.lit"},
		"many services": {"a@chat1.example", "a@chat2.example", "a@chat3.example"},
	} {
		h := budget()
		for i, want := range []bool{true, true, false} {
			if exists, err := h.b.QueryAlias(ctx, testIDs.GroupAlias(jid.MustParse(rooms[i]))); err != nil || exists != want {
				t.Errorf("%s, %s: %v, %v; want %v", name, rooms[i], exists, err, want)
			}
		}
		if exists, err := h.b.QueryAlias(ctx, testIDs.GroupAlias(jid.MustParse(rooms[0]))); err != nil || !exists {
			t.Errorf("%s, a room made: %v, %v; want true", name, exists, err)
		}
		if len(h.matrix.created) != 2 || h.counts["alias_query/"+string(ReasonDomainBudget)] != 1 {
			t.Errorf("%s: made %q, counts %v; want 2 rooms and one refusal", name, h.matrix.created, h.counts)
		}
	}
}

// The alias query arrives on the homeserver's request: one slow room
// holds the others back one at a time, and past MaxAliasQueries under way
// more are refused at once (counted "busy"), not queued without end.
func TestAliasQueriesBounded(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	entered := make(chan struct{}, MaxAliasQueries)
	h.matrix.beforeCreate = func() { entered <- struct{}{}; <-release }
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make(chan bool, MaxAliasQueries)
	for i := range MaxAliasQueries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exists, _ := h.b.QueryAlias(ctx, testIDs.GroupAlias(jid.MustParse(fmt.Sprintf("r%d@conference.capulet.lit", i))))
			results <- exists
		}()
	}
	<-entered // one is making its room, the others wait for it
	for h.b.AliasQueriesUnderWay() < MaxAliasQueries {
		time.Sleep(time.Millisecond)
	}
	if exists, err := h.b.QueryAlias(ctx, testIDs.GroupAlias(jid.MustParse("late@conference.capulet.lit"))); exists || err != nil {
		t.Errorf("one more: %v, %v; want refused", exists, err)
	}
	if h.counts["alias_query/"+string(ReasonBusy)] != 1 {
		t.Errorf("counts %v, want one busy", h.counts)
	}
	if len(entered) != 0 {
		t.Errorf("%d more rooms were being made at once", len(entered))
	}
	close(release)
	wg.Wait()
	close(results)
	for exists := range results {
		if !exists {
			t.Error("a query under way was refused")
		}
	}
	if len(h.matrix.created) != MaxAliasQueries || strings.Contains(strings.Join(h.matrix.created, ","), "late") {
		t.Errorf("made %q, want the %d under way only", h.matrix.created, MaxAliasQueries)
	}
}
