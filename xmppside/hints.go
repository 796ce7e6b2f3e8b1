// XEP-0334: Message Processing Hints.

package xmppside

import "xmppbridge/mapping"

// NSHints is the namespace of XEP-0334.
const NSHints = "urn:xmpp:hints"

var _ = register(&xep{
	encode: []encodeStep{{at: wireHints, write: encodeStore}},
})

// encodeStore writes <store/> (§4.4) on the messages that have no body of
// their own and still belong in the recipient's archive: reactions
// (XEP-0444 §5, "SHOULD add a <store/> hint") and retractions (XEP-0424
// §3: so that clients offline meanwhile learn of them).
func encodeStore(t *tokens, m *mapping.OutMessage) {
	if m.Reactions != nil || m.Retract != "" {
		t.empty(NSHints, "store")
	}
}
