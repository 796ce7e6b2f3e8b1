package xmppside

import (
	"strings"
	"testing"

	"xmppbridge/mapping"
)

// XEP-0054 §3.1 (Example 1 and 2): a vCard request to a puppet, bare or
// at its resource, is answered with its Matrix user's display name as FN
// and NICKNAME, or the user ID when there is none; a puppet of nobody
// answers as for disco, item-not-found; the domain is the bridge.
func TestPuppetVCard(t *testing.T) {
	for _, name := range []string{"Alice Liddell", ""} {
		r := newStreamRig(t, mapping.PresencePolicy{AutoSubscribe: true})
		r.c.Core.SetSides(&recMatrix{name: name}, nil)
		want := name
		if want == "" {
			want = "@alice:example.org"
		}
		for _, to := range []string{pupBare, pupFull} {
			got := r.send(t, `<iq from='stpeter@jabber.org/roundabout' id='v1' to='`+to+`' type='get'><vCard xmlns='vcard-temp'/></iq>`)
			if !strings.Contains(got, `type="result"`) || !strings.Contains(got, ">"+want+"</FN>") || !strings.Contains(got, ">"+want+"</NICKNAME>") {
				t.Errorf("vCard of %s (display name %q): %s", to, name, got)
			}
		}
		if got := r.send(t, `<iq from='stpeter@jabber.org/roundabout' id='v2' to='nobody@matrix.example.org' type='get'><vCard xmlns='vcard-temp'/></iq>`); !strings.Contains(got, "item-not-found") {
			t.Errorf("vCard of a puppet of nobody: %s", got)
		}
		if got := r.send(t, `<iq from='stpeter@jabber.org/roundabout' id='v3' to='matrix.example.org' type='get'><vCard xmlns='vcard-temp'/></iq>`); !strings.Contains(got, ">Matrix bridge</FN>") {
			t.Errorf("vCard of the domain: %s", got)
		}
	}
}
