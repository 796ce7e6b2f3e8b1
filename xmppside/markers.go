// XEP-0333: Displayed Markers (urn:xmpp:chat-markers:0).

package xmppside

import (
	"encoding/xml"

	"xmppbridge/mapping"
)

// NSMarkers is the namespace of XEP-0333.
const NSMarkers = "urn:xmpp:chat-markers:0"

var _ = register(&xep{
	namespaces: []string{NSMarkers},
	decode:     decodeMarkers,
	encode: []encodeStep{
		{at: wireRequests + 2, write: encodeMarkable},
		{at: wireAnswers + 1, write: encodeDisplayedMarker},
	},
	features: []discoFeature{{at: discoMessages + 2, ns: NSMarkers, on: onBoth}},
})

// decodeMarkers reads XEP-0333's part of a message: <markable/> (§3: the
// sender would like to know when it is displayed) and a <displayed id='…'/>
// marker naming the newest message displayed. The received and
// acknowledged markers are not translated.
func decodeMarkers(in *inMessage, start xml.StartElement) error {
	switch start.Name.Local {
	case "markable":
		in.m.Requests.Markable = true
	case "displayed":
		if id, ok := attr(start, "id"); ok {
			in.ack(mapping.WireMarkerDisplayed, id)
		}
	}
	return in.skip()
}

// encodeMarkable writes <markable/> if m asks for markers (§3).
func encodeMarkable(t *tokens, m *mapping.OutMessage) {
	if m.Request.Markable {
		t.empty(NSMarkers, "markable")
	}
}

// encodeDisplayedMarker writes <displayed id='…'/> (§3).
func encodeDisplayedMarker(t *tokens, m *mapping.OutMessage) {
	if id := acked(m, mapping.WireMarkerDisplayed); id != "" {
		t.empty(NSMarkers, "displayed", "id", id)
	}
}
