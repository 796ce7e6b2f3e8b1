// XEP-0184: Message Delivery Receipts.

package xmppside

import "xmppbridge/mapping"

// NSReceipts is the namespace of XEP-0184 (§4).
const NSReceipts = "urn:xmpp:receipts"

// receiptsRequest is <request xmlns='urn:xmpp:receipts'/> (XEP-0184 §5).
type receiptsRequest struct {
	XMLName struct{} `xml:"urn:xmpp:receipts request"`
}

// receiptsReceived is <received xmlns='urn:xmpp:receipts' id='…'/>
// (XEP-0184 §5): id is that of the message being acknowledged.
type receiptsReceived struct {
	XMLName struct{} `xml:"urn:xmpp:receipts received"`
	ID      string   `xml:"id,attr"`
}

// decodeReceipts reads XEP-0184's part of a message: a <request/> (§5:
// the sender would like a receipt) and a <received/> naming the message
// it acknowledges.
func decodeReceipts(in *inMessage, m *mapping.XMPPMessage) {
	m.Requests.Receipt = in.Request != nil
	if in.Received != nil && len(in.Received.ID) <= maxIDLen {
		m.Received = in.Received.ID
	}
}

// encodeReceiptRequest writes <request/> if r asks for a receipt (§4).
func encodeReceiptRequest(t *tokens, r mapping.Requests) {
	if r.Receipt {
		t.empty(NSReceipts, "request")
	}
}

// encodeReceived writes <received id='…'/> for the message m acknowledges
// (§5).
func encodeReceived(t *tokens, m *mapping.OutMessage) {
	if m.Received != "" {
		t.empty(NSReceipts, "received", "id", m.Received)
	}
}
