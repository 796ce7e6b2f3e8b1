// XEP-0022: Message Events (jabber:x:event).

package xmppside

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
