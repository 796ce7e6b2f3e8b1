package mapping_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// The rules of a chat's state in its portal (roomstate.go): subject and
// topic, nick changes, departures, kicks and bans, typing.

// occupantIn is the available presence of the room lounge of the
// occupant nick (occupant-id occ, "" for none) to the puppet to.
func occupantIn(nick, occ, to string) *XMPPPresence {
	return &XMPPPresence{From: jid.MustParse(lounge + "/" + nick), To: jid.MustParse(to), MUC: &MUCPresence{Role: "participant", OccupantID: occ}}
}

// occupantOut is their unavailable presence, with the statuses and item
// x says.
func occupantOut(nick, occ, to string, x MUCPresence) *XMPPPresence {
	x.OccupantID = occ
	return &XMPPPresence{From: jid.MustParse(lounge + "/" + nick), To: jid.MustParse(to), Type: PresenceUnavailable, MUC: &x}
}

// feed hands the core each stanza (a *XMPPPresence or *XMPPMessage) as
// from the XMPP server, then runs what it queued.
func (h *harness) feed(t *testing.T, stanzas ...any) {
	t.Helper()
	ctx := context.Background()
	for _, s := range stanzas {
		var err error
		switch s := s.(type) {
		case *XMPPPresence:
			_, err = h.b.HandleXMPPPresence(ctx, s)
		case *XMPPMessage:
			_, err = h.b.HandleXMPPMessage(ctx, s)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	h.drain(t)
}

// subjectMsg is the room's subject message (XEP-0045 §7.2.16, §8.1): from
// the occupant nick who set it ("": the room itself), a <subject/> and
// no body.
func subjectMsg(nick, to, id, subject string) *XMPPMessage {
	from := lounge
	if nick != "" {
		from += "/" + nick
	}
	return &XMPPMessage{ID: id, From: jid.MustParse(from), To: jid.MustParse(to), Type: TypeGroupchat, Subject: subject, HasSubject: true}
}

func ghostOf(t *testing.T, key string) id.UserID {
	t.Helper()
	g, err := testIDs.OccupantGhost(jid.MustParse(lounge), key)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// XEP-0045 §7.2.16: the room sends its subject last on joining, from the
// occupant who set it; it becomes the portal's topic, set by their ghost
// (they are in), once for all the puppets that receive it, and not again
// when the same subject comes at the next join. §8.1: a change from the
// room itself (no nick), or by an occupant not in it, is set by the bot.
func TestGroupSubjectBecomesTopic(t *testing.T) {
	h := groupHarness(t, alice, bob)
	h.feed(t, occupantIn("wiccarocks", "occ-w", alicePup))
	for _, to := range []string{alicePup, bobPup} {
		h.feed(t, subjectMsg("wiccarocks", to, "F437C672-D438-4BD3-9BFF-091050D32EE2", "Fire Burn and Cauldron Bubble!"))
	}
	h.feed(t, subjectMsg("wiccarocks", alicePup, "again", "Fire Burn and Cauldron Bubble!"))
	h.feed(t, subjectMsg("", alicePup, "s2", "Cauldron cool"))
	h.feed(t, subjectMsg("hecate", alicePup, "s3", "Double, double toil and trouble"))
	want := []string{
		string(loungeRoom) + " " + string(ghostOf(t, "occ-w")) + " Fire Burn and Cauldron Bubble!",
		string(loungeRoom) + "  Cauldron cool",
		string(loungeRoom) + "  Double, double toil and trouble",
	}
	if !slices.Equal(h.matrix.topics, want) {
		t.Errorf("topics\n  %q\nwant\n  %q", h.matrix.topics, want)
	}
	if len(h.matrix.texts) != 0 {
		t.Errorf("a subject was posted as a message: %q", h.matrix.texts)
	}
}

// A room that changes its subject on and on costs one Matrix call at a
// time: the subjects that come while a topic is on its way leave only
// the newest to follow it, and while the homeserver is away they make no
// jobs of their own (the retry takes the newest). A subject is bounded.
func TestGroupSubjectsCoalesceAndAreBounded(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	for i := range 1000 {
		if _, err := h.b.HandleXMPPMessage(ctx, subjectMsg("", alicePup, "", strings.Repeat("x", i%7)+"subject "+string(rune('a'+i%26)))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.b.HandleXMPPMessage(ctx, subjectMsg("", alicePup, "", strings.Repeat("é", 5000))); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.matrix.topics) != 1 {
		t.Fatalf("%d topics set for 1001 subjects, want 1 (the newest)", len(h.matrix.topics))
	}
	last := strings.TrimPrefix(h.matrix.topics[0], string(loungeRoom)+"  ")
	if len(last) > 1024 || !strings.HasPrefix(last, "éé") || !strings.HasSuffix(last, "…") {
		t.Errorf("the newest subject became a topic of %d bytes: %.40q…", len(last), last)
	}

	h.matrix.fail = errors.New("the homeserver is away")
	h.feed(t, subjectMsg("", alicePup, "", "Out, damned spot!"))
	for i := range 100 {
		if _, err := h.b.HandleXMPPMessage(ctx, subjectMsg("", alicePup, "", fmt.Sprint("Out, out, brief candle ", i))); err != nil {
			t.Fatal(err)
		}
	}
	jobs, err := h.store.DueJobs(ctx, time.Now().Add(time.Hour), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 {
		t.Errorf("%d jobs stored while the homeserver is away, want the one being retried", len(jobs))
	}
	h.matrix.fail = nil
	h.drain(t)
	if want := string(loungeRoom) + "  Out, out, brief candle 99"; len(h.matrix.topics) != 2 || h.matrix.topics[1] != want {
		t.Errorf("topics after the homeserver is back: %q, want the newest, %q", h.matrix.topics[1:], want)
	}
}

// XEP-0045 §8.1: a member's topic becomes a groupchat message from their
// puppet with a <subject/> and no body; the room's reflection of it is
// the topic the portal has, so it is not set again.
func TestGroupTopicBecomesSubject(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	if err := h.handleTxn(ctx, MatrixTxn{ID: "t1", Events: []MatrixEvent{{ID: "$t1", Room: loungeRoom, Sender: alice, Kind: EventTopic, Type: "m.room.topic", Body: "Fire Burn and Cauldron Bubble!"}}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.sent) != 1 {
		t.Fatalf("sent %+v, want the subject", h.xmpp.sent)
	}
	m := h.xmpp.sent[0]
	if m.Type != TypeGroupchat || m.To.String() != lounge || m.From.String() != aliceFrom || m.Subject == nil || *m.Subject != "Fire Burn and Cauldron Bubble!" || m.Body != "" {
		t.Fatalf("the subject is %+v, want groupchat from Alice's puppet to the room, a subject and no body", m)
	}
	nick := h.xmpp.presences[0].To.Resourcepart()
	back := subjectMsg(nick, alicePup, m.ID, *m.Subject)
	back.OccupantID = "own-" + nick
	h.feed(t, back)
	if len(h.matrix.topics) != 0 {
		t.Errorf("the reflection of Alice's subject was set as a topic: %q", h.matrix.topics)
	}
	// The same subject later from the room (the next join) is the
	// portal's topic already.
	h.feed(t, subjectMsg(nick, alicePup, "join2", *m.Subject))
	if len(h.matrix.topics) != 0 {
		t.Errorf("the room's subject, the topic already, was set again: %q", h.matrix.topics)
	}
}

// §8.1: a room where only moderators may change the subject answers
// <forbidden/>; the member is told in the portal, the topic is put back
// to the room's subject (by the bot, whose topic the bridge does not
// carry), and nothing loops.
func TestGroupSubjectRefused(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	h.feed(t, subjectMsg("", alicePup, "s1", "Old news"))
	if err := h.handleTxn(ctx, MatrixTxn{ID: "t1", Events: []MatrixEvent{{ID: "$t1", Room: loungeRoom, Sender: alice, Kind: EventTopic, Type: "m.room.topic", Body: "New news"}}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	out := h.xmpp.sent[len(h.xmpp.sent)-1]
	// §8.1, "Service informs occupant of inability to change subject".
	h.feed(t, &XMPPMessage{ID: out.ID, From: jid.MustParse(lounge), To: jid.MustParse(aliceFrom), Type: TypeError,
		Error: &StanzaError{Type: "auth", Condition: "forbidden"}})
	if len(h.matrix.notices) != 1 || !strings.Contains(h.matrix.notices[0], "did not take the topic "+string(alice)+" set: only its moderators may change it") {
		t.Errorf("notices %q, want Alice told", h.matrix.notices)
	}
	want := []string{string(loungeRoom) + "  Old news", string(loungeRoom) + "  Old news"}
	if !slices.Equal(h.matrix.topics, want) {
		t.Errorf("topics %q, want the room's subject put back: %q", h.matrix.topics, want)
	}
	// The bot's topic comes back from the homeserver: not carried.
	if err := h.handleTxn(ctx, MatrixTxn{ID: "t2", Events: []MatrixEvent{{ID: "$t2", Room: loungeRoom, Sender: testIDs.Bot(), Kind: EventTopic, Type: "m.room.topic", Body: "Old news"}}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if n := len(h.xmpp.sent); n != 1 {
		t.Errorf("sent %d subjects, want Alice's one", n)
	}
	if h.counts["matrix_topic/refused_forbidden"] != 1 {
		t.Errorf("counts %v, want the refusal counted by its condition", h.counts)
	}
	// An error the bridge did not ask for is not a refusal.
	h.feed(t, &XMPPMessage{ID: out.ID, From: jid.MustParse(lounge), To: jid.MustParse(aliceFrom), Type: TypeError,
		Error: &StanzaError{Type: "auth", Condition: "forbidden"}})
	if len(h.matrix.notices) != 1 {
		t.Errorf("a second error about the same subject said more: %q", h.matrix.notices)
	}
}

// XEP-0045 §7.6: a nick change is an unavailable presence with 303 and the
// new nick, then an available one under it. With an XEP-0421 occupant-id
// the ghost is the same: renamed, not leaving, and no new ghost comes.
func TestGroupNickChangeRenamesTheGhost(t *testing.T) {
	h := groupHarness(t, alice)
	h.feed(t, occupantIn("thirdwitch", "occ-3", alicePup))
	ghost := ghostOf(t, "occ-3")
	joins := len(h.matrix.joins)
	h.feed(t, occupantOut("thirdwitch", "occ-3", alicePup, MUCPresence{Statuses: []int{303}, NewNick: "oldhag", Role: "participant"}),
		occupantIn("oldhag", "occ-3", alicePup))
	if last := h.matrix.ghostNames[len(h.matrix.ghostNames)-1]; last != string(ghost)+" oldhag" {
		t.Errorf("the ghost's names %q, want it renamed oldhag", h.matrix.ghostNames)
	}
	if len(h.matrix.leaves) != 0 || len(h.matrix.joins) != joins {
		t.Errorf("a nick change with an occupant-id made leaves %q or joins %q", h.matrix.leaves, h.matrix.joins[joins:])
	}
	// What oldhag says is the same ghost's.
	h.feed(t, groupchat("oldhag", "occ-3", alicePup, "s1", "By the pricking of my thumbs"))
	if len(h.matrix.texts) != 1 || !strings.Contains(h.matrix.texts[0], string(ghost)) {
		t.Errorf("posted %q, want it as %s", h.matrix.texts, ghost)
	}
}

// Without an occupant-id an occupant is known by nick only: the old
// ghost leaves (saying the new nick) and is no member any longer, and
// the new nick is a new ghost.
func TestGroupNickChangeWithoutOccupantID(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	h.feed(t, occupantIn("thirdwitch", "", alicePup))
	h.feed(t, occupantOut("thirdwitch", "", alicePup, MUCPresence{Statuses: []int{303}, NewNick: "oldhag"}), occupantIn("oldhag", "", alicePup))
	old, new := ghostOf(t, "thirdwitch"), ghostOf(t, "oldhag")
	if want := []string{string(loungeRoom) + " " + string(old) + " now known as oldhag"}; !slices.Equal(h.matrix.leaves, want) {
		t.Errorf("leaves %q, want %q", h.matrix.leaves, want)
	}
	if !slices.Contains(h.matrix.joins, string(loungeRoom)+" "+string(new)) {
		t.Errorf("joins %q, want the new nick's ghost", h.matrix.joins)
	}
	p, err := h.store.PortalByRoom(ctx, loungeRoom)
	if err != nil {
		t.Fatal(err)
	}
	if p.Member(OccupantMember(jid.MustParse(lounge), "thirdwitch")) != nil || p.Member(OccupantMember(jid.MustParse(lounge), "oldhag")) == nil {
		t.Errorf("members %+v: want the old nick out, the new one in", p.Members)
	}
}

// The room's own presence, from its bare JID, is no occupant's: ejabberd
// 23.01 sends each joining occupant one with the room's entity caps
// (XEP-0115) before the occupants' presence, and an unavailable one when
// the occupant leaves. Neither makes a ghost, a departure or a rejoin.
func TestGroupRoomsOwnPresence(t *testing.T) {
	h := groupHarness(t, alice)
	joins, leaves, sent := len(h.matrix.joins), len(h.matrix.leaves), len(h.xmpp.presences)
	room := jid.MustParse(lounge)
	h.feed(t, &XMPPPresence{From: room, To: jid.MustParse(aliceFrom)},
		&XMPPPresence{From: room, To: jid.MustParse(aliceFrom), Type: PresenceUnavailable})
	if len(h.matrix.joins) != joins || len(h.matrix.leaves) != leaves || len(h.xmpp.presences) != sent {
		t.Errorf("the room's own presence made joins %q, leaves %q, presences %+v", h.matrix.joins[joins:], h.matrix.leaves[leaves:], h.xmpp.presences[sent:])
	}
	if n := h.counts["muc_presence/"+string(ReasonRoomItself)]; n != 2 {
		t.Errorf("counts %v: want both counted muc_presence/%s", h.counts, ReasonRoomItself)
	}
}

// An occupant who leaves (§7.14), is kicked (§9.1, 307) or banned (§9.2,
// 301): their ghost leaves and is no member any longer; a kick or ban is
// said in the portal with its actor and reason. An occupant the bridge
// never saw makes it do nothing.
func TestGroupOccupantLeavesKickedBanned(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	h.feed(t, occupantIn("pistol", "occ-p", alicePup), occupantIn("thirdwitch", "occ-3", alicePup), occupantIn("hecate", "occ-h", alicePup))
	h.feed(t,
		occupantOut("pistol", "occ-p", alicePup, MUCPresence{Statuses: []int{307}, Role: "none", Actor: "Fluellen", Reason: "Avaunt, you cullion!"}),
		occupantOut("thirdwitch", "occ-3", alicePup, MUCPresence{Statuses: []int{301}, Role: "none", Affiliation: "outcast", Reason: "Treason"}),
		occupantOut("hecate", "occ-h", alicePup, MUCPresence{Role: "none"}),
		occupantOut("stranger", "occ-s", alicePup, MUCPresence{Statuses: []int{307}}))
	wantNotices := []string{
		string(loungeRoom) + " " + string(testIDs.Bot()) + " pistol was kicked from the chat by Fluellen: Avaunt, you cullion!",
		string(loungeRoom) + " " + string(testIDs.Bot()) + " thirdwitch was banned from the chat: Treason",
	}
	if !slices.Equal(h.matrix.notices, wantNotices) {
		t.Errorf("notices\n  %q\nwant\n  %q", h.matrix.notices, wantNotices)
	}
	wantLeaves := []string{
		string(loungeRoom) + " " + string(ghostOf(t, "occ-p")) + " pistol was kicked from the chat by Fluellen: Avaunt, you cullion!",
		string(loungeRoom) + " " + string(ghostOf(t, "occ-3")) + " thirdwitch was banned from the chat: Treason",
		string(loungeRoom) + " " + string(ghostOf(t, "occ-h")) + " ",
	}
	if !slices.Equal(h.matrix.leaves, wantLeaves) {
		t.Errorf("leaves\n  %q\nwant\n  %q", h.matrix.leaves, wantLeaves)
	}
	p, err := h.store.PortalByRoom(ctx, loungeRoom)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"occ-p", "occ-3", "occ-h"} {
		if p.Member(OccupantMember(jid.MustParse(lounge), key)) != nil {
			t.Errorf("%s is still a member of the portal", key)
		}
	}
	// Back in: a ghost and a member again.
	h.feed(t, occupantIn("pistol", "occ-p", alicePup))
	if !slices.Contains(h.matrix.joins, string(loungeRoom)+" "+string(ghostOf(t, "occ-p"))) {
		t.Errorf("joins %q: pistol's ghost did not come back", h.matrix.joins)
	}
}

// §9.1 (110 and 307), §9.2 (110 and 301): the room kicked or banned
// Alice's puppet. She is told in the portal and removed from it, is no member of it any longer, and her
// puppet does not rejoin at the next connection.
func TestGroupPuppetKicked(t *testing.T) {
	for _, tc := range []struct {
		status int
		says   string
	}{{307, "was kicked from the chat"}, {301, "was banned from the chat"}} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) { puppetRemoved(t, tc.status, tc.says) })
	}
}

func puppetRemoved(t *testing.T, status int, says string) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	nick := h.xmpp.presences[0].To.Resourcepart()
	h.feed(t, occupantOut(nick, "own-"+nick, alicePup, MUCPresence{Statuses: []int{110, status}, Role: "none", Actor: "Fluellen", Reason: "Avaunt, you cullion!"}))
	if len(h.matrix.notices) != 1 || !strings.Contains(h.matrix.notices[0], string(alice)+"'s puppet "+says+" by Fluellen: Avaunt, you cullion! The bridge takes them out") {
		t.Errorf("notices %q, want Alice told", h.matrix.notices)
	}
	if len(h.matrix.kicks) != 1 || !strings.HasPrefix(h.matrix.kicks[0], string(loungeRoom)+" "+string(alice)+" ") {
		t.Errorf("kicks %q, want Alice out of the portal", h.matrix.kicks)
	}
	p, err := h.store.PortalByRoom(ctx, loungeRoom)
	if err != nil || p.Member(MatrixMember(alice)) != nil {
		t.Fatalf("Alice is still a member: %+v, %v", p, err)
	}
	joins := len(h.xmpp.presences)
	if err := h.b.Rejoin(ctx); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.presences) != joins {
		t.Errorf("Alice's puppet rejoined: %+v", h.xmpp.presences[joins:])
	}
	// Her leave, as the kick comes back from the homeserver, sends
	// nothing more.
	if err := h.handleTxn(ctx, MatrixTxn{ID: "k", Events: []MatrixEvent{memberEvent(testIDs.Bot(), loungeRoom, alice, "leave")}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.presences) != joins {
		t.Errorf("the kick's echo sent %+v", h.xmpp.presences[joins:])
	}
}

// aliceJoinRefused has Alice join the portal and the room answer her
// puppet's join with an error of condition cond; it returns the join.
func aliceJoinRefused(t *testing.T, h *harness, cond string) *OutPresence {
	t.Helper()
	if err := h.handleTxn(context.Background(), MatrixTxn{ID: "j", Events: []MatrixEvent{memberEvent(alice, loungeRoom, alice, MembershipJoin)}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	join := h.xmpp.presences[len(h.xmpp.presences)-1]
	h.feed(t, &XMPPPresence{From: join.To, To: join.From, Type: PresenceError, Error: &StanzaError{Type: "auth", Condition: cond}})
	return join
}

// XEP-0045 §7.2.7-§7.2.13: a join the room refuses is said in the portal
// in a sentence for each condition, naming the puppet's address where an
// admin of the room can act on it; a nick in use (§7.2.10) is tried once
// more as "… (Matrix)".
func TestGroupJoinRefused(t *testing.T) {
	for _, tc := range []struct{ cond, says string }{
		{"not-authorized", "the chat needs a password, or another one. Tell me join " + lounge + " alice PASSWORD and your puppet joins with it"}, // §7.2.7, §7.2.6
		{"registration-required", "the chat is members-only: an admin of it can make " + alicePup + " a member"},                                  // §7.2.8
		{"forbidden", "the chat has banned " + alicePup},                                                                                          // §7.2.9
		{"service-unavailable", "the chat is full"},                                                                                               // §7.2.11
		{"item-not-found", "the chat does not exist, or is locked until its owner configures it"},                                                 // §7.2.12, §7.2.13
		{"remote-server-not-found", "the chat's server cannot be reached"},
		{"undefined-condition", "the chat answered undefined-condition"},
	} {
		t.Run(tc.cond, func(t *testing.T) {
			h := groupHarness(t)
			join := aliceJoinRefused(t, h, tc.cond)
			want := string(loungeRoom) + " " + string(testIDs.Bot()) + " " + string(alice) + " could not join " + lounge + " as " + join.To.Resourcepart() + ": " + tc.says + "."
			if len(h.matrix.notices) != 1 || h.matrix.notices[0] != want {
				t.Errorf("notices %q, want %q", h.matrix.notices, want)
			}
			if len(h.xmpp.presences) != 1 {
				t.Errorf("tried again: %+v", h.xmpp.presences[1:])
			}
		})
	}
	t.Run("conflict", func(t *testing.T) {
		h := groupHarness(t)
		join := aliceJoinRefused(t, h, "conflict")
		if len(h.xmpp.presences) != 2 || h.xmpp.presences[1].To.Resourcepart() != join.To.Resourcepart()+" (Matrix)" {
			t.Fatalf("joins %+v, want a second as %q", h.xmpp.presences, join.To.Resourcepart()+" (Matrix)")
		}
		again := h.xmpp.presences[1]
		h.feed(t, &XMPPPresence{From: again.To, To: again.From, Type: PresenceError, Error: &StanzaError{Type: "cancel", Condition: "conflict"}})
		if len(h.xmpp.presences) != 2 || len(h.matrix.notices) != 1 || !strings.Contains(h.matrix.notices[0], "the nick is in use") {
			t.Errorf("after a second conflict: joins %d, notices %q", len(h.xmpp.presences), h.matrix.notices)
		}
	})
}

// XEP-0085 "Use in Groupchat": an occupant's <composing/> is their
// ghost's typing in the portal, <paused/> (or a message's <active/>) its
// end, once for all the puppets that receive it; <gone/> from an
// occupant is ignored.
func TestGroupOccupantTyping(t *testing.T) {
	h := groupHarness(t, alice, bob)
	state := func(to, st string) *XMPPMessage {
		m := groupchat("thirdwitch", "occ-3", to, "", "")
		m.ID, m.ChatState = "cs-"+st, st
		return m
	}
	h.feed(t, state(alicePup, "composing"), state(bobPup, "composing"), state(alicePup, "paused"), state(alicePup, "gone"))
	active := groupchat("thirdwitch", "occ-3", alicePup, "s1", "Thrice the brinded cat hath mew'd")
	active.ChatState = "active"
	h.feed(t, state(alicePup, "composing"), active)
	ghost := ghostOf(t, "occ-3")
	want := []string{
		string(loungeRoom) + " " + string(ghost) + " true",
		string(loungeRoom) + " " + string(ghost) + " false",
		string(loungeRoom) + " " + string(ghost) + " true",
		string(loungeRoom) + " " + string(ghost) + " false",
	}
	if got := h.matrix.typings(); !slices.Equal(got, want) {
		t.Errorf("typing\n  %q\nwant\n  %q", got, want)
	}
}

// XEP-0085 "Use in Groupchat" and "Syntax of Notifications": a member's
// typing in the portal is a standalone groupchat <composing/> from their
// puppet, its end <paused/> (a standalone state SHOULD NOT be <active/>),
// each member's own and only on change; a member whose typing setting is
// off sends none.
func TestGroupMemberTyping(t *testing.T) {
	h := groupHarness(t, alice, bob)
	ctx := context.Background()
	h.xmpp.sent = nil
	for i, users := range [][]id.UserID{{alice}, {alice, bob}, {bob}, {}} {
		if err := h.handleTxn(ctx, MatrixTxn{ID: "ty" + string(rune('0'+i)), Typing: []Typing{{Room: loungeRoom, Users: users}}}); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
	}
	var got []string
	for _, m := range h.xmpp.sent {
		if m.Type != TypeGroupchat || m.To.String() != lounge || m.Body != "" {
			t.Errorf("a chat state is %+v, want a standalone groupchat to the room", m)
		}
		got = append(got, m.From.Bare().String()+" "+m.ChatState)
	}
	want := []string{alicePup + " composing", bobPup + " composing", alicePup + " paused", bobPup + " paused"}
	if !slices.Equal(got, want) {
		t.Errorf("chat states\n  %q\nwant\n  %q", got, want)
	}
	h.b.Config().Receipts.SendToXMPP = false
	h.xmpp.sent = nil
	if err := h.handleTxn(ctx, MatrixTxn{ID: "off", Typing: []Typing{{Room: loungeRoom, Users: []id.UserID{alice}}}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.sent) != 0 {
		t.Errorf("typing off, sent %+v", h.xmpp.sent)
	}
}

// A chat whose occupants come and go without end costs a bounded number
// of Matrix calls: departures and nick changes spend the chat's budget
// (200 at once, then one a second), beyond which the ghosts stay as they
// were, counted; and occupants made members in a run are bounded by
// distinct member, so that new nicks cannot make ghosts without end.
func TestGroupChurnIsBounded(t *testing.T) {
	h := groupHarness(t)
	now := time.Unix(1_800_000_000, 0)
	h.b.SetClock(func() time.Time { return now })
	if err := h.handleTxn(context.Background(), MatrixTxn{ID: "j", Events: []MatrixEvent{memberEvent(alice, loungeRoom, alice, MembershipJoin)}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	join := h.xmpp.presences[0]
	h.feed(t, &XMPPPresence{From: join.To, To: join.From, MUC: &MUCPresence{Statuses: []int{110}}})
	for range 1000 {
		h.feed(t, occupantIn("macbeth", "occ-m", alicePup), occupantOut("macbeth", "occ-m", alicePup, MUCPresence{}))
	}
	if n := len(h.matrix.leaves); n != 200 {
		t.Errorf("1000 departures made %d leaves, want the budget's 200", n)
	}
	if h.counts["muc_presence/"+string(ReasonOverBudget)] != 800 {
		t.Errorf("counts %v, want 800 departures over budget", h.counts)
	}
	now = now.Add(10 * time.Second) // the budget fills again, one a second
	h.feed(t, occupantIn("macbeth", "occ-m", alicePup), occupantOut("macbeth", "occ-m", alicePup, MUCPresence{}))
	if n := len(h.matrix.leaves); n != 201 {
		t.Errorf("after ten seconds, leaves %d, want 201", n)
	}

	// Over budget, nick changes with an occupant-id cost nothing on
	// Matrix (not even a ghost's join under the new nick), and the ghost
	// takes the newest nick when it next speaks.
	joins, names := len(h.matrix.joins), len(h.matrix.ghostNames)
	h.feed(t, occupantIn("macbeth", "occ-m", alicePup))
	for i := range 1000 {
		old, nick := fmt.Sprint("thane", i), fmt.Sprint("thane", i+1)
		if i == 0 {
			old = "macbeth"
		}
		h.feed(t, occupantOut(old, "occ-m", alicePup, MUCPresence{Statuses: []int{303}, NewNick: nick}), occupantIn(nick, "occ-m", alicePup))
	}
	if n := len(h.matrix.joins) - joins; n > 1 {
		t.Errorf("1000 nick changes made %d ghost joins, want at most the one back in", n)
	}
	if n := len(h.matrix.ghostNames) - names; n > 202 {
		t.Errorf("1000 nick changes made %d renames, want at most the budget's", n)
	}
	h.feed(t, groupchat("thane1000", "occ-m", alicePup, "s1", "Is this a dagger which I see before me"))
	ghost := ghostOf(t, "occ-m")
	if last := h.matrix.ghostNames[len(h.matrix.ghostNames)-1]; last != string(ghost)+" thane1000" {
		t.Errorf("the ghost's last name is %q, want the newest nick once it speaks", last)
	}

	joins = len(h.matrix.joins)
	for i := range MaxOccupants + 10 {
		h.feed(t, occupantIn(fmt.Sprintf("witch%d", i), "", alicePup))
	}
	if n := len(h.matrix.joins) - joins; n != MaxOccupants-1 {
		t.Errorf("%d new nicks made %d ghosts, want %d (one member, macbeth, was made before)", MaxOccupants+10, n, MaxOccupants-1)
	}
}

// XEP-0045 §10.2.1, "Notification of Configuration Changes": the room
// says its configuration changed with a message from itself carrying
// status 104 and no body. The name it gives itself (§6.4) is asked again
// and becomes the portal's, once for all the puppets that receive the
// notice; the same status from an occupant is not the room's word.
func TestGroupConfigChangeRenamesThePortal(t *testing.T) {
	h := groupHarness(t, alice, bob)
	h.xmpp.roomName = "Lounge"
	h.drain(t)
	h.xmpp.roomName = "Messina's Lounge"
	for _, to := range []string{alicePup, bobPup} {
		h.feed(t, &XMPPMessage{ID: "80349046", From: jid.MustParse(lounge), To: jid.MustParse(to), Type: TypeGroupchat, MUCStatus: []int{104}})
	}
	want := []string{string(loungeRoom) + " Lounge", string(loungeRoom) + " Messina's Lounge"}
	if !slices.Equal(h.matrix.roomNames, want) {
		t.Errorf("names set %q, want %q", h.matrix.roomNames, want)
	}
	h.feed(t, &XMPPMessage{ID: "x", From: jid.MustParse(lounge + "/Beatrice"), To: jid.MustParse(alicePup), Type: TypeGroupchat, MUCStatus: []int{104}})
	if len(h.matrix.roomNames) != 2 || h.counts["muc_config/changed"] != 1 {
		t.Errorf("an occupant's 104 renamed the portal: %q, %v", h.matrix.roomNames, h.counts)
	}
}

// XEP-0045 §10.2: a member's m.room.name is their puppet's change of the
// room's configuration (its owner's form, submitted with
// muc#roomconfig_roomname changed). The bot's own name, set from the
// room's, is not sent back, nor a member's that is the room's already;
// the room's 104 that follows sets nothing new.
func TestGroupNameFromMatrix(t *testing.T) {
	h := groupHarness(t, alice)
	h.xmpp.roomName = "Lounge"
	h.drain(t)
	ctx := context.Background()
	nameEvent := func(id id.EventID, sender id.UserID, name string) {
		t.Helper()
		if err := h.handleTxn(ctx, MatrixTxn{ID: string(id), Events: []MatrixEvent{{ID: id, Room: loungeRoom, Sender: sender, Kind: EventRoomName, Type: "m.room.name", Body: name}}}); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
	}
	nameEvent("$n1", alice, "Messina's Lounge")
	if want := []string{aliceFrom + " " + lounge + " Messina's Lounge"}; !slices.Equal(h.xmpp.renames, want) {
		t.Fatalf("renames %q, want %q", h.xmpp.renames, want)
	}
	nameEvent("$n2", testIDs.Bot(), "Lounge")
	nameEvent("$n3", alice, "Lounge")
	if len(h.xmpp.renames) != 1 || h.counts["matrix_room_name/"+string(ReasonSameName)] != 1 {
		t.Errorf("renames %q, counts %v: want the bot's name and the room's own not sent", h.xmpp.renames, h.counts)
	}
	// Bob is no occupant: his puppet is in no chat to rename.
	nameEvent("$n4", bob, "Bob's")
	if len(h.xmpp.renames) != 1 {
		t.Errorf("renames %q: a non-member's name was sent", h.xmpp.renames)
	}
}

// XEP-0045 §10.2: only an owner may configure the room; Prosody answers
// anyone else's request for the form with <forbidden/> (type auth). The
// member is told in the portal by the bot, the refusal is counted by its
// condition, and the portal's name goes back to the room's.
func TestGroupRenameRefused(t *testing.T) {
	h := groupHarness(t, alice)
	h.xmpp.roomName = "Lounge"
	h.drain(t)
	h.xmpp.renameAnswer = fmt.Errorf("%w: configuration form: %w", ErrPermanent, &StanzaError{Type: "auth", Condition: "forbidden"})
	if err := h.handleTxn(context.Background(), MatrixTxn{ID: "t", Events: []MatrixEvent{{ID: "$n", Room: loungeRoom, Sender: alice, Kind: EventRoomName, Type: "m.room.name", Body: "Mine"}}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.matrix.notices) != 1 || !strings.Contains(h.matrix.notices[0], "did not take the name "+string(alice)+" gave this room: only its owners may change it") {
		t.Errorf("notices %q, want Alice told", h.matrix.notices)
	}
	if want := []string{string(loungeRoom) + " Lounge", string(loungeRoom) + " Lounge"}; !slices.Equal(h.matrix.roomNames, want) {
		t.Errorf("names %q, want the room's put back: %q", h.matrix.roomNames, want)
	}
	if h.counts["matrix_room_name/refused_forbidden"] != 1 {
		t.Errorf("counts %v, want the refusal counted", h.counts)
	}
}

// XEP-0045 §10.2.1: each status 104 from the room asks its name again,
// but a room that sends a stream of them (broken, or hostile) gets one
// question queued at a time, which asks after all of them; and a change
// that left the name as it was sets nothing on the portal.
func TestGroupConfigChangesCoalesce(t *testing.T) {
	h := groupHarness(t, alice)
	h.xmpp.roomName = "Lounge"
	h.drain(t)
	ctx := context.Background()
	asked := func() int {
		h.xmpp.mu.Lock()
		defer h.xmpp.mu.Unlock()
		n := 0
		for _, a := range h.xmpp.asked {
			if strings.HasSuffix(a, " name") {
				n++
			}
		}
		return n
	}
	before := asked()
	h.xmpp.roomName = "Messina's Lounge"
	for range 50 {
		if _, err := h.b.HandleXMPPMessage(ctx, &XMPPMessage{From: jid.MustParse(lounge), To: jid.MustParse(alicePup), Type: TypeGroupchat, MUCStatus: []int{104}}); err != nil {
			t.Fatal(err)
		}
	}
	h.drain(t)
	if n := asked() - before; n != 1 || h.counts["muc_config/coalesced"] != 49 {
		t.Errorf("50 notices asked the name %d times (counts %v), want once", n, h.counts)
	}
	if want := []string{string(loungeRoom) + " Lounge", string(loungeRoom) + " Messina's Lounge"}; !slices.Equal(h.matrix.roomNames, want) {
		t.Errorf("names set %q, want %q", h.matrix.roomNames, want)
	}
	h.feed(t, &XMPPMessage{From: jid.MustParse(lounge), To: jid.MustParse(alicePup), Type: TypeGroupchat, MUCStatus: []int{104}})
	if n := asked() - before; n != 2 || len(h.matrix.roomNames) != 2 || h.counts["muc_name/unchanged"] != 1 {
		t.Errorf("a notice after the question was asked: %d questions, names %q, counts %v", n, h.matrix.roomNames, h.counts)
	}
}
