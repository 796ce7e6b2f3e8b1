// XEP-0022: Message Events (jabber:x:event).

package xmppside

import (
	"encoding/xml"
	"strings"

	"xmppbridge/mapping"
)

// NSEvent is the namespace of XEP-0022.
const NSEvent = "jabber:x:event"

var _ = register(&xep{
	namespaces: []string{NSEvent},
	decode:     decodeEvents,
	finish:     finishEvents,
	encode: []encodeStep{
		{at: wireRequests + 1, write: encodeEventRequest},
		{at: wireAnswers + 2, write: encodeEventNotice},
	},
	features: []discoFeature{{at: discoMessages + 1, ns: NSEvent, on: onBoth}},
})

// eventsKept is the message's x:event, its children read into one value
// if there are several; what it means depends on the body, known once
// every child is read.
var eventsKept = newStateKey()

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

// decodeEvents reads XEP-0022's <x/>.
func decodeEvents(in *inMessage, start xml.StartElement) error {
	if start.Name.Local != "x" {
		return in.skip()
	}
	return in.d.DecodeElement(stateOf[xEvent](in, eventsKept), &start)
}

// finishEvents makes the x:event a request or a notification. With a
// body, it names what the sender wants to be told (§2.1); without one,
// an x:event with an <id/> is a notification about that message (§3.2),
// and one with no event cancels composing (§3.2.4).
func finishEvents(in *inMessage) {
	ev, m := keptBy[xEvent](in, eventsKept), &in.m
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
	if ev.ID == nil || len(*ev.ID) > maxIDLen {
		return
	}
	id := strings.TrimSpace(*ev.ID)
	receipt := false
	for _, e := range eventReceipts(ev.Offline != nil, ev.Delivered != nil, ev.Displayed != nil) {
		in.ack(e, id)
		receipt = true
	}
	// A notice that raises no receipt is about composing: raised, or
	// with no event at all cancelled (§3.2.4).
	if ev.Composing != nil || !receipt {
		m.Event = &mapping.EventNotice{ID: id, Composing: ev.Composing != nil}
	}
}

// eventReceipts are the receipt forms of the XEP-0022 events raised, in
// the order of the spec's examples.
func eventReceipts(offline, delivered, displayed bool) []mapping.ReceiptWire {
	var wires []mapping.ReceiptWire
	for _, e := range []struct {
		raised bool
		wire   mapping.ReceiptWire
	}{{offline, mapping.WireEventOffline}, {delivered, mapping.WireEventDelivered}, {displayed, mapping.WireEventDisplayed}} {
		if e.raised {
			wires = append(wires, e.wire)
		}
	}
	return wires
}

// encodeEventRequest writes the x:event of the events m asks for (§2.1).
func encodeEventRequest(t *tokens, m *mapping.OutMessage) {
	if r := m.Request; r.Delivered || r.Displayed || r.Composing || r.Offline {
		t.start(NSEvent, "x")
		eventFlags(t, r.Offline, r.Delivered, r.Displayed, r.Composing)
		t.end()
	}
}

// encodeEventNotice writes the events m raises and the <id/> they are
// about (§3.2): its receipts of XEP-0022's forms, or its composing notice.
func encodeEventNotice(t *tokens, m *mapping.OutMessage) {
	for _, a := range m.Acks {
		if wire := a.Wire; wire == mapping.WireEventOffline || wire == mapping.WireEventDelivered || wire == mapping.WireEventDisplayed {
			t.start(NSEvent, "x")
			eventFlags(t, wire == mapping.WireEventOffline, wire == mapping.WireEventDelivered, wire == mapping.WireEventDisplayed, false)
			t.text("", "id", a.ID)
			t.end()
		}
	}
	if e := m.Event; e != nil {
		t.start(NSEvent, "x")
		eventFlags(t, false, false, false, e.Composing)
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
