package mapping

import (
	"crypto/rand"
	"encoding/base32"

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

	// Receipts and notifications about earlier messages.
	Received  string       // XEP-0184 <received id/>
	Event     *EventNotice // XEP-0022 <x/> without a body
	Displayed string       // XEP-0333 <displayed id/>
	ChatState string       // XEP-0085 element name: active, composing, paused, inactive, gone

	// What points at an earlier message (relations.go).
	Replace   string         // XEP-0308 <replace id/>: the id of the message this corrects
	Reply     *XMPPReply     // XEP-0461 <reply/>, its fallback cut out of Body
	Reactions *XMPPReactions // XEP-0444 <reactions/>
	// Retract is the id of the message the sender retracts: XEP-0424
	// <retract id/>, or the older <apply-to id><retract/></apply-to> of
	// urn:xmpp:message-retract:0 (XEP-0422).
	Retract string
}

// EventNotice is an XEP-0022 notification (§3.2): the events it raises for
// the message with ID. With no event at all it cancels composing (§3.2.4).
type EventNotice struct {
	ID                                       string
	Offline, Delivered, Displayed, Composing bool
}

// StanzaError is the <error/> of a stanza (RFC 6120 §8.3).
type StanzaError struct {
	Type      string // cancel, continue, modify, auth, wait
	Condition string // e.g. service-unavailable
	Text      string
}

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

	// Receipts and notifications the bridge raises about earlier messages.
	Received  string       // XEP-0184 <received id/>
	Event     *EventNotice // XEP-0022 notification (no body)
	Displayed string       // XEP-0333 <displayed id/>
	ChatState string       // XEP-0085

	// What points at an earlier message (relations.go). xmppside adds a
	// <store/> hint (XEP-0334) to Reactions and Retract, and to a Retract
	// without a Body the XEP-0428 fallback text of XEP-0424; Reactions go
	// without a body (XEP-0444's examples have none).
	Replace   string         // XEP-0308: Body corrects the message with this id
	Reply     *OutReply      // XEP-0461, with its quote fallback
	Reactions *XMPPReactions // XEP-0444: the puppet's whole set
	Retract   string         // XEP-0424 v1: the id of the message retracted
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewXMPPID returns a fresh stanza id. It is a valid NMTOKEN (XEP-0022's
// schema types <id/> as one), so it can never be a Matrix event id with "$".
func NewXMPPID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return "mx" + idEncoding.EncodeToString(b[:])
}
