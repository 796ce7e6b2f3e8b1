// XEP-0359: Unique and Stable Stanza IDs.

package xmppside

import (
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// NSSID is the namespace of XEP-0359; its feature is advertised in disco.
const NSSID = "urn:xmpp:sid:0"

// originID is <origin-id xmlns='urn:xmpp:sid:0' id='…'/> (XEP-0359 §3.2).
type originID struct {
	XMLName struct{} `xml:"urn:xmpp:sid:0 origin-id"`
	ID      string   `xml:"id,attr"`
}

// stanzaID is <stanza-id xmlns='urn:xmpp:sid:0' id='…' by='…'/> (§3.1).
type stanzaID struct {
	ID string `xml:"id,attr"`
	By string `xml:"by,attr"`
}

// decodeSID reads XEP-0359's part of a message: the sender's <origin-id/>,
// and the <stanza-id/> of the sender's own server, the only one
// trustworthy for us (§3.1): the one whose "by" is their bare JID or
// domain.
func decodeSID(in *inMessage, from jid.JID, m *mapping.XMPPMessage) {
	if in.OriginID != nil && len(in.OriginID.ID) <= maxIDLen {
		m.OriginID = in.OriginID.ID
	}
	for _, s := range in.StanzaID {
		if (s.By == from.Bare().String() || s.By == from.Domainpart()) && len(s.ID) <= maxIDLen {
			m.StanzaID = s.ID
		}
	}
}

// encodeSID writes m's <origin-id/> (§3.2).
func encodeSID(t *tokens, m *mapping.OutMessage) {
	if m.OriginID != "" {
		t.empty(NSSID, "origin-id", "id", m.OriginID)
	}
}
