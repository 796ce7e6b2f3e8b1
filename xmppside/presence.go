// RFC 6121: presence and presence subscriptions (§3, §4), of the puppets.

package xmppside

import (
	"context"
	"encoding/xml"
	"fmt"
	"strings"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// inPresence is what the bridge reads of an incoming <presence/>: who asks
// what of which puppet. Show, status and priority mean nothing to Matrix.
type inPresence struct {
	XMLName xml.Name `xml:"presence"`
	ID      string   `xml:"id,attr"`
	From    string   `xml:"from,attr"`
	To      string   `xml:"to,attr"`
	Type    string   `xml:"type,attr"`
	Nick    *string  `xml:"http://jabber.org/protocol/nick nick"` // XEP-0172 §4.1
	// XEP-0153 §3.1: the hash of the sender's vCard photo.
	Avatar *struct {
		Photo *string `xml:"photo"`
	} `xml:"vcard-temp:x:update x"`
	// XEP-0045 §17.2: what a room says of an occupant.
	MUC *struct {
		Item   *mucItem `xml:"item"`
		Status []struct {
			Code int `xml:"code,attr"`
		} `xml:"status"`
	} `xml:"http://jabber.org/protocol/muc#user x"`
	// XEP-0421 §3: the room's id of the occupant.
	OccupantID *struct {
		ID string `xml:"id,attr"`
	} `xml:"urn:xmpp:occupant-id:0 occupant-id"`
	Error *errorElem `xml:"error"`
}

// mucItem is the <item/> of a room's muc#user <x/> (XEP-0045 §17.2): the
// occupant's role and affiliation, the new nick of a nick change (§7.6),
// and the actor and reason of a kick or ban (§9.1, §9.2).
type mucItem struct {
	JID         string `xml:"jid,attr"`
	Nick        string `xml:"nick,attr"`
	Role        string `xml:"role,attr"`
	Affiliation string `xml:"affiliation,attr"`
	Actor       *struct {
		Nick string `xml:"nick,attr"`
	} `xml:"actor"`
	Reason string `xml:"reason"`
}

// mucJoin is the <x/> of a join (XEP-0045 §7.2.1) that asks for no
// history, or for what was said since a time, bounded (§7.2.15).
type mucJoin struct {
	XMLName xml.Name `xml:"http://jabber.org/protocol/muc x"`
	History struct {
		MaxStanzas int    `xml:"maxstanzas,attr"`
		Since      string `xml:"since,attr,omitempty"` // XEP-0082 DateTime, UTC
	} `xml:"history"`
	// Password is the room's password (§7.2.6), if it has one.
	Password string `xml:"password,omitempty"`
}

// outPresence is the wire form of mapping.OutPresence.
type outPresence struct {
	XMLName xml.Name `xml:"presence"`
	ID      string   `xml:"id,attr,omitempty"`
	From    string   `xml:"from,attr"`
	To      string   `xml:"to,attr"`
	Type    string   `xml:"type,attr,omitempty"`
	Nick    string   `xml:"http://jabber.org/protocol/nick nick,omitempty"` // XEP-0172
	Caps    *caps
	Avatar  *vCardUpdate // XEP-0153
	MUC     *mucJoin     // XEP-0045
}

func decodePresence(d *xml.Decoder, start *xml.StartElement) (*mapping.XMPPPresence, error) {
	var in inPresence
	if err := d.DecodeElement(&in, start); err != nil {
		return nil, fmt.Errorf("decode presence: %w", err)
	}
	from, to, err := header(in.From, in.To, in.ID)
	if err != nil {
		return nil, err
	}
	out := &mapping.XMPPPresence{ID: in.ID, From: from, To: to, Type: in.Type}
	if in.Nick != nil && in.Type == mapping.PresenceSubscribe {
		out.Nick = cleanNick(*in.Nick)
	}
	if in.Avatar != nil && in.Avatar.Photo != nil {
		// §3.1: an empty <photo/> is no avatar; no <photo/> at all, "not
		// ready to advertise an image", says nothing.
		hash := strings.ToLower(strings.TrimSpace(*in.Avatar.Photo))
		out.Photo = &hash
	}
	if in.MUC != nil {
		out.MUC = decodeMUCUser(in.MUC.Item, in.MUC.Status, in.OccupantID)
	}
	if in.Error != nil {
		out.Error = stanzaError(in.Error)
	}
	return out, nil
}

// encodePresence writes p. Its from is a puppet, so its domain is the
// component's, which names the caps node.
func encodePresence(p *mapping.OutPresence) *outPresence {
	out := &outPresence{ID: p.ID, From: p.From.String(), To: p.To.String(), Type: p.Type, Nick: p.Nick}
	if p.Caps {
		// XEP-0115 §6.1: caps in every available presence.
		out.Caps = puppetCaps(p.From.Domain())
	}
	if p.Photo != nil {
		out.Avatar = &vCardUpdate{Photo: *p.Photo}
	}
	if p.JoinMUC {
		out.MUC = &mucJoin{Password: p.MUCPassword}
		if !p.HistorySince.IsZero() {
			out.MUC.History.MaxStanzas = mapping.MaxHistory
			out.MUC.History.Since = p.HistorySince.UTC().Format("2006-01-02T15:04:05Z")
		}
	}
	return out
}

// handlePresence hands a presence to the core and sends its answers back
// on the stream it came from.
func (c *Component) handlePresence(ctx context.Context, d *xml.Decoder, start *xml.StartElement, t xmlstream.TokenReadEncoder) error {
	p, err := decodePresence(d, start)
	if err != nil {
		c.Log.Debug().Err(err).Msg("Dropped malformed presence")
		c.Count("xmpp_presence", "malformed")
		return nil
	}
	replies, err := c.Core.HandleXMPPPresence(ctx, p)
	if err != nil {
		// Nothing was stored: a subscription request stays pending on
		// the sender's server, which sends it again at their next login.
		c.Log.Err(err).Msg("Failed to handle presence")
		c.Count("xmpp_presence", "internal_error")
		return nil
	}
	for _, r := range replies {
		if err := t.Encode(encodePresence(r)); err != nil {
			return err
		}
	}
	return nil
}

// decodeMUCUser is the core's form of a room's muc#user <x/>. A real JID
// that does not parse is none.
func decodeMUCUser(item *mucItem, statuses []struct {
	Code int `xml:"code,attr"`
}, occupant *struct {
	ID string `xml:"id,attr"`
}) *mapping.MUCPresence {
	out := &mapping.MUCPresence{}
	for _, s := range statuses {
		out.Statuses = append(out.Statuses, s.Code)
	}
	if item != nil {
		out.Role, out.Affiliation, out.NewNick = item.Role, item.Affiliation, cleanNick(item.Nick)
		out.Reason = strings.TrimSpace(item.Reason) // the core bounds what it repeats
		if item.Actor != nil {
			out.Actor = cleanNick(item.Actor.Nick)
		}
		if item.JID != "" {
			if j, err := jid.Parse(item.JID); err == nil {
				out.RealJID = j
			}
		}
	}
	if occupant != nil && len(occupant.ID) <= maxIDLen {
		out.OccupantID = occupant.ID
	}
	return out
}
