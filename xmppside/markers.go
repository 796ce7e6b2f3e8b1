// XEP-0333: Displayed Markers (urn:xmpp:chat-markers:0).

package xmppside

import "xmppbridge/mapping"

// NSMarkers is the namespace of XEP-0333.
const NSMarkers = "urn:xmpp:chat-markers:0"

// markable is <markable/>: the sender would like to learn when the
// message is displayed.
type markable struct {
	XMLName struct{} `xml:"urn:xmpp:chat-markers:0 markable"`
}

// marker is <displayed id='…'/> (and the received/acknowledged markers the
// bridge reads but does not translate).
type marker struct {
	ID string `xml:"id,attr"`
}

// decodeMarkers reads XEP-0333's part of a message: <markable/> (§3: the
// sender would like to know when it is displayed) and a <displayed/>
// marker naming the newest message displayed.
func decodeMarkers(in *inMessage, m *mapping.XMPPMessage) {
	m.Requests.Markable = in.Markable != nil
	if in.Shown != nil && len(in.Shown.ID) <= maxIDLen {
		m.Displayed = in.Shown.ID
	}
}

// encodeMarkable writes <markable/> if r asks for markers (§3).
func encodeMarkable(t *tokens, r mapping.Requests) {
	if r.Markable {
		t.empty(NSMarkers, "markable")
	}
}

// encodeDisplayedMarker writes <displayed id='…'/> (§3).
func encodeDisplayedMarker(t *tokens, m *mapping.OutMessage) {
	if m.Displayed != "" {
		t.empty(NSMarkers, "displayed", "id", m.Displayed)
	}
}
