// XEP-0333: Displayed Markers (urn:xmpp:chat-markers:0).

package xmppside

// NSMarkers is the namespace of XEP-0333.
const NSMarkers = "urn:xmpp:chat-markers:0"

// markable is <markable/>: the sender would like to learn when the
// message is displayed.
type markable struct {
	XMLName struct{} `xml:"urn:xmpp:chat-markers:0 markable"`
}

// marker is <displayed id='…'/> (and the received/acknowledged markers the
// bridge reads but does not translate).
type marker struct {
	ID string `xml:"id,attr"`
}
