// XEP-0030: Service Discovery, and the other IQs the component answers.

package xmppside

import (
	"cmp"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"xmppbridge/mapping"
)

// Namespaces of the IQ payloads the component answers.
const (
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
	NSPing       = "urn:xmpp:ping" // XEP-0199
)

// discoFeature is a feature (XEP-0030 §3.1) a XEP registers, where it
// is listed, and on which entities.
type discoFeature struct {
	at discoPlace
	ns string
	on discoEntities
}

// discoPlace is where a feature is listed in disco#info: XEP-0030 sets no
// order, and the bridge keeps one (disco itself, what messages carry,
// the services, the PEP notifications, relations; within a group by the
// number added) so that its answer does not change with the files that
// register the features.
type discoPlace int

const (
	discoSelf      discoPlace = 100
	discoMessages  discoPlace = 200
	discoServices  discoPlace = 300
	discoPEP       discoPlace = 400
	discoRelations discoPlace = 500
)

// discoEntities are those that have a feature: every puppet, the
// component's domain, or both.
type discoEntities int

const (
	onPuppets discoEntities = 1 << iota
	onDomain
	onBoth = onPuppets | onDomain
)

var _ = register(&xep{features: []discoFeature{
	{at: discoSelf + 0, ns: NSDiscoInfo, on: onBoth},
	{at: discoSelf + 1, ns: NSDiscoItems, on: onDomain},
	{at: discoServices + 0, ns: NSPing, on: onBoth},
	// XEP-0393: the bodies the bridge writes and reads are styled
	// (mapping/styling.go).
	{at: discoRelations + 5, ns: mapping.NSStyling, on: onBoth},
}})

// puppetFeatures is what every puppet supports: the receipts the bridge
// translates, IM-NG routing (it is the puppets' server), stable ids, the
// entity capabilities in their presence, the PEP nodes it would be told
// of, and relations. caps.go hashes it, so the puppets' caps ver changes
// with it. domainFeatures is what the component itself supports. Both
// are built from what the XEPs register (buildDisco).
var puppetFeatures, domainFeatures []string

// buildDisco makes the features lists from what the XEPs registered, and
// the puppets' caps ver from theirs.
func buildDisco(features []discoFeature) {
	slices.SortFunc(features, func(a, b discoFeature) int { return cmp.Compare(a.at, b.at) })
	for i, f := range features {
		if i > 0 && features[i-1].at == f.at {
			panic(fmt.Sprintf("xmppside: two disco features at place %d", f.at))
		}
		if f.on&onPuppets != 0 {
			puppetFeatures = append(puppetFeatures, f.ns)
		}
		if f.on&onDomain != 0 {
			domainFeatures = append(domainFeatures, f.ns)
		}
	}
	puppetVer = capsVer([]identity{puppetIdentity}, puppetFeatures)
}

// puppetIdentity is every puppet's. "client"/"pc": a puppet stands for a
// person using Matrix clients, not for an automated "bot"; clients treat
// "pc" contacts as people and return receipts to them.
var puppetIdentity = identity{Category: "client", Type: "pc", Name: "Matrix"}

type inIQ struct {
	XMLName xml.Name `xml:"iq"`
	ID      string   `xml:"id,attr"`
	From    string   `xml:"from,attr"`
	To      string   `xml:"to,attr"`
	Type    string   `xml:"type,attr"`
	Payload struct {
		XMLName xml.Name
		Node    string `xml:"node,attr"`
		Prompt  string `xml:"prompt"` // jabber:iq:gateway (XEP-0100)
	} `xml:",any"`
}

type identity struct {
	Category string `xml:"category,attr"`
	Type     string `xml:"type,attr"`
	Name     string `xml:"name,attr,omitempty"`
}

type feature struct {
	Var string `xml:"var,attr"`
}

type discoInfo struct {
	XMLName    xml.Name   `xml:"http://jabber.org/protocol/disco#info query"`
	Node       string     `xml:"node,attr,omitempty"`
	Identities []identity `xml:"identity"`
	Features   []feature  `xml:"feature"`
}

type discoItems struct {
	XMLName xml.Name `xml:"http://jabber.org/protocol/disco#items query"`
}

type outIQ struct {
	XMLName xml.Name  `xml:"iq"`
	ID      string    `xml:"id,attr"`
	From    string    `xml:"from,attr"`
	To      string    `xml:"to,attr"`
	Type    string    `xml:"type,attr"`
	Payload any       `xml:",omitempty"`
	Error   *outError `xml:"error"`
}

// fail makes r an error answer with condition cond (RFC 6120 §8.3).
func (r *outIQ) fail(typ, cond string) {
	r.Type = "error"
	r.Error = &outError{Type: typ}
	r.Error.Condition.XMLName = xml.Name{Space: NSStanzas, Local: cond}
}

// handleIQ answers every get and set: the mellium session answers no IQ on
// a component stream by itself, and RFC 6120 §8.2.3 wants an answer.
func (c *Component) handleIQ(ctx context.Context, d *xml.Decoder, start *xml.StartElement, t xmlstream.TokenReadEncoder) error {
	var iq inIQ
	if err := d.DecodeElement(&iq, start); err != nil {
		c.Count("xmpp_iq", "malformed")
		return nil
	}
	if iq.Type != "get" && iq.Type != "set" {
		return nil
	}
	to, err1 := parseJID(iq.To)
	from, err2 := parseJID(iq.From)
	if err1 != nil || err2 != nil {
		c.Count("xmpp_iq", "malformed")
		return nil
	}
	reply := &outIQ{ID: iq.ID, From: iq.To, To: iq.From, Type: "result"}
	fail := reply.fail
	isDomain := to.Localpart() == "" && to.Resourcepart() == ""
	if !isDomain {
		if _, reason := c.Core.ResolvePuppet(to); reason != "" {
			// The same answer for a user who does not exist and for one
			// the asker may not learn about.
			fail("cancel", "item-not-found")
			c.Count("xmpp_iq", string(reason))
			return t.Encode(reply)
		}
		if r := to.Resourcepart(); r != "" && r != mapping.PuppetResource {
			// RFC 6121 §8.5.3.2.1: an IQ to a resource that does not
			// exist is service-unavailable; a puppet's one resource is
			// the one it speaks from.
			fail("cancel", "service-unavailable")
			c.Count("xmpp_iq", "no_such_resource")
			return t.Encode(reply)
		}
	}
	p := iq.Payload.XMLName
	switch {
	case iq.Type == "get" && p.Space == NSDiscoInfo && iq.Payload.Node != "" &&
		(isDomain || !isPuppetCapsNode(c.Domain, iq.Payload.Node)):
		// XEP-0030: a JID+node that does not exist is item-not-found.
		fail("cancel", "item-not-found")
		c.Count("xmpp_iq", "unknown_node")
	case iq.Type == "get" && p.Space == NSDiscoInfo:
		// Without node, or with the caps node of XEP-0115 §6.2, echoed.
		info := discoInfo{Node: iq.Payload.Node}
		if isDomain {
			info.Identities = []identity{{Category: "gateway", Type: "matrix", Name: "Matrix bridge"}}
			for _, f := range domainFeatures {
				info.Features = append(info.Features, feature{f})
			}
		} else {
			info.Identities = []identity{puppetIdentity}
			for _, f := range puppetFeatures {
				info.Features = append(info.Features, feature{f})
			}
		}
		reply.Payload = info
	case iq.Type == "get" && p.Space == NSDiscoItems:
		reply.Payload = discoItems{}
	case iq.Type == "get" && p.Space == NSPing && p.Local == "ping":
	case iq.Type == "get" && p.Space == NSVCard && p.Local == "vCard":
		// XEP-0054 §3.1: the card of the entity asked. A puppet's name is
		// its Matrix user's display name; the domain is the bridge.
		if isDomain {
			reply.Payload = vCard{FN: "Matrix bridge"}
			break
		}
		// Only to a person with a portal with the user; anyone else is
		// answered as for a user who does not exist (above), so that a
		// vCard tells nobody who is there.
		mxid, _ := c.Core.ResolvePuppet(to) // known good: checked above
		card, err := c.Core.PuppetCard(ctx, mxid, from)
		switch {
		case errors.Is(err, mapping.ErrNotFound):
			fail("cancel", "item-not-found")
			c.Count("xmpp_iq", "vcard_no_portal")
		case err != nil:
			c.Log.Err(err).Msg("Failed to look up the vCard of a puppet")
			fail("wait", "internal-server-error")
			c.Count("xmpp_iq", "internal_error")
		default:
			reply.Payload = puppetVCard(card)
		}
	case iq.Type == "get" && p.Space == NSVersion && p.Local == "query":
		// XEP-0092 §2, on the domain and on every puppet (the software a
		// puppet runs is the bridge).
		reply.Payload = versionInfo{Name: softwareName, Version: SoftwareVersion()}
	case isDomain && iq.Type == "get" && p.Space == NSGateway && p.Local == "query":
		reply.Payload = gatewayPrompt{
			Desc:   "Enter the Matrix user ID of the person you would like to contact.",
			Prompt: gatewayAsk,
		}
	case isDomain && iq.Type == "set" && p.Space == NSGateway && p.Local == "query":
		// The puppet JID of any well-formed Matrix ID, whether or not that
		// user exists or may use the bridge: the answer is a spelling, and
		// tells nobody who is there.
		u, ok := matrixUserOf(iq.Payload.Prompt)
		puppet, err := c.Core.Identities().Puppet(u)
		if !ok || err != nil {
			fail("modify", "bad-request")
			c.Count("xmpp_iq", "bad_gateway_prompt")
			break
		}
		reply.Payload = gatewayJID{JID: puppet.String()}
	case iq.Type == "set" && p.Space == NSIMNG && p.Local == "enable":
		// XEP-0409 §6: the server acknowledges; the component routes the
		// same way whatever the client enabled.
	default:
		fail("cancel", "service-unavailable")
		c.Count("xmpp_iq", "unsupported")
	}
	return t.Encode(reply)
}

// RoomName implements mapping.XMPPSide: the name the chat room gives
// itself, its conference identity's (XEP-0045 §6.4), asked as from.
func (c *Component) RoomName(ctx context.Context, from, room jid.JID) (string, error) {
	var info discoInfo
	query := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: NSDiscoInfo, Local: "query"}})
	if err := c.ask(ctx, stanza.IQ{From: from, To: room.Bare(), Type: stanza.GetIQ}, query, &info, "disco#info"); err != nil {
		return "", err
	}
	for _, id := range info.Identities {
		if id.Category == "conference" {
			return strings.TrimSpace(id.Name), nil
		}
	}
	return "", nil
}
