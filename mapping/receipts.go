package mapping

import (
	"sync"
	"sync/atomic"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/internal/retry"
)

// The receipt table: every receipt the bridge carries, both ways, what it
// is on each wire, who may send it, to whom it may cross and what "up to"
// means. The rest of the code carries out what this file decides: the
// sides decode and encode the wire forms, the store keeps the marks.
//
// XMPP → Matrix (xmppReceiptKinds; mayAnswer says who may send one):
//
//	XEP-0184 <received id/>          → m.delivery (MSC4089) of the sender's ghost, per message
//	XEP-0022 <x><delivered/><id/>    → m.delivery, per message
//	XEP-0022 <x><displayed/><id/>    → the ghost's m.read, up to the message
//	XEP-0333 <displayed id/>         → the ghost's m.read, up to the message
//
// Each only about a message that asked for it, sent to the bare JID it
// comes from, by the puppet it is addressed to. An m.read is "up to"
// (Matrix receipts module): the ghost's read moves the XMPP member's
// watermark forward, and an older one after a newer raises nothing.
// Where the homeserver has no MSC4089, a delivery is the bot's
// com.beeper.message_send_status on the message (matrixside/receipts.go
// chooses the wire, docs/protocols.md says why).
//
// Matrix → XMPP (matrixReceiptKinds; mayCross says who may send one):
//
//	m.delivery, its unstable MSC4089 name → what the message asked on delivery (deliveryStanzas):
//	                                       XEP-0184 <received/>, XEP-0022 <delivered/>
//	m.read (up to the event)             → for every unread message up to it, oldest first, what it
//	                                       asked on delivery if never said (read implies delivered),
//	                                       XEP-0022 <displayed/> (capped), then one XEP-0333
//	                                       <displayed/> for the newest markable (displayedStanzas)
//	m.read.private                       → nothing: it never leaves Matrix
//
// Each only of a Matrix member of the portal whose receipts are on,
// about a message from XMPP after the member's invite (MSC4089). An m.read
// moves that member's watermarks: everything up to it is displayed (and
// delivered) for them, and nothing up to it is told again.

// xmppReceiptKind is one row of the XMPP → Matrix table: its form on the
// wire, what it records, what it sends, and which request it needs.
type xmppReceiptKind struct {
	wire  ReceiptWire
	ack   AckKind
	job   JobKind
	asked func(Requests) bool
}

var (
	// XEP-0184 §5: <received id='X'/> acknowledges message X.
	kindReceived = &xmppReceiptKind{WireReceived, AckDelivered, JobMatrixDelivery, func(r Requests) bool { return r.Receipt }}
	// XEP-0022 §3.2: an event about message <id/>, which must have asked
	// for it (§2.1: unsolicited events are illegal).
	kindEventDelivered = &xmppReceiptKind{WireEventDelivered, AckDelivered, JobMatrixDelivery, func(r Requests) bool { return r.Delivered }}
	kindEventDisplayed = &xmppReceiptKind{WireEventDisplayed, AckDisplayed, JobMatrixRead, func(r Requests) bool { return r.Displayed }}
	// XEP-0333 §3: displayed marker; our messages are all markable.
	kindMarkerDisplayed = &xmppReceiptKind{WireMarkerDisplayed, AckDisplayed, JobMatrixRead, func(r Requests) bool { return r.Markable }}
)

// xmppReceiptKinds are the rows, in the order a message's receipts are
// taken (a delivery before a display of the same message). XEP-0022's
// offline event has none: the bridge only ever sends it (offlineEvent).
var xmppReceiptKinds = []*xmppReceiptKind{kindReceived, kindEventDelivered, kindEventDisplayed, kindMarkerDisplayed}

// receiptsIn calls take for each receipt m carries that the table knows,
// in the table's order.
func receiptsIn(m *XMPPMessage, take func(kind *xmppReceiptKind, xid string)) {
	for _, kind := range xmppReceiptKinds {
		for _, a := range m.Acks {
			if a.Wire == kind.wire && a.ID != "" {
				take(kind, a.ID)
			}
		}
	}
}

// carriesReceipt tells whether m carries a receipt the table knows.
func carriesReceipt(m *XMPPMessage) bool {
	carries := false
	receiptsIn(m, func(*xmppReceiptKind, string) { carries = true })
	return carries
}

// matrixReceiptKind is one row of the Matrix → XMPP table.
type matrixReceiptKind struct {
	// ack is what the receipt says of its event, for the member who sent
	// it; upTo, that it says so of every earlier message of the room too.
	ack  AckKind
	upTo bool
	// stays, if set, is why a receipt of the kind never leaves Matrix.
	stays Reason
}

var matrixReceiptKinds = map[ReceiptType]matrixReceiptKind{
	// Matrix receipts module: m.read is "up to" the event.
	ReceiptRead: {ack: AckDisplayed, upTo: true},
	// MSC4089: a delivery receipt is of one event.
	ReceiptDelivery:         {ack: AckDelivered},
	ReceiptDeliveryUnstable: {ack: AckDelivered},
	// Matrix receipts module: private read receipts are not shown to
	// other users, so none leaves Matrix.
	ReceiptReadPrivate: {ack: AckDisplayed, upTo: true, stays: ReasonPrivate},
}

// crosses tells whether receipts of type t may reach XMPP at all.
func (t ReceiptType) crosses() bool {
	k, ok := matrixReceiptKinds[t]
	return ok && k.stays == ""
}

// receipts carries the receipts both ways (XEP-0184, XEP-0333, XEP-0022
// events and m.read, m.delivery) and the typing (XEP-0085, m.typing):
// the rules (this file), XMPP to Matrix (xmpp_receipts.go, the burst
// FlushReceipts records), Matrix to XMPP (matrix_receipts.go), the ones
// that outran their message (early_receipts.go) and typing.go. What
// crosses to XMPP obeys the users' settings (bot).
type receipts struct {
	*core
	bot *bot // tellsXMPP, receiptsCross

	// flushing is how many receipts flushReceipts has taken from in and
	// not yet recorded (or put back).
	flushing atomic.Int64
	// flushFailing: flushReceipts cannot record its bursts (flushMu).
	flushMu      sync.Mutex
	flushFailing retry.Outage

	typingMu sync.Mutex
	typing   map[id.RoomID]map[id.UserID]bool // who types, by room
}

// mayAnswer is the one rule of what an XMPP person may say about a message
// the bridge sent, the XMPP → Matrix table of docs/protocols.md: a receipt, a
// notification or an error is about a message sent to the bare JID it
// comes from (msg: the one by that stanza id sent to that bare JID, nil if
// none: a forged or misdirected one), addressed to the puppet that sent
// it, and, for a receipt or a notification, one the message asked for
// (XEP-0184 §5, XEP-0022 §2.1: no event unasked; asked nil: an error,
// which needs no asking). It returns why not, or "".
func mayAnswer(msg *Message, puppet id.UserID, asked func(Requests) bool) Reason {
	switch {
	case msg == nil:
		return ReasonUnknownID
	case msg.MXID != puppet:
		return ReasonWrongPuppet
	case asked != nil && !asked(msg.Requests):
		return ReasonUnsolicited
	}
	return ""
}

// mayCross is the one rule of which Matrix receipts reach XMPP, the
// Matrix → XMPP table of docs/protocols.md: the kinds of
// matrixReceiptKinds that cross, of a Matrix member of the portal, about
// a message that came from the portal's XMPP side after the member's
// invite, in the main timeline, if the member lets receipts out.
// m.read.private never leaves Matrix; the bridge's own users' receipts
// never make receipts. portal is the portal of the receipt's room (nil:
// none) and msg the message of its event (nil: the id map has none). It
// returns what the receipt acknowledges, or why it does not cross;
// ReasonUnknownEvent (with a portal) is for an event the id map may not
// know yet (parkUnknown).
func (b *receipts) mayCross(rc Receipt, portal *Portal, msg *Message) (AckKind, Reason) {
	rk, ok := matrixReceiptKinds[rc.Type]
	kind := rk.ack
	if !ok {
		return kind, ReasonUnknownType
	} else if rk.stays != "" {
		return kind, rk.stays
	}
	ids := b.cfg.Identities
	switch {
	case rc.User == ids.Bot() || ids.IsGhost(rc.User):
		return kind, ReasonOwn
	case rc.Thread != "" && rc.Thread != ThreadMain:
		// Bridged messages live in the main timeline.
		return kind, ReasonThread
	case portal == nil:
		return kind, ReasonNotPortal
	case portal.Member(MatrixMember(rc.User)) == nil:
		return kind, ReasonNotPortalUser
	case !b.bot.receiptsCross(rc):
		return kind, ReasonDisabled
	case msg == nil:
		return kind, ReasonUnknownEvent
	case msg.Direction != FromXMPP || msg.RoomID != rc.Room || !msg.PeerJID.Equal(portal.JID):
		return kind, ReasonNotFromXMPP
	case portal.Kind == PortalGroup && !rk.upTo:
		// MSC4089 keeps delivery receipts to private settings, and
		// XEP-0184 §5.3 does not recommend them in groupchat: in a group
		// only reads cross.
		return kind, ReasonGroupDelivery
	case msg.TS.Before(portal.CreatedAt.Add(-clockSkew)):
		// MSC4089: not for events before the user's invite.
		return kind, ReasonBeforeInvite
	}
	return kind, ""
}

// deliveryStanzas are what msg's sender asked for on delivery, and only
// that: XEP-0184 <received/> if it had <request/>, XEP-0022 <delivered/>
// if its x:event asked for it.
func (b *receipts) deliveryStanzas(from jid.JID, msg *Message) []*OutMessage {
	var out []*OutMessage
	for _, kind := range []*xmppReceiptKind{kindReceived, kindEventDelivered} {
		if kind.asked(msg.Requests) {
			out = append(out, ackStanza(from, b.to(msg), TypeChat, kind.wire, msg.XMPPID))
		}
	}
	return out
}

// groupDisplayed is what an m.read of a member of a group portal becomes:
// one XEP-0333 <displayed/> from their puppet to the chat, of type
// groupchat, for the newest markable message read, named by the room's
// stanza-id (XEP-0333 §3, "groupchat": everyone in the room sees it, so
// one, never one per message), and nothing else (no XEP-0022 in a room).
func (b *receipts) groupDisplayed(from jid.JID, portal *Portal, read []*Message) []*OutMessage {
	for i := len(read) - 1; i >= 0; i-- {
		if m := read[i]; kindMarkerDisplayed.asked(m.Requests) && m.StanzaID != "" {
			return []*OutMessage{ackStanza(from, portal.JID, TypeGroupchat, WireMarkerDisplayed, m.StanzaID)}
		}
	}
	return nil
}

// displayedStanzas are what the messages read, oldest first, asked for on
// display: XEP-0022 <displayed/> for each that asked (§2.1), then one
// XEP-0333 <displayed/> for the newest markable one, which acknowledges
// the ones before it (XEP-0333 §3).
func (b *receipts) displayedStanzas(from jid.JID, read []*Message) []*OutMessage {
	var out []*OutMessage
	var newestMarkable *Message
	for _, m := range read {
		if kindEventDisplayed.asked(m.Requests) {
			out = append(out, ackStanza(from, b.to(m), TypeChat, WireEventDisplayed, m.XMPPID))
		}
		if kindMarkerDisplayed.asked(m.Requests) {
			newestMarkable = m
		}
	}
	if newestMarkable != nil {
		out = append(out, ackStanza(from, b.to(newestMarkable), TypeChat, WireMarkerDisplayed, newestMarkable.XMPPID))
	}
	return out
}
