// XEP-0022: Message Events (jabber:x:event).

package xmppside

import (
	"strings"

	"xmppbridge/mapping"
)

// NSEvent is the namespace of XEP-0022.
const NSEvent = "jabber:x:event"

// xEvent is <x xmlns='jabber:x:event'/>. In a message with a body it is a
// request for the events named (XEP-0022 §2.1, §3.1); without a body and
// with an <id/> it raises those events for the message of that id (§3.2),
// and an <id/> alone cancels a composing event (§3.2.4).
type xEvent struct {
	XMLName   struct{}  `xml:"jabber:x:event x"`
	Offline   *struct{} `xml:"offline"`
	Delivered *struct{} `xml:"delivered"`
	Displayed *struct{} `xml:"displayed"`
	Composing *struct{} `xml:"composing"`
	ID        *string   `xml:"id"`
}

// decodeEvents reads XEP-0022's part of a message. With a body, an x:event
// names what the sender wants to be told (§2.1); without one, an x:event
// with an <id/> is a notification about that message (§3.2), and one
// with no event cancels composing (§3.2.4).
func decodeEvents(in *inMessage, m *mapping.XMPPMessage) {
	ev := in.Event
	if ev == nil {
		return
	}
	if m.HasBody {
		m.Requests.Offline = ev.Offline != nil
		m.Requests.Delivered = ev.Delivered != nil
		m.Requests.Displayed = ev.Displayed != nil
		m.Requests.Composing = ev.Composing != nil
		return
	}
	if ev.ID != nil && len(*ev.ID) <= maxIDLen {
		m.Event = &mapping.EventNotice{
			ID:        strings.TrimSpace(*ev.ID),
			Offline:   ev.Offline != nil,
			Delivered: ev.Delivered != nil,
			Displayed: ev.Displayed != nil,
			Composing: ev.Composing != nil,
		}
	}
}

// encodeEventRequest writes the x:event of the events r asks for (§2.1).
func encodeEventRequest(t *tokens, r mapping.Requests) {
	if r.Delivered || r.Displayed || r.Composing || r.Offline {
		t.start(NSEvent, "x")
		eventFlags(t, r.Offline, r.Delivered, r.Displayed, r.Composing)
		t.end()
	}
}

// encodeEventNotice writes the events m raises and the <id/> they are
// about (§3.2).
func encodeEventNotice(t *tokens, m *mapping.OutMessage) {
	if e := m.Event; e != nil {
		t.start(NSEvent, "x")
		eventFlags(t, e.Offline, e.Delivered, e.Displayed, e.Composing)
		t.text("", "id", e.ID)
		t.end()
	}
}

// eventFlags writes the XEP-0022 event elements that are set, in the
// order of the spec's examples.
func eventFlags(t *tokens, offline, delivered, displayed, composing bool) {
	for _, f := range []struct {
		on   bool
		name string
	}{{offline, "offline"}, {delivered, "delivered"}, {displayed, "displayed"}, {composing, "composing"}} {
		if f.on {
			t.empty("", f.name)
		}
	}
}
