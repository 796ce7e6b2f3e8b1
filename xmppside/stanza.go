package xmppside

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
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

// xep is what the file of one XEP registers (register): the children of
// <message/> it reads, its part of an outgoing message, and its
// disco#info features. stanza.go reads the envelope and hands each child
// to the XEP of its namespace; adding a XEP to messages is adding its
// file.
type xep struct {
	// namespaces are those of the children of <message/> it reads; decode
	// is given each of them, whatever its local name, and reads it to its
	// end (in.skip() what it does not read).
	namespaces []string
	decode     func(in *inMessage, start xml.StartElement) error
	// finish completes its part of in.m once every child is read: checks
	// of what it took as the children came, and what depends on the
	// others (the body, the fallbacks). No finish step reads what another
	// one changes.
	finish func(in *inMessage)
	// encode writes its parts of an outgoing message, each at its place.
	encode []encodeStep
	// features are what it adds to disco#info (XEP-0030 §3.1).
	features []discoFeature
}

// wirePlace is where a part of an outgoing message is written, after its
// <body/>: XEP-0359's id, what the message asks (XEP-0184, XEP-0022,
// XEP-0333, in the order of their examples), what it answers, its chat
// state, what it points at, then hints; within a group, by the number
// added. Receivers do not care about the order; the bridge keeps one so
// that what it writes does not change with the files that write it.
type wirePlace int

const (
	wireIDs       wirePlace = 100
	wireRequests  wirePlace = 200
	wireAnswers   wirePlace = 300
	wireState     wirePlace = 400
	wireRelations wirePlace = 500
	wireHints     wirePlace = 600
)

// encodeStep is one part of an outgoing message a XEP writes: body, if
// set, makes the text of the <body/> (given what the steps before made
// of m.Body), write writes its elements.
type encodeStep struct {
	at    wirePlace
	body  func(m *mapping.OutMessage, body string) string
	write func(t *tokens, m *mapping.OutMessage)
}

// xeps are the registered XEPs, in the order their files register them.
var xeps []*xep

// register adds x to what a message is read and written with; the files
// of the XEPs call it as the package starts, before init builds the
// tables from them.
func register(x *xep) *xep {
	xeps = append(xeps, x)
	return x
}

// The tables built from xeps by init.
var (
	childXEP    = map[string]*xep{} // by the namespace of a child of <message/>
	finishSteps []func(in *inMessage)
	bodySteps   []func(m *mapping.OutMessage, body string) string
	writeSteps  []func(t *tokens, m *mapping.OutMessage)
)

func init() {
	var steps []encodeStep
	var features []discoFeature
	for _, x := range xeps {
		for _, ns := range x.namespaces {
			if childXEP[ns] != nil {
				panic("xmppside: two XEPs register the namespace " + ns)
			}
			childXEP[ns] = x
		}
		if x.finish != nil {
			finishSteps = append(finishSteps, x.finish)
		}
		steps = append(steps, x.encode...)
		features = append(features, x.features...)
	}
	slices.SortFunc(steps, func(a, b encodeStep) int { return cmp.Compare(a.at, b.at) })
	for i, s := range steps {
		if i > 0 && steps[i-1].at == s.at {
			panic(fmt.Sprintf("xmppside: two parts of a message are written at place %d", s.at))
		}
		if s.body != nil {
			bodySteps = append(bodySteps, s.body)
		}
		if s.write != nil {
			writeSteps = append(writeSteps, s.write)
		}
	}
	buildDisco(features)
}

// stateKey names what one XEP keeps while a message is read (stateOf):
// what it cannot put in the message until every child is read.
type stateKey int

var stateKeys int

func newStateKey() stateKey {
	stateKeys++
	return stateKey(stateKeys - 1)
}

// inMessage is a <message/> being read: the core's value being built,
// and what the XEPs keep for their finish step.
type inMessage struct {
	d     *xml.Decoder
	m     mapping.XMPPMessage
	from  jid.JID    // the sender, if the address is good
	err   *errorElem // the stanza's <error/>, the envelope's
	state []any      // by stateKey; made when a XEP first keeps something
}

// stateOf is what the XEP of key keeps for this message, made empty the
// first time it is asked for.
func stateOf[T any](in *inMessage, key stateKey) *T {
	if in.state == nil {
		in.state = make([]any, stateKeys)
	}
	if s, ok := in.state[key].(*T); ok {
		return s
	}
	s := new(T)
	in.state[key] = s
	return s
}

// keptBy is what the XEP of key keeps for this message, nil if nothing.
func keptBy[T any](in *inMessage, key stateKey) *T {
	if in.state == nil {
		return nil
	}
	s, _ := in.state[key].(*T)
	return s
}

// skip reads the rest of the child just started.
func (in *inMessage) skip() error { return in.d.Skip() }

// text reads the rest of the child just started as text: its own
// character data, its children skipped (what encoding/xml makes of an
// element read into a string).
func (in *inMessage) text() (string, error) {
	var b strings.Builder
	for {
		tok, err := in.d.Token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := in.d.Skip(); err != nil {
				return "", err
			}
		case xml.CharData:
			b.Write(t)
		case xml.EndElement:
			return b.String(), nil
		}
	}
}

// attr is the value of the attribute named local, in whatever namespace
// (the last, if there are several), and whether there is one.
func attr(start xml.StartElement, local string) (string, bool) {
	v, ok := "", false
	for _, a := range start.Attr {
		if a.Name.Local == local {
			v, ok = a.Value, true
		}
	}
	return v, ok
}

// ack records that the message carries the receipt of form wire about
// the message id. A message carries one of each form: a later one
// replaces the earlier (a stanza of a thousand <received/> is one
// receipt), and one whose id is longer than the bridge stores (maxIDLen)
// names nothing.
func (in *inMessage) ack(wire mapping.ReceiptWire, id string) {
	in.m.Acks = slices.DeleteFunc(in.m.Acks, func(a mapping.XMPPAck) bool { return a.Wire == wire })
	if id != "" && len(id) <= maxIDLen {
		in.m.Acks = append(in.m.Acks, mapping.XMPPAck{Wire: wire, ID: id})
	}
}

// acked is the id of m's receipt of form wire, "" if none.
func acked(m *mapping.OutMessage, wire mapping.ReceiptWire) string {
	for _, a := range m.Acks {
		if a.Wire == wire {
			return a.ID
		}
	}
	return ""
}

// boundID empties an id longer than the bridge stores (maxIDLen).
func boundID(id *string) {
	if len(*id) > maxIDLen {
		*id = ""
	}
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
// of the stanza (a XEP-0356 grant, grantOf).
func decodeInMessage(d *xml.Decoder, start *xml.StartElement) (*inMessage, *mapping.XMPPMessage, error) {
	if start.Name.Local != "message" {
		return nil, nil, fmt.Errorf("decode message: expected element type <message> but have <%s>", start.Name.Local)
	}
	in := &inMessage{d: d}
	var fromAttr, toAttr string
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "id":
			in.m.ID = a.Value
		case "from":
			fromAttr = a.Value
		case "to":
			toAttr = a.Value
		case "type":
			in.m.Type = a.Value
		}
	}
	// The sender is known before the children are read (XEP-0359 trusts
	// a <stanza-id/> by it); bad addresses are said once the stanza is read
	// whole, and a stanza that cannot be read says that first.
	var headerErr error
	in.from, in.m.To, headerErr = header(fromAttr, toAttr, in.m.ID)
	in.m.From = in.from
	if err := in.children(); err != nil {
		return nil, nil, fmt.Errorf("decode message: %w", err)
	}
	if headerErr != nil {
		return nil, nil, headerErr
	}
	for _, finish := range finishSteps {
		finish(in)
	}
	m := &in.m
	if in.err != nil {
		m.Error = stanzaError(in.err)
	}
	return in, m, nil
}

// stanzaError is the core's form of a stanza's <error/>.
func stanzaError(e *errorElem) *mapping.StanzaError {
	out := &mapping.StanzaError{Type: e.Type, Text: e.Text}
	if len(e.Condition) > 0 {
		out.Condition = e.Condition[0].Local
	}
	return out
}

// children reads the message's children to its end: the envelope's
// <body/> and <error/> (in any namespace, as they always were), and each
// other child by the XEP that registered its namespace; the others are
// skipped.
func (in *inMessage) children() error { return in.eachChild(in.child) }

// eachChild reads the element just started to its end, handing the start
// of each of its children to read, which reads that child to its end.
func (in *inMessage) eachChild(read func(xml.StartElement) error) error {
	for {
		tok, err := in.d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := read(t); err != nil {
				return err
			}
		case xml.EndElement:
			return nil
		}
	}
}

func (in *inMessage) child(start xml.StartElement) error {
	switch start.Name.Local {
	case "body":
		body, err := in.text()
		if err == nil && !in.m.HasBody { // the first; others are translations (RFC 6121 §5.2.3)
			in.m.Body, in.m.HasBody = body, true
		}
		return err
	case "subject":
		// RFC 6121 §5.2.4; in a room, its subject (XEP-0045 §8.1). The
		// first, as with the body; an empty one is a subject cleared.
		subject, err := in.text()
		if err == nil && !in.m.HasSubject {
			in.m.Subject, in.m.HasSubject = subject, true
		}
		return err
	case "error":
		if in.err == nil {
			in.err = new(errorElem)
		}
		return in.d.DecodeElement(in.err, &start)
	}
	if x := childXEP[start.Name.Space]; x != nil {
		return x.decode(in, start)
	}
	return in.skip()
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
	// nest holds open for the levels a message has (the message, a XEP's
	// element, its child).
	nest [3]xml.Name
}

// tokensPool keeps the tokens of writeMessage: the XEPs' steps are called
// through the registry, which puts them on the heap, and receipts are
// written by the thousand (BenchmarkEncodeReceived).
var tokensPool = sync.Pool{New: func() any { return new(tokens) }}

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

// writeMessage writes m as a <message/> stanza in the stream's default
// namespace: the envelope, then each XEP's part at its place (wirePlace).
func writeMessage(w xmlstream.TokenWriter, m *mapping.OutMessage) error {
	t := tokensPool.Get().(*tokens)
	*t = tokens{w: w}
	t.open = t.nest[:0]
	defer func() {
		t.w = nil
		tokensPool.Put(t)
	}()
	t.start("", "message", "id", m.ID, "from", m.From.String(), "to", m.To.String(), "type", m.Type)
	body := m.Body
	for _, step := range bodySteps {
		body = step(m, body)
	}
	if body != "" {
		t.text("", "body", body)
	}
	if m.Subject != nil {
		// XEP-0045 §8.1: a room's subject, empty to clear it.
		t.text("", "subject", *m.Subject)
	}
	for _, write := range writeSteps {
		write(t, m)
	}
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
