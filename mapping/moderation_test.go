package mapping_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// The rules of moderation in group portals (moderation.go, XEP-0425 0.2
// as Prosody's mod_muc_moderation speaks it) on the core with fakes;
// against Prosody and Dendrite, e2e/moderation_test.go.

// moderated is the room lounge's broadcast (XEP-0425 0.2 §3.1) to the
// puppet to that the moderator by (an occupant JID, "" for none)
// retracted the message of stanza-id sid, the broadcast itself stamped
// with the room's stanza-id own.
func moderated(to, sid, by, reason, own string) *XMPPMessage {
	return &XMPPMessage{ID: "mod-" + own, From: jid.MustParse(lounge), To: jid.MustParse(to), Type: TypeGroupchat, StanzaID: own,
		Moderation: &XMPPModeration{ID: sid, By: by, Reason: reason}}
}

// puppetNickOf is the nick the puppet of from (its full JID) joined the
// lounge with.
func puppetNickOf(t *testing.T, h *harness, from string) string {
	t.Helper()
	for _, p := range h.xmpp.presences {
		if p.From.String() == from && p.JoinMUC {
			return p.To.Resourcepart()
		}
	}
	t.Fatalf("%s never joined", from)
	return ""
}

// XEP-0425 §3: a member's redaction of a message someone else sent in the
// portal (here an occupant's) is their puppet's request to the room to
// retract it, naming it by the room's stanza-id, with the redaction's
// reason; her redaction of her own message is a retraction (XEP-0424),
// not a moderation; a redaction of an occupant's reaction is none (§5: a
// moderation is of a message); a redaction the homeserver hands over
// twice asks once.
func TestModerationFromMatrix(t *testing.T) {
	h := groupHarness(t, alice)
	h.feed(t, groupchat("Beatrice", "occ-b", alicePup, "s1", "DM me for free magic potions!"))
	react := groupchat("Beatrice", "occ-b", alicePup, "s2", "")
	react.Reactions = &XMPPReactions{ID: "s1", Keys: []string{"🧪"}}
	h.feed(t, react) // $ev2
	redact := groupRel("$d1", alice, EventRedaction, func(e *MatrixEvent) {
		e.Redacts, e.Body = "$ev1", "This message contains inappropriate content for this forum"
	})
	h.matrixEvents(t, redact)
	h.matrixEvents(t, redact)
	h.matrixEvents(t, groupRel("$d2", alice, EventRedaction, func(e *MatrixEvent) { e.Redacts = "$ev2" }))
	want := []string{aliceFrom + " " + lounge + " s1 This message contains inappropriate content for this forum"}
	if !slices.Equal(h.xmpp.moderations, want) {
		t.Errorf("moderations %q,\nwant %q", h.xmpp.moderations, want)
	}
	if len(h.xmpp.sent) != 0 {
		t.Errorf("sent %+v: a moderation is no message", h.xmpp.sent)
	}
	if h.counts["matrix_moderate/sent"] != 1 || h.counts["matrix_moderate/"+string(ReasonNotMessage)] != 1 {
		t.Errorf("counts %v: want one moderation sent, the reaction's refused", h.counts)
	}
	// Her own message: a retraction (XEP-0424), as before.
	h.matrixEvents(t, textEvent("$a1", alice, loungeRoom, "Fair is foul"))
	h.matrixEvents(t, groupRel("$d3", alice, EventRedaction, func(e *MatrixEvent) { e.Redacts = "$a1" }))
	if len(h.xmpp.moderations) != 1 || len(h.xmpp.sent) != 2 || h.xmpp.sent[1].Retract == "" {
		t.Errorf("her own message's redaction: moderations %q, sent %+v", h.xmpp.moderations, h.xmpp.sent)
	}
}

// XEP-0425 §3.2: the room refuses a puppet that is no moderator with an
// error (Prosody: <forbidden/>, type auth). The member is told in the
// portal by the bot and by a failure status on her redaction, and it is
// counted; nothing is asked again. A message the room never named by a
// stanza-id of its own cannot be named to it: the same, without asking.
func TestModerationRefused(t *testing.T) {
	h := groupHarness(t, alice)
	h.xmpp.moderateAnswer = fmt.Errorf("%w: moderation of %s: %w", ErrPermanent, lounge, &StanzaError{Type: "auth", Condition: "forbidden"})
	h.feed(t, groupchat("Beatrice", "occ-b", alicePup, "s1", "DM me for free magic potions!"))
	noID := groupchat("Beatrice", "occ-b", alicePup, "", "Mine has no stanza-id")
	noID.ID = "plain-1"
	h.feed(t, noID) // $ev2
	h.matrixEvents(t, groupRel("$d1", alice, EventRedaction, func(e *MatrixEvent) { e.Redacts = "$ev1" }))
	h.matrixEvents(t, groupRel("$d2", alice, EventRedaction, func(e *MatrixEvent) { e.Redacts = "$ev2" }))
	if len(h.xmpp.moderations) != 1 {
		t.Errorf("moderations %q, want the one with a stanza-id, once", h.xmpp.moderations)
	}
	wantFailures := []string{string(loungeRoom) + " $d1 false forbidden", string(loungeRoom) + " $d2 false no_stanza_id"}
	if !slices.Equal(h.matrix.failures, wantFailures) {
		t.Errorf("failures %q, want %q", h.matrix.failures, wantFailures)
	}
	var told []string
	for _, n := range h.matrix.notices {
		if strings.HasPrefix(n, string(loungeRoom)+" "+string(testIDs.Bot())+" ") && strings.Contains(n, "did not retract the message") {
			told = append(told, n)
		}
	}
	if len(told) != 2 || !strings.Contains(told[0], "not one of its moderators") || !strings.Contains(told[1], "never gave that message an id") {
		t.Errorf("the bot said %q", told)
	}
	if h.counts["matrix_moderate/refused_forbidden"] != 1 || h.counts["matrix_moderate/refused_no_stanza_id"] != 1 {
		t.Errorf("counts %v: want both refusals counted", h.counts)
	}
}

// XEP-0425 §3.1: the room's broadcast that a moderator retracted a
// message (in every puppet's copy, and again in a rejoin's history) is
// one redaction of its event, with the reason: by the bot where the
// moderator's ghost may not redact others' events (a ghost has no power
// of its own), by the ghost where it may; a moderator the bridge does
// not know is the bot's. The message may be a member's (the room names
// it by its stanza-id too).
func TestModerationFromMUC(t *testing.T) {
	h := groupHarness(t, alice, bob)
	claudio := ghostOf(t, "occ-c")
	h.feed(t, occupantIn("Claudio", "occ-c", alicePup),
		groupchat("Beatrice", "occ-b", alicePup, "s1", "DM me for free magic potions!"),
		groupchat("Beatrice", "occ-b", alicePup, "s2", "And more"))
	for _, to := range []string{alicePup, bobPup, alicePup} {
		h.feed(t, moderated(to, "s1", lounge+"/Claudio", "Spam", "m1"))
	}
	h.matrix.mayModerate = func(u id.UserID) bool { return u == claudio }
	h.feed(t, moderated(alicePup, "s2", lounge+"/Claudio", "", "m2"))
	h.matrix.mayModerate = nil
	h.feed(t, moderated(alicePup, "s1x", lounge+"/Claudio", "", "m3")) // names nothing
	// A member's message, reflected: the room names it by its stanza-id.
	h.matrixEvents(t, textEvent("$a1", alice, loungeRoom, "It is"))
	back := groupchat(puppetNickOf(t, h, aliceFrom), "own-a", alicePup, "r1", h.xmpp.sent[0].Body)
	back.OriginID = h.xmpp.sent[0].OriginID
	h.feed(t, back, moderated(alicePup, "r1", lounge+"/Someone", "", "m4"))
	var got []string
	for _, line := range h.matrix.texts {
		if strings.Contains(line, " moderate ") {
			f := strings.Fields(line)
			got = append(got, strings.Join(f[1:len(f)-1], " "))
		}
	}
	bot := string(testIDs.Bot())
	want := []string{bot + " moderate $ev1 Spam", string(claudio) + " moderate $ev2", bot + " moderate $a1"}
	if !slices.Equal(got, want) {
		t.Errorf("redactions\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if h.counts["xmpp_moderate/"+string(ReasonDuplicate)] != 1 || h.counts["xmpp_message/"+string(ReasonNotListener)] < 1 ||
		h.counts["xmpp_moderate/"+string(ReasonUnknownID)] != 1 {
		t.Errorf("counts %v: want the replay a duplicate, Bob's copy not taken, the unknown id counted", h.counts)
	}
}

// XEP-0425 §5 (Business Rules): "only moderation messages ... received
// from the MUC service itself are legitimate, all other such messages
// MUST be discarded", and §6: an occupant who claims a moderation, in
// the room or to a puppet directly, retracts nothing, counted. The
// room's broadcast of a puppet's own moderation is the member's
// redaction, already on Matrix: nothing more.
func TestModerationOnlyByTheRoom(t *testing.T) {
	h := groupHarness(t, alice)
	h.feed(t, groupchat("Beatrice", "occ-b", alicePup, "s1", "Is it possible?"))
	forged := moderated(alicePup, "s1", lounge+"/Claudio", "", "f1")
	forged.From = jid.MustParse(lounge + "/Claudio")
	direct := moderated(alicePup, "s1", lounge+"/Claudio", "", "f2")
	direct.From, direct.Type = jid.MustParse(julietJID+"/balcony"), TypeChat
	own := moderated(alicePup, "s1", lounge+"/"+puppetNickOf(t, h, aliceFrom), "", "f3")
	h.feed(t, forged, direct, own)
	for _, line := range h.matrix.texts[1:] {
		t.Errorf("posted %q", line)
	}
	if h.counts["xmpp_moderate/"+string(ReasonNotRoom)] != 2 || h.counts["xmpp_moderate/"+string(ReasonOwnReflection)] != 1 {
		t.Errorf("counts %v: want the occupant's and the person's refused, the puppet's own counted", h.counts)
	}
}

// A member may redact others' events in the portal only with the power
// to, which the bot gives to a member whose puppet the chat makes a
// moderator (XEP-0045 §5.1; mod_muc_moderation asks for that role), as
// their puppet's own presence (status 110) says, once, and takes back
// when the chat does.
func TestModeratorPowerFollowsTheRole(t *testing.T) {
	h := groupHarness(t, alice)
	self := func(role string) *XMPPPresence {
		nick := puppetNickOf(t, h, aliceFrom)
		return &XMPPPresence{From: jid.MustParse(lounge + "/" + nick), To: jid.MustParse(alicePup), MUC: &MUCPresence{Statuses: []int{110}, Role: role}}
	}
	h.feed(t, self("moderator"), self("moderator"), self("participant"), self("participant"))
	want := []string{string(loungeRoom) + " " + string(alice) + " true", string(loungeRoom) + " " + string(alice) + " false"}
	if !slices.Equal(h.matrix.moderators, want) {
		t.Errorf("powers set %q, want %q", h.matrix.moderators, want)
	}
}
