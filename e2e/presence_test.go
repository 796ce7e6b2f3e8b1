//go:build e2e

package e2e

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"xmppbridge/internal/peers"
	"xmppbridge/mapping"
)

var stanzaID = regexp.MustCompile(` id="[^"]*"`)

// interested asks for the roster, which makes c an "interested resource"
// (RFC 6121 §2.1.6): Prosody delivers subscription approvals and
// cancellations only to those. (w.XMPP has sent initial presence already.)
func interested(t *testing.T, ctx context.Context, c *peers.XMPPClient) {
	t.Helper()
	if err := c.SendRaw(ctx, `<iq type='get' id='roster-1'><query xmlns='jabber:iq:roster'/></iq>`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "roster-1" && s.Type == "result" }); err != nil {
		t.Fatal(err)
	}
}

// isPresence matches a presence of type typ ("" for available) from from.
func isPresence(from, typ string) func(*peers.Stanza) bool {
	return func(s *peers.Stanza) bool { return s.Name == "presence" && s.From == from && s.Type == typ }
}

// ofResource is the full JID a puppet speaks from, its presence among
// what it sends (RFC 6121 §4.3.2: presence comes from each of a
// contact's available resources).
func ofResource(puppet string) string { return puppet + "/" + mapping.PuppetResource }

// capsOf reads the XEP-0115 <c/> of a presence.
func capsOf(t *testing.T, s *peers.Stanza) (hash, node, ver string) {
	t.Helper()
	var p struct {
		C *struct {
			Hash string `xml:"hash,attr"`
			Node string `xml:"node,attr"`
			Ver  string `xml:"ver,attr"`
		} `xml:"http://jabber.org/protocol/caps c"`
	}
	if err := xml.Unmarshal([]byte(s.XML), &p); err != nil || p.C == nil {
		t.Fatalf("no caps in %s (%v)", s.XML, err)
	}
	return p.C.Hash, p.C.Node, p.C.Ver
}

// verOf recomputes a verification string from a disco#info result, as a
// client does before it trusts one (XEP-0115 §5.4, the method of §5.1).
func verOf(t *testing.T, s *peers.Stanza) (node, ver string, features []string) {
	t.Helper()
	var iq struct {
		Query struct {
			Node       string `xml:"node,attr"`
			Identities []struct {
				Category string `xml:"category,attr"`
				Type     string `xml:"type,attr"`
				Lang     string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
				Name     string `xml:"name,attr"`
			} `xml:"identity"`
			Features []struct {
				Var string `xml:"var,attr"`
			} `xml:"feature"`
		} `xml:"http://jabber.org/protocol/disco#info query"`
	}
	if err := xml.Unmarshal([]byte(s.XML), &iq); err != nil {
		t.Fatalf("%v: %s", err, s.XML)
	}
	var ids []string
	for _, i := range iq.Query.Identities {
		ids = append(ids, i.Category+"/"+i.Type+"/"+i.Lang+"/"+i.Name)
	}
	for _, f := range iq.Query.Features {
		features = append(features, f.Var)
	}
	sort.Strings(ids)
	sorted := append([]string(nil), features...)
	sort.Strings(sorted)
	var S strings.Builder
	for _, part := range append(ids, sorted...) {
		S.WriteString(part + "<")
	}
	sum := sha1.Sum([]byte(S.String()))
	return iq.Query.Node, base64.StdEncoding.EncodeToString(sum[:]), features
}

// RFC 6121 §3.1: a subscribe from an XMPP person is answered "subscribed", and
// the puppet's presence follows, with entity capabilities; disco#info at
// the caps node answers with what hashes to that ver; a second resource
// coming online gets the puppet's presence in answer to Prosody's probe.
func TestPresenceSubscribeApproved(t *testing.T) {
	ctx := context.Background()
	paris := w.xmppUser(t, "paris", "county")
	interested(t, ctx, paris)
	puppet := w.puppet(t, w.alice.Client.UserID)
	if err := paris.SendRaw(ctx, fmt.Sprintf(`<presence to='%s' type='subscribe' id='sub-1'/>`, peers.XMLEscape(puppet))); err != nil {
		t.Fatal(err)
	}
	if _, err := paris.Wait(ctx, wait, isPresence(puppet, "subscribed")); err != nil {
		t.Fatalf("no subscribed: %v", err)
	}
	pres, err := paris.Wait(ctx, wait, isPresence(ofResource(puppet), ""))
	if err != nil {
		t.Fatalf("no presence after subscribed: %v", err)
	}
	hash, node, ver := capsOf(t, pres)
	if hash != "sha-1" || node == "" || ver == "" {
		t.Fatalf("caps hash %q node %q ver %q", hash, node, ver)
	}

	t.Run("caps disco#info", func(t *testing.T) {
		// XEP-0115 §6.2: to the JID the presence came from, at node#ver.
		if err := paris.SendRaw(ctx, fmt.Sprintf(`<iq type='get' id='caps-1' to='%s'><query xmlns='http://jabber.org/protocol/disco#info' node='%s'/></iq>`,
			peers.XMLEscape(puppet), peers.XMLEscape(node+"#"+ver))); err != nil {
			t.Fatal(err)
		}
		res, err := paris.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "caps-1" })
		if err != nil {
			t.Fatal(err)
		}
		gotNode, gotVer, features := verOf(t, res)
		if res.Type != "result" || gotNode != node+"#"+ver || gotVer != ver {
			t.Errorf("type %q node %q, answer hashes to %q, presence said %q: %s", res.Type, gotNode, gotVer, ver, res.XML)
		}
		for _, f := range []string{"urn:xmpp:receipts", "jabber:x:event", "urn:xmpp:chat-markers:0", "urn:xmpp:im-ng:0", "urn:xmpp:sid:0",
			"http://jabber.org/protocol/chatstates", "http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/caps"} {
			if !strings.Contains(strings.Join(features, " "), f) {
				t.Errorf("caps disco#info lacks %s: %s", f, res.XML)
			}
		}
	})

	t.Run("probe", func(t *testing.T) {
		// RFC 6121 §4.2.2/§4.3: initial presence makes Prosody probe the
		// contacts Paris is subscribed to, from the new full JID; the
		// puppet answers that resource (§4.3.2).
		desk := w.xmppUser(t, "paris", "desk")
		got, err := desk.Wait(ctx, wait, isPresence(ofResource(puppet), ""))
		if err != nil {
			t.Fatalf("no presence in answer to the probe: %v", err)
		}
		if _, _, v := capsOf(t, got); v != ver || got.To != desk.JID.String() {
			t.Errorf("probe answer to %q with ver %q: %s", got.To, v, got.XML)
		}
	})
}

// Privacy: a subscription request to the puppet of nobody and to that of
// a user who may not use the bridge get the same answer, "unsubscribed",
// nothing more.
func TestPresenceSubscribeRefusalsLookAlike(t *testing.T) {
	ctx := context.Background()
	friar := w.xmppUser(t, "friar", "cell")
	interested(t, ctx, friar)
	domain := w.Prosody.ComponentDomain
	nobody := "nobody@" + domain
	stranger := `eve\3aevil.example@` + domain // not of homeserver.domain
	for _, to := range []string{nobody, stranger} {
		if err := friar.SendRaw(ctx, fmt.Sprintf(`<presence to='%s' type='subscribe'/>`, peers.XMLEscape(to))); err != nil {
			t.Fatal(err)
		}
	}
	var answers []string
	for _, to := range []string{nobody, stranger} {
		got, err := friar.Wait(ctx, wait, func(s *peers.Stanza) bool {
			return s.Name == "presence" && s.From == to && s.Type != "" && s.Type != "unavailable"
		})
		if err != nil {
			t.Fatalf("%s: %v", to, err)
		}
		// Prosody stamps each with an id of its own.
		answers = append(answers, stanzaID.ReplaceAllString(strings.ReplaceAll(got.XML, to, "PUPPET"), ""))
	}
	if answers[0] != answers[1] || !strings.Contains(answers[0], `type="unsubscribed"`) {
		t.Errorf("answers differ or are not unsubscribed:\n  %s\n  %s", answers[0], answers[1])
	}
	if n := friar.Count(func(s *peers.Stanza) bool {
		return s.Name == "presence" && (s.From == nobody || s.From == stranger) && s.Type == "subscribed"
	}); n != 0 {
		t.Errorf("%d subscriptions approved", n)
	}
}

// RFC 6121 §3.1: after the portal is created by the XMPP person's first message,
// the XMPP side receives the puppet's subscription request.
func TestPresenceSubscribeOnPortalFromXMPP(t *testing.T) {
	ctx := context.Background()
	nurse := w.xmppUser(t, "nurse", "chamber")
	openPortal(t, ctx, nurse, "nurse")
	req, err := nurse.Wait(ctx, wait, isPresence(w.puppet(t, w.alice.Client.UserID), "subscribe"))
	if err != nil {
		t.Fatalf("the puppet never asked for a subscription: %v", err)
	}
	if req.To != "nurse@"+w.Prosody.Domain && !strings.HasPrefix(req.To, "nurse@"+w.Prosody.Domain+"/") {
		t.Errorf("subscribe to %q", req.To)
	}
	// XEP-0172 §4.1: with Alice's display name on Dendrite as
	// its nickname.
	name, err := w.alice.Client.GetDisplayName(ctx, w.alice.Client.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if want := `<nick xmlns="http://jabber.org/protocol/nick">` + name.DisplayName + `</nick>`; name.DisplayName == "" || !req.Has(want) {
		t.Errorf("the subscription request lacks %s: %s", want, req.XML)
	}
}

// RFC 6121 §3.1: a portal opened from Matrix (Alice invites the ghost) makes the
// puppet ask the XMPP person for a subscription too.
func TestPresenceSubscribeOnPortalFromMatrixInvite(t *testing.T) {
	ctx := context.Background()
	balthasar := w.xmppUser(t, "balthasar", "road")
	ghost := w.ghost("balthasar@" + w.Prosody.Domain)
	room, err := w.alice.CreateDM(ctx, ghost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.Wait(ctx, wait, peers.IsMembership(room, ghost, event.MembershipJoin)); err != nil {
		t.Fatalf("the ghost never joined: %v", err)
	}
	if _, err := balthasar.Wait(ctx, wait, isPresence(w.puppet(t, w.alice.Client.UserID), "subscribe")); err != nil {
		t.Fatalf("the puppet never asked for a subscription: %v", err)
	}
}

// RFC 6121 §3.1, with a client people could run: XEP-0184's Security
// Considerations say "a recipient SHOULD NOT return message receipts to
// senders who are not otherwise authorized to view its presence", and
// Gajim and Monal answer receipts only to contacts with a subscription
// "from" or "both". slixmpp, keeping that rule, is Rosaline: the puppet
// asks her for a subscription when Alice opens the portal, she approves,
// and the receipt of Alice's message crosses back as its delivery status.
// Sampson keeps the same rule and declines: his client returns nothing,
// and Alice sees no delivery.
func TestSubscribedClientReturnsReceipts(t *testing.T) {
	if err := peers.SlixmppAvailable(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	puppet := w.puppet(t, w.alice.Client.UserID)
	for _, c := range []struct {
		user    string
		decline bool
	}{{"rosaline", false}, {"sampson", true}} {
		t.Run(c.user, func(t *testing.T) {
			var refuse []string
			if c.decline {
				refuse = []string{puppet}
			}
			client, err := w.StartSlixmpp(ctx, c.user, refuse...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(client.Close)
			ghost := w.ghost(c.user + "@" + w.Prosody.Domain)
			room, err := w.alice.CreateDM(ctx, ghost)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.alice.Wait(ctx, wait, peers.IsMembership(room, ghost, event.MembershipJoin)); err != nil {
				t.Fatalf("the ghost never joined: %v", err)
			}
			sub, err := client.Wait(ctx, wait, func(e peers.SlixmppEvent) bool { return e.Event == "subscribe" && e.JID == puppet })
			if err != nil {
				t.Fatalf("the puppet never asked %s for a subscription: %v", c.user, err)
			}
			if sub.Approved == c.decline {
				t.Fatalf("subscription approved = %t", sub.Approved)
			}
			if !c.decline {
				// Prosody's roster push: the puppet may now see her presence.
				if _, err := client.Wait(ctx, wait, func(e peers.SlixmppEvent) bool {
					return e.Event == "roster" && e.JID == puppet && (e.Subscription == "from" || e.Subscription == "both")
				}); err != nil {
					t.Fatalf("the puppet never got a subscription in %s's roster: %v", c.user, err)
				}
			}
			body := "Did my heart love till now? (" + c.user + ")"
			ev, err := w.alice.SendText(ctx, room, body)
			if err != nil {
				t.Fatal(err)
			}
			got, err := client.Wait(ctx, wait, func(e peers.SlixmppEvent) bool { return e.Event == "message" && e.Body == body })
			if err != nil {
				t.Fatalf("Alice's message never reached %s: %v", c.user, err)
			}
			if got.Acked == c.decline {
				t.Fatalf("%s's client acked = %t with subscription %q", c.user, got.Acked, got.Subscription)
			}
			if c.decline {
				if _, err := w.alice.Wait(ctx, 3*time.Second, isStatus(room, ev, event.MessageStatusSuccess)); err == nil {
					t.Error("Alice sees a delivery no client acknowledged")
				}
				return
			}
			if _, err := w.alice.Wait(ctx, wait, isStatus(room, ev, event.MessageStatusSuccess)); err != nil {
				t.Fatalf("Alice never saw %s's receipt: %v", c.user, err)
			}
		})
	}
}

// since matches what match matches among the stanzas c receives from now on.
func since(c *peers.XMPPClient, match func(*peers.Stanza) bool) func(*peers.Stanza) bool {
	old := map[*peers.Stanza]bool{}
	for _, s := range c.Stanzas() {
		old[s] = true
	}
	return func(s *peers.Stanza) bool { return !old[s] && match(s) }
}

// RFC 6121 §4.5.2 and §4.2.2: a server broadcasts a user's unavailable
// presence, and the initial presence when the user comes back, to the
// contacts subscribed to it. The component is the puppets' server: when
// the bridge stops, Gregory, subscribed to Alice's puppet, sees it go
// offline; when it starts again, online, with its capabilities.
func TestPresenceFollowsTheBridge(t *testing.T) {
	ctx := context.Background()
	gregory := w.xmppUser(t, "gregory", "street")
	interested(t, ctx, gregory)
	puppet := w.puppet(t, w.alice.Client.UserID)
	if err := gregory.SendRaw(ctx, fmt.Sprintf(`<presence to='%s' type='subscribe' id='sub-g'/>`, peers.XMLEscape(puppet))); err != nil {
		t.Fatal(err)
	}
	if _, err := gregory.Wait(ctx, wait, isPresence(puppet, "subscribed")); err != nil {
		t.Fatalf("no subscribed: %v", err)
	}
	offline := since(gregory, isPresence(ofResource(puppet), "unavailable"))
	if err := w.Bridge.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := gregory.Wait(ctx, wait, offline); err != nil {
		t.Errorf("the puppet did not go offline with the bridge: %v", err)
	}
	online := since(gregory, isPresence(ofResource(puppet), ""))
	if err := w.Bridge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pres, err := gregory.Wait(ctx, wait, online)
	if err != nil {
		t.Fatalf("the puppet did not come back online with the bridge: %v", err)
	}
	if hash, _, ver := capsOf(t, pres); hash != "sha-1" || ver == "" {
		t.Errorf("presence after the restart has caps hash %q ver %q", hash, ver)
	}
}
