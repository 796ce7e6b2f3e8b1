package mapping

import (
	"crypto/rand"
	"encoding/base32"
	"time"

	"mellium.im/xmpp/jid"
)

// Stanza types of RFC 6121 §5.2.2 that the bridge distinguishes.
const (
	TypeChat      = "chat"
	TypeNormal    = "normal"
	TypeGroupchat = "groupchat"
	TypeHeadline  = "headline"
	TypeError     = "error"
)

// PEPUpdate is what a notification of a person's PEP service says of
// them; nil fields say nothing.
type PEPUpdate struct {
	Nick   *string // XEP-0172 §4.5: their nickname, "" for none
	Avatar *string // XEP-0084 §4.2: the id (hex SHA-1) of their avatar, "" for none
	// AvatarType is the MIME type its metadata gives the image.
	AvatarType string
}

// XMPPMessage is an incoming <message/> as xmppside decoded it: only what the
// bridge reads, no wire format.
type XMPPMessage struct {
	ID       string
	From, To jid.JID
	Type     string // "" means normal (RFC 6121 §5.2.2)
	Body     string
	HasBody  bool
	// Subject is the message's <subject/> (RFC 6121 §5.2.4): in a
	// groupchat, the room's subject (XEP-0045 §8.1), "" with HasSubject
	// when cleared.
	Subject    string
	HasSubject bool
	OriginID   string // XEP-0359 <origin-id/>
	StanzaID   string // XEP-0359 <stanza-id/> by the sender's server (in a room, the room)
	// OccupantID is the XEP-0421 occupant-id a multi-user chat gives the
	// sender of a groupchat message, "" if none.
	OccupantID string
	Requests   Requests
	IMNG       bool       // XEP-0409 <im-ng/> present
	Nick       string     // XEP-0172 <nick/> of the sender, "" if none
	PEP        *PEPUpdate // a XEP-0163 notification from the sender's own PEP service
	Error      *StanzaError

	// Acks are the receipts it carries about earlier messages, in the
	// order of its children; the receipt table (receipts.go) says what
	// each form means.
	Acks []XMPPAck
	// Event is an XEP-0022 notice that raises no receipt: composing
	// raised, or with no event at all cancelled (§3.2.4).
	Event     *EventNotice
	ChatState string // XEP-0085 element name: active, composing, paused, inactive, gone

	// What points at an earlier message (relations.go).
	Replace   string         // XEP-0308 <replace id/>: the id of the message this corrects
	Reply     *XMPPReply     // XEP-0461 <reply/>, its fallback cut out of Body
	Reactions *XMPPReactions // XEP-0444 <reactions/>
	// Retract is the id of the message the sender retracts: XEP-0424
	// <retract id/>, or the older <apply-to id><retract/></apply-to> of
	// urn:xmpp:message-retract:0 (XEP-0422).
	Retract string
	// OOB is the first XEP-0066 <x xmlns='jabber:x:oob'/>: a file the
	// message carries (media.go).
	OOB *OOB
	// Shared is the first XEP-0447 <file-sharing/>: a file the message
	// carries, with its metadata (media.go).
	Shared *SharedFile
	// Moderation is a room's word that a moderator retracted one of its
	// messages (XEP-0425); only the room itself may say it.
	Moderation *XMPPModeration

	// Delay is the XEP-0203 <delay/> the sender itself put on the
	// message (a room, on the history it sends a joining occupant:
	// XEP-0045 §7.2.15), nil if none.
	Delay *XMPPDelay
	// MUCStatus are the status codes of a room's muc#user <x/> in the
	// message (XEP-0045 §10.2.1: 104, its configuration changed).
	MUCStatus []int
}

// XMPPDelay is when the sender says a message was first sent (XEP-0203
// §4): Stamp, or Bad if its stamp is no XEP-0082 DateTime.
type XMPPDelay struct {
	Stamp time.Time
	Bad   bool
}

// XMPPModeration is a XEP-0425 moderated retraction as a room broadcasts
// it: the <moderated/> of 0.2 in a XEP-0422 <apply-to/>, or of 0.3 in a
// XEP-0424 <retract/>.
type XMPPModeration struct {
	ID     string // the room's stanza-id of the message retracted
	By     string // the moderator, as the room names them (room/nick, or a JID; "" if not)
	Reason string // "" if none
}

// ReceiptWire is a form a receipt takes on the XMPP wire. A message
// carries each as an XMPPAck; the receipt table (receipts.go) says what
// each means on Matrix, and the XEP's file in xmppside reads and writes it.
type ReceiptWire string

const (
	WireReceived        ReceiptWire = "received"         // XEP-0184 §5: <received id/>
	WireEventOffline    ReceiptWire = "event_offline"    // XEP-0022 §3.2: <x><offline/><id/></x>
	WireEventDelivered  ReceiptWire = "event_delivered"  // XEP-0022 §3.2: <x><delivered/><id/></x>
	WireEventDisplayed  ReceiptWire = "event_displayed"  // XEP-0022 §3.2: <x><displayed/><id/></x>
	WireMarkerDisplayed ReceiptWire = "marker_displayed" // XEP-0333 §3: <displayed id/>
)

// XMPPAck is one receipt a message carries: its form on the wire and the
// id of the message it is about.
type XMPPAck struct {
	Wire ReceiptWire `json:"wire"`
	ID   string      `json:"id"`
}

// EventNotice is an XEP-0022 composing notice (§3.2) about the message
// with ID: Composing raised, or cancelled (§3.2.4). The events that are
// receipts (offline, delivered, displayed) are XMPPAcks.
type EventNotice struct {
	ID        string
	Composing bool
}

// StanzaError is the <error/> of a stanza (RFC 6120 §8.3). As an error,
// it is what an entity answered a question with.
type StanzaError struct {
	Type      string // cancel, continue, modify, auth, wait
	Condition string // e.g. service-unavailable
	Text      string
}

func (e *StanzaError) Error() string { return "answered " + e.Condition }

// OutMessage is a <message/> the bridge sends; xmppside encodes it.
type OutMessage struct {
	ID       string
	From, To jid.JID
	Type     string
	Body     string
	OriginID string
	// Subject, if set, is the room subject a puppet asks for (XEP-0045
	// §8.1; "" clears it).
	Subject *string
	// Request lists what the message asks the recipient to report.
	Request Requests
	// Error, with Type "error", makes this a bounce of a received stanza.
	Error *StanzaError

	// Receipts and notices the bridge raises about earlier messages.
	Acks      []XMPPAck
	Event     *EventNotice // XEP-0022 composing notice (no body)
	ChatState string       // XEP-0085

	// What points at an earlier message (relations.go). xmppside adds a
	// <store/> hint (XEP-0334) to Reactions and Retract, and to a Retract
	// without a Body the XEP-0428 fallback text of XEP-0424; Reactions go
	// without a body (XEP-0444's examples have none).
	Replace   string         // XEP-0308: Body corrects the message with this id
	Reply     *OutReply      // XEP-0461, with its quote fallback
	Reactions *XMPPReactions // XEP-0444: the puppet's whole set
	Retract   string         // XEP-0424 v1: the id of the message retracted
	// OOB is a file the message carries (XEP-0066, media.go).
	OOB *OOB
}

// ackStanza is the stanza that carries one receipt of form wire about the
// message xid, from a puppet: of type chat to a person, groupchat to a
// chat (XEP-0333 §3, "groupchat").
func ackStanza(from, to jid.JID, typ string, wire ReceiptWire, xid string) *OutMessage {
	return &OutMessage{ID: NewXMPPID(), From: from, To: to, Type: typ, Acks: []XMPPAck{{Wire: wire, ID: xid}}}
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewXMPPID returns a fresh stanza id. It is a valid NMTOKEN (XEP-0022's
// schema types <id/> as one), so it can never be a Matrix event id with "$".
func NewXMPPID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return "mx" + idEncoding.EncodeToString(b[:])
}
