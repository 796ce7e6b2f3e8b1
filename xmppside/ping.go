// XEP-0199: XMPP Ping, as the puppets ask it (XEP-0410, MUC self-ping).

package xmppside

import (
	"context"
	"encoding/xml"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Ping implements mapping.XMPPSide: a XEP-0199 <ping/> to to, as from.
func (c *Component) Ping(ctx context.Context, from, to jid.JID) error {
	ping := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: NSPing, Local: "ping"}})
	return c.ask(ctx, stanza.IQ{From: from, To: to, Type: stanza.GetIQ}, ping, nil, "ping")
}
