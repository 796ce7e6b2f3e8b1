// XEP-0045: Multi-User Chat, what a room says in a message's muc#user
// <x/> (§17.2); the room's presences are read in presence.go.

package xmppside

import (
	"encoding/xml"
	"strconv"
)

// NSMUCUser is the namespace of what a room says of its occupants and of
// itself (§17.2).
const NSMUCUser = "http://jabber.org/protocol/muc#user"

// maxMUCStatuses bounds the status codes kept of one message: a room
// sends one or a few (§10.2.1: 104; §10.1.3: 170-174).
const maxMUCStatuses = 8

var _ = register(&xep{
	namespaces: []string{NSMUCUser},
	decode:     decodeMUCStatus,
})

// decodeMUCStatus reads the <status code/> children of a room's <x/>
// (§10.2.1: "a configuration change", 104). Whether the message is the
// room's own is the core's to judge; invitations (§7.8) are not read.
func decodeMUCStatus(in *inMessage, start xml.StartElement) error {
	if start.Name.Local != "x" {
		return in.skip()
	}
	return in.eachChild(func(t xml.StartElement) error {
		if t.Name.Local == "status" && t.Name.Space == NSMUCUser && len(in.m.MUCStatus) < maxMUCStatuses {
			if v, ok := attr(t, "code"); ok {
				if code, err := strconv.Atoi(v); err == nil && code >= 100 && code <= 999 {
					in.m.MUCStatus = append(in.m.MUCStatus, code)
				}
			}
		}
		return in.skip()
	})
}
