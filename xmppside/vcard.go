// XEP-0054: vcard-temp, the card of a puppet.

package xmppside

import "encoding/xml"

// NSVCard is the namespace of XEP-0054.
const NSVCard = "vcard-temp"

// vCard is the part of a vcard-temp the bridge fills: the puppet's name,
// formatted (FN) and as a nickname (XEP-0054 §3.1; clients show either).
type vCard struct {
	XMLName  xml.Name `xml:"vcard-temp vCard"`
	FN       string   `xml:"FN,omitempty"`
	Nickname string   `xml:"NICKNAME,omitempty"`
}
