package xmppside

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// XEP-0054 §3.1 (Example 1 and 2): a vCard request to a puppet, bare or
// at its resource, from a person with a portal with its user, is answered
// with the user's display name as the bridge stored it, as FN and
// NICKNAME, or the user ID when there is none; never with a live lookup
// (the homeserver's name here is "Live Name"). Anyone else is answered
// exactly as for a puppet of nobody: item-not-found (RFC 6120 §8.3.3.7),
// the same error that disco gives. The domain is the bridge.
func TestPuppetVCard(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"Alice Liddell", ""} {
		r := newStreamRig(t, mapping.PresencePolicy{AutoSubscribe: true})
		r.core.SetSides(&recMatrix{name: "Live Name"}, nil)
		if err := r.db.PutPortal(ctx, mapping.DirectPortal("!dm:example.org", "@alice:example.org", jid.MustParse("stpeter@jabber.org"), time.Now())); err != nil {
			t.Fatal(err)
		}
		if name != "" {
			if err := r.db.SetPuppetProfile(ctx, &mapping.Profile{MXID: "@alice:example.org", Name: name}); err != nil {
				t.Fatal(err)
			}
		}
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
		ask := func(from, to string) string {
			got := r.send(t, `<iq from='`+from+`' id='v2' to='`+to+`' type='get'><vCard xmlns='vcard-temp'/></iq>`)
			return strings.ReplaceAll(got, to, "PUPPET")
		}
		nobody := ask("mallory@evil.example/x", "nobody@matrix.example.org")
		if !strings.Contains(nobody, "item-not-found") {
			t.Errorf("vCard of a puppet of nobody: %s", nobody)
		}
		for _, to := range []string{pupBare, `bob\3aexample.org@matrix.example.org`} {
			if got := ask("mallory@evil.example/x", to); got != nobody {
				t.Errorf("vCard of %s to a stranger:\n  %s\nwant as for nobody:\n  %s", to, got, nobody)
			}
		}
		if got := r.send(t, `<iq from='stpeter@jabber.org/roundabout' id='v3' to='matrix.example.org' type='get'><vCard xmlns='vcard-temp'/></iq>`); !strings.Contains(got, ">Matrix bridge</FN>") {
			t.Errorf("vCard of the domain: %s", got)
		}
	}
}

// XEP-0153 §3.1: the puppet's vCard carries its avatar as PHOTO (TYPE and
// BINVAL, base64), and its presence the hex SHA-1 of that image in
// <x xmlns='vcard-temp:x:update'><photo/></x> (Example 3), with its name
// as XEP-0172 <nick/>; with no avatar, an empty <photo/> ("the user is
// not advertising an avatar").
func TestPuppetAvatar(t *testing.T) {
	ctx := context.Background()
	r := newStreamRig(t, mapping.PresencePolicy{AutoSubscribe: true})
	r.core.SetSides(&recMatrix{}, nil)
	img := []byte("\x89PNG\r\n\x1a\n")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The SHA-1 of those 8 bytes.
	const hash = "4caece539b039b16e16206ea2478f8c5ffb2ca05"
	must(r.db.PutPortal(ctx, mapping.DirectPortal("!dm:example.org", "@alice:example.org", jid.MustParse("stpeter@jabber.org"), time.Now())))
	must(r.db.SetPuppetProfile(ctx, &mapping.Profile{MXID: "@alice:example.org", Name: "Alice", AvatarURL: "mxc://example.org/a", Photo: img, PhotoType: "image/png", PhotoHash: hash}))
	got := r.send(t, `<iq from='stpeter@jabber.org/roundabout' id='v1' to='`+pupBare+`' type='get'><vCard xmlns='vcard-temp'/></iq>`)
	if want := `<PHOTO><TYPE>image/png</TYPE><BINVAL>` + base64.StdEncoding.EncodeToString(img) + `</BINVAL></PHOTO>`; !strings.Contains(got, want) {
		t.Errorf("vCard: %s, want %s", got, want)
	}
	must(r.db.SetSubscriptionFrom(ctx, "@alice:example.org", jid.MustParse("stpeter@jabber.org"), true))
	probe := `<presence from='stpeter@jabber.org/roundabout' to='` + pupBare + `' type='probe'/>`
	got = r.send(t, probe)
	if want := `<x xmlns="vcard-temp:x:update"><photo>` + hash + `</photo></x>`; !strings.Contains(got, want) || !strings.Contains(got, `<nick xmlns="http://jabber.org/protocol/nick">Alice</nick>`) {
		t.Errorf("probe answered %s, want the nick and %s", got, want)
	}
	must(r.db.SetPuppetProfile(ctx, &mapping.Profile{MXID: "@alice:example.org", Name: "Alice"}))
	if got := r.send(t, probe); !strings.Contains(got, `<x xmlns="vcard-temp:x:update"><photo></photo></x>`) {
		t.Errorf("probe answered %s without an avatar, want an empty photo", got)
	}
}

// XEP-0153 §3.1: the hash of the sender's photo (Example 3 and 4), an
// empty <photo/> for no avatar, and no <photo/> ("not ready to advertise
// an image") saying nothing.
func TestPresencePhotoHash(t *testing.T) {
	for _, c := range []struct {
		x    string
		want *string
	}{
		{`<x xmlns='vcard-temp:x:update'><photo>01b87fcd030b72895ff8e88db57ec525450f000d</photo></x>`, ptr("01b87fcd030b72895ff8e88db57ec525450f000d")},
		{`<x xmlns='vcard-temp:x:update'><photo/></x>`, ptr("")},
		{`<x xmlns='vcard-temp:x:update'/>`, nil},
		{``, nil},
	} {
		p := decodePresenceRaw(t, `<presence from='juliet@capulet.com/balcony' to='`+pupBare+`'>`+c.x+`</presence>`)
		if (p.Photo == nil) != (c.want == nil) || (p.Photo != nil && *p.Photo != *c.want) {
			t.Errorf("%s: photo %v, want %v", c.x, p.Photo, c.want)
		}
	}
}

func ptr(s string) *string { return &s }

// XEP-0163 notifications: a nickname (XEP-0172 §4.5, Example 7) and
// avatar metadata (XEP-0084 §4.2, Example 3; an empty <metadata/> is no
// avatar, §4.6) are read from the newest item; the puppets ask for both
// with "+notify" features (XEP-0163 §4.1).
func TestPEPNotifications(t *testing.T) {
	decode := func(raw string) *mapping.XMPPMessage { return decodeRaw(t, raw) }
	m := decode(`<message from='stpeter@jabber.org' to='` + pupFull + `' type='headline' id='foo'>
  <event xmlns='http://jabber.org/protocol/pubsub#event'>
    <items node='http://jabber.org/protocol/nick'>
      <item>
        <nick xmlns='http://jabber.org/protocol/nick'>Peter Saint-Andre</nick>
      </item>
    </items>
  </event>
</message>`)
	if m.PEP == nil || m.PEP.Nick == nil || *m.PEP.Nick != "Peter Saint-Andre" || m.PEP.Avatar != nil {
		t.Errorf("nick notification read as %+v", m.PEP)
	}
	m = decode(`<message to='` + pupFull + `' from='juliet@capulet.lit'>
  <event xmlns='http://jabber.org/protocol/pubsub#event'>
    <items node='urn:xmpp:avatar:metadata'>
      <item id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f'>
        <metadata xmlns='urn:xmpp:avatar:metadata'>
          <info bytes='12345' height='64' id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f' type='image/png' width='64'/>
        </metadata>
      </item>
    </items>
  </event>
</message>`)
	if m.PEP == nil || m.PEP.Avatar == nil || *m.PEP.Avatar != "111f4b3c50d7b0df729d299bc6f8e9ef9066971f" {
		t.Errorf("metadata notification read as %+v", m.PEP)
	}
	m = decode(`<message to='` + pupFull + `' from='juliet@capulet.lit'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='urn:xmpp:avatar:metadata'><item id='current'><metadata xmlns='urn:xmpp:avatar:metadata'/></item></items></event></message>`)
	if m.PEP == nil || m.PEP.Avatar == nil || *m.PEP.Avatar != "" {
		t.Errorf("an avatar disabled read as %+v", m.PEP)
	}
	for _, f := range []string{"http://jabber.org/protocol/nick+notify", "urn:xmpp:avatar:metadata+notify"} {
		if !slices.Contains(puppetFeatures, f) {
			t.Errorf("the puppets do not ask for %s", f)
		}
	}
}

// XEP-0172 §4.1 (Example 1): a subscription request's nickname is read;
// one in other presence is not (the XEP puts it in requests only).
func TestPresenceSubscribeNick(t *testing.T) {
	for typ, want := range map[string]string{"subscribe": "Ishmael", "": ""} {
		p := decodePresenceRaw(t, `<presence from='narrator@moby-dick.lit' to='`+pupBare+`' type='`+typ+`'><nick xmlns='http://jabber.org/protocol/nick'>Ishmael</nick></presence>`)
		if p.Nick != want {
			t.Errorf("type %q: nick %q, want %q", typ, p.Nick, want)
		}
	}
}

// decodePresenceRaw decodes one presence given as XML.
func decodePresenceRaw(t *testing.T, raw string) *mapping.XMPPPresence {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(raw))
	tok, _ := d.Token()
	start := tok.(xml.StartElement)
	p, err := decodePresence(d, &start)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
