// XEP-0308: Last Message Correction (urn:xmpp:message-correct:0).

package xmppside

import "xmppbridge/mapping"

// replace is <replace xmlns='urn:xmpp:message-correct:0' id='…'/> (§3):
// the message carrying it corrects the one with that id, always the
// original (§4: a second correction names the first message again).
type replace struct {
	ID string `xml:"id,attr"`
}

// decodeCorrect reads XEP-0308's part of a message: the id of the
// message its payloads replace. One without an id names nothing.
func decodeCorrect(in *inMessage, m *mapping.XMPPMessage) {
	if in.Replace != nil && in.Replace.ID != "" && len(in.Replace.ID) <= maxIDLen {
		m.Replace = in.Replace.ID
	}
}

// encodeCorrect writes <replace id='…'/>: the message's body corrects
// that message (§3, Example 2).
func encodeCorrect(t *tokens, m *mapping.OutMessage) {
	if m.Replace != "" {
		t.empty(mapping.NSCorrect, "replace", "id", m.Replace)
	}
}
