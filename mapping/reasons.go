package mapping

// Reason is why the bridge left something alone: a stanza, an event or a
// receipt it ignored or refused. The same word goes into the log line and
// into the "reason" label of the metric (xmppbridge_events_total), so an
// operator who sees one finds the other. The "what" of a count says which
// kind of thing it was (matrix_receipt, xmpp_receipt, ...).
type Reason string

// One list for both sides; a word means the same wherever it is used.
const (
	// Either side.
	ReasonDuplicate    Reason = "duplicate"     // translated already
	ReasonNotPermitted Reason = "not_permitted" // bridge.permissions
	ReasonOwn          Reason = "own_user"      // the bridge's own users or ghosts
	ReasonNotPortal    Reason = "not_portal"    // not a portal room
	ReasonWrongSender  Reason = "wrong_sender"  // not who the portal or message is with
	ReasonMalformed    Reason = "malformed"     // cannot be read
	ReasonOverBudget   Reason = "over_budget"   // past the sender's limits.peer_rate/peer_burst
	ReasonDone         Reason = "already_sent"  // its effect was sent before
	ReasonUnknownEvent Reason = "unknown_event" // no bridged message has that event id
	ReasonDisabled     Reason = "disabled"      // receipts.send_to_xmpp off for the user
	ReasonNotAuthor    Reason = "not_author"    // an edit or retraction of someone else's message
	ReasonNotMessage   Reason = "not_message"   // points at a reaction or retraction, not a message

	// From XMPP.
	ReasonGroupchat     Reason = "groupchat"       // type groupchat: no MUC bridging
	ReasonHeadline      Reason = "headline"        // type headline
	ReasonUnknownPuppet Reason = "unknown_puppet"  // to no puppet of a Matrix user
	ReasonBlockedDomain Reason = "blocked_domain"  // xmpp.blocked_domains
	ReasonNoBody        Reason = "no_body"         // a message with nothing to show
	ReasonIMNGFullJID   Reason = "imng_full_jid"   // XEP-0409: <im-ng/> to another resource
	ReasonUnknownID     Reason = "unknown_id"      // no bridged message has that stanza id
	ReasonWrongPuppet   Reason = "wrong_puppet"    // not addressed to the message's sender
	ReasonUnsolicited   Reason = "unsolicited"     // XEP-0022 §2.1: no event unasked
	ReasonNoPortal      Reason = "no_portal"       // typing without a portal
	ReasonNotFromMatrix Reason = "not_from_matrix" // a receipt about a message Matrix did not send

	// From Matrix.
	ReasonPrivate       Reason = "private"                // m.read.private never leaves Matrix
	ReasonNotPortalUser Reason = "not_portal_user"        // not the portal's Matrix user
	ReasonUnknownType   Reason = "unknown_type"           // a receipt type the bridge does not read
	ReasonNotFromXMPP   Reason = "not_from_xmpp"          // a receipt about a message XMPP did not send
	ReasonThread        Reason = "thread"                 // a threaded receipt outside its thread
	ReasonBeforeInvite  Reason = "before_invite"          // MSC4089: not for events before the invite
	ReasonMsgType       Reason = "unsupported_msgtype"    // a message type the bridge does not carry
	ReasonEventType     Reason = "unsupported_event_type" // an event type the bridge does not carry
)
