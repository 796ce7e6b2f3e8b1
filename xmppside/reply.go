// XEP-0461: Message Replies (urn:xmpp:reply:0), with its XEP-0428 quote
// fallback.

package xmppside

import (
	"encoding/xml"
	"unicode/utf8"

	"xmppbridge/mapping"
)

// maxJIDLen is the longest a JID can be (RFC 7622 §3.1: three parts of
// at most 1023 bytes and two separators).
const maxJIDLen = 3*1023 + 2

var _ = register(&xep{
	namespaces: []string{mapping.NSReply},
	decode:     decodeReply,
	finish:     finishReply,
	encode:     []encodeStep{{at: wireRelations + 1, body: replyBody, write: encodeReply}},
	features:   []discoFeature{{at: discoRelations + 1, ns: mapping.NSReply, on: onBoth}},
})

// decodeReply reads XEP-0461's <reply to='…' id='…'/> (§3): to is the
// author of the message replied to (SHOULD, a bare JID in a 1:1 chat),
// id its id (MUST). Of several, each attribute as the last gives it.
func decodeReply(in *inMessage, start xml.StartElement) error {
	if start.Name.Local != "reply" {
		return in.skip()
	}
	if in.m.Reply == nil {
		in.m.Reply = &mapping.XMPPReply{}
	}
	if to, ok := attr(start, "to"); ok {
		in.m.Reply.To = to
	}
	if id, ok := attr(start, "id"); ok {
		in.m.Reply.ID = id
	}
	return in.skip()
}

// finishReply checks the reply read, and cuts out of the body the quote
// the sender put before its text for clients without replies (§3.1). A
// reply without id names nothing; an author too long to be a JID is left
// out.
func finishReply(in *inMessage) {
	r := in.m.Reply
	if r == nil {
		return
	}
	if r.ID == "" || len(r.ID) > maxIDLen {
		in.m.Reply = nil
		return
	}
	if len(r.To) > maxJIDLen {
		r.To = ""
	}
	if kept, cut, ok := cutFallback(in.m.Body, mapping.NSReply, fallbacksIn(in)...); ok {
		in.m.Body, r.Fallback = kept, cut
	}
}

// replyBody is the text m is sent with: a reply's quote, then its body.
func replyBody(m *mapping.OutMessage, body string) string {
	if m.Reply != nil {
		return m.Reply.Quote + body
	}
	return body
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
