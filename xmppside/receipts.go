// XEP-0184: Message Delivery Receipts.

package xmppside

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
