// XEP-0163: Personal Eventing Protocol, as a contact: the puppets ask
// (XEP-0115 "+notify" features) for their contacts' nicknames (XEP-0172
// §4.5) and avatar metadata (XEP-0084 §4.2), which the contacts' servers
// then send them as notifications (XEP-0060 §7.1.2.1).

package xmppside

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"strings"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"xmppbridge/mapping"
)

const (
	// NSPubSubEvent is the namespace of pubsub notifications (XEP-0060).
	NSPubSubEvent = "http://jabber.org/protocol/pubsub#event"
	// NSAvatarMetadata is the PEP node of XEP-0084 avatar metadata.
	NSAvatarMetadata = "urn:xmpp:avatar:metadata"
	// The "+notify" features of XEP-0163 §4.1: the nodes a puppet wants
	// notifications of.
	NSNickNotify           = NSNick + "+notify"
	NSAvatarMetadataNotify = NSAvatarMetadata + "+notify"
)

var _ = register(&xep{
	namespaces: []string{NSPubSubEvent},
	decode:     decodePEP,
	finish:     finishPEP,
	features: []discoFeature{
		{at: discoPEP + 0, ns: NSNickNotify, on: onPuppets},
		{at: discoPEP + 1, ns: NSAvatarMetadataNotify, on: onPuppets},
	},
})

// pepKept is the message's pubsub <event/>, its children read into one
// value if there are several.
var pepKept = newStateKey()

// pubsubEvent is a notification's <event/>: the items of one node.
type pubsubEvent struct {
	Items struct {
		Node  string `xml:"node,attr"`
		Items []struct {
			ID       string  `xml:"id,attr"`
			Nick     *string `xml:"http://jabber.org/protocol/nick nick"`
			Metadata *struct {
				Info []struct {
					ID   string `xml:"id,attr"`
					Type string `xml:"type,attr"`
				} `xml:"info"`
			} `xml:"urn:xmpp:avatar:metadata metadata"`
		} `xml:"item"`
	} `xml:"items"`
}

// decodePEP reads a pubsub <event/> (XEP-0060 §7.1.2.1).
func decodePEP(in *inMessage, start xml.StartElement) error {
	if start.Name.Local != "event" {
		return in.skip()
	}
	return in.d.DecodeElement(stateOf[pubsubEvent](in, pepKept), &start)
}

// finishPEP reads a notification of the sender's nick or avatar metadata:
// the newest item (the last) of the node. An avatar's id is the hex SHA-1
// of its image (XEP-0084 §4.2.1); an empty <metadata/> is no avatar
// (§4.6); several <info/> describe one image in several forms, the first
// being the PNG the protocol requires.
func finishPEP(in *inMessage) {
	ev, m := keptBy[pubsubEvent](in, pepKept), &in.m
	if ev == nil || len(ev.Items.Items) == 0 {
		return
	}
	item := ev.Items.Items[len(ev.Items.Items)-1]
	switch ev.Items.Node {
	case NSNick:
		if item.Nick != nil {
			nick := cleanNick(*item.Nick)
			m.PEP = &mapping.PEPUpdate{Nick: &nick}
		}
	case NSAvatarMetadata:
		if item.Metadata != nil {
			id, typ := "", ""
			if len(item.Metadata.Info) > 0 {
				id = strings.ToLower(strings.TrimSpace(item.Metadata.Info[0].ID))
				typ = strings.TrimSpace(item.Metadata.Info[0].Type)
			}
			m.PEP = &mapping.PEPUpdate{Avatar: &id, AvatarType: typ}
		}
	}
}

// NSAvatarData is the PEP node of XEP-0084 avatar data.
const NSAvatarData = "urn:xmpp:avatar:data"

// avatarItems is the answer to a request for an avatar data item.
type avatarItems struct {
	XMLName xml.Name `xml:"http://jabber.org/protocol/pubsub pubsub"`
	Items   struct {
		Item []struct {
			ID   string `xml:"id,attr"`
			Data string `xml:"urn:xmpp:avatar:data data"`
		} `xml:"item"`
	} `xml:"items"`
}

// FetchAvatar implements mapping.XMPPSide: the puppet asks the person's
// PEP service for the avatar data item id (XEP-0084 §4.4 Example 6,
// XEP-0060 §6.5.8); an error answer (the access model does not let the
// puppet read it) or no such item is ErrPermanent.
func (c *Component) FetchAvatar(ctx context.Context, from, to jid.JID, id string) ([]byte, error) {
	item := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Local: "item"}, Attr: []xml.Attr{{Name: xml.Name{Local: "id"}, Value: id}}})
	items := xmlstream.Wrap(item, xml.StartElement{Name: xml.Name{Local: "items"}, Attr: []xml.Attr{{Name: xml.Name{Local: "node"}, Value: NSAvatarData}}})
	query := xmlstream.Wrap(items, xml.StartElement{Name: xml.Name{Space: "http://jabber.org/protocol/pubsub", Local: "pubsub"}})
	var got avatarItems
	if err := c.ask(ctx, stanza.IQ{From: from, To: to.Bare(), Type: stanza.GetIQ}, query, &got, "avatar"); err != nil {
		return nil, err
	}
	for _, it := range got.Items.Item {
		if it.ID != id {
			continue
		}
		data, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(it.Data), ""))
		if err != nil {
			return nil, fmt.Errorf("%w: avatar of %s is not base64: %w", mapping.ErrPermanent, to.Bare(), err)
		}
		return data, nil
	}
	return nil, fmt.Errorf("%w: avatar of %s: no item %s", mapping.ErrPermanent, to.Bare(), id)
}
