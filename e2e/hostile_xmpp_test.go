//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// vCardSeq numbers the vCard requests of this package's tests.
var vCardSeq atomic.Int64

// askVCard sends c's vCard request (XEP-0054 §3.1, Example 1) to the
// puppet to and returns the answer.
func askVCard(t *testing.T, ctx context.Context, c *peers.XMPPClient, to string) *peers.Stanza {
	t.Helper()
	iqID := fmt.Sprintf("vc-%d", vCardSeq.Add(1))
	if err := c.SendRaw(ctx, `<iq type='get' id='`+iqID+`' to='`+peers.XMLEscape(to)+`'><vCard xmlns='vcard-temp'/></iq>`); err != nil {
		t.Fatal(err)
	}
	res, err := c.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == iqID })
	if err != nil {
		t.Fatalf("no answer to the vCard request to %s: %v", to, err)
	}
	return res
}

// vCardNamed asks c's vCard of the puppet of u until FN is name: the
// bridge stores u's profile by a job of the portal's, which may still
// be running when the portal is there.
func vCardNamed(t *testing.T, ctx context.Context, c *peers.XMPPClient, u id.UserID, name string) {
	t.Helper()
	var res *peers.Stanza
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if res = askVCard(t, ctx, c, w.puppet(t, u)); res.Type == "result" && res.Has(">"+name+"</FN>") {
			return
		}
	}
	t.Errorf("vCard of the puppet of %s: %s, want FN %q", u, res.XML, name)
}

// A puppet's vCard goes only to a person with a portal with its user: a
// stranger asking for an existing Matrix user's card gets exactly what he
// gets for a user who does not exist (item-not-found, RFC 6120 §8.3.3.7),
// so the bridge is no oracle of who is on the homeserver, while a person
// with a portal gets the card (XEP-0054 §3.1) with the display name.
func TestPuppetVCardOnlyForPortalPeers(t *testing.T) {
	ctx := context.Background()
	for _, u := range []string{"watchman", "page"} {
		if err := w.Prosody.Register(u, peers.Password); err != nil {
			t.Fatal(err)
		}
	}
	stranger := w.xmppUser(t, "watchman", "lantern")
	var answers []string
	for _, u := range []id.UserID{w.alice.Client.UserID, "@nobody-here:localhost"} {
		puppet := w.puppet(t, u)
		res := askVCard(t, ctx, stranger, puppet)
		answers = append(answers, stanzaID.ReplaceAllString(strings.ReplaceAll(res.XML, puppet, "PUPPET"), ""))
	}
	if answers[0] != answers[1] || !strings.Contains(answers[0], "item-not-found") {
		t.Errorf("a stranger's vCard requests were answered apart, or not item-not-found:\n  %s (Alice)\n  %s (nobody)", answers[0], answers[1])
	}

	page := w.xmppUser(t, "page", "errand")
	openPortal(t, ctx, page, "page")
	name, err := w.alice.Client.GetDisplayName(ctx, w.alice.Client.UserID)
	if err != nil || name.DisplayName == "" {
		t.Fatalf("Alice's display name on Dendrite: %+v, %v", name, err)
	}
	vCardNamed(t, ctx, page, w.alice.Client.UserID, name.DisplayName)
}
