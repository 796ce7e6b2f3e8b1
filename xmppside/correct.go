// XEP-0308: Last Message Correction (urn:xmpp:message-correct:0).

package xmppside

import (
	"encoding/xml"

	"xmppbridge/mapping"
)

var _ = register(&xep{
	namespaces: []string{mapping.NSCorrect},
	decode:     decodeCorrect,
	finish:     func(in *inMessage) { boundID(&in.m.Replace) },
	encode:     []encodeStep{{at: wireRelations + 0, write: encodeCorrect}},
	features:   []discoFeature{{at: discoRelations + 0, ns: mapping.NSCorrect, on: onBoth}},
})

// decodeCorrect reads XEP-0308's part of a message:
// <replace id='…'/> (§3), the id of the message its payloads replace,
// always the original (§4: a second correction names the first message
// again). One without an id names nothing.
func decodeCorrect(in *inMessage, start xml.StartElement) error {
	if start.Name.Local == "replace" {
		if id, ok := attr(start, "id"); ok {
			in.m.Replace = id
		}
	}
	return in.skip()
}

// encodeCorrect writes <replace id='…'/>: the message's body corrects
// that message (§3, Example 2).
func encodeCorrect(t *tokens, m *mapping.OutMessage) {
	if m.Replace != "" {
		t.empty(mapping.NSCorrect, "replace", "id", m.Replace)
	}
}
