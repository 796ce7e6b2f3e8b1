// XEP-0356: Privileged Entity.

package xmppside

import (
	"context"
	"encoding/xml"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"xmppbridge/mapping"
)

// NSPrivilege is the namespace of XEP-0356 version 0.4 and later, the one
// Prosody's mod_privilege and ejabberd's mod_privilege speak.
const NSPrivilege = "urn:xmpp:privilege:2"

// NSRoster is the roster namespace of RFC 6121 §2.
const NSRoster = "jabber:iq:roster"

var _ = register(&xep{
	namespaces: []string{NSPrivilege},
	decode:     decodePrivilege,
})

// privilegeKept is the <privilege/> of a message, read by the component
// (grantOf), not by the core.
var privilegeKept = newStateKey()

// decodePrivilege reads a <privilege/>, several into one value.
func decodePrivilege(in *inMessage, start xml.StartElement) error {
	if start.Name.Local != "privilege" {
		return in.skip()
	}
	return in.d.DecodeElement(stateOf[privilegeElem](in, privilegeKept), &start)
}

// grantOf is the <privilege/> of a message, nil if it has none.
func grantOf(in *inMessage) *privilegeElem {
	return keptBy[privilegeElem](in, privilegeKept)
}

// privilegeElem is the <privilege/> a server sends the component when it
// connects: the permissions it grants, one <perm/> per access (roster,
// message, presence, iq).
type privilegeElem struct {
	Perms []struct {
		Access string `xml:"access,attr"`
		Type   string `xml:"type,attr"`
	} `xml:"perm"`
}

// notePrivilege records what a server grants the component for its own
// users. Only a server's own address (a bare domain) can grant, and only
// for its own domain; the grants of a session end with it.
func (c *Component) notePrivilege(grant *privilegeElem, from jid.JID) {
	if from.Localpart() != "" || from.Resourcepart() != "" || from.Equal(c.Domain) {
		c.Count("xmpp_privilege", string(mapping.ReasonWrongSender))
		return
	}
	roster := ""
	for _, p := range grant.Perms {
		if p.Access == "roster" {
			roster = p.Type
		}
	}
	c.mu.Lock()
	if c.roster == nil {
		c.roster = map[string]string{}
	}
	c.roster[from.Domainpart()] = roster
	c.mu.Unlock()
	c.Log.Info().Str("server", from.String()).Str("roster", roster).Msg("The XMPP server grants the component privileges (XEP-0356)")
}

// mayWriteRoster tells whether the server of owner lets the component
// write its users' rosters.
func (c *Component) mayWriteRoster(owner jid.JID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.roster[owner.Domainpart()] {
	case "set", "both":
		return true
	}
	return false
}

// SetRosterItem implements mapping.XMPPSide: a roster set on owner's
// behalf (XEP-0356, roster access; RFC 6121 §2.3), naming item and putting
// it in the group "Matrix". It sets no subscription: the server keeps the
// one the item has, so that the contact's presence is still only what the
// person and the puppet agreed. Without the permission: ErrNoPrivilege.
func (c *Component) SetRosterItem(ctx context.Context, owner, item jid.JID, name string) error {
	if !c.mayWriteRoster(owner) {
		return mapping.ErrNoPrivilege
	}
	group := xmlstream.Wrap(xmlstream.Token(xml.CharData(mapping.RosterGroup)), xml.StartElement{Name: xml.Name{Local: "group"}})
	entry := xmlstream.Wrap(group, xml.StartElement{Name: xml.Name{Local: "item"}, Attr: []xml.Attr{
		{Name: xml.Name{Local: "jid"}, Value: item.Bare().String()},
		{Name: xml.Name{Local: "name"}, Value: name},
	}})
	query := xmlstream.Wrap(entry, xml.StartElement{Name: xml.Name{Space: NSRoster, Local: "query"}})
	// RFC 6121 §2.3.2: the server answers an empty result.
	return c.ask(ctx, stanza.IQ{From: c.Domain, To: owner.Bare(), Type: stanza.SetIQ}, query, nil, "roster")
}
