package mapping_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// The rules of group portals (groups.go) on the core with fakes; that
// they work against Prosody's multi-user chat and Dendrite is
// e2e/groups_test.go's.

const (
	lounge     = "lounge@conference.capulet.lit"
	loungeRoom = id.RoomID("!lounge:example.org")
	bob        = id.UserID("@bob:example.org")
	bobPup     = `bob\3aexample.org@matrix.example.org`
)

// groupHarness is a harness with the group portal of lounge, Alice (and
// bob, if two) in it as puppets the room said are in (status 110).
func groupHarness(t *testing.T, members ...id.UserID) *harness {
	t.Helper()
	h := newHarness(t)
	h.b.Config().Receipts.SendToXMPP = true
	ctx := context.Background()
	if err := h.store.PutPortal(ctx, &Portal{RoomID: loungeRoom, Kind: PortalGroup, JID: jid.MustParse(lounge),
		Members: []Member{{ID: MatrixMember(testIDs.Bot())}}}); err != nil {
		t.Fatal(err)
	}
	for i, u := range members {
		if err := h.handleTxn(ctx, MatrixTxn{ID: fmt.Sprintf("join%d", i), Events: []MatrixEvent{memberEvent(u, loungeRoom, u, MembershipJoin)}}); err != nil {
			t.Fatal(err)
		}
	}
	h.drain(t)
	if len(h.xmpp.presences) != len(members) {
		t.Fatalf("joins sent: %d, want %d", len(h.xmpp.presences), len(members))
	}
	for _, p := range h.xmpp.presences {
		// XEP-0045 §7.2.1: presence to room/nick, with the muc <x/>.
		if !p.JoinMUC || !p.To.Bare().Equal(jid.MustParse(lounge)) || p.To.Resourcepart() == "" {
			t.Fatalf("a join is %+v", p)
		}
		// §7.2.2: the room's own presence of the occupant, status 110.
		if _, err := h.b.HandleXMPPPresence(ctx, &XMPPPresence{From: p.To, To: p.From, MUC: &MUCPresence{Statuses: []int{110}, OccupantID: "own-" + p.To.Resourcepart()}}); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// groupchat is a message of the room lounge from the occupant nick (with
// occupant-id occ) to the puppet to, stamped with the room's stanza-id sid.
func groupchat(nick, occ, to, sid, body string) *XMPPMessage {
	return &XMPPMessage{ID: "c-" + sid, From: jid.MustParse(lounge + "/" + nick), To: jid.MustParse(to), Type: TypeGroupchat,
		Body: body, HasBody: body != "", StanzaID: sid, OccupantID: occ, Requests: Requests{Markable: true, Receipt: true}}
}

// An occupant's message reaches the room as their ghost's, named by the
// room's stanza-id (XEP-0359 §3); every puppet in the chat receives it,
// and it crosses once.
func TestGroupOccupantMessageCrossesOnce(t *testing.T) {
	h := groupHarness(t, alice, bob)
	ctx := context.Background()
	for _, to := range []string{alicePup, bobPup} {
		if _, err := h.b.HandleXMPPMessage(ctx, groupchat("Beatrice", "occ-b", to, "s1", "Is it possible?")); err != nil {
			t.Fatal(err)
		}
	}
	h.drain(t)
	ghost, _ := testIDs.OccupantGhost(jid.MustParse(lounge), "occ-b")
	if len(h.matrix.texts) != 1 || !strings.HasPrefix(h.matrix.texts[0], string(loungeRoom)+" "+string(ghost)+" Is it possible?") {
		t.Fatalf("posted %q, want Beatrice's once, as her ghost", h.matrix.texts)
	}
	if !slices.Contains(h.matrix.ghostNames, string(ghost)+" Beatrice") {
		t.Errorf("the ghost is not named after the nick: %q", h.matrix.ghostNames)
	}
	msg, err := h.store.MessageByXMPPID(ctx, jid.MustParse(lounge), "s1", FromXMPP)
	if err != nil {
		t.Fatal(err)
	}
	// XEP-0184 §5.3: receipts are not for groupchat; only the marker is kept.
	if msg.Requests != (Requests{Markable: true}) {
		t.Errorf("requests kept: %+v, want only markable", msg.Requests)
	}
	if h.counts["xmpp_message/"+string(ReasonNotListener)] != 1 {
		t.Errorf("counts %v: want the other puppet's copy not taken", h.counts)
	}
}

// XEP-0333 §3 ("groupchat"): a marker in a room names the id the room gave
// the message; a member's m.read becomes one <displayed/>, of type
// groupchat, to the room, for the newest markable message up to it, and
// nothing of XEP-0184 or XEP-0022.
func TestGroupReadIsOneMarkerByRoomStanzaID(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	for i, sid := range []string{"s1", "s2", "s3"} {
		if _, err := h.b.HandleXMPPMessage(ctx, groupchat("Beatrice", "occ-b", alicePup, sid, fmt.Sprintf("line %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	h.drain(t)
	h.xmpp.sent = nil
	if err := h.handleTxn(ctx, MatrixTxn{ID: "r1", Receipts: []Receipt{{Room: loungeRoom, Event: "$ev2", Type: ReceiptRead, User: alice}}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.sent) != 1 {
		t.Fatalf("sent %d stanzas for one m.read, want 1: %+v", len(h.xmpp.sent), h.xmpp.sent)
	}
	m := h.xmpp.sent[0]
	if m.Type != TypeGroupchat || m.To.String() != lounge || m.From.String() != aliceFrom || !slices.Equal(m.Acks, []XMPPAck{{Wire: WireMarkerDisplayed, ID: "s2"}}) || m.Event != nil {
		t.Errorf("the marker is %+v, want a groupchat <displayed id='s2'/> from Alice's puppet to the room", m)
	}
	// "Up to": a read of an older message after it says nothing more.
	if err := h.handleTxn(ctx, MatrixTxn{ID: "r2", Receipts: []Receipt{{Room: loungeRoom, Event: "$ev1", Type: ReceiptRead, User: alice}}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.sent) != 1 {
		t.Errorf("an older m.read sent more: %+v", h.xmpp.sent[1:])
	}
}

// MSC4089 keeps delivery receipts to private chats, and XEP-0184 §5.3 does
// not recommend receipts in groupchat: an m.delivery in a group portal
// crosses not, and a member's message asks for none.
func TestGroupNoDeliveryReceipts(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	if _, err := h.b.HandleXMPPMessage(ctx, groupchat("Beatrice", "occ-b", alicePup, "s1", "hello")); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	h.xmpp.sent = nil
	if err := h.handleTxn(ctx, MatrixTxn{ID: "d1", Receipts: []Receipt{{Room: loungeRoom, Event: "$ev1", Type: ReceiptDelivery, User: alice}}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.sent) != 0 || h.counts["matrix_receipt/"+string(ReasonGroupDelivery)] != 1 {
		t.Errorf("an m.delivery in a group sent %+v (counts %v)", h.xmpp.sent, h.counts)
	}
	if err := h.handleTxn(ctx, MatrixTxn{ID: "m1", Events: []MatrixEvent{textEvent("$a1", alice, loungeRoom, "hi all")}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.sent) != 1 {
		t.Fatalf("sent %+v", h.xmpp.sent)
	}
	if m := h.xmpp.sent[0]; m.Type != TypeGroupchat || m.To.String() != lounge || m.Request != (Requests{Markable: true}) || m.ChatState != "" {
		t.Errorf("Alice's message to the room is %+v, want groupchat, markable and nothing else", m)
	}
}

// XEP-0045 §7.4: the room sends a puppet's message back to every occupant,
// with its own stanza-id (XEP-0359 §3): that names the message from now
// on, and marks the event sent; an occupant's marker naming that id is
// their ghost's m.read (XEP-0333 §3), forward only.
func TestGroupReflectionAndOccupantMarker(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	if err := h.handleTxn(ctx, MatrixTxn{ID: "m1", Events: []MatrixEvent{textEvent("$a1", alice, loungeRoom, "first"), textEvent("$a2", alice, loungeRoom, "second")}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.sent) != 2 {
		t.Fatalf("sent %+v", h.xmpp.sent)
	}
	nick := h.xmpp.presences[0].To.Resourcepart()
	for i, out := range h.xmpp.sent {
		back := groupchat(nick, "own-"+nick, alicePup, fmt.Sprintf("r%d", i+1), out.Body)
		back.OriginID = out.OriginID
		if _, err := h.b.HandleXMPPMessage(ctx, back); err != nil {
			t.Fatal(err)
		}
	}
	h.drain(t)
	if want := []string{string(loungeRoom) + " $a1", string(loungeRoom) + " $a2"}; !slices.Equal(h.matrix.sent, want) {
		t.Errorf("sent statuses %q, want %q", h.matrix.sent, want)
	}
	if len(h.matrix.texts) != 0 {
		t.Errorf("a reflection was posted back: %q", h.matrix.texts)
	}
	if _, err := h.store.MessageByXMPPID(ctx, jid.MustParse(lounge), "r2", FromMatrix); err != nil {
		t.Fatalf("the message is not named by the room's stanza-id: %v", err)
	}
	marker := func(sid string) {
		t.Helper()
		m := groupchat("Claudio", "occ-c", alicePup, "m-"+sid, "")
		m.Acks = append(m.Acks, XMPPAck{Wire: WireMarkerDisplayed, ID: sid})
		if _, err := h.b.HandleXMPPMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
	}
	marker("r2")
	marker("r1") // older: forward only
	ghost, _ := testIDs.OccupantGhost(jid.MustParse(lounge), "occ-c")
	if want := []string{string(loungeRoom) + " " + string(ghost) + " $a2"}; !slices.Equal(h.matrix.reads, want) {
		t.Errorf("reads %q, want %q", h.matrix.reads, want)
	}
}

// A room that stamps no stanza-id (XEP-0359 §3; ejabberd's rooms without
// the mam option, as its reflection shows: `<message type='groupchat'
// from='room/nick' id='m1'><body>hi</body></message>`) names nothing a
// marker or a relation in it could point at: the reflection marks no
// message sent, and is counted no_stanza_id, not taken for another's.
func TestGroupReflectionWithoutStanzaID(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	if err := h.handleTxn(ctx, MatrixTxn{ID: "m1", Events: []MatrixEvent{textEvent("$a1", alice, loungeRoom, "first"), textEvent("$a2", alice, loungeRoom, "second")}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	nick := h.xmpp.presences[0].To.Resourcepart()
	for _, out := range h.xmpp.sent {
		back := groupchat(nick, "own-"+nick, alicePup, "", out.Body)
		back.ID, back.OriginID = out.ID, out.OriginID
		if _, err := h.b.HandleXMPPMessage(ctx, back); err != nil {
			t.Fatal(err)
		}
	}
	h.drain(t)
	if len(h.matrix.sent) != 0 || len(h.matrix.texts) != 0 {
		t.Errorf("sent statuses %q, texts %q; want none", h.matrix.sent, h.matrix.texts)
	}
	if n := h.counts["xmpp_message/"+string(ReasonNoStanzaID)]; n != 2 {
		t.Errorf("counts %v: want both reflections counted xmpp_message/%s", h.counts, ReasonNoStanzaID)
	}
}

// Leaving the room leaves the chat (XEP-0045 §7.14), and the member is no
// longer one: their receipts do not cross.
func TestGroupLeaveLeavesTheChat(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	if err := h.handleTxn(ctx, MatrixTxn{ID: "l1", Events: []MatrixEvent{memberEvent(alice, loungeRoom, alice, "leave")}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	last := h.xmpp.presences[len(h.xmpp.presences)-1]
	if last.Type != PresenceUnavailable || !last.To.Bare().Equal(jid.MustParse(lounge)) {
		t.Errorf("the last presence is %+v, want unavailable to the room", last)
	}
	p, err := h.store.PortalByRoom(ctx, loungeRoom)
	if err != nil || p.Member(MatrixMember(alice)) != nil {
		t.Errorf("Alice is still a member: %+v, %v", p, err)
	}
}

// A portal with an alias is public, so anyone on the homeserver with the
// alias may join its room: one the bridge's permissions do not allow is
// removed by the bot with the reason, and their puppet never joins the
// chat (XEP-0045 §7.2.1: nothing is sent to the room).
func TestGroupUnpermittedJoinerRemoved(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	eve := id.UserID("@eve:evil.example")
	before := len(h.xmpp.presences)
	if err := h.handleTxn(ctx, MatrixTxn{ID: "eve", Events: []MatrixEvent{memberEvent(eve, loungeRoom, eve, MembershipJoin)}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.presences) != before {
		t.Errorf("presences %+v: Eve's puppet joined the chat", h.xmpp.presences[before:])
	}
	want := string(loungeRoom) + " " + string(eve) + " You are not allowed to use this bridge."
	if len(h.matrix.kicks) != 1 || h.matrix.kicks[0] != want {
		t.Errorf("kicks %q, want %q", h.matrix.kicks, want)
	}
	if p, err := h.store.PortalByRoom(ctx, loungeRoom); err != nil || p.Member(MatrixMember(eve)) != nil {
		t.Errorf("Eve is a member: %+v, %v", p, err)
	}
}

// OccupantGhost and OccupantOf are each other's inverse, and no occupant's
// ghost is a person's (GhostJID refuses it).
func TestOccupantGhostRoundTrip(t *testing.T) {
	room := jid.MustParse(lounge)
	for _, key := range []string{"Beatrice", "8lfZCpWFz+6U6bhulM/HranNgf2UHt3VoMjB6Uipqws=", "a b"} {
		g, err := testIDs.OccupantGhost(room, key)
		if err != nil {
			t.Fatal(err)
		}
		r, k, err := testIDs.OccupantOf(g)
		if err != nil || !r.Equal(room) || k != key {
			t.Errorf("%q: %s back to %s %q, %v", key, g, r, k, err)
		}
		if _, err := testIDs.GhostJID(g); err == nil || !testIDs.IsGhost(g) {
			t.Errorf("%s: GhostJID takes it (%v) or IsGhost does not", g, err)
		}
	}
}

// groupRel is an event of sender in the group portal, of kind, as edit
// makes it.
func groupRel(evID string, sender id.UserID, kind EventKind, edit func(*MatrixEvent)) MatrixEvent {
	e := textEvent(evID, sender, loungeRoom, "")
	e.Kind = kind
	edit(&e)
	return e
}

// What points at a message in a chat, from XMPP: a correction names the
// original by its sender's id (XEP-0308), which the room's reflection does
// not change, and only the same occupant (XEP-0421 occupant-id) may make
// it, or retract (XEP-0424, Security Considerations); a reply, a
// reaction and a retraction name it by the room's stanza-id (XEP-0461 and
// XEP-0444, Business Rules), and each occupant's reactions are their own
// set (XEP-0444).
func TestGroupRelationsFromXMPP(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	say := func(m *XMPPMessage) {
		t.Helper()
		if _, err := h.b.HandleXMPPMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
	}
	first := groupchat("Beatrice", "occ-b", alicePup, "s1", "Is it possible?")
	first.OriginID = "b-1"
	say(first) // $ev1
	// Claudio, another occupant, tries to correct and retract her message.
	forged := groupchat("Claudio", "occ-c", alicePup, "s2", "It is not")
	forged.Replace = "b-1"
	say(forged)
	gone := groupchat("Claudio", "occ-c", alicePup, "s3", "")
	gone.Retract = "s1"
	say(gone)
	// Beatrice corrects it, by her own id; Claudio replies to it and
	// reacts to it, by the room's stanza-id; Beatrice reacts too.
	fix := groupchat("Beatrice", "occ-b", alicePup, "s4", "Is it possible, truly?")
	fix.Replace = "b-1"
	say(fix) // $ev2
	reply := groupchat("Claudio", "occ-c", alicePup, "s5", "It is")
	reply.Reply = &XMPPReply{To: lounge + "/Beatrice", ID: "s1"}
	say(reply) // $ev3
	react := func(nick, occ, sid string, keys ...string) {
		m := groupchat(nick, occ, alicePup, sid, "")
		m.Reactions = &XMPPReactions{ID: "s1", Keys: keys}
		say(m)
	}
	react("Claudio", "occ-c", "s6", "👍")  // $ev4
	react("Beatrice", "occ-b", "s7", "🎉") // $ev5: Claudio's 👍 stays
	react("Claudio", "occ-c", "s8")       // $ev6: his 👍 taken back, her 🎉 stays
	retract := groupchat("Beatrice", "occ-b", alicePup, "s9", "")
	retract.Retract = "s1"
	say(retract) // $ev7
	bea, _ := testIDs.OccupantGhost(jid.MustParse(lounge), "occ-b")
	claudio, _ := testIDs.OccupantGhost(jid.MustParse(lounge), "occ-c")
	var got []string
	for _, line := range h.matrix.texts {
		f := strings.Fields(line)
		got = append(got, strings.Join(f[1:len(f)-1], " "))
	}
	want := []string{
		string(bea) + " Is it possible?",
		string(bea) + " edit $ev1 Is it possible, truly?",
		string(claudio) + " reply $ev1 It is",
		string(claudio) + " react $ev1 👍",
		string(bea) + " react $ev1 🎉",
		string(claudio) + " redact $ev4",
		string(bea) + " redact $ev1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("posted\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if h.counts["xmpp_replace/"+string(ReasonNotAuthor)] != 1 || h.counts["xmpp_redact/"+string(ReasonNotAuthor)] != 1 {
		t.Errorf("counts %v: want Claudio's correction and retraction of Beatrice's message refused", h.counts)
	}
}

// What points at a message in a chat, from Matrix: Alice's edit of her
// message is a groupchat correction naming the id her puppet gave it
// (XEP-0308), her reply and reaction name the occupant's message by the
// room's stanza-id (XEP-0461 and XEP-0444, Business Rules), the reply's
// author being the occupant's JID (room/nick), and her reaction set is
// hers alone though Bob reacted too; her redaction of her reflected
// message retracts it by the stanza-id (XEP-0424); Bob's redaction of
// her message is a moderator's, not a retraction: his puppet asks the
// room to moderate it (XEP-0425, moderation_test.go), and no message
// retracts it.
func TestGroupRelationsFromMatrix(t *testing.T) {
	h := groupHarness(t, alice, bob)
	ctx := context.Background()
	if _, err := h.b.HandleXMPPMessage(ctx, groupchat("Beatrice", "occ-b", alicePup, "s1", "Is it possible?")); err != nil {
		t.Fatal(err)
	}
	h.drain(t) // $ev1
	h.matrixEvents(t, textEvent("$a1", alice, loungeRoom, "It is"))
	mine := h.xmpp.sent[0]
	var nick string
	for _, p := range h.xmpp.presences {
		if p.From.String() == aliceFrom {
			nick = p.To.Resourcepart()
		}
	}
	back := groupchat(nick, "own-"+nick, alicePup, "r1", mine.Body)
	back.OriginID = mine.OriginID
	if _, err := h.b.HandleXMPPMessage(ctx, back); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	h.xmpp.sent = nil
	h.matrixEvents(t, groupRel("$e1", alice, EventMessage, func(e *MatrixEvent) {
		e.Body = "* It is so"
		e.Rel = MatrixRelation{Type: RelTypeReplace, Event: "$a1", NewBody: "It is so", NewMsgType: MsgText}
	}))
	h.matrixEvents(t, groupRel("$p1", alice, EventMessage, func(e *MatrixEvent) { e.Body = "Truly"; e.Rel.ReplyTo = "$ev1" }))
	h.matrixEvents(t, groupRel("$x1", bob, EventReaction, func(e *MatrixEvent) {
		e.Rel = MatrixRelation{Type: RelTypeAnnotation, Event: "$ev1", Key: "🎉"}
	}))
	h.matrixEvents(t, groupRel("$x2", alice, EventReaction, func(e *MatrixEvent) {
		e.Rel = MatrixRelation{Type: RelTypeAnnotation, Event: "$ev1", Key: "👍"}
	}))
	h.matrixEvents(t, groupRel("$d1", bob, EventRedaction, func(e *MatrixEvent) { e.Redacts = "$a1" }))
	h.matrixEvents(t, groupRel("$d2", alice, EventRedaction, func(e *MatrixEvent) { e.Redacts = "$a1" }))
	sent := h.xmpp.sent
	if len(sent) != 5 {
		t.Fatalf("sent %d stanzas, want 5: %+v", len(sent), sent)
	}
	for _, m := range sent {
		if m.Type != TypeGroupchat || m.To.String() != lounge {
			t.Errorf("%+v is not a groupchat message to the room", m)
		}
	}
	if e := sent[0]; e.Replace != mine.OriginID || e.Body != "It is so" || e.From.String() != aliceFrom || e.Request != (Requests{Markable: true}) {
		t.Errorf("the edit is %+v, want a correction of %s, markable only", e, mine.OriginID)
	}
	if r := sent[1].Reply; r == nil || r.ID != "s1" || r.To.String() != lounge+"/Beatrice" {
		t.Errorf("the reply names %+v, want s1 by %s/Beatrice", r, lounge)
	}
	if r := sent[2].Reactions; r == nil || r.ID != "s1" || !slices.Equal(r.Keys, []string{"🎉"}) || sent[2].From.String() != bobPup+"/matrix" {
		t.Errorf("Bob's reactions are %+v from %s", r, sent[2].From)
	}
	if r := sent[3].Reactions; r == nil || r.ID != "s1" || !slices.Equal(r.Keys, []string{"👍"}) || sent[3].From.String() != aliceFrom {
		t.Errorf("Alice's reactions are %+v from %s, want her 👍 alone", r, sent[3].From)
	}
	if sent[4].Retract != "r1" || sent[4].From.String() != aliceFrom {
		t.Errorf("the retraction is %+v, want r1 by the room's stanza-id", sent[4])
	}
	if want := []string{bobPup + "/matrix " + lounge + " r1 "}; !slices.Equal(h.xmpp.moderations, want) {
		t.Errorf("moderations %q, want %q: Bob's redaction of Alice's message", h.xmpp.moderations, want)
	}
}

// XEP-0333 §3: only a markable message is marked. A read of a message
// that asked for no marker marks the newest one before it that did.
func TestGroupReadOfAnUnmarkableMessage(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	for _, c := range []struct {
		sid      string
		markable bool
	}{{"s1", true}, {"s2", true}, {"s3", false}} {
		m := groupchat("Beatrice", "occ-b", alicePup, c.sid, "line "+c.sid)
		m.Requests.Markable = c.markable
		if _, err := h.b.HandleXMPPMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	h.drain(t)
	h.xmpp.sent = nil
	if err := h.handleTxn(ctx, MatrixTxn{ID: "r1", Receipts: []Receipt{{Room: loungeRoom, Event: "$ev3", Type: ReceiptRead, User: alice}}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.sent) != 1 || !slices.Equal(h.xmpp.sent[0].Acks, []XMPPAck{{Wire: WireMarkerDisplayed, ID: "s2"}}) {
		t.Errorf("a read of an unmarkable message sent %+v, want one marker of s2", h.xmpp.sent)
	}
}

// XEP-0045 §7.2.15: a member's first join asks the chat for no history
// (what was said before stays on XMPP); a rejoin at a connection of the
// component asks for what was said since the portal's newest message,
// less a margin for the clocks (what comes twice is known by its
// stanza-id), and MaxHistory messages at most: what the bridge missed
// while it or its link was down.
func TestGroupRejoinAsksForWhatWasMissed(t *testing.T) {
	h := groupHarness(t, alice)
	ctx := context.Background()
	if j := h.xmpp.presences[0]; !j.JoinMUC || !j.HistorySince.IsZero() {
		t.Fatalf("the first join asks for history: %+v", j)
	}
	if _, err := h.b.HandleXMPPMessage(ctx, groupchat("Beatrice", "occ-b", alicePup, "s1", "Is it possible?")); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	last, err := h.store.LastInRoom(ctx, loungeRoom)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.b.Rejoin(ctx); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	j := h.xmpp.presences[len(h.xmpp.presences)-1]
	if !j.JoinMUC || !j.HistorySince.Equal(last.Add(-5*time.Minute)) {
		t.Errorf("the rejoin is %+v, want history since %s", j, last.Add(-5*time.Minute))
	}
	// The history's copy of a message known already is not posted again.
	if _, err := h.b.HandleXMPPMessage(ctx, groupchat("Beatrice", "occ-b", alicePup, "s1", "Is it possible?")); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.matrix.texts) != 1 {
		t.Errorf("posted %q, want Beatrice's message once", h.matrix.texts)
	}
}

// XEP-0410 §3: a puppet that has had no word from its chat for a while
// asks its own occupant JID whether it is still in. A result, or an
// error the puppet itself would give (<service-unavailable/>), says it
// is; <not-acceptable/> says it is not, and it joins again, asking for
// what it missed; an unreachable server says nothing. A chat heard from
// is not asked.
func TestGroupSelfPing(t *testing.T) {
	for _, tc := range []struct {
		answer *StanzaError
		rejoin bool
	}{
		{nil, false},
		{&StanzaError{Type: "cancel", Condition: "service-unavailable"}, false},
		{&StanzaError{Type: "cancel", Condition: "remote-server-not-found"}, false},
		{&StanzaError{Type: "modify", Condition: "not-acceptable"}, true},
		{&StanzaError{Type: "cancel", Condition: "item-not-found"}, true},
	} {
		name := "result"
		if tc.answer != nil {
			name = tc.answer.Condition
		}
		t.Run(name, func(t *testing.T) {
			h := groupHarness(t, alice)
			ctx := context.Background()
			now := time.Now()
			h.b.SetClock(func() time.Time { return now })
			h.xmpp.pingAnswer = func(jid.JID) error {
				if tc.answer == nil {
					return nil
				}
				return fmt.Errorf("%w: ping: %w", ErrPermanent, tc.answer)
			}
			nick := h.xmpp.presences[0].To.Resourcepart()
			h.b.SelfPing(ctx) // just heard from: nothing asked
			if len(h.xmpp.pings) != 0 {
				t.Fatalf("asked %q right after the join", h.xmpp.pings)
			}
			now = now.Add(SelfPingAfter)
			h.b.SelfPing(ctx)
			h.drain(t)
			if want := []string{aliceFrom + " " + lounge + "/" + nick}; !slices.Equal(h.xmpp.pings, want) {
				t.Fatalf("pings %q, want %q", h.xmpp.pings, want)
			}
			joins := len(h.xmpp.presences)
			if rejoined := joins == 2; rejoined != tc.rejoin {
				t.Fatalf("%d joins after the ping, want a rejoin: %v", joins, tc.rejoin)
			}
			if tc.rejoin && h.xmpp.presences[1].HistorySince.IsZero() {
				t.Errorf("the rejoin asks for no history: %+v", h.xmpp.presences[1])
			}
			h.b.SelfPing(ctx) // asked a moment ago: not again
			if len(h.xmpp.pings) != 1 {
				t.Errorf("asked again at once: %q", h.xmpp.pings)
			}
		})
	}
}

// XEP-0045 §9 status 333 (the room dropped the occupant over an error)
// and 332 (its service shuts down) are not the member's leaving: the
// puppet joins again, asking for what it missed; dropped again at once,
// it waits for the self-ping instead of a join a drop.
func TestGroupDroppedPuppetRejoins(t *testing.T) {
	for _, code := range []int{333, 332} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			h := groupHarness(t, alice)
			ctx := context.Background()
			self := h.xmpp.presences[0].To
			for range 2 {
				if _, err := h.b.HandleXMPPPresence(ctx, &XMPPPresence{From: self, To: jid.MustParse(aliceFrom), Type: PresenceUnavailable,
					MUC: &MUCPresence{Statuses: []int{110, code}}}); err != nil {
					t.Fatal(err)
				}
				h.drain(t)
			}
			if len(h.xmpp.presences) != 2 {
				t.Fatalf("%d presences, want the join and one rejoin: %+v", len(h.xmpp.presences), h.xmpp.presences)
			}
			if j := h.xmpp.presences[1]; !j.JoinMUC || j.HistorySince.IsZero() || !j.To.Equal(self) {
				t.Errorf("the rejoin is %+v", j)
			}
			if p, err := h.store.PortalByRoom(ctx, loungeRoom); err != nil || p.Member(MatrixMember(alice)) == nil {
				t.Errorf("Alice is no longer a member: %v", err)
			}
		})
	}
}

// XEP-0045 §6.4: the name a chat room gives itself (its conference
// identity) is the portal's name, asked by the first puppet in, once a
// run; a name past maxRoomName bytes is cut.
func TestGroupRoomName(t *testing.T) {
	h := newHarness(t)
	h.xmpp.roomName = "  Messina's " + strings.Repeat("lounge ", 60) // past 255 bytes
	h.b.Config().Receipts.SendToXMPP = true
	ctx := context.Background()
	if err := h.store.PutPortal(ctx, &Portal{RoomID: loungeRoom, Kind: PortalGroup, JID: jid.MustParse(lounge),
		Members: []Member{{ID: MatrixMember(testIDs.Bot())}}}); err != nil {
		t.Fatal(err)
	}
	for i, u := range []id.UserID{alice, bob} {
		if err := h.handleTxn(ctx, MatrixTxn{ID: fmt.Sprintf("join%d", i), Events: []MatrixEvent{memberEvent(u, loungeRoom, u, MembershipJoin)}}); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
		p := h.xmpp.presences[len(h.xmpp.presences)-1]
		if _, err := h.b.HandleXMPPPresence(ctx, &XMPPPresence{From: p.To, To: p.From, MUC: &MUCPresence{Statuses: []int{110}}}); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
	}
	if len(h.matrix.roomNames) != 1 {
		t.Fatalf("names set %q, want one", h.matrix.roomNames)
	}
	name := strings.TrimPrefix(h.matrix.roomNames[0], string(loungeRoom)+" ")
	if !strings.HasPrefix(name, "Messina's lounge") || len(name) > 255 {
		t.Errorf("the portal's name is %q (%d bytes)", name, len(name))
	}
}

// What an occupant is known by (their ghost), from the most to the least
// trustworthy. In a non-anonymous room every occupant's presence carries
// their real JID to every occupant, and the puppet's own presence says
// so with status 100 (XEP-0045 §7.2.3), after the others' (it is last of
// the join): an occupant is their real bare JID, whatever their nick: a
// nick change keeps the ghost, renamed, and another who takes the nick
// they left is someone else. In a semi-anonymous room only moderators
// see real JIDs (§7.2.4): a puppet that is one does not show them to the
// portal in ghosts' IDs, and the occupant is their nick. Where the room
// gives a XEP-0421 occupant-id, that comes first: stable, one per real
// bare JID, which no one else can take (XEP-0421 §4, Business Rules).
func TestOccupantKeys(t *testing.T) {
	withJID := func(nick, occ, real string) *XMPPPresence {
		p := occupantIn(nick, occ, alicePup)
		p.MUC.RealJID = jid.MustParse(real + "/orchard")
		return p
	}
	join := func(t *testing.T, statuses ...int) (*harness, *XMPPPresence) {
		t.Helper()
		h := groupHarness(t)
		h.matrixEvents(t, memberEvent(alice, loungeRoom, alice, MembershipJoin))
		self := &XMPPPresence{From: jid.MustParse(lounge + "/" + puppetNickOf(t, h, aliceFrom)), To: jid.MustParse(alicePup),
			MUC: &MUCPresence{Statuses: append(statuses, 110), Role: "participant"}}
		return h, self
	}
	posted := func(h *harness) []string {
		var got []string
		for _, line := range h.matrix.texts {
			f := strings.Fields(line)
			got = append(got, strings.Join(f[1:len(f)-1], " "))
		}
		return got
	}

	t.Run("non-anonymous", func(t *testing.T) {
		h, self := join(t, 100)
		h.feed(t, withJID("Romeo", "", "romeo@montague.lit"), self)
		romeo := ghostOf(t, "romeo@montague.lit")
		if !slices.Contains(h.matrix.joins, string(loungeRoom)+" "+string(romeo)) {
			t.Fatalf("joins %q, want Romeo's ghost by his real JID", h.matrix.joins)
		}
		// §7.6: a nick change keeps him; the nick he left is another's.
		out := occupantOut("Romeo", "", alicePup, MUCPresence{Statuses: []int{303}, NewNick: "Montague", RealJID: jid.MustParse("romeo@montague.lit/orchard")})
		h.feed(t, out, withJID("Montague", "", "romeo@montague.lit"),
			groupchat("Montague", "", alicePup, "s1", "Wherefore?"),
			withJID("Romeo", "", "tybalt@capulet.lit"), groupchat("Romeo", "", alicePup, "s2", "I am Romeo now"))
		tybalt := ghostOf(t, "tybalt@capulet.lit")
		want := []string{string(romeo) + " Wherefore?", string(tybalt) + " I am Romeo now"}
		if got := posted(h); !slices.Equal(got, want) {
			t.Errorf("posted %q, want %q", got, want)
		}
		if len(h.matrix.leaves) != 0 || h.matrix.ghostNames[len(h.matrix.ghostNames)-2] != string(romeo)+" Montague" {
			t.Errorf("leaves %q, names %q: want Romeo's ghost renamed, not gone", h.matrix.leaves, h.matrix.ghostNames)
		}
	})
	t.Run("semi-anonymous", func(t *testing.T) {
		h, self := join(t)
		self.MUC.Role = "moderator" // so the room shows her puppet real JIDs
		h.feed(t, withJID("Romeo", "", "romeo@montague.lit"), self, groupchat("Romeo", "", alicePup, "s1", "Wherefore?"))
		if want := []string{string(ghostOf(t, "Romeo")) + " Wherefore?"}; !slices.Equal(posted(h), want) {
			t.Errorf("posted %q, want %q: by nick, his real JID not shown", posted(h), want)
		}
	})
	t.Run("occupant-id first", func(t *testing.T) {
		h, self := join(t, 100)
		h.feed(t, withJID("Romeo", "occ-r", "romeo@montague.lit"), self, groupchat("Romeo", "occ-r", alicePup, "s1", "Wherefore?"))
		if want := []string{string(ghostOf(t, "occ-r")) + " Wherefore?"}; !slices.Equal(posted(h), want) {
			t.Errorf("posted %q, want %q", posted(h), want)
		}
	})
}

// XEP-0045 §7.2.15: the history a join receives carries the room's
// XEP-0203 <delay/> (§4: from the room, stamped when it was said); its
// messages reach Matrix at that time (the send's ts, the application
// service API's timestamp massaging) and keep it in the id map. A
// message without one is posted as it comes; a stamp later than now,
// before 1970 (no origin_server_ts) or no date at all is not believed:
// the message is posted as it comes, counted.
func TestGroupHistoryKeepsItsTime(t *testing.T) {
	h := groupHarness(t, alice)
	now := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	h.b.SetClock(func() time.Time { return now })
	said := time.Date(2026, 12, 7, 18, 58, 37, 0, time.UTC)
	ctx := context.Background()
	feed := func(sid string, d *XMPPDelay) {
		t.Helper()
		m := groupchat("firstwitch", "occ-1", alicePup, sid, "Thrice the brinded cat hath mew'd.")
		m.Delay = d
		h.feed(t, m)
	}
	feed("h1", &XMPPDelay{Stamp: said})
	feed("h2", nil)
	feed("h3", &XMPPDelay{Stamp: now.Add(time.Hour)})
	feed("h4", &XMPPDelay{Bad: true})
	feed("h5", &XMPPDelay{Stamp: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)}) // "0001-01-01T00:00:00Z" parses
	want := []time.Time{said, {}, {}, {}, {}}
	if !slices.EqualFunc(h.matrix.stamps, want, time.Time.Equal) {
		t.Errorf("posted at %v, want %v", h.matrix.stamps, want)
	}
	for sid, at := range map[string]time.Time{"h1": said, "h2": now, "h3": now, "h4": now, "h5": now} {
		if msg, err := h.store.MessageByXMPPID(ctx, jid.MustParse(lounge), sid, FromXMPP); err != nil || !msg.TS.Equal(at) {
			t.Errorf("%s kept at %v (%v), want %v", sid, msg.TS, err, at)
		}
	}
	if h.counts["muc_history/stamped"] != 1 || h.counts["muc_history/future_stamp"] != 1 || h.counts["muc_history/bad_stamp"] != 2 {
		t.Errorf("counts %v", h.counts)
	}
}
