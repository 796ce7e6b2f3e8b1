package xmppside

import (
	"bytes"
	"context"
	"encoding/xml"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"mellium.im/xmpp/jid"

	"xmppbridge/database"
	"xmppbridge/mapping"
)

// XEP-0115 §5.2, the simple generation example: client/pc "Exodus 0.9.1"
// with caps, disco#info, disco#items and muc gives
// ver = QgayPKawpkPSDYmwT/WM94uAlu0= (features given unsorted here, since
// the method sorts them).
func TestCapsVerXEP0115Example(t *testing.T) {
	got := capsVer([]identity{{Category: "client", Type: "pc", Name: "Exodus 0.9.1"}}, []string{
		"http://jabber.org/protocol/muc",
		"http://jabber.org/protocol/disco#info",
		"http://jabber.org/protocol/caps",
		"http://jabber.org/protocol/disco#items",
	})
	if want := "QgayPKawpkPSDYmwT/WM94uAlu0="; got != want {
		t.Errorf("ver = %q, want %q", got, want)
	}
}

// Identities are sorted by category, then type, before their names count.
func TestCapsVerSortsIdentities(t *testing.T) {
	a := identity{Category: "client", Type: "pc", Name: "B"}
	b := identity{Category: "client", Type: "pc-x", Name: "A"}
	c := identity{Category: "gateway", Type: "matrix", Name: "0"}
	if capsVer([]identity{c, b, a}, nil) != capsVer([]identity{a, b, c}, nil) {
		t.Error("the order identities are given in changes ver")
	}
}

// streamRig runs raw stanzas through Component.handle, with a core on a
// real (SQLite) store, and collects what the component writes back.
type streamRig struct {
	c      *Component
	core   *mapping.Bridge // c.Core
	db     *database.Database
	counts map[string]int
}

func newStreamRig(t *testing.T, policy mapping.PresencePolicy) *streamRig {
	t.Helper()
	db, err := database.Open(context.Background(), "sqlite3-fk-wal", filepath.Join(t.TempDir(), "presence.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &streamRig{db: db, counts: map[string]int{}}
	count := func(what, reason string) { r.counts[what+"/"+reason]++ }
	r.core = mapping.New(mapping.Config{
		Identities: specIDs, Permissions: mapping.Permissions{"example.org": mapping.PermUser}, Presence: policy,
	}, db, count, zerolog.Nop())
	r.c = &Component{Domain: jid.MustParse("matrix.example.org"), Core: r.core, Count: count, Log: zerolog.Nop()}
	return r
}

// stream is what handle reads the rest of a stanza from and writes to.
type stream struct {
	*xml.Decoder
	*xml.Encoder
}

// send hands raw to the component and returns what it wrote back.
func (r *streamRig) send(t *testing.T, raw string) string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(raw))
	tok, err := d.Token()
	if err != nil {
		t.Fatal(err)
	}
	start := tok.(xml.StartElement)
	var out bytes.Buffer
	s := stream{d, xml.NewEncoder(&out)}
	if err := r.c.handle(context.Background(), s, &start); err != nil {
		t.Fatal(err)
	}
	_ = s.Flush()
	return out.String()
}

var pupBare = `alice\3aexample.org@matrix.example.org`

// pupFull is the full JID the puppet speaks from (mapping.PuppetResource).
var pupFull = pupBare + "/" + mapping.PuppetResource

// A subscribe is approved from the puppet's bare JID (RFC 6121 §3.1.2, in
// the component's domain, which Prosody insists on) and followed by the
// presence of its one resource (§3.1.5, §4.3.2: "from each of the
// contact's available resources"), with the caps of XEP-0115 §6.1.
func TestSubscribeThroughComponent(t *testing.T) {
	r := newStreamRig(t, mapping.PresencePolicy{AutoSubscribe: true})
	got := r.send(t, `<presence xmlns='jabber:component:accept' from='juliet@capulet.lit' to='`+pupBare+`' type='subscribe' id='sub1'/>`)
	caps := `<c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="xmpp:matrix.example.org" ver="` + puppetVer + `"></c>`
	want := `<presence from="` + pupBare + `" to="juliet@capulet.lit" type="subscribed"></presence>` +
		`<presence from="` + pupFull + `" to="juliet@capulet.lit">` + caps + `</presence>`
	if got != want {
		t.Errorf("wrote\n  %s\nwant\n  %s", got, want)
	}
	// RFC 6121 §4.3.2: Prosody probes from the full JID that comes online.
	got = r.send(t, `<presence from='juliet@capulet.lit/balcony' to='`+pupBare+`' type='probe'/>`)
	if want := `<presence from="` + pupFull + `" to="juliet@capulet.lit/balcony">` + caps + `</presence>`; got != want {
		t.Errorf("probe answered\n  %s\nwant\n  %s", got, want)
	}
	if got := r.send(t, `<presence from='not a jid@@' to='`+pupBare+`' type='subscribe'/>`); got != "" || r.counts["xmpp_presence/malformed"] != 1 {
		t.Errorf("malformed presence answered %q, counts %v", got, r.counts)
	}
}

// discoInfoOf asks the component for disco#info of to at node.
func (r *streamRig) discoInfoOf(t *testing.T, to, node string) (typ string, info discoInfo, raw string) {
	t.Helper()
	nodeAttr := ""
	if node != "" {
		nodeAttr = ` node='` + node + `'`
	}
	raw = r.send(t, `<iq type='get' id='d1' from='juliet@capulet.lit/balcony' to='`+to+`'><query xmlns='http://jabber.org/protocol/disco#info'`+nodeAttr+`/></iq>`)
	var res struct {
		Type  string    `xml:"type,attr"`
		Query discoInfo `xml:"http://jabber.org/protocol/disco#info query"`
	}
	if err := xml.Unmarshal([]byte(raw), &res); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	return res.Type, res.Query, raw
}

// XEP-0115 §6.2: a client that saw the caps asks disco#info at node#ver
// and gets the same identity and features, with the node echoed; they hash
// to the ver the presence carried (the processing method of §5.4).
// Another node does not exist (XEP-0030: item-not-found), and a puppet
// of nobody answers the caps node as it answers anything.
func TestDiscoCapsNode(t *testing.T) {
	r := newStreamRig(t, mapping.PresencePolicy{AutoSubscribe: true})
	node := "xmpp:matrix.example.org#" + puppetVer
	_, plain, _ := r.discoInfoOf(t, pupBare, "")
	for _, to := range []string{pupBare, pupFull} {
		typ, info, raw := r.discoInfoOf(t, to, node)
		if typ != "result" || info.Node != node {
			t.Fatalf("%s: %s", to, raw)
		}
		var features []string
		for _, f := range info.Features {
			features = append(features, f.Var)
		}
		if got := capsVer(info.Identities, features); got != puppetVer {
			t.Errorf("%s: the answer hashes to %q, the presence says %q: %s", to, got, puppetVer, raw)
		}
		if len(info.Features) != len(plain.Features) || len(info.Identities) != 1 || info.Identities[0] != plain.Identities[0] {
			t.Errorf("%s: the caps node answers %+v, the plain query %+v", to, info, plain)
		}
		if !strings.Contains(raw, `var="`+NSCaps+`"`) {
			t.Errorf("%s: the caps feature is not advertised: %s", to, raw)
		}
	}
	for _, tc := range []struct{ to, node string }{
		{pupBare, "xmpp:matrix.example.org#not-the-ver"},
		{`eve\3aevil.example@matrix.example.org`, node},
		{"nobody@matrix.example.org", node},
		{"matrix.example.org", node},
	} {
		if typ, _, raw := r.discoInfoOf(t, tc.to, tc.node); typ != "error" || !strings.Contains(raw, "item-not-found") {
			t.Errorf("%s at %s: %s, want item-not-found", tc.to, tc.node, raw)
		}
	}
}

// XEP-0172 §4.1, Example 1: a subscription request with the nickname of
// who asks.
func TestSubscribeWithNick(t *testing.T) {
	p := &mapping.OutPresence{From: jid.MustParse(pupBare), To: jid.MustParse("starbuck@moby-dick.lit"), Type: mapping.PresenceSubscribe, Nick: "Ishmael"}
	out, err := xml.Marshal(encodePresence(p))
	if err != nil {
		t.Fatal(err)
	}
	want := `<presence from="` + pupBare + `" to="starbuck@moby-dick.lit" type="subscribe"><nick xmlns="http://jabber.org/protocol/nick">Ishmael</nick></presence>`
	if string(out) != want {
		t.Errorf("wrote\n  %s\nwant\n  %s", out, want)
	}
	p.Nick = ""
	if out, _ := xml.Marshal(encodePresence(p)); strings.Contains(string(out), "nick") {
		t.Errorf("a presence without a nick wrote one: %s", out)
	}
}

// XEP-0045 §7.2.6: a join of a room with a password carries it in the
// join's <x xmlns='http://jabber.org/protocol/muc'/>; a join of one
// without carries none (§7.2.1), and both ask for no history (§7.2.15).
func TestJoinMUCPassword(t *testing.T) {
	from, to := jid.MustParse(`alice\3aexample.org@matrix.example.org/matrix`), jid.MustParse("lounge@conference.capulet.lit/Hero")
	for _, tc := range []struct{ password, want string }{
		{"cauldronburn", `<x xmlns="http://jabber.org/protocol/muc"><history maxstanzas="0"></history><password>cauldronburn</password></x>`},
		{"", `<x xmlns="http://jabber.org/protocol/muc"><history maxstanzas="0"></history></x>`},
	} {
		out, err := xml.Marshal(encodePresence(&mapping.OutPresence{From: from, To: to, JoinMUC: true, MUCPassword: tc.password}))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("join with password %q: %s, want %s in it", tc.password, out, tc.want)
		}
	}
}

// XEP-0045 §7.2.15: a rejoin asks for the history since a time (XEP-0082
// DateTime, UTC) and at most mapping.MaxHistory messages, as the spec's
// example of "since" does.
func TestJoinMUCHistorySince(t *testing.T) {
	from, to := jid.MustParse(`alice\3aexample.org@matrix.example.org/matrix`), jid.MustParse("lounge@conference.capulet.lit/Hero")
	since := time.Date(1970, 1, 1, 0, 0, 0, 0, time.FixedZone("CET", 3600))
	out, err := xml.Marshal(encodePresence(&mapping.OutPresence{From: from, To: to, JoinMUC: true, HistorySince: since}))
	if err != nil {
		t.Fatal(err)
	}
	if want := `<history maxstanzas="100" since="1969-12-31T23:00:00Z"></history>`; !strings.Contains(string(out), want) {
		t.Errorf("rejoin: %s, want %s in it", out, want)
	}
}
