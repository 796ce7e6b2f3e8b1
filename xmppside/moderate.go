// XEP-0425: Message Moderation: version 0.2 (urn:xmpp:message-moderate:0,
// in a XEP-0422 <apply-to/>), which Prosody's mod_muc_moderation speaks,
// and, as the room's word only, version 0.3 (urn:xmpp:message-moderate:1,
// inside a XEP-0424 <retract/>).

package xmppside

import (
	"context"
	"encoding/xml"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"xmppbridge/mapping"
)

// The namespaces of XEP-0425: 0.2's, in a XEP-0422 <apply-to/>, and
// 0.3's, inside a XEP-0424 <retract/>.
const (
	NSModerate0 = "urn:xmpp:message-moderate:0"
	NSModerate1 = "urn:xmpp:message-moderate:1"
)

// Its elements sit inside XEP-0422's and XEP-0424's, which retract.go
// reads; a puppet says it understands them (§2).
var _ = register(&xep{
	features: []discoFeature{{at: discoRelations + 6, ns: NSModerate0, on: onPuppets}},
})

// moderated0 is 0.2's <moderated by/> in an <apply-to/> (§3.1): a
// retraction when it holds a <retract/> of urn:xmpp:message-retract:0.
type moderated0 struct {
	By      string    `xml:"by,attr"`
	Retract *struct{} `xml:"urn:xmpp:message-retract:0 retract"`
	Reason  string    `xml:"urn:xmpp:message-moderate:0 reason"`
}

// moderated1 is 0.3's <moderated by/> in a <retract id/> (§3.1), whose
// <reason/> is the <retract/>'s.
type moderated1 struct {
	By string `xml:"by,attr"`
}

// moderation0 is the core's value of a 0.2 moderation of the message id,
// nil if it retracts nothing (0.2 left room for other moderations).
func moderation0(id string, m *moderated0) *mapping.XMPPModeration {
	if m == nil || m.Retract == nil {
		return nil
	}
	return &mapping.XMPPModeration{ID: id, By: m.By, Reason: m.Reason}
}

// Moderate implements mapping.XMPPSide: from, an occupant of room, asks it
// to retract the message of stanza-id sid, as 0.2's example (§3) does:
//
//	<iq type='set' to='room'>
//	  <apply-to xmlns='urn:xmpp:fasten:0' id='sid'>
//	    <moderate xmlns='urn:xmpp:message-moderate:0'>
//	      <retract xmlns='urn:xmpp:message-retract:0'/>
//	      <reason>…</reason>
//	    </moderate>
//	  </apply-to>
//	</iq>
//
// The room answers a result and broadcasts the moderation (§3.1), or an
// error (§3.2; <forbidden/> to an occupant who is no moderator).
func (c *Component) Moderate(ctx context.Context, from, room jid.JID, sid, reason string) error {
	return c.ask(ctx, stanza.IQ{From: from, To: room.Bare(), Type: stanza.SetIQ}, moderateRequest(sid, reason), nil, "moderation")
}

// moderateRequest is the <apply-to/> of a request to retract the message
// of stanza-id sid, with reason if not "" (§3).
func moderateRequest(sid, reason string) xml.TokenReader {
	inner := []xml.TokenReader{xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: mapping.NSRetract0, Local: "retract"}})}
	if reason != "" {
		// In <moderate/>'s namespace, as in the example.
		inner = append(inner, xmlstream.Wrap(xmlstream.Token(xml.CharData(reason)), xml.StartElement{Name: xml.Name{Local: "reason"}}))
	}
	return xmlstream.Wrap(
		xmlstream.Wrap(xmlstream.MultiReader(inner...), xml.StartElement{Name: xml.Name{Space: NSModerate0, Local: "moderate"}}),
		xml.StartElement{Name: xml.Name{Space: NSFasten, Local: "apply-to"}, Attr: []xml.Attr{{Name: xml.Name{Local: "id"}, Value: sid}}},
	)
}
