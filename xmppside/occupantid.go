// XEP-0421: Anonymous unique occupant identifiers for MUCs.

package xmppside

import (
	"encoding/xml"
)

// NSOccupantID is the namespace of XEP-0421.
const NSOccupantID = "urn:xmpp:occupant-id:0"

var _ = register(&xep{
	namespaces: []string{NSOccupantID},
	decode:     decodeOccupantID,
})

// decodeOccupantID reads the <occupant-id id='…'/> a room puts on the
// messages it reflects (§3). Only a room's counts (§4: a client must
// ignore one the room did not add), which the core judges by where the
// message comes from; an id longer than the bridge stores is none.
func decodeOccupantID(in *inMessage, start xml.StartElement) error {
	if start.Name.Local == "occupant-id" {
		if id, ok := attr(start, "id"); ok && len(id) <= maxIDLen {
			in.m.OccupantID = id
		}
	}
	return in.skip()
}
