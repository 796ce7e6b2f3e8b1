// XEP-0424: Message Retraction (urn:xmpp:message-retract:1, and the
// urn:xmpp:message-retract:0 of versions before 0.4 in a XEP-0422
// <apply-to/>).

package xmppside

import "xmppbridge/mapping"

// NSFasten is the namespace of XEP-0422 Message Fastening, whose
// <apply-to/> carried retractions before XEP-0424 0.4.
const NSFasten = "urn:xmpp:fasten:0"

// retractFallbackBody is the body of a retraction for clients without
// XEP-0424, in the words of its example (§3); "/me" (XEP-0245) makes it
// read as said by the puppet.
const retractFallbackBody = "/me retracted a previous message, but it's unsupported by your client."

// retract is <retract xmlns='urn:xmpp:message-retract:1' id='…'/> (§3):
// the sender retracts the message with that id.
type retract struct {
	ID string `xml:"id,attr"`
}

// applyTo is XEP-0422's <apply-to id='…'/>; with a <retract/> of
// urn:xmpp:message-retract:0 inside it is a retraction of that message
// (XEP-0424 0.3 §3).
type applyTo struct {
	ID      string    `xml:"id,attr"`
	Retract *struct{} `xml:"urn:xmpp:message-retract:0 retract"`
}

// decodeRetract reads XEP-0424's part of a message: the id of the message
// retracted, from <retract id/>, or else from the first <apply-to/> that
// holds a <retract/> of the older namespace. The fallback body is left
// as it came: the core ignores it when it acts on the retraction, and it
// says what happened where the core does not.
func decodeRetract(in *inMessage, m *mapping.XMPPMessage) {
	id := ""
	if in.Retract != nil {
		id = in.Retract.ID
	}
	if id == "" {
		for _, a := range in.ApplyTo {
			if a.Retract != nil {
				id = a.ID
				break
			}
		}
	}
	if len(id) <= maxIDLen {
		m.Retract = id
	}
}

// retractBody is the body a retraction is sent with: XEP-0424's fallback
// text when the core gives none.
func retractBody(m *mapping.OutMessage, body string) string {
	if m.Retract != "" && body == "" {
		return retractFallbackBody
	}
	return body
}

// encodeRetract writes <retract id/> and the fallback marking the whole
// body (§3; the <store/> hint is hints.go's).
func encodeRetract(t *tokens, m *mapping.OutMessage) {
	if m.Retract != "" {
		t.empty(mapping.NSRetract, "retract", "id", m.Retract)
		encodeFallbackWhole(t, mapping.NSRetract)
	}
}
