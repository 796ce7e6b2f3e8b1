package mapping_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// The bot's commands (docs/users.md), in Alice's management room: each gets
// one m.notice from the bot; a bad address creates nothing; settings
// change what crosses.

const mgmt = id.RoomID("!bot:example.org")

// botRoom has Alice invite the bot to a DM, which it joins.
func botRoom(t *testing.T, h *harness) {
	t.Helper()
	bot := testIDs.Bot()
	h.matrixEvents(t, MatrixEvent{ID: "$inv", Room: mgmt, Sender: alice, Kind: EventMember, Type: "m.room.member", Target: bot, Membership: MembershipInvite})
	if want := string(mgmt) + " " + string(bot); len(h.matrix.joins) != 1 || h.matrix.joins[0] != want {
		t.Fatalf("joins %q, want the bot in %s", h.matrix.joins, mgmt)
	}
	h.matrix.notices = nil // the welcome
}

// say sends Alice's text to room and returns the bot's answer.
func (h *harness) say(t *testing.T, room id.RoomID, text string) string {
	t.Helper()
	before := len(h.matrix.notices)
	evt := textEvent(fmt.Sprintf("$c%d", len(h.matrix.texts)+len(h.matrix.notices)+len(h.xmpp.sent)), alice, room, text)
	h.matrixEvents(t, evt)
	if len(h.matrix.notices) != before+1 {
		t.Fatalf("%q: answered %q, want one notice", text, h.matrix.notices[before:])
	}
	n := h.matrix.notices[before]
	prefix := string(room) + " " + string(testIDs.Bot()) + " "
	if !strings.HasPrefix(n, prefix) {
		t.Fatalf("%q: the answer %q is not the bot's in %s", text, n, room)
	}
	return strings.TrimPrefix(n, prefix)
}

func TestBotCommands(t *testing.T) {
	h := newHarness(t)
	botRoom(t, h)
	for _, c := range []struct{ say, want string }{
		{"help", "start <jid>"},
		{"ping", "Pong."},
		{"!xmpp ping", "Pong."},
		{"list", "no chats"},
		{"start not a jid", "is not the address of an XMPP person"},
		{"start juliet@capulet.lit/balcony", "is not the address of an XMPP person"},
		{"start someone@matrix.example.org", "Matrix user"},
		{"start x@spam.example", "does not talk to"},
		{"frobnicate", "I do not know frobnicate"},
		{"receipts maybe", "receipts on or receipts off"},
	} {
		if got := h.say(t, mgmt, c.say); !strings.Contains(got, c.want) {
			t.Errorf("%q: %q, want it to say %q", c.say, got, c.want)
		}
	}
	if h.matrix.rooms != 0 {
		t.Fatalf("%d rooms created by refused starts", h.matrix.rooms)
	}
	// start opens the portal, as the ghost, and says where.
	h.matrixEvents(t, textEvent("$start", alice, mgmt, "start juliet@capulet.lit"))
	p, err := h.store.PortalByPair(context.Background(), alice, jid.MustParse(julietJID))
	if err != nil || h.matrix.rooms != 1 || !strings.Contains(h.matrix.created[0], string(julietGhost)) {
		t.Fatalf("portal %+v %v, rooms created %q", p, err, h.matrix.created)
	}
	if last := h.matrix.notices[len(h.matrix.notices)-1]; !strings.Contains(last, "Opened a chat with juliet@capulet.lit") || !strings.Contains(last, string(p.RoomID)) {
		t.Errorf("answer %q", last)
	}
	if got := h.say(t, mgmt, "start juliet@capulet.lit"); !strings.Contains(got, "already have a chat") || h.matrix.rooms != 1 {
		t.Errorf("a second start: %q, %d rooms", got, h.matrix.rooms)
	}
	if got := h.say(t, mgmt, "list"); !strings.Contains(got, "juliet@capulet.lit") || !strings.Contains(got, string(p.RoomID)) {
		t.Errorf("list: %q", got)
	}
	// In a portal a command starts with !xmpp and is not bridged.
	if got := h.say(t, p.RoomID, "!xmpp ping"); got != "Pong." || len(h.xmpp.sent) != 0 {
		t.Errorf("in the portal: %q, sent to XMPP %d", got, len(h.xmpp.sent))
	}
}

// receipts off: none of Alice's receipts reach XMPP (the m.read of a
// message that asked for XEP-0184 and XEP-0333), while Juliet's receipts
// still reach Alice; on again, they cross again. typing off likewise.
func TestBotReceiptAndTypingSettings(t *testing.T) {
	h := newHarness(t)
	botRoom(t, h)
	all := Requests{Receipt: true, Displayed: true, Markable: true, Composing: true}
	evs := fromJuliet(t, h, 2, all)
	h.say(t, mgmt, "receipts off")
	h.say(t, mgmt, "typing off")
	h.xmpp.sent = nil
	h.handleTxn(context.Background(), MatrixTxn{ID: "r1", Receipts: []Receipt{receiptEvent(dm, evs[0], ReceiptRead, alice, "")}, Typing: []Typing{{Room: dm, Users: []id.UserID{alice}}}})
	h.drain(t)
	if len(h.xmpp.sent) != 0 {
		t.Fatalf("with receipts and typing off, sent %+v", h.xmpp.sent)
	}
	ids := sentToJuliet(t, h, 1)
	h.handle(t, receipt(func(m *XMPPMessage) { m.Acks = append(m.Acks, XMPPAck{Wire: WireMarkerDisplayed, ID: ids[0]}) })) // XEP-0333
	if len(h.matrix.reads) == 0 {
		t.Error("Juliet's receipt did not reach Alice with her receipts off")
	}
	h.say(t, mgmt, "receipts on")
	h.xmpp.sent = nil
	h.handleTxn(context.Background(), MatrixTxn{ID: "r2", Receipts: []Receipt{receiptEvent(dm, evs[1], ReceiptRead, alice, "")}})
	h.drain(t)
	if len(h.xmpp.sent) == 0 {
		t.Fatal("with receipts on again, nothing sent")
	}
	// A bridge started again keeps what she set (typing off).
	s, _ := h.store.UserSettings(context.Background())
	if v := s[alice]; v.Typing == nil || *v.Typing || v.Receipts == nil || !*v.Receipts {
		t.Errorf("stored settings %+v", v)
	}
}

// A receipt reaches the bridge by another road than the commands (a
// synced or pushed m.receipt, a transaction's timeline), so one Alice made
// while her receipts were off can arrive after her "receipts on". Its ts
// says when she made it: made before the command, it stays home; made
// after, it crosses. (Seen on Dendrite: the e2e bot test.)
func TestReceiptsOnJudgesByWhenTheReceiptWasMade(t *testing.T) {
	h := newHarness(t)
	botRoom(t, h)
	all := Requests{Receipt: true, Displayed: true, Markable: true}
	evs := fromJuliet(t, h, 2, all)
	h.say(t, mgmt, "receipts off")
	on := textEvent("$on", alice, mgmt, "receipts on") // at 1700000000000
	h.matrixEvents(t, on)
	h.xmpp.sent = nil
	early := receiptEvent(dm, evs[0], ReceiptRead, alice, "")
	early.TS = on.TS.Add(-time.Millisecond)
	h.handleTxn(context.Background(), MatrixTxn{ID: "r1", Receipts: []Receipt{early}})
	h.drain(t)
	if len(h.xmpp.sent) != 0 {
		t.Fatalf("a read made while receipts were off crossed: %+v", h.xmpp.sent)
	}
	late := receiptEvent(dm, evs[1], ReceiptRead, alice, "")
	late.TS = on.TS
	h.handleTxn(context.Background(), MatrixTxn{ID: "r2", Receipts: []Receipt{late}})
	h.drain(t)
	if len(h.xmpp.sent) == 0 {
		t.Fatal("a read made once receipts were on did not cross")
	}
	// The time is kept, as a restarted bridge must judge alike.
	s, _ := h.store.UserSettings(context.Background())
	if v := s[alice]; !v.ReceiptsOnSince.Equal(on.TS) {
		t.Errorf("stored settings %+v, want receipts on since %v", v, on.TS)
	}
	// "receipts on" again, while on, does not move the time: what she
	// read between the two was hers to share.
	later := textEvent("$on2", alice, mgmt, "receipts on")
	later.TS = on.TS.Add(time.Minute)
	h.matrixEvents(t, later)
	if s, _ := h.store.UserSettings(context.Background()); !s[alice].ReceiptsOnSince.Equal(on.TS) {
		t.Errorf("a second receipts on moved the time to %v", s[alice].ReceiptsOnSince)
	}
}

// A stranger's invite of the bot is declined with a reason, once.
func TestBotDeclinesStrangers(t *testing.T) {
	h := newHarness(t)
	h.matrixEvents(t, MatrixEvent{ID: "$inv", Room: "!x:evil.example", Sender: "@eve:evil.example", Kind: EventMember, Type: "m.room.member", Target: testIDs.Bot(), Membership: MembershipInvite})
	if len(h.matrix.joins) != 0 || len(h.matrix.leaves) != 1 || !strings.HasSuffix(h.matrix.leaves[0], BotDeclineReason) {
		t.Fatalf("joins %q leaves %q", h.matrix.joins, h.matrix.leaves)
	}
}
