// XEP-0203: Delayed Delivery.

package xmppside

import (
	"encoding/xml"
	"strings"
	"time"

	"xmppbridge/mapping"
)

// NSDelay is the namespace of XEP-0203.
const NSDelay = "urn:xmpp:delay"

var _ = register(&xep{
	namespaces: []string{NSDelay},
	decode:     decodeDelay,
})

// decodeDelay reads a <delay stamp='…' from='…'/> (§4). Only one the
// sender itself put on the message is kept: a room's on the history it
// sends a joining occupant (XEP-0045 §7.2.15 names the room in "from"),
// not one an occupant's client or server added, which the room passes
// on. A stamp that is no XEP-0082 DateTime is kept as bad, for the core
// to count and ignore.
func decodeDelay(in *inMessage, start xml.StartElement) error {
	if start.Name.Local == "delay" {
		from, _ := attr(start, "from")
		if from != "" && from == in.from.Bare().String() {
			stamp, _ := attr(start, "stamp")
			d := &mapping.XMPPDelay{}
			t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(stamp))
			if err != nil || len(stamp) > 64 {
				d.Bad = true
			} else {
				d.Stamp = t.UTC()
			}
			in.m.Delay = d
		}
	}
	return in.skip()
}
