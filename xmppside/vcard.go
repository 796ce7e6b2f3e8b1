// XEP-0054: vcard-temp, the card of a puppet; XEP-0153: vCard-based
// avatars, the hash of its photo in its presence.

package xmppside

import (
	"encoding/base64"
	"encoding/xml"

	"xmppbridge/mapping"
)

// NSVCard is the namespace of XEP-0054.
const NSVCard = "vcard-temp"

// NSVCardUpdate is the namespace of XEP-0153's presence element.
const NSVCardUpdate = "vcard-temp:x:update"

// vCard is the part of a vcard-temp the bridge fills: the puppet's name,
// formatted (FN) and as a nickname (XEP-0054 §3.1; clients show either),
// and its avatar (PHOTO, XEP-0054 §3.1 and XEP-0153 §3.1).
type vCard struct {
	XMLName  xml.Name `xml:"vcard-temp vCard"`
	FN       string   `xml:"FN,omitempty"`
	Nickname string   `xml:"NICKNAME,omitempty"`
	Photo    *photo   `xml:"PHOTO,omitempty"`
}

// photo is a vCard's PHOTO: the image inline, base64 (XEP-0054 §3.1
// Example 2, XEP-0153 §3.1: "TYPE" and "BINVAL").
type photo struct {
	Type   string `xml:"TYPE"`
	BinVal string `xml:"BINVAL"`
}

// puppetVCard is the vCard of a puppet whose user has the profile p.
func puppetVCard(p mapping.Profile) vCard {
	card := vCard{FN: p.Name, Nickname: p.Name}
	if len(p.Photo) > 0 {
		card.Photo = &photo{Type: p.PhotoType, BinVal: base64.StdEncoding.EncodeToString(p.Photo)}
	}
	return card
}

// vCardUpdate is XEP-0153 §3.1's <x/> in presence: <photo/> holds the hex
// SHA-1 of the vCard's PHOTO, empty for none (a client then shows none).
type vCardUpdate struct {
	XMLName xml.Name `xml:"vcard-temp:x:update x"`
	Photo   string   `xml:"photo"`
}
