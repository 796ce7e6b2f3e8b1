// XEP-0359: Unique and Stable Stanza IDs.

package xmppside

// NSSID is the namespace of XEP-0359; its feature is advertised in disco.
const NSSID = "urn:xmpp:sid:0"

// originID is <origin-id xmlns='urn:xmpp:sid:0' id='…'/> (XEP-0359 §3.2).
type originID struct {
	XMLName struct{} `xml:"urn:xmpp:sid:0 origin-id"`
	ID      string   `xml:"id,attr"`
}

// stanzaID is <stanza-id xmlns='urn:xmpp:sid:0' id='…' by='…'/> (§3.1).
type stanzaID struct {
	ID string `xml:"id,attr"`
	By string `xml:"by,attr"`
}
