package mapping

import (
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// What points at a message: edits, replies, reactions and retractions
// (docs/protocols.md). On XMPP a message is named by its id (for the messages the
// bridge sends, equal to their XEP-0359 <origin-id/>); on Matrix by its
// event id. Each of these is itself a row of the id map (Message.Rel*),
// so it is stored before it is sent, translated once, and can be pointed
// at in its turn (a receipt on an edit, a reaction removed).

// RelKind is how a message row points at another (Message.RelTo).
type RelKind string

const (
	RelNone RelKind = ""
	// RelReplace: an edit (XEP-0308 <replace/>; m.replace). RelTo is
	// always the original, never an earlier edit.
	RelReplace RelKind = "replace"
	// RelReply: a reply (XEP-0461 <reply/>; m.in_reply_to).
	RelReply RelKind = "reply"
	// RelReaction: one reaction key (XEP-0444 <reaction/>; m.reaction).
	RelReaction RelKind = "reaction"
	// RelRedact: a retraction of a message (XEP-0424 <retract/>) or the
	// removal of a reaction, both m.room.redaction on Matrix.
	RelRedact RelKind = "redact"
)

// The namespaces of the XEPs that point at messages, as the disco
// features the domain and the puppets announce.
const (
	NSCorrect   = "urn:xmpp:message-correct:0" // XEP-0308
	NSReply     = "urn:xmpp:reply:0"           // XEP-0461
	NSFallback  = "urn:xmpp:fallback:0"        // XEP-0428
	NSReactions = "urn:xmpp:reactions:0"       // XEP-0444
	NSRetract   = "urn:xmpp:message-retract:1" // XEP-0424
	NSRetract0  = "urn:xmpp:message-retract:0" // XEP-0424 before 0.4, in XEP-0422 <apply-to/>
	NSStyling   = "urn:xmpp:styling:0"         // XEP-0393
)

// XMPPReply is a XEP-0461 <reply/> of an incoming message.
type XMPPReply struct {
	To string // the author of the message replied to, as sent ("" if none)
	ID string // its id
	// Fallback is the text XEP-0428 marked as the reply's fallback (the
	// quote), which xmppside cut out of Body.
	Fallback string
}

// XMPPReactions is a XEP-0444 <reactions/>: the sender's whole current set
// of reactions to the message with ID; an empty set removes them all.
type XMPPReactions struct {
	ID   string
	Keys []string // each an emoji (a Unicode grapheme cluster), in order, no repeats
}

// OutReply is the XEP-0461 <reply/> of a message the bridge sends, with a
// XEP-0428 quote fallback for clients without XEP-0461.
type OutReply struct {
	To jid.JID // the author of the message replied to
	ID string  // its id
	// Quote is put before the body and marked as the fallback
	// (<fallback for='urn:xmpp:reply:0'><body start end/></fallback>), so
	// that clients with XEP-0461 cut it out again.
	Quote string
}

// MatrixRelation is what a Matrix event says it points at, decoded.
type MatrixRelation struct {
	// Type is m.relates_to.rel_type: "m.replace" or "m.annotation"
	// (others: not carried).
	Type  string
	Event id.EventID // m.relates_to.event_id
	Key   string     // the annotation's key (an m.reaction)
	// ReplyTo is m.relates_to.m.in_reply_to.event_id.
	ReplyTo id.EventID
	// NewBody and NewMsgType are an edit's m.new_content.
	NewBody, NewHTML string
	NewMsgType       string
}

// The relation types of the client-server API that the bridge carries.
const (
	RelTypeReplace    = "m.replace"
	RelTypeAnnotation = "m.annotation"
)

// OutMatrix is a message the bridge posts to Matrix as a ghost.
type OutMatrix struct {
	Body string // the plain body (for an edit: "* " and the new text)
	// HTML, if not "", is the formatted_body (org.matrix.custom.html).
	HTML string
	// Replace, if set, makes this an edit of that event, with NewBody and
	// NewHTML as its m.new_content.
	Replace          id.EventID
	NewBody, NewHTML string
	// ReplyTo, if set, makes this a reply to that event.
	ReplyTo id.EventID
	// Media, if set, makes this a file's message (media.go), of its
	// msgtype, with Body as its body.
	Media *MediaFile
	// TS, if not zero, is the event's origin_server_ts: when the message
	// was said, for one that comes late (a room's history), as the
	// application service API lets the bridge say ("Timestamp
	// massaging", the ts parameter of a send).
	TS time.Time
}
