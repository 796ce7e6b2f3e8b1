package mapping_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// The bot's `join room@service nick password`: the puppet joins as nick
// (XEP-0045 §7.2.1: the nick is the resource of the join's address) with
// the room's password in the join (§7.2.6), and again so after a restart
// (the rejoin at every connection), from what the member's row keeps. The
// password is in no log line and no answer.
func TestJoinWithNickAndPassword(t *testing.T) {
	h := newHarness(t)
	var log bytes.Buffer
	h.withLog(&log)
	botRoom(t, h)
	ctx := context.Background()
	if got := h.say(t, mgmt, "join "+lounge+" Hero cauldronburn"); !strings.Contains(got, "Opened the chat") || strings.Contains(got, "cauldronburn") {
		t.Fatalf("answered %q", got)
	}
	p, err := h.store.GroupPortal(ctx, jid.MustParse(lounge))
	if err != nil {
		t.Fatal(err)
	}
	if m := p.Member(MatrixMember(alice)); m == nil || m.Nick != "Hero" || m.Password != "cauldronburn" {
		t.Fatalf("Alice's row %+v, want the nick and password kept", m)
	}
	lastJoin := func(what string) {
		t.Helper()
		if len(h.xmpp.presences) == 0 {
			t.Fatalf("%s: no presence sent", what)
		}
		j := h.xmpp.presences[len(h.xmpp.presences)-1]
		if !j.JoinMUC || j.To.String() != lounge+"/Hero" || j.MUCPassword != "cauldronburn" {
			t.Errorf("%s: %+v, want a join of %s/Hero with the password", what, j, lounge)
		}
	}
	h.matrixEvents(t, memberEvent(alice, p.RoomID, alice, MembershipJoin))
	lastJoin("Alice's join of the room")

	h.withLog(&log) // a restart: the core knows nothing of this run
	if err := h.b.Rejoin(ctx); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	lastJoin("the rejoin")

	// Told again without them, in the room already: her display name,
	// no password, at once (a nick change, §7.6).
	h.say(t, mgmt, "join "+lounge)
	if j := h.xmpp.presences[len(h.xmpp.presences)-1]; !j.JoinMUC || j.To.Resourcepart() == "Hero" || j.MUCPassword != "" {
		t.Errorf("the join after `join` alone: %+v", j)
	}
	if strings.Contains(log.String(), "cauldronburn") {
		t.Errorf("the password is in the log:\n%s", log.String())
	}
}

// The bot's join refuses, with an answer and nothing made, what is not a
// chat's address, a nick the room's address cannot take (RFC 7622 §3.4: a
// resourcepart of at most 1023 bytes), a password longer than the bridge
// keeps, and more than three words.
func TestJoinArgumentsRefused(t *testing.T) {
	h := newHarness(t)
	botRoom(t, h)
	for _, c := range []struct{ say, want string }{
		{"join", "Say which chat"},
		{"join lounge@conference.capulet.lit/nick", "is not the address of an XMPP chat room"},
		{"join conference.capulet.lit", "is not the address of an XMPP chat room"},
		{"join lounge@conference.capulet.lit " + strings.Repeat("n", 1024), "cannot be a nick"},
		{"join lounge@conference.capulet.lit Hero " + strings.Repeat("p", 257), "longer than"},
		{"join lounge@conference.capulet.lit Hero (Matrix) secret", "one word"},
		{"join lounge@spam.example", "does not talk to"},
	} {
		if got := h.say(t, mgmt, c.say); !strings.Contains(got, c.want) {
			t.Errorf("%q: %q, want it to say %q", c.say[:min(len(c.say), 60)], got, c.want)
		}
	}
	if h.matrix.rooms != 0 {
		t.Errorf("%d rooms made by refused joins", h.matrix.rooms)
	}
}

// XEP-0045 §7.2.6: a room that needs a password refuses a join without
// it (or with a wrong one) with <not-authorized/>; the bot says so in the
// portal and how to give one, and the puppet is not taken as in.
func TestJoinRefusedForPassword(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.store.PutPortal(ctx, &Portal{RoomID: loungeRoom, Kind: PortalGroup, JID: jid.MustParse(lounge),
		Members: []Member{{ID: MatrixMember(testIDs.Bot())}}}); err != nil {
		t.Fatal(err)
	}
	h.matrixEvents(t, memberEvent(alice, loungeRoom, alice, MembershipJoin))
	if len(h.xmpp.presences) != 1 {
		t.Fatalf("presences %+v, want Alice's join", h.xmpp.presences)
	}
	join := h.xmpp.presences[0]
	if _, err := h.b.HandleXMPPPresence(ctx, &XMPPPresence{From: join.To, To: join.From, Type: PresenceError,
		Error: &StanzaError{Type: "auth", Condition: "not-authorized"}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	want := "Tell me join " + lounge + " " + join.To.Resourcepart() + " PASSWORD"
	if len(h.matrix.notices) != 1 || !strings.Contains(h.matrix.notices[0], "needs a password") || !strings.Contains(h.matrix.notices[0], want) ||
		!strings.HasPrefix(h.matrix.notices[0], string(loungeRoom)+" "+string(testIDs.Bot())) {
		t.Errorf("notices %q, want the bot's in the portal saying %q", h.matrix.notices, want)
	}
	if h.counts["muc_join/refused_not-authorized"] != 1 {
		t.Errorf("counts %v", h.counts)
	}
}

// A Matrix user's budget of chats (groups.*): their puppet is in at most
// MaxRoomsPerUser chats at once, and they start at most JoinsPerHour
// joins an hour, a bot's join and their join into the room it opened
// counting once. Past either the bot says why and nothing is made or
// joined, counted and logged; a join into a chat's room found by its
// alias (which the homeserver's alias query made, for anyone) spends the
// same budget. Chats left free their place; the hour refills the joins.
func TestJoinBudget(t *testing.T) {
	h := newHarness(t)
	h.b.Config().Groups = GroupLimits{MaxRoomsPerUser: 2, JoinsPerHour: 3}
	h.withStore(h.store)
	now := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	h.b.SetClock(func() time.Time { return now })
	botRoom(t, h)
	ctx := context.Background()
	seq := 0
	member := func(muc, membership string) {
		t.Helper()
		p, err := h.store.GroupPortal(ctx, jid.MustParse(muc))
		if err != nil {
			t.Fatal(err)
		}
		seq++
		e := memberEvent(alice, p.RoomID, alice, membership)
		e.ID = id.EventID(fmt.Sprintf("$member%d", seq))
		h.matrixEvents(t, e)
	}
	joins := func() int {
		n := 0
		for _, p := range h.xmpp.presences {
			if p.JoinMUC {
				n++
			}
		}
		return n
	}
	chat := func(name string) string { return name + "@conference.capulet.lit" }
	for _, c := range []string{"a", "b"} {
		if got := h.say(t, mgmt, "join "+chat(c)); !strings.Contains(got, "Opened the chat") {
			t.Fatalf("join %s: %q", c, got)
		}
		member(chat(c), MembershipJoin)
	}
	if joins() != 2 {
		t.Fatalf("%d joins sent, want 2", joins())
	}
	if got := h.say(t, mgmt, "join "+chat("c")); !strings.Contains(got, "is in 2 chats, as many as this bridge lets one user be in") {
		t.Errorf("a third chat: %q", got)
	}
	if _, err := h.store.GroupPortal(ctx, jid.MustParse(chat("c"))); !errors.Is(err, ErrNotFound) {
		t.Errorf("a room was made past the budget: %v", err)
	}
	// In a chat already: a new nick costs nothing.
	if got := h.say(t, mgmt, "join "+chat("a")+" Hero"); !strings.Contains(got, "Invited you to") {
		t.Errorf("a join of a chat she is in: %q", got)
	}
	member(chat("a"), "leave")
	if got := h.say(t, mgmt, "join "+chat("c")); !strings.Contains(got, "Opened the chat") {
		t.Fatalf("after leaving one: %q", got)
	}
	member(chat("c"), MembershipJoin)
	member(chat("b"), "leave")
	member(chat("c"), "leave")
	if got := h.say(t, mgmt, "join "+chat("d")); !strings.Contains(got, "started 3 joins of chats within the hour") {
		t.Errorf("a fourth join within the hour: %q", got)
	}
	// A chat's room made for its alias, joined directly: the same budget.
	if ok, err := h.b.QueryAlias(ctx, id.RoomAlias("#_xmpp_e=40conference.capulet.lit:example.org")); err != nil || !ok {
		t.Fatalf("QueryAlias = %v, %v", ok, err)
	}
	before := joins()
	h.matrix.notices = nil
	member(chat("e"), MembershipJoin)
	if joins() != before || len(h.matrix.notices) != 1 || !strings.Contains(h.matrix.notices[0], "puppet does not join "+chat("e")+":") {
		t.Errorf("a join by alias past the budget: %d joins, notices %q", joins()-before, h.matrix.notices)
	}
	if p, _ := h.store.GroupPortal(ctx, jid.MustParse(chat("e"))); p.Member(MatrixMember(alice)) != nil {
		t.Error("she is a member of the chat her puppet did not join")
	}
	if h.counts["bot_join/"+string(ReasonRoomBudget)] != 1 || h.counts["bot_join/"+string(ReasonJoinBudget)] != 1 || h.counts["group_member/"+string(ReasonJoinBudget)] != 1 {
		t.Errorf("counts %v", h.counts)
	}
	now = now.Add(time.Hour)
	member(chat("e"), MembershipJoin)
	if joins() != before+1 {
		t.Errorf("an hour later the join by alias was not sent")
	}
}
