// XEP-0045 §10.2: a room's configuration, as its owner changes it, with
// XEP-0004 data forms.

package xmppside

import (
	"context"
	"encoding/xml"
	"fmt"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"xmppbridge/mapping"
)

// Namespaces of a room's configuration.
const (
	NSMUCOwner = "http://jabber.org/protocol/muc#owner"
	NSData     = "jabber:x:data"
	// fieldRoomName is the configuration form's field of the room's name
	// (§15.5.3, muc#roomconfig).
	fieldRoomName = "muc#roomconfig_roomname"
)

// maxFormFields bounds what the bridge sends back of a room's form: a
// room has a few dozen options (Prosody 0.12: about 20).
const maxFormFields = 200

// ownerQuery is a room's answer to its owner's request for the form
// (§10.2, Example 163).
type ownerQuery struct {
	XMLName xml.Name  `xml:"http://jabber.org/protocol/muc#owner query"`
	Form    *dataForm `xml:"jabber:x:data x"`
}

// dataForm is a XEP-0004 form (§3.1): only what is sent back of it.
type dataForm struct {
	Type   string      `xml:"type,attr"`
	Fields []formField `xml:"field"`
}

type formField struct {
	Var    string   `xml:"var,attr"`
	Type   string   `xml:"type,attr"`
	Values []string `xml:"value"`
}

// RenameRoom implements mapping.XMPPSide: as from, the room's owner, it
// asks the room for its configuration form and submits it with the
// room's name changed to name (§10.2, Examples 163-165): every field with
// the value the room gave it, so that nothing else changes. A room that
// answers either question with an error (Prosody: <forbidden/>, type
// auth, to one not its owner) is an error wrapping ErrPermanent and a
// *StanzaError; a form without the name's field, a *StanzaError
// feature-not-implemented.
func (c *Component) RenameRoom(ctx context.Context, from, room jid.JID, name string) error {
	var got ownerQuery
	get := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: NSMUCOwner, Local: "query"}})
	if err := c.ask(ctx, stanza.IQ{From: from, To: room.Bare(), Type: stanza.GetIQ}, get, &got, "configuration form"); err != nil {
		return err
	}
	submit, ok := renamedForm(got.Form, name)
	if !ok {
		return fmt.Errorf("%w: the configuration form of %s has no %s: %w", mapping.ErrPermanent, room.Bare(), fieldRoomName,
			&mapping.StanzaError{Type: "cancel", Condition: "feature-not-implemented"})
	}
	return c.ask(ctx, stanza.IQ{From: from, To: room.Bare(), Type: stanza.SetIQ}, submit, nil, "configuration")
}

// InstantRoom implements mapping.XMPPSide: as from, the owner of the
// room its join made, it accepts the room's default configuration with
// an empty form of type submit (§10.1.2, Example 155), which unlocks the
// room for others (Prosody 0.12 keeps a new room locked until then,
// `muc_room_locking`, for 300 s). An error answer wraps ErrPermanent
// and a *StanzaError.
func (c *Component) InstantRoom(ctx context.Context, from, room jid.JID) error {
	form := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: NSData, Local: "x"}, Attr: []xml.Attr{{Name: xml.Name{Local: "type"}, Value: "submit"}}})
	submit := xmlstream.Wrap(form, xml.StartElement{Name: xml.Name{Space: NSMUCOwner, Local: "query"}})
	return c.ask(ctx, stanza.IQ{From: from, To: room.Bare(), Type: stanza.SetIQ}, submit, nil, "instant room")
}

// renamedForm is the submission of the room's form f (XEP-0004 §3.1: a
// form of type submit, each field by its var with its values; fixed
// fields, which have none, are left out) with the name changed, false if
// f has no field for the name.
func renamedForm(f *dataForm, name string) (xml.TokenReader, bool) {
	if f == nil {
		return nil, false
	}
	var fields []xml.TokenReader
	named := false
	for _, field := range f.Fields {
		if field.Var == "" || field.Type == "fixed" || len(fields) >= maxFormFields {
			continue
		}
		values := field.Values
		if field.Var == fieldRoomName {
			values, named = []string{name}, true
		}
		var vs []xml.TokenReader
		for _, v := range values {
			vs = append(vs, xmlstream.Wrap(xmlstream.Token(xml.CharData(v)), xml.StartElement{Name: xml.Name{Local: "value"}}))
		}
		fields = append(fields, xmlstream.Wrap(xmlstream.MultiReader(vs...),
			xml.StartElement{Name: xml.Name{Local: "field"}, Attr: []xml.Attr{{Name: xml.Name{Local: "var"}, Value: field.Var}}}))
	}
	if !named {
		return nil, false
	}
	form := xmlstream.Wrap(xmlstream.MultiReader(fields...),
		xml.StartElement{Name: xml.Name{Space: NSData, Local: "x"}, Attr: []xml.Attr{{Name: xml.Name{Local: "type"}, Value: "submit"}}})
	return xmlstream.Wrap(form, xml.StartElement{Name: xml.Name{Space: NSMUCOwner, Local: "query"}}), true
}
