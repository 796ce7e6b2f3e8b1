package xmppside

import (
	"strings"
	"testing"

	"xmppbridge/mapping"
)

// XEP-0092 §2 (Example 1 and 2): a version query is answered with the
// software's name and version, by the domain and by a puppet; the
// operating system is left out (§5). A puppet of nobody answers as for
// disco: item-not-found.
func TestSoftwareVersion(t *testing.T) {
	r := newStreamRig(t, mapping.PresencePolicy{AutoSubscribe: true})
	for _, to := range []string{"matrix.example.org", pupBare, pupFull} {
		got := r.send(t, `<iq type='get' from='romeo@montague.net/orchard' to='`+to+`' id='version_1'><query xmlns='jabber:iq:version'/></iq>`)
		if !strings.Contains(got, `type="result"`) || !strings.Contains(got, `<name>xmppbridge</name>`) || !strings.Contains(got, `<version>`) || strings.Contains(got, "<os>") {
			t.Errorf("version of %s: %s", to, got)
		}
	}
	if got := r.send(t, `<iq type='get' from='romeo@montague.net/orchard' to='nobody@matrix.example.org' id='version_2'><query xmlns='jabber:iq:version'/></iq>`); !strings.Contains(got, "item-not-found") {
		t.Errorf("version of a puppet of nobody: %s", got)
	}
}

// XEP-0100's jabber:iq:gateway: a get returns a description and a prompt;
// a set with a Matrix user ID (with its "@" or without, as people type it)
// returns the puppet's JID, the same whether or not the user exists, so it
// tells nobody who is there; what is not a Matrix user ID is a bad request.
func TestGatewayTranslatesMatrixIDs(t *testing.T) {
	r := newStreamRig(t, mapping.PresencePolicy{AutoSubscribe: true})
	got := r.send(t, `<iq type='get' from='juliet@capulet.lit/balcony' to='matrix.example.org' id='gate1'><query xmlns='jabber:iq:gateway'/></iq>`)
	if !strings.Contains(got, `type="result"`) || !strings.Contains(got, "<desc>") || !strings.Contains(got, "<prompt>") {
		t.Errorf("gateway get: %s", got)
	}
	for _, tc := range []struct{ prompt, jid string }{
		{"@alice:example.org", pupBare},
		{"alice:example.org", pupBare},
		{" @nobody:elsewhere.example ", `nobody\3aelsewhere.example@matrix.example.org`},
	} {
		got := r.send(t, `<iq type='set' from='juliet@capulet.lit/balcony' to='matrix.example.org' id='gate2'><query xmlns='jabber:iq:gateway'><prompt>`+tc.prompt+`</prompt></query></iq>`)
		if !strings.Contains(got, `type="result"`) || !strings.Contains(got, "<jid>"+tc.jid+"</jid>") {
			t.Errorf("gateway set %q: %s, want %s", tc.prompt, got, tc.jid)
		}
	}
	for _, prompt := range []string{"", "alice", "not a user"} {
		got := r.send(t, `<iq type='set' from='juliet@capulet.lit/balcony' to='matrix.example.org' id='gate3'><query xmlns='jabber:iq:gateway'><prompt>`+prompt+`</prompt></query></iq>`)
		if !strings.Contains(got, "bad-request") {
			t.Errorf("gateway set %q: %s, want bad-request", prompt, got)
		}
	}
	if got := r.send(t, `<iq type='get' from='juliet@capulet.lit/balcony' to='`+pupBare+`' id='gate4'><query xmlns='jabber:iq:gateway'/></iq>`); !strings.Contains(got, "service-unavailable") {
		t.Errorf("gateway query to a puppet: %s, want service-unavailable", got)
	}
}

// RFC 6121 §8.5.3.2.1: an IQ to a full JID whose resource does not exist
// gets service-unavailable. A puppet has one resource, the one it speaks
// from; disco, version and vCard are answered there and at the bare JID.
func TestIQToAnotherResourceOfAPuppet(t *testing.T) {
	r := newStreamRig(t, mapping.PresencePolicy{AutoSubscribe: true})
	for _, q := range []string{
		`<query xmlns='http://jabber.org/protocol/disco#info'/>`,
		`<query xmlns='jabber:iq:version'/>`,
		`<ping xmlns='urn:xmpp:ping'/>`,
	} {
		if got := r.send(t, `<iq type='get' id='r1' from='juliet@capulet.lit/balcony' to='`+pupBare+`/desk'>`+q+`</iq>`); !strings.Contains(got, "service-unavailable") {
			t.Errorf("%s to another resource: %s, want service-unavailable", q, got)
		}
		if got := r.send(t, `<iq type='get' id='r2' from='juliet@capulet.lit/balcony' to='`+pupFull+`'>`+q+`</iq>`); !strings.Contains(got, `type="result"`) {
			t.Errorf("%s to the puppet's resource: %s, want a result", q, got)
		}
	}
}
