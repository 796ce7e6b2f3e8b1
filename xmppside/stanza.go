package xmppside

import (
	"encoding/xml"
	"fmt"
	"strings"

	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// NSStanzas is the namespace of stanza error conditions (RFC 6120 §8.3.3).
const NSStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"

// maxIDLen bounds the ids the bridge stores: longer ones are not ids a
// client made up, and would only bloat the database.
const maxIDLen = 256

// inMessage is everything the bridge reads of an incoming <message/>, in one
// decode.
type inMessage struct {
	XMLName  xml.Name          `xml:"message"`
	ID       string            `xml:"id,attr"`
	From     string            `xml:"from,attr"`
	To       string            `xml:"to,attr"`
	Type     string            `xml:"type,attr"`
	Body     []string          `xml:"body"`
	Request  *receiptsRequest  `xml:"urn:xmpp:receipts request"`
	Received *receiptsReceived `xml:"urn:xmpp:receipts received"`
	Event    *xEvent           `xml:"jabber:x:event x"`
	Markable *markable         `xml:"urn:xmpp:chat-markers:0 markable"`
	Shown    *marker           `xml:"urn:xmpp:chat-markers:0 displayed"`
	OriginID *originID         `xml:"urn:xmpp:sid:0 origin-id"`
	StanzaID []stanzaID        `xml:"urn:xmpp:sid:0 stanza-id"`
	IMNG     *struct{}         `xml:"urn:xmpp:im-ng:0 im-ng"`
	Error    *errorElem        `xml:"error"`
	// XEP-0085 chat states: at most one is meaningful (§5.1).
	Active    *struct{} `xml:"http://jabber.org/protocol/chatstates active"`
	Composing *struct{} `xml:"http://jabber.org/protocol/chatstates composing"`
	Paused    *struct{} `xml:"http://jabber.org/protocol/chatstates paused"`
	Inactive  *struct{} `xml:"http://jabber.org/protocol/chatstates inactive"`
	Gone      *struct{} `xml:"http://jabber.org/protocol/chatstates gone"`
}

// errorElem is a stanza's <error/> (RFC 6120 §8.3.2).
type errorElem struct {
	XMLName   xml.Name   `xml:"error"`
	Type      string     `xml:"type,attr"`
	Condition conditions `xml:",any"`
	Text      string     `xml:"urn:ietf:params:xml:ns:xmpp-stanzas text,omitempty"`
}

type conditions []xml.Name

// UnmarshalXML keeps the names of the defined conditions and skips the rest.
func (c *conditions) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	if start.Name.Space == NSStanzas && start.Name.Local != "text" {
		*c = append(*c, start.Name)
	}
	return d.Skip()
}

// decodeMessage turns the wire form into the core's value; an error means
// the stanza is unusable (bad addresses), and says why.
func decodeMessage(d *xml.Decoder, start *xml.StartElement) (*mapping.XMPPMessage, error) {
	var in inMessage
	if err := d.DecodeElement(&in, start); err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	from, to, err := header(in.From, in.To, in.ID)
	if err != nil {
		return nil, err
	}
	m := &mapping.XMPPMessage{
		ID: in.ID, From: from, To: to, Type: in.Type,
		IMNG: in.IMNG != nil,
	}
	if len(in.Body) > 0 {
		m.Body, m.HasBody = in.Body[0], true
	}
	if in.OriginID != nil && len(in.OriginID.ID) <= maxIDLen {
		m.OriginID = in.OriginID.ID
	}
	for _, s := range in.StanzaID {
		// XEP-0359 §3.1: only the stamp of the sender's own server is
		// trustworthy for us; it is the one whose "by" is their bare JID
		// or domain.
		if (s.By == from.Bare().String() || s.By == from.Domainpart()) && len(s.ID) <= maxIDLen {
			m.StanzaID = s.ID
		}
	}
	m.Requests.Receipt = in.Request != nil
	m.Requests.Markable = in.Markable != nil
	if in.Event != nil && m.HasBody {
		// With a body, an x:event names what the sender wants to be told
		// (XEP-0022 §2.1).
		m.Requests.Offline = in.Event.Offline != nil
		m.Requests.Delivered = in.Event.Delivered != nil
		m.Requests.Displayed = in.Event.Displayed != nil
		m.Requests.Composing = in.Event.Composing != nil
	}
	if in.Received != nil && len(in.Received.ID) <= maxIDLen {
		m.Received = in.Received.ID
	}
	if in.Shown != nil && len(in.Shown.ID) <= maxIDLen {
		m.Displayed = in.Shown.ID
	}
	if ev := in.Event; ev != nil && !m.HasBody && ev.ID != nil && len(*ev.ID) <= maxIDLen {
		// Without a body, an x:event with an <id/> is a notification about
		// that message (XEP-0022 §3.2); one with no event cancels composing.
		m.Event = &mapping.EventNotice{
			ID:        strings.TrimSpace(*ev.ID),
			Offline:   ev.Offline != nil,
			Delivered: ev.Delivered != nil,
			Displayed: ev.Displayed != nil,
			Composing: ev.Composing != nil,
		}
	}
	for _, cs := range []struct {
		el   *struct{}
		name string
	}{{in.Composing, "composing"}, {in.Paused, "paused"}, {in.Active, "active"}, {in.Inactive, "inactive"}, {in.Gone, "gone"}} {
		if cs.el != nil {
			m.ChatState = cs.name
			break
		}
	}
	if in.Error != nil {
		m.Error = &mapping.StanzaError{Type: in.Error.Type, Text: in.Error.Text}
		if len(in.Error.Condition) > 0 {
			m.Error.Condition = in.Error.Condition[0].Local
		}
	}
	return m, nil
}

// outMessage is the wire form of mapping.OutMessage.
type outMessage struct {
	XMLName  xml.Name          `xml:"message"`
	ID       string            `xml:"id,attr,omitempty"`
	From     string            `xml:"from,attr"`
	To       string            `xml:"to,attr"`
	Type     string            `xml:"type,attr,omitempty"`
	Body     string            `xml:"body,omitempty"`
	OriginID *originID         `xml:"urn:xmpp:sid:0 origin-id"`
	Request  *receiptsRequest  `xml:"urn:xmpp:receipts request"`
	Event    *xEvent           `xml:"jabber:x:event x"`
	Markable *markable         `xml:"urn:xmpp:chat-markers:0 markable"`
	Received *receiptsReceived `xml:"urn:xmpp:receipts received"`
	Shown    *displayedMarker  `xml:"urn:xmpp:chat-markers:0 displayed"`
	State    *chatState        `xml:",omitempty"`
	Error    *outError         `xml:"error"`
}

type displayedMarker struct {
	ID string `xml:"id,attr"`
}

type chatState struct {
	XMLName xml.Name
}

type outError struct {
	Type      string `xml:"type,attr"`
	Condition struct {
		XMLName xml.Name
	}
	Text string `xml:"urn:ietf:params:xml:ns:xmpp-stanzas text,omitempty"`
}

func encodeMessage(m *mapping.OutMessage) *outMessage {
	out := &outMessage{ID: m.ID, From: m.From.String(), To: m.To.String(), Type: m.Type, Body: m.Body}
	if m.OriginID != "" {
		out.OriginID = &originID{ID: m.OriginID}
	}
	r := m.Request
	if r.Receipt {
		out.Request = &receiptsRequest{}
	}
	if r.Delivered || r.Displayed || r.Composing || r.Offline {
		out.Event = &xEvent{Offline: flag(r.Offline), Delivered: flag(r.Delivered), Displayed: flag(r.Displayed), Composing: flag(r.Composing)}
	}
	if r.Markable {
		out.Markable = &markable{}
	}
	if m.Received != "" {
		out.Received = &receiptsReceived{ID: m.Received}
	}
	if m.Displayed != "" {
		out.Shown = &displayedMarker{ID: m.Displayed}
	}
	if e := m.Event; e != nil {
		// XEP-0022 §3.2: the events raised, and the <id/> they are about.
		id := e.ID
		out.Event = &xEvent{ID: &id, Offline: flag(e.Offline), Delivered: flag(e.Delivered), Displayed: flag(e.Displayed), Composing: flag(e.Composing)}
	}
	if m.ChatState != "" {
		out.State = &chatState{XMLName: xml.Name{Space: NSChatStates, Local: m.ChatState}}
	}
	if m.Error != nil {
		out.Error = &outError{Type: m.Error.Type, Text: m.Error.Text}
		out.Error.Condition.XMLName = xml.Name{Space: NSStanzas, Local: m.Error.Condition}
	}
	return out
}

// parseJID parses an address and refuses one whose string form does not
// parse back to itself (jid.Parse("..") does that): the bridge keys ghosts
// and rows by the string form.
func parseJID(s string) (jid.JID, error) {
	j, err := jid.Parse(s)
	if err != nil {
		return jid.JID{}, fmt.Errorf("%q: %w", s, err)
	}
	if again, err := jid.Parse(j.String()); err != nil || !again.Equal(j) {
		return jid.JID{}, fmt.Errorf("%q is not a canonical JID", s)
	}
	return j, nil
}

// flag is an empty element if b, else none.
func flag(b bool) *struct{} {
	if b {
		return &struct{}{}
	}
	return nil
}

// header checks what every incoming stanza must have right: both
// addresses canonical, and an id of bounded length.
func header(fromAttr, toAttr, id string) (from, to jid.JID, err error) {
	if from, err = parseJID(fromAttr); err != nil {
		return from, to, fmt.Errorf("bad from: %w", err)
	}
	if to, err = parseJID(toAttr); err != nil {
		return from, to, fmt.Errorf("bad to: %w", err)
	}
	if len(id) > maxIDLen {
		return from, to, fmt.Errorf("id is %d bytes long", len(id))
	}
	return from, to, nil
}
