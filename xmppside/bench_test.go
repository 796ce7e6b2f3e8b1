package xmppside

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// The decode of a <message/> is on the hot path of receipts
// (docs/architecture.md, a <received/> from XMPP to Matrix, step 2):
// a receipt, and a message from a client that asks for everything.
func BenchmarkDecodeReceived(b *testing.B) {
	benchDecode(b, `<message from='juliet@capulet.lit/balcony' to='alice\3aexample.org@matrix.example.org' id='r1'>`+
		`<received xmlns='urn:xmpp:receipts' id='mx0123456789abcdef'/></message>`)
}

func BenchmarkDecodeBodyRequests(b *testing.B) {
	benchDecode(b, `<message from='juliet@capulet.lit/balcony' to='alice\3aexample.org@matrix.example.org' id='m1' type='chat'>`+
		`<body>It is the east, and Juliet is the sun.</body><request xmlns='urn:xmpp:receipts'/>`+
		`<markable xmlns='urn:xmpp:chat-markers:0'/><origin-id xmlns='urn:xmpp:sid:0' id='m1'/></message>`)
}

func benchDecode(b *testing.B, s string) {
	r := strings.NewReader(s)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(s)
		d := xml.NewDecoder(r)
		tok, err := d.Token()
		if err != nil {
			b.Fatal(err)
		}
		start := tok.(xml.StartElement)
		if _, err := decodeMessage(d, &start); err != nil {
			b.Fatal(err)
		}
	}
}

// The encode of a receipt toward XMPP, the bridge's bulk output
// (docs/architecture.md, an m.read from Matrix to XMPP, step 9).
func BenchmarkEncodeReceived(b *testing.B) {
	m := &mapping.OutMessage{
		ID: "r1", Type: "chat", Acks: []mapping.XMPPAck{{Wire: mapping.WireReceived, ID: "richard2-4.1.247"}},
		From: jid.MustParse(`alice\3aexample.org@matrix.example.org`), To: jid.MustParse("juliet@capulet.lit"),
	}
	e := xml.NewEncoder(io.Discard)
	b.ReportAllocs()
	for b.Loop() {
		if err := writeMessage(e, m); err != nil {
			b.Fatal(err)
		}
	}
}
