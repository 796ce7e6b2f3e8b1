// XEP-0184: Message Delivery Receipts.

package xmppside

import (
	"encoding/xml"

	"xmppbridge/mapping"
)

// NSReceipts is the namespace of XEP-0184 (§4).
const NSReceipts = "urn:xmpp:receipts"

var _ = register(&xep{
	namespaces: []string{NSReceipts},
	decode:     decodeReceipts,
	encode: []encodeStep{
		{at: wireRequests + 0, write: encodeReceiptRequest},
		{at: wireAnswers + 0, write: encodeReceived},
	},
	features: []discoFeature{{at: discoMessages + 0, ns: NSReceipts, on: onBoth}},
})

// decodeReceipts reads XEP-0184's part of a message: a <request/> (§5:
// the sender would like a receipt) and a <received id='…'/> naming the
// message it acknowledges.
func decodeReceipts(in *inMessage, start xml.StartElement) error {
	switch start.Name.Local {
	case "request":
		in.m.Requests.Receipt = true
	case "received":
		if id, ok := attr(start, "id"); ok {
			in.ack(mapping.WireReceived, id)
		}
	}
	return in.skip()
}

// encodeReceiptRequest writes <request/> if m asks for a receipt (§4).
func encodeReceiptRequest(t *tokens, m *mapping.OutMessage) {
	if m.Request.Receipt {
		t.empty(NSReceipts, "request")
	}
}

// encodeReceived writes <received id='…'/> for the message m acknowledges
// (§5).
func encodeReceived(t *tokens, m *mapping.OutMessage) {
	if id := acked(m, mapping.WireReceived); id != "" {
		t.empty(NSReceipts, "received", "id", id)
	}
}
