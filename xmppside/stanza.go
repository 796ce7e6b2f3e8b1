package xmppside

import (
	"encoding/xml"
	"fmt"
	"sync"

	"mellium.im/xmlstream"
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
	Nick     *string           `xml:"http://jabber.org/protocol/nick nick"`
	PEP      *pubsubEvent      `xml:"http://jabber.org/protocol/pubsub#event event"`
	// XEP-0356: what the server grants the component (privilege.go).
	Privilege *privilegeElem `xml:"urn:xmpp:privilege:2 privilege"`
	Error     *errorElem     `xml:"error"`
	// XEP-0085 chat states: at most one is meaningful (§5.1).
	Active    *struct{} `xml:"http://jabber.org/protocol/chatstates active"`
	Composing *struct{} `xml:"http://jabber.org/protocol/chatstates composing"`
	Paused    *struct{} `xml:"http://jabber.org/protocol/chatstates paused"`
	Inactive  *struct{} `xml:"http://jabber.org/protocol/chatstates inactive"`
	Gone      *struct{} `xml:"http://jabber.org/protocol/chatstates gone"`
	// What points at an earlier message, and the fallbacks for clients
	// without the XEPs that say so.
	Replace         *replace        `xml:"urn:xmpp:message-correct:0 replace"`
	Reply           *reply          `xml:"urn:xmpp:reply:0 reply"`
	Reactions       []reactionsElem `xml:"urn:xmpp:reactions:0 reactions"`
	Retract         *retract        `xml:"urn:xmpp:message-retract:1 retract"`
	ApplyTo         []applyTo       `xml:"urn:xmpp:fasten:0 apply-to"`
	Fallback        []fallbackElem  `xml:"urn:xmpp:fallback:0 fallback"`
	FeatureFallback []fallbackElem  `xml:"urn:xmpp:feature-fallback:0 fallback"`
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
	_, m, err := decodeInMessage(d, start)
	return m, err
}

// decodeInMessage is decodeMessage, with what the component itself reads
// of the stanza (a XEP-0356 grant).
func decodeInMessage(d *xml.Decoder, start *xml.StartElement) (*inMessage, *mapping.XMPPMessage, error) {
	var in inMessage
	if err := d.DecodeElement(&in, start); err != nil {
		return nil, nil, fmt.Errorf("decode message: %w", err)
	}
	from, to, err := header(in.From, in.To, in.ID)
	if err != nil {
		return nil, nil, err
	}
	m := &mapping.XMPPMessage{
		ID: in.ID, From: from, To: to, Type: in.Type,
		IMNG: in.IMNG != nil, // XEP-0409 §4 (imng.go)
	}
	if len(in.Body) > 0 {
		m.Body, m.HasBody = in.Body[0], true
	}
	// Each XEP's part, read by its own file.
	decodeSID(&in, from, m)
	decodeReceipts(&in, m)
	decodeEvents(&in, m)
	decodeMarkers(&in, m)
	decodeChatState(&in, m)
	decodeNick(&in, m)
	decodePEP(&in, m)
	decodeCorrect(&in, m)
	decodeReply(&in, m)
	decodeReactions(&in, m)
	decodeRetract(&in, m)
	if in.Error != nil {
		m.Error = &mapping.StanzaError{Type: in.Error.Type, Text: in.Error.Text}
		if len(in.Error.Condition) > 0 {
			m.Error.Condition = in.Error.Condition[0].Local
		}
	}
	return &in, m, nil
}

type outError struct {
	Type      string `xml:"type,attr"`
	Condition struct {
		XMLName xml.Name
	}
	Text string `xml:"urn:ietf:params:xml:ns:xmpp-stanzas text,omitempty"`
}

// tokens writes elements as XML tokens, keeping the first error. Messages
// are written this way rather than by encoding/xml's reflection: receipts
// are the bridge's bulk output, and reflection (then re-reading the bytes,
// as mellium's Encode does) was a third of the cost of sending one.
type tokens struct {
	w    xmlstream.TokenWriter
	err  error
	open []xml.Name // the elements started and not yet ended
}

func (t *tokens) tok(tok xml.Token) {
	if t.err == nil {
		t.err = t.w.EncodeToken(tok)
	}
}

// start opens an element; attrs are name, value pairs, empty values left out.
func (t *tokens) start(space, local string, attrs ...string) {
	se := xml.StartElement{Name: xml.Name{Space: space, Local: local}}
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] != "" {
			se.Attr = append(se.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
		}
	}
	t.open = append(t.open, se.Name)
	t.tok(se)
}

// end closes the innermost open element.
func (t *tokens) end() {
	name := t.open[len(t.open)-1]
	t.open = t.open[:len(t.open)-1]
	t.tok(xml.EndElement{Name: name})
}

func (t *tokens) empty(space, local string, attrs ...string) {
	t.start(space, local, attrs...)
	t.end()
}

// text is an element with text content: <local>text</local>.
func (t *tokens) text(space, local, text string) {
	t.start(space, local)
	t.tok(xml.CharData(text))
	t.end()
}

// encodeRequests writes what m asks to be told, in the order of the
// XEPs' examples: XEP-0184 <request/>, XEP-0022's x:event, XEP-0333
// <markable/>.
func encodeRequests(t *tokens, r mapping.Requests) {
	encodeReceiptRequest(t, r)
	encodeEventRequest(t, r)
	encodeMarkable(t, r)
}

// encodeAnswers writes what a receipt or notification answers: XEP-0184
// <received/>, XEP-0333 <displayed/>, XEP-0022's raised events.
func encodeAnswers(t *tokens, m *mapping.OutMessage) {
	encodeReceived(t, m)
	encodeDisplayedMarker(t, m)
	encodeEventNotice(t, m)
}

// encodeRelations writes what points at an earlier message: XEP-0308
// <replace/>, XEP-0461 <reply/>, XEP-0444 <reactions/>, XEP-0424
// <retract/>, each with the XEP-0428 fallback of its body, and the
// XEP-0334 <store/> hint of those without a body of their own.
func encodeRelations(t *tokens, m *mapping.OutMessage) {
	encodeCorrect(t, m)
	encodeReply(t, m)
	encodeReactions(t, m)
	encodeRetract(t, m)
	encodeStore(t, m)
}

// outBody is the <body/> m is written with: a reply's quote before its
// text (XEP-0461), XEP-0424's fallback for a retraction without text.
func outBody(m *mapping.OutMessage) string {
	return retractBody(m, replyBody(m))
}

// writeMessage writes m as a <message/> stanza in the stream's default
// namespace.
func writeMessage(w xmlstream.TokenWriter, m *mapping.OutMessage) error {
	t := &tokens{w: w}
	t.start("", "message", "id", m.ID, "from", m.From.String(), "to", m.To.String(), "type", m.Type)
	if body := outBody(m); body != "" {
		t.text("", "body", body)
	}
	// Each XEP's part, written by its own file: the requests a message
	// carries, what a receipt or notification answers, then what the
	// message points at.
	encodeSID(t, m)
	encodeRequests(t, m.Request)
	encodeAnswers(t, m)
	encodeChatState(t, m)
	encodeRelations(t, m)
	if e := m.Error; e != nil {
		// RFC 6120 §8.3.2: type, defined condition, optional text.
		t.start("", "error", "type", e.Type)
		t.empty(NSStanzas, e.Condition)
		if e.Text != "" {
			t.text(NSStanzas, "text", e.Text)
		}
		t.end()
	}
	t.end()
	return t.err
}

// parseJID parses an address and refuses one whose string form does not
// parse back to itself (jid.Parse("..") does that): the bridge keys ghosts
// and rows by the string form.
func parseJID(s string) (jid.JID, error) {
	if j, ok := canonical.get(s); ok {
		return j, nil
	}
	j, err := jid.Parse(s)
	if err != nil {
		return jid.JID{}, fmt.Errorf("%q: %w", s, err)
	}
	if again, err := jid.Parse(j.String()); err != nil || !again.Equal(j) {
		return jid.JID{}, fmt.Errorf("%q is not a canonical JID", s)
	}
	canonical.put(s, j)
	return j, nil
}

// canonical remembers the addresses parseJID found canonical: every
// stanza carries two, mostly the same few, and parsing one (PRECIS
// profiles, twice) was a tenth of the CPU of a burst of receipts.
var canonical = jidCache{max: 4096}

// jidCache maps an address as written to its JID, holding at most max
// (it starts over when full: the addresses in use come back at once).
type jidCache struct {
	mu  sync.Mutex
	max int
	m   map[string]jid.JID
}

func (c *jidCache) get(s string) (jid.JID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	j, ok := c.m[s]
	return j, ok
}

func (c *jidCache) put(s string, j jid.JID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[string]jid.JID, c.max/4)
	}
	c.m[s] = j
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
