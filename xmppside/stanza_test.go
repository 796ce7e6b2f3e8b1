package xmppside

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

func decodeFile(t *testing.T, name string) *mapping.XMPPMessage {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeString(string(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func decodeString(s string) (*mapping.XMPPMessage, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			return decodeMessage(d, &se)
		}
	}
}

// What a message with a body asks for: XEP-0184 §5 (<request/>) and
// XEP-0022 §2.1 (the events named in <x/>), from the specs' own examples.
func TestDecodeRequests(t *testing.T) {
	for _, tc := range []struct {
		file string
		id   string
		want mapping.Requests
	}{
		{"xep0184-example1-request.xml", "richard2-4.1.247", mapping.Requests{Receipt: true}},
		// XEP-0022 Listing 5: "requests all event types".
		{"xep0022-listing5-request-all.xml", "message22", mapping.Requests{Offline: true, Delivered: true, Displayed: true, Composing: true}},
		// XEP-0022 Listing 12: "requests composing events related to it".
		{"xep0022-listing12-reply.xml", "GabbMessage43", mapping.Requests{Composing: true}},
	} {
		m := decodeFile(t, tc.file)
		if !m.HasBody || m.ID != tc.id || m.Requests != tc.want {
			t.Errorf("%s: id %q body %v requests %+v; want %q, a body and %+v", tc.file, m.ID, m.HasBody, m.Requests, tc.id, tc.want)
		}
	}
}

// XEP-0022 §3.2: an <x/> without a body raises events, it requests none.
func TestDecodeEventNotificationIsNoRequest(t *testing.T) {
	for _, f := range []string{"xep0022-listing7-delivered.xml", "xep0022-listing8-displayed.xml", "xep0022-listing9-composing.xml", "xep0022-listing10-cancel.xml", "xep0184-example2-received.xml"} {
		m := decodeFile(t, f)
		if m.HasBody || m.Requests != (mapping.Requests{}) {
			t.Errorf("%s: body %v requests %+v; want neither", f, m.HasBody, m.Requests)
		}
	}
}

func TestDecodeAddressesAndIDs(t *testing.T) {
	m, err := decodeString(`<message from='juliet@capulet.lit/balcony' to='alice\3aexample.org@matrix.example.org' id='m1' type='chat'>
		<body>hi</body><body xml:lang='fr'>salut</body>
		<origin-id xmlns='urn:xmpp:sid:0' id='orig-1'/>
		<stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='evil.example'/>
		<stanza-id xmlns='urn:xmpp:sid:0' id='sid-1' by='juliet@capulet.lit'/>
		<markable xmlns='urn:xmpp:chat-markers:0'/>
		<im-ng xmlns='urn:xmpp:im-ng:0'/></message>`)
	if err != nil {
		t.Fatal(err)
	}
	if m.Body != "hi" || m.OriginID != "orig-1" || m.StanzaID != "sid-1" || !m.Requests.Markable || !m.IMNG || m.Type != "chat" {
		t.Errorf("decoded %+v", m)
	}
	if m.To.Localpart() != `alice\3aexample.org` || m.From.Resourcepart() != "balcony" {
		t.Errorf("addresses %s %s", m.From, m.To)
	}
}

// Bad input is refused with a reason, never a panic.
func TestDecodeRefusesBadInput(t *testing.T) {
	for _, s := range []string{
		`<message to='a@b'><body>x</body></message>`,                             // no from
		`<message from='a@b/c' to='@@'><body>x</body></message>`,                 // bad to
		`<message from='..' to='a@b'><body>x</body></message>`,                   // non-canonical
		`<message from='a@b/c' to='d@e' id='` + strings.Repeat("x", 300) + `'/>`, // huge id
		`<message from='a@b/c' to='d@e'><body>unclosed</message>`,
	} {
		if _, err := decodeString(s); err == nil {
			t.Errorf("accepted %q", s)
		}
	}
}

func TestDecodeError(t *testing.T) {
	m, err := decodeString(`<message from='juliet@capulet.lit' to='alice\3aexample.org@matrix.example.org' id='mx1' type='error'>
		<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>offline</text></error></message>`)
	if err != nil {
		t.Fatal(err)
	}
	if m.Error == nil || m.Error.Type != "cancel" || m.Error.Condition != "service-unavailable" || m.Error.Text != "offline" {
		t.Errorf("error %+v", m.Error)
	}
}

// A message from Matrix asks for everything the bridge can translate
// (docs/protocols.md, Matrix → XMPP: id, origin-id, XEP-0184 request, XEP-0022 delivered,
// displayed and composing, XEP-0333 markable).
func TestEncodeMessageFromMatrix(t *testing.T) {
	got := encodeString(t, &mapping.OutMessage{
		ID: "mxABC", OriginID: "mxABC", Type: "chat", Body: "It is the east & Juliet <is> the sun",
		From: jid.MustParse(`alice\3aexample.org@matrix.example.org`), To: jid.MustParse("juliet@capulet.lit"),
		Request: mapping.Requests{Receipt: true, Delivered: true, Displayed: true, Composing: true, Markable: true},
	})
	for _, want := range []string{
		`<message id="mxABC" from="alice\3aexample.org@matrix.example.org" to="juliet@capulet.lit" type="chat">`,
		`<body>It is the east &amp; Juliet &lt;is&gt; the sun</body>`,
		`<origin-id xmlns="urn:xmpp:sid:0" id="mxABC"></origin-id>`,
		`<request xmlns="urn:xmpp:receipts"></request>`,
		`<x xmlns="jabber:x:event"><delivered></delivered><displayed></displayed><composing></composing></x>`,
		`<markable xmlns="urn:xmpp:chat-markers:0"></markable>`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("encoded stanza lacks %s:\n%s", want, got)
		}
	}
	// And it reads back as the same requests.
	back, err := decodeString(got)
	if err != nil || back.Requests != (mapping.Requests{Receipt: true, Delivered: true, Displayed: true, Composing: true, Markable: true}) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

func TestEncodeBounce(t *testing.T) {
	got := encodeString(t, &mapping.OutMessage{
		ID: "r1", Type: "error", From: jid.MustParse("nobody@matrix.example.org"), To: jid.MustParse("juliet@capulet.lit/balcony"),
		Error: &mapping.StanzaError{Type: "cancel", Condition: "service-unavailable", Text: "gone"},
	})
	want := `<error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"></service-unavailable>` +
		`<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">gone</text></error>`
	if !strings.Contains(got, want) {
		t.Errorf("bounce %s lacks %s", got, want)
	}
	back, err := decodeString(got)
	if err != nil || back.Error == nil || *back.Error != (mapping.StanzaError{Type: "cancel", Condition: "service-unavailable", Text: "gone"}) {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

// Receipts and notifications as the bridge raises them toward XMPP, in the
// shapes of the specs' examples: XEP-0184 §5 Example 2 (received), XEP-0022
// §3.2 (an event with the <id/> it is about), XEP-0333 §3 (displayed),
// XEP-0085 §5 (a chat state).
func TestEncodeReceipts(t *testing.T) {
	from, to := jid.MustParse(`alice\3aexample.org@matrix.example.org`), jid.MustParse("juliet@capulet.lit")
	for _, tt := range []struct {
		m    mapping.OutMessage
		want string
	}{
		{mapping.OutMessage{ID: "r1", Type: "chat", Acks: []mapping.XMPPAck{{Wire: mapping.WireReceived, ID: "richard2-4.1.247"}}},
			`<received xmlns="urn:xmpp:receipts" id="richard2-4.1.247"></received></message>`},
		{mapping.OutMessage{ID: "r2", Type: "chat", Acks: []mapping.XMPPAck{{Wire: mapping.WireEventDelivered, ID: "message22"}}},
			`<x xmlns="jabber:x:event"><delivered></delivered><id>message22</id></x></message>`},
		{mapping.OutMessage{ID: "r3", Type: "chat", Event: &mapping.EventNotice{ID: "message22"}},
			`<x xmlns="jabber:x:event"><id>message22</id></x></message>`},
		{mapping.OutMessage{ID: "r4", Type: "chat", Acks: []mapping.XMPPAck{{Wire: mapping.WireMarkerDisplayed, ID: "message-1"}}},
			`<displayed xmlns="urn:xmpp:chat-markers:0" id="message-1"></displayed></message>`},
		{mapping.OutMessage{ID: "r5", Type: "chat", ChatState: "composing"},
			`<composing xmlns="http://jabber.org/protocol/chatstates"></composing></message>`},
	} {
		tt.m.From, tt.m.To = from, to
		got := encodeString(t, &tt.m)
		head := `<message id="` + tt.m.ID + `" from="alice\3aexample.org@matrix.example.org" to="juliet@capulet.lit" type="chat">`
		if got != head+tt.want {
			t.Errorf("encoded %s,\nwant %s", got, head+tt.want)
		}
		back, err := decodeString(got)
		if err != nil || !slices.Equal(back.Acks, tt.m.Acks) || back.ChatState != tt.m.ChatState ||
			(tt.m.Event != nil) != (back.Event != nil) || tt.m.Event != nil && *back.Event != *tt.m.Event {
			t.Errorf("round trip of %s: %+v, %v", got, back, err)
		}
	}
}

func encodeString(t *testing.T, m *mapping.OutMessage) string {
	t.Helper()
	var buf bytes.Buffer
	e := xml.NewEncoder(&buf)
	if err := writeMessage(e, m); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// Addresses parseJID takes are remembered as written; one it refuses is
// not, and is refused again; the memory is bounded.
func TestCanonicalAddressesRemembered(t *testing.T) {
	c := &canonical
	if _, err := parseJID("juliet@capulet.lit/balcony"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.get("juliet@capulet.lit/balcony"); !ok {
		t.Error("a canonical address was not remembered")
	}
	for range 2 {
		if _, err := parseJID(".."); err == nil {
			t.Error(`the address ".." was taken`)
		}
	}
	if _, ok := c.get(".."); ok {
		t.Error("a refused address was remembered")
	}
	small := jidCache{max: 3}
	for i := range 10 {
		small.put(fmt.Sprintf("u%d@x.example", i), jid.MustParse("u@x.example"))
		if len(small.m) > small.max {
			t.Fatalf("the cache holds %d addresses, more than its %d", len(small.m), small.max)
		}
	}
}

// XEP-0172 §4.2, Example 2: a message with the sender's nickname; spaces
// around it go, tabs become spaces, other control characters go, and a
// nick is bounded.
func TestDecodeNick(t *testing.T) {
	for _, tc := range []struct{ nick, want string }{
		{"Ishmael", "Ishmael"},
		{"  Call me\tIshmael \n", "Call me Ishmael"},
		{strings.Repeat("é", 100), strings.Repeat("é", maxNickRunes)},
	} {
		raw := `<message from='narrator@moby-dick.lit/pda' to='starbuck@matrix.example.org' type='chat' id='n1'><body>Call me Ishmael.</body><nick xmlns='http://jabber.org/protocol/nick'>` + tc.nick + `</nick></message>`
		if m := decodeRaw(t, raw); m.Nick != tc.want {
			t.Errorf("nick %q decoded as %q, want %q", tc.nick, m.Nick, tc.want)
		}
	}
}

// decodeRaw decodes one message given as XML.
func decodeRaw(t *testing.T, raw string) *mapping.XMPPMessage {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(raw))
	tok, _ := d.Token()
	start := tok.(xml.StartElement)
	m, err := decodeMessage(d, &start)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The features the XEPs register are listed as they were before each
// file registered its own (disco.go, discoPlace).
func TestDiscoFeaturesOrder(t *testing.T) {
	wantPuppet := []string{NSDiscoInfo, NSReceipts, NSEvent, NSMarkers, NSIMNG, NSSID, NSChatStates, mapping.NSOOB, mapping.NSSFS, NSPing, NSCaps, NSVersion, NSVCard,
		NSNickNotify, NSAvatarMetadataNotify, mapping.NSCorrect, mapping.NSReply, mapping.NSReactions, mapping.NSRetract, mapping.NSFallback, mapping.NSStyling, NSModerate0}
	wantDomain := []string{NSDiscoInfo, NSDiscoItems, NSReceipts, NSEvent, NSMarkers, NSIMNG, NSSID, NSChatStates, NSPing, NSVersion, NSGateway,
		mapping.NSCorrect, mapping.NSReply, mapping.NSReactions, mapping.NSRetract, mapping.NSFallback, mapping.NSStyling}
	if !slices.Equal(puppetFeatures, wantPuppet) {
		t.Errorf("puppet features %q,\nwant %q", puppetFeatures, wantPuppet)
	}
	if !slices.Equal(domainFeatures, wantDomain) {
		t.Errorf("domain features %q,\nwant %q", domainFeatures, wantDomain)
	}
}

// A <message/> whose parts are every XEP's is written in the order of
// wirePlace, whichever files write them.
func TestEncodeOrder(t *testing.T) {
	got := encodeString(t, &mapping.OutMessage{
		ID: "1", OriginID: "o", Type: "chat", Body: "b",
		From: jid.MustParse(`alice\3aexample.org@matrix.example.org`), To: jid.MustParse("juliet@capulet.lit"),
		Request: mapping.Requests{Receipt: true, Delivered: true, Markable: true},
		Acks:    []mapping.XMPPAck{{Wire: mapping.WireReceived, ID: "r"}, {Wire: mapping.WireMarkerDisplayed, ID: "d"}, {Wire: mapping.WireEventDelivered, ID: "e"}}, ChatState: "active",
		Replace: "c", Retract: "t",
	})
	want := `<message id="1" from="alice\3aexample.org@matrix.example.org" to="juliet@capulet.lit" type="chat"><body>b</body>` +
		`<origin-id xmlns="urn:xmpp:sid:0" id="o"></origin-id><request xmlns="urn:xmpp:receipts"></request>` +
		`<x xmlns="jabber:x:event"><delivered></delivered></x><markable xmlns="urn:xmpp:chat-markers:0"></markable>` +
		`<received xmlns="urn:xmpp:receipts" id="r"></received><displayed xmlns="urn:xmpp:chat-markers:0" id="d"></displayed>` +
		`<x xmlns="jabber:x:event"><delivered></delivered><id>e</id></x><active xmlns="http://jabber.org/protocol/chatstates"></active>` +
		`<replace xmlns="urn:xmpp:message-correct:0" id="c"></replace><retract xmlns="urn:xmpp:message-retract:1" id="t"></retract>` +
		`<fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:message-retract:1"></fallback><store xmlns="urn:xmpp:hints"></store></message>`
	if got != want {
		t.Errorf("encoded %s,\nwant %s", got, want)
	}
}

// A message carries one receipt of each form: of two <received/> the
// later stands (a stanza of a thousand is one receipt, not a thousand),
// an id longer than the bridge stores names nothing, and an XEP-0022
// notice raising delivered and displayed (§3.2) is two receipts.
func TestDecodeOneReceiptOfEachForm(t *testing.T) {
	long := strings.Repeat("i", maxIDLen+1)
	for _, tc := range []struct {
		stanza string
		want   []mapping.XMPPAck
	}{
		{`<message from='juliet@capulet.lit/balcony' to='a@b'><received xmlns='urn:xmpp:receipts' id='m1'/><received xmlns='urn:xmpp:receipts' id='m2'/></message>`,
			[]mapping.XMPPAck{{Wire: mapping.WireReceived, ID: "m2"}}},
		{`<message from='juliet@capulet.lit/balcony' to='a@b'><received xmlns='urn:xmpp:receipts' id='m1'/><received xmlns='urn:xmpp:receipts' id='` + long + `'/></message>`,
			nil},
		{`<message from='juliet@capulet.lit/balcony' to='a@b'><x xmlns='jabber:x:event'><delivered/><displayed/><id>m3</id></x><displayed xmlns='urn:xmpp:chat-markers:0' id='m3'/></message>`,
			[]mapping.XMPPAck{{Wire: mapping.WireEventDelivered, ID: "m3"}, {Wire: mapping.WireEventDisplayed, ID: "m3"}, {Wire: mapping.WireMarkerDisplayed, ID: "m3"}}},
	} {
		m, err := decodeString(tc.stanza)
		byWire := func(a, b mapping.XMPPAck) int { return strings.Compare(string(a.Wire), string(b.Wire)) }
		if err == nil {
			slices.SortFunc(m.Acks, byWire) // the core takes them in its table's order
			slices.SortFunc(tc.want, byWire)
		}
		if err != nil || !slices.Equal(m.Acks, tc.want) || m.Event != nil {
			t.Errorf("%s: receipts %v, notice %+v, %v; want %v", tc.stanza[:60], m.Acks, m.Event, err, tc.want)
		}
	}
}
