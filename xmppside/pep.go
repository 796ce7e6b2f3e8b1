// XEP-0163: Personal Eventing Protocol, as a contact: the puppets ask
// (XEP-0115 "+notify" features) for their contacts' nicknames (XEP-0172
// §4.5) and avatar metadata (XEP-0084 §4.2), which the contacts' servers
// then send them as notifications (XEP-0060 §7.1.2.1).

package xmppside

import (
	"strings"

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

// pubsubEvent is a notification's <event/>: the items of one node.
type pubsubEvent struct {
	Items struct {
		Node  string `xml:"node,attr"`
		Items []struct {
			ID       string  `xml:"id,attr"`
			Nick     *string `xml:"http://jabber.org/protocol/nick nick"`
			Metadata *struct {
				Info []struct {
					ID string `xml:"id,attr"`
				} `xml:"info"`
			} `xml:"urn:xmpp:avatar:metadata metadata"`
		} `xml:"item"`
	} `xml:"items"`
}

// decodePEP reads a notification of the sender's nick or avatar metadata:
// the newest item (the last) of the node. An avatar's id is the hex SHA-1
// of its image (XEP-0084 §4.2.1); an empty <metadata/> is no avatar
// (§4.6); several <info/> describe one image in several forms, the first
// being the PNG the protocol requires.
func decodePEP(in *inMessage, m *mapping.XMPPMessage) {
	if in.PEP == nil || len(in.PEP.Items.Items) == 0 {
		return
	}
	item := in.PEP.Items.Items[len(in.PEP.Items.Items)-1]
	switch in.PEP.Items.Node {
	case NSNick:
		if item.Nick != nil {
			nick := cleanNick(*item.Nick)
			m.PEP = &mapping.PEPUpdate{Nick: &nick}
		}
	case NSAvatarMetadata:
		if item.Metadata != nil {
			id := ""
			if len(item.Metadata.Info) > 0 {
				id = strings.ToLower(strings.TrimSpace(item.Metadata.Info[0].ID))
			}
			m.PEP = &mapping.PEPUpdate{Avatar: &id}
		}
	}
}
