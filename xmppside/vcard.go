// XEP-0054: vcard-temp, the card of a puppet; XEP-0153: vCard-based
// avatars, the hash of its photo in its presence.

package xmppside

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"xmppbridge/mapping"
)

// NSVCard is the namespace of XEP-0054.
const NSVCard = "vcard-temp"

var _ = register(&xep{
	features: []discoFeature{{at: discoServices + 3, ns: NSVCard, on: onPuppets}},
})

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
// answers for its user. to is a person's bare JID, or an occupant's JID
// in a chat (room/nick), which the room passes on: Prosody 0.12's sends
// it to the occupant's bare real JID, from the asker's occupant JID, and
// the answer back. An error answer means there is none for us, and so
// does a result without a vCard (§3.1: no vCard is item-not-found or an
// empty <vCard/>).
func (c *Component) FetchVCard(ctx context.Context, from, to jid.JID) (*mapping.VCard, error) {
	var card inVCard
	query := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: NSVCard, Local: "vCard"}})
	if err := c.ask(ctx, stanza.IQ{From: from, To: to, Type: stanza.GetIQ}, query, &card, "vCard"); err != nil {
		return nil, err
	}
	out := &mapping.VCard{Nickname: strings.TrimSpace(card.Nickname), FN: strings.TrimSpace(card.FN), PhotoType: strings.TrimSpace(card.Photo.Type)}
	if b64 := strings.Join(strings.Fields(card.Photo.BinVal), ""); b64 != "" {
		photo, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			c.Count("xmpp_vcard", "bad_photo")
			c.Log.Debug().Err(err).Str("jid", to.String()).Msg("A vCard photo that is not base64")
		} else {
			out.Photo = photo
		}
	}
	return out, nil
}

// ask sends iq with payload and decodes the answer's payload into v (nil:
// any result will do), within vCardTimeout. An error answer wraps
// ErrPermanent (the entity will not tell us), and so does an answer that
// is not one (answered garbage: no such request will ever get another);
// no session is ErrNotConnected; no answer in time is a plain error (the
// entity's server may come back). what names the question in errors.
//
// The answer is read here rather than by mellium's UnmarshalIQElement,
// which panics on a payload that opens with character data.
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
	resp, err := sess.SendIQElement(ctx, payload, iq)
	if err != nil {
		return fmt.Errorf("%s of %s: %w", what, iq.To, err)
	}
	// The session reads no further stanza until the answer is closed.
	defer resp.Close()
	err = readAnswer(resp, v)
	var se stanza.Error
	switch {
	case errors.As(err, &se):
		answer := &mapping.StanzaError{Type: string(se.Type), Condition: string(se.Condition)}
		return fmt.Errorf("%w: %s of %s: %w", mapping.ErrPermanent, what, iq.To, answer)
	case errors.Is(err, errGarbage):
		c.Count("xmpp_answer", "garbage")
		return fmt.Errorf("%w: %s of %s answered garbage: %w", mapping.ErrPermanent, what, iq.To, err)
	case err != nil:
		return fmt.Errorf("read the answer to the %s of %s: %w", what, iq.To, err)
	}
	return nil
}

// errGarbage is an IQ answer that is well-formed XML but not an answer to
// the question: no payload where one is needed, or one that does not
// decode.
var errGarbage = errors.New("not an answer")

// readAnswer reads the IQ answer r into v: a stanza.Error for an error
// answer; else the first element of the payload, after any character
// data (XML allows it beside the element; RFC 6120 §8.2.3 allows no
// other child), comments or processing instructions. Only a broken
// stream is not errGarbage: the server parsed the stanza before it
// routed it to us, so the rest is what the remote entity said.
func readAnswer(r xml.TokenReader, v any) error {
	tok, err := r.Token()
	if err != nil {
		return garbageUnlessLink(err)
	}
	start, ok := tok.(xml.StartElement)
	if !ok {
		return fmt.Errorf("%w: a %T where the IQ starts", errGarbage, tok)
	}
	if _, err := stanza.UnmarshalIQError(r, start); err != nil {
		var se stanza.Error
		if errors.As(err, &se) {
			return se
		}
		return garbageUnlessLink(err)
	}
	if v == nil {
		return nil
	}
	d := xml.NewTokenDecoder(xmlstream.Inner(r))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: no payload", errGarbage)
		} else if err != nil {
			return garbageUnlessLink(err)
		}
		if start, ok := tok.(xml.StartElement); ok {
			if err := d.DecodeElement(v, &start); err != nil {
				return garbageUnlessLink(err)
			}
			return nil
		}
	}
}

// garbageUnlessLink marks err errGarbage unless it is the stream's own
// failure (the connection, or XML the server would never have sent),
// which says nothing of the entity asked.
func garbageUnlessLink(err error) error {
	var ne net.Error
	var se *xml.SyntaxError
	if errors.As(err, &ne) || errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return err
	}
	return fmt.Errorf("%w: %w", errGarbage, err)
}
