// XEP-0359: Unique and Stable Stanza IDs.

package xmppside

import (
	"encoding/xml"

	"xmppbridge/mapping"
)

// NSSID is the namespace of XEP-0359; its feature is advertised in disco.
const NSSID = "urn:xmpp:sid:0"

var _ = register(&xep{
	namespaces: []string{NSSID},
	decode:     decodeSID,
	finish:     func(in *inMessage) { boundID(&in.m.OriginID) },
	encode:     []encodeStep{{at: wireIDs, write: encodeSID}},
	features:   []discoFeature{{at: discoMessages + 4, ns: NSSID, on: onBoth}},
})

// decodeSID reads XEP-0359's part of a message: the sender's
// <origin-id id='…'/> (§3.2), and the <stanza-id id='…' by='…'/> of the
// sender's own server, the only one trustworthy for us (§3.1): the one
// whose "by" is their bare JID or domain.
func decodeSID(in *inMessage, start xml.StartElement) error {
	switch start.Name.Local {
	case "origin-id":
		if id, ok := attr(start, "id"); ok {
			in.m.OriginID = id
		}
	case "stanza-id":
		id, _ := attr(start, "id")
		by, _ := attr(start, "by")
		if (by == in.from.Bare().String() || by == in.from.Domainpart()) && len(id) <= maxIDLen {
			in.m.StanzaID = id
		}
	}
	return in.skip()
}

// encodeSID writes m's <origin-id/> (§3.2).
func encodeSID(t *tokens, m *mapping.OutMessage) {
	if m.OriginID != "" {
		t.empty(NSSID, "origin-id", "id", m.OriginID)
	}
}
