// XEP-0461: Message Replies (urn:xmpp:reply:0), with its XEP-0428 quote
// fallback.

package xmppside

import (
	"unicode/utf8"

	"xmppbridge/mapping"
)

// maxJIDLen is the longest a JID can be (RFC 7622 §3.1: three parts of
// at most 1023 bytes and two separators).
const maxJIDLen = 3*1023 + 2

// reply is <reply xmlns='urn:xmpp:reply:0' to='…' id='…'/> (§3): to is
// the author of the message replied to (SHOULD, a bare JID in a 1:1
// chat), id its id (MUST).
type reply struct {
	To string `xml:"to,attr"`
	ID string `xml:"id,attr"`
}

// decodeReply reads XEP-0461's part of a message: the message it answers,
// and the quote the sender put before its text for clients without
// replies (§3.1), which is cut out of the body. A reply without id names
// nothing; an author too long to be a JID is left out.
func decodeReply(in *inMessage, m *mapping.XMPPMessage) {
	r := in.Reply
	if r == nil || r.ID == "" || len(r.ID) > maxIDLen {
		return
	}
	m.Reply = &mapping.XMPPReply{ID: r.ID}
	if len(r.To) <= maxJIDLen {
		m.Reply.To = r.To
	}
	if kept, cut, ok := cutFallback(m.Body, mapping.NSReply, in.Fallback, in.FeatureFallback); ok {
		m.Body, m.Reply.Fallback = kept, cut
	}
}

// replyBody is the text m is sent with: a reply's quote, then its body.
func replyBody(m *mapping.OutMessage) string {
	if m.Reply != nil {
		return m.Reply.Quote + m.Body
	}
	return m.Body
}

// encodeReply writes <reply/> and, if the body begins with a quote, the
// fallback marking it (§3.1; XEP-0428 counts code points).
func encodeReply(t *tokens, m *mapping.OutMessage) {
	r := m.Reply
	if r == nil {
		return
	}
	t.empty(mapping.NSReply, "reply", "to", r.To.String(), "id", r.ID)
	if r.Quote != "" {
		encodeFallbackRange(t, mapping.NSReply, 0, utf8.RuneCountInString(r.Quote))
	}
}
