// XEP-0054: vcard-temp, the card of a puppet; XEP-0153: vCard-based
// avatars, the hash of its photo in its presence.

package xmppside

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

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

// inVCard is what the bridge reads of a person's vCard (XEP-0054 §3.1):
// the names a ghost may take, and the photo given inline (an EXTVAL, a
// URL, is not fetched).
type inVCard struct {
	XMLName  xml.Name `xml:"vcard-temp vCard"`
	FN       string   `xml:"FN"`
	Nickname string   `xml:"NICKNAME"`
	Photo    struct {
		Type   string `xml:"TYPE"`
		BinVal string `xml:"BINVAL"`
	} `xml:"PHOTO"`
}

// vCardTimeout bounds the wait for a person's server to answer.
const vCardTimeout = 20 * time.Second

// FetchVCard implements mapping.XMPPSide: an IQ get of to's vcard-temp
// from a puppet (XEP-0054 §3.1, Example 3), which the person's server
// answers for its user. An error answer means there is none for us.
func (c *Component) FetchVCard(ctx context.Context, from, to jid.JID) (*mapping.VCard, error) {
	var card inVCard // a result with no payload leaves it empty
	query := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: NSVCard, Local: "vCard"}})
	if err := c.ask(ctx, stanza.IQ{From: from, To: to.Bare(), Type: stanza.GetIQ}, query, &card, "vCard"); err != nil {
		return nil, err
	}
	out := &mapping.VCard{Nickname: strings.TrimSpace(card.Nickname), FN: strings.TrimSpace(card.FN), PhotoType: strings.TrimSpace(card.Photo.Type)}
	if b64 := strings.Join(strings.Fields(card.Photo.BinVal), ""); b64 != "" {
		photo, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			c.Count("xmpp_vcard", "bad_photo")
			c.Log.Debug().Err(err).Str("jid", to.Bare().String()).Msg("A vCard photo that is not base64")
		} else {
			out.Photo = photo
		}
	}
	return out, nil
}

// ask sends iq with payload and decodes the answer's payload into v,
// within vCardTimeout: an error answer wraps ErrPermanent (the entity
// will not tell us), no session is ErrNotConnected. what names the
// question in errors.
func (c *Component) ask(ctx context.Context, iq stanza.IQ, payload xml.TokenReader, v any, what string) error {
	c.mu.Lock()
	sess := c.sess
	c.mu.Unlock()
	if sess == nil {
		return mapping.ErrNotConnected
	}
	ctx, cancel := context.WithTimeout(ctx, vCardTimeout)
	defer cancel()
	iq.ID = mapping.NewXMPPID()
	err := sess.UnmarshalIQElement(ctx, payload, iq, v)
	var se stanza.Error
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%w: %s of %s: %s", mapping.ErrPermanent, what, iq.To, se.Condition)
	case err != nil:
		return fmt.Errorf("%s of %s: %w", what, iq.To, err)
	}
	return nil
}
