package mapping

import (
	"time"

	"maunium.net/go/mautrix/id"
)

// What the Matrix side hands the core, decoded: the core reads no
// transaction JSON and no mautrix event or content type.

// ReceiptType is a receipt's type as the homeserver names it.
type ReceiptType string

// The receipt types the bridge reads: the Matrix spec's (receipts module)
// and MSC4089's, stable and unstable.
const (
	ReceiptRead             ReceiptType = "m.read"
	ReceiptReadPrivate      ReceiptType = "m.read.private"
	ReceiptDelivery         ReceiptType = "m.delivery"
	ReceiptDeliveryUnstable ReceiptType = "org.matrix.msc4089.delivery"
)

// ThreadMain is the thread id of a receipt on the main timeline.
const ThreadMain = "main"

// Receipt is one user's receipt of one type for one event: an m.receipt
// event of a room carries any number of them.
type Receipt struct {
	Room   id.RoomID   `json:"room"`
	Event  id.EventID  `json:"event"`
	Type   ReceiptType `json:"type"`
	User   id.UserID   `json:"user"`
	Thread string      `json:"thread,omitempty"` // "" or ThreadMain: the main timeline
	// TS is when the homeserver took the receipt (its ts); zero if it
	// gave none. The bot's receipts setting is judged at this time,
	// since a receipt can reach the bridge after a later command.
	TS time.Time `json:"ts,omitzero"`
}

// Typing is a room's m.typing: who types in it now.
type Typing struct {
	Room  id.RoomID   `json:"room"`
	Users []id.UserID `json:"users"`
}

// EventKind is what a room event is to the core.
type EventKind int

const (
	EventOther     EventKind = iota // a type the bridge does not carry
	EventMessage                    // m.room.message
	EventEncrypted                  // m.room.encrypted
	EventMember                     // m.room.member
	EventReaction                   // m.reaction
	EventRedaction                  // m.room.redaction
	EventTopic                      // m.room.topic, its topic as Body
	EventRoomName                   // m.room.name, its name as Body
)

// The message types and the membership the core reads (client-server
// API, m.room.message msgtypes; m.room.member).
const (
	MsgText          = "m.text"
	MsgNotice        = "m.notice"
	MsgEmote         = "m.emote"
	MembershipInvite = "invite"
	MembershipJoin   = "join"
	JoinRulePublic   = "public"
)

// MatrixEvent is a room event of a transaction, as the core reads it.
type MatrixEvent struct {
	ID     id.EventID
	Room   id.RoomID
	Sender id.UserID
	TS     time.Time // origin_server_ts; zero if it had none
	Kind   EventKind
	Type   string // the event type, as sent
	// An EventMessage's msgtype and body, and its formatted_body if its
	// format is org.matrix.custom.html.
	MsgType string
	Body    string
	HTML    string
	// File is the file of an m.image, m.video, m.audio, m.file or
	// m.sticker (media.go).
	File *MatrixFile
	// What an EventMessage or EventReaction points at (relations.go).
	Rel MatrixRelation
	// Redacts is the event an EventRedaction removes; its reason is
	// Body.
	Redacts id.EventID
	// An EventMember's user (its state key), membership, and the room's
	// join rule as the invite's stripped state gives it ("" if it does
	// not).
	Target     id.UserID
	Membership string
	JoinRule   string
	// An EventMember's displayname and avatar_url: the target's profile
	// as the event sets it.
	DisplayName string
	AvatarURL   string
}

// MatrixTxn is a stored transaction, decoded.
type MatrixTxn struct {
	ID       string
	Events   []MatrixEvent
	Receipts []Receipt
	Typing   []Typing
}
