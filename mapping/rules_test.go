package mapping_test

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// mayAnswer, the XMPP → Matrix rule, case by case.
func TestMayAnswer(t *testing.T) {
	ours := &Message{MXID: alice, Requests: Requests{Receipt: true}}
	receipt := func(r Requests) bool { return r.Receipt }
	displayed := func(r Requests) bool { return r.Displayed }
	for _, tc := range []struct {
		name  string
		msg   *Message
		asked func(Requests) bool
		want  Reason
	}{
		{"a receipt the message asked for (XEP-0184 §5)", ours, receipt, ""},
		{"no message by that id to that bare JID: forged or misdirected", nil, receipt, ReasonUnknownID},
		{"addressed to another puppet than the sender's", &Message{MXID: "@bob:example.org", Requests: Requests{Receipt: true}}, receipt, ReasonWrongPuppet},
		{"an event the message did not ask for (XEP-0022 §2.1)", ours, displayed, ReasonUnsolicited},
		{"an error, which needs no asking (RFC 6120 §8.3)", ours, nil, ""},
		{"an error about a message never sent", nil, nil, ReasonUnknownID},
	} {
		if got := MayAnswer(tc.msg, alice, tc.asked); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// mayCross, the Matrix → XMPP rule, case by case.
func TestMayCross(t *testing.T) {
	b := New(Config{Identities: testIDs, Receipts: ReceiptPolicy{SendToXMPP: true, Overrides: map[id.UserID]bool{"@shy:example.org": false}}}, nil, nil, zerolog.Nop())
	juliet := jid.MustParse(julietJID)
	created := time.Unix(1_700_000_000, 0)
	portal := DirectPortal(dm, alice, juliet, created)
	shyPortal := DirectPortal("!shy:example.org", "@shy:example.org", juliet, created)
	fromJuliet := &Message{RoomID: dm, PeerJID: juliet, Direction: FromXMPP, TS: created.Add(time.Minute)}
	read := Receipt{Room: dm, Event: "$e", Type: ReceiptRead, User: alice}
	with := func(f func(*Receipt)) Receipt { r := read; f(&r); return r }
	for _, tc := range []struct {
		name   string
		rc     Receipt
		portal *Portal
		msg    *Message
		kind   AckKind
		want   Reason
	}{
		{"m.read of the portal's user (receipts module)", read, portal, fromJuliet, AckDisplayed, ""},
		{"m.delivery (MSC4089)", with(func(r *Receipt) { r.Type = ReceiptDelivery }), portal, fromJuliet, AckDelivered, ""},
		{"MSC4089's unstable name", with(func(r *Receipt) { r.Type = ReceiptDeliveryUnstable }), portal, fromJuliet, AckDelivered, ""},
		{"the main thread", with(func(r *Receipt) { r.Thread = ThreadMain }), portal, fromJuliet, AckDisplayed, ""},
		{"m.read.private never leaves Matrix", with(func(r *Receipt) { r.Type = ReceiptReadPrivate }), portal, fromJuliet, "", ReasonPrivate},
		{"a type the bridge does not read", with(func(r *Receipt) { r.Type = "com.example.seen" }), portal, fromJuliet, "", ReasonUnknownType},
		{"a ghost's receipt makes no receipt", with(func(r *Receipt) { r.User = julietGhost }), portal, fromJuliet, AckDisplayed, ReasonOwn},
		{"the bot's", with(func(r *Receipt) { r.User = testIDs.Bot() }), portal, fromJuliet, AckDisplayed, ReasonOwn},
		{"another thread", with(func(r *Receipt) { r.Thread = "$root" }), portal, fromJuliet, AckDisplayed, ReasonThread},
		{"not a portal", read, nil, fromJuliet, AckDisplayed, ReasonNotPortal},
		{"another user of the room", with(func(r *Receipt) { r.User = "@bob:example.org" }), portal, fromJuliet, AckDisplayed, ReasonNotPortalUser},
		{"a user who turned receipts off", with(func(r *Receipt) { r.Room, r.User = "!shy:example.org", "@shy:example.org" }), shyPortal, fromJuliet, AckDisplayed, ReasonDisabled},
		{"an event the id map does not know (yet)", read, portal, nil, AckDisplayed, ReasonUnknownEvent},
		{"a message from Matrix", read, portal, &Message{RoomID: dm, PeerJID: juliet, Direction: FromMatrix, TS: created}, AckDisplayed, ReasonNotFromXMPP},
		{"a message of another room", read, portal, &Message{RoomID: "!else:example.org", PeerJID: juliet, Direction: FromXMPP, TS: created}, AckDisplayed, ReasonNotFromXMPP},
		{"before the invite (MSC4089)", read, portal, &Message{RoomID: dm, PeerJID: juliet, Direction: FromXMPP, TS: created.Add(-time.Hour)}, AckDisplayed, ReasonBeforeInvite},
	} {
		kind, got := b.MayCross(tc.rc, tc.portal, tc.msg)
		if got != tc.want || (got == "" && kind != tc.kind) {
			t.Errorf("%s: %v %q, want %v %q", tc.name, kind, got, tc.kind, tc.want)
		}
	}
}
