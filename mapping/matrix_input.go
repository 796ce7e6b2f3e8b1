package mapping

import (
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// What the Matrix side hands the core, decoded: the core reads no
// transaction JSON and no mautrix content type of an ephemeral event.
// (Messages and memberships still come as mautrix events; issue 11.)

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
}

// Typing is a room's m.typing: who types in it now.
type Typing struct {
	Room  id.RoomID
	Users []id.UserID
}

// MatrixTxn is a stored transaction, decoded.
type MatrixTxn struct {
	ID       string
	Events   []*event.Event
	Receipts []Receipt
	Typing   []Typing
}
