package mapping_test

import (
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

var testIDs = Identities{HomeserverDomain: "example.org", ComponentDomain: "matrix.example.org", BotLocalpart: "xmppbridge"}

// docs/users.md, Each XMPP person is a ghost: juliet@capulet.lit is @_xmpp_juliet=40capulet.lit.
func TestGhost(t *testing.T) {
	for _, tc := range []struct{ jid, ghost string }{
		{"juliet@capulet.lit", "@_xmpp_juliet=40capulet.lit:example.org"},
		{"juliet@capulet.lit/balcony", "@_xmpp_juliet=40capulet.lit:example.org"}, // bare JID only
		{"capulet.lit", "@_xmpp_capulet.lit:example.org"},
		{"under_score@x.example", "@_xmpp_under__score=40x.example:example.org"},
	} {
		j := jid.MustParse(tc.jid)
		if got := testIDs.Ghost(j); string(got) != tc.ghost {
			t.Errorf("Ghost(%s) = %s, want %s", tc.jid, got, tc.ghost)
		}
		back, err := testIDs.GhostJID(id.UserID(tc.ghost))
		if err != nil || !back.Equal(j.Bare()) {
			t.Errorf("GhostJID(%s) = %v, %v; want %s", tc.ghost, back, err, j.Bare())
		}
	}
}

func TestGhostJIDRefuses(t *testing.T) {
	for _, u := range []string{
		"@alice:example.org",                          // not in the namespace
		"@_xmpp_juliet=40capulet.lit:other.org",       // other homeserver
		"@_xmpp_:example.org",                         // empty
		"@_xmpp_juliet=40capulet.lit=2fr:example.org", // a full JID
		"@_xmpp_=zz:example.org",                      // bad encoding
		"@xmppbridge:example.org",
	} {
		if _, err := testIDs.GhostJID(id.UserID(u)); err == nil {
			t.Errorf("GhostJID(%s) accepted", u)
		}
	}
}

// XEP-0106 §4.3 (escaping) and docs/protocols.md: @alice:example.org is
// alice\3aexample.org@matrix.example.org.
func TestPuppet(t *testing.T) {
	for _, tc := range []struct{ mxid, jid string }{
		{"@alice:example.org", `alice\3aexample.org@matrix.example.org`},
		{"@bob:example.org:8448", `bob\3aexample.org\3a8448@matrix.example.org`},
		{"@a/b:[::1]", `a\2fb\3a[\3a\3a1]@matrix.example.org`},
		{"@x=y_z.w-v+u:example.org", `x=y_z.w-v+u\3aexample.org@matrix.example.org`},
	} {
		got, err := testIDs.Puppet(id.UserID(tc.mxid))
		if err != nil || got.String() != tc.jid {
			t.Errorf("Puppet(%s) = %s, %v; want %s", tc.mxid, got, err, tc.jid)
			continue
		}
		back, err := testIDs.PuppetUser(got)
		if err != nil || string(back) != tc.mxid {
			t.Errorf("PuppetUser(%s) = %s, %v; want %s", got, back, err, tc.mxid)
		}
	}
}

// XEP-0106 §3.2 lists the escapes; mellium's jid.Unescape gets those after
// the second character wrong, which is why we have our own.
func TestUnescapeXEP0106Examples(t *testing.T) {
	// Examples from XEP-0106 §5 (table 3).
	for _, tc := range []struct{ escaped, raw string }{
		{`space\20cadet`, "space cadet"},
		{`call\20me\20\22ishmael\22`, `call me "ishmael"`},
		{`at\26t\20guy`, "at&t guy"},
		{`d\27artagnan`, "d'artagnan"},
		{`\2plus\2is\4`, `\2plus\2is\4`},
		{`foo\5cbar`, `foo\bar`},
		{`alice\3alocalhost`, "alice:localhost"},
		{`abcd\3ae`, "abcd:e"},
	} {
		got, _ := Unescape(tc.escaped)
		if got != tc.raw {
			t.Errorf("Unescape(%q) = %q, want %q", tc.escaped, got, tc.raw)
		}
	}
}

func TestPuppetUserRefuses(t *testing.T) {
	for _, j := range []string{
		`alice\3aexample.org@other.example`,        // not our domain
		"matrix.example.org",                       // the domain itself
		"alice@matrix.example.org",                 // no server part
		`x\2plus\3aexample.org@matrix.example.org`, // a "\" Escape would have escaped
	} {
		if u, err := testIDs.PuppetUser(jid.MustParse(j)); err == nil {
			t.Errorf("PuppetUser(%s) = %s, want an error", j, u)
		}
	}
}

// FuzzPuppetRoundTrip: every Matrix user ID that has a puppet comes back
// from it unchanged (both mappings are bijective: XEP-0106 §4.3 escaping loses nothing).
func FuzzPuppetRoundTrip(f *testing.F) {
	for _, s := range []string{"@alice:example.org", `@a\5c:x`, "@b:example.org:8448", "@'\"&<>/ :x.y", "@x:[::1]:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u := id.UserID(s)
		if _, _, err := u.Parse(); err != nil {
			return
		}
		j, err := testIDs.Puppet(u)
		if err != nil {
			return // not every user ID fits in a JID localpart
		}
		back, err := testIDs.PuppetUser(j)
		if err != nil || back != u {
			t.Fatalf("PuppetUser(Puppet(%q)) = %q, %v", s, back, err)
		}
		// And the JID survives a trip through its string form.
		if again := jid.MustParse(j.String()); !again.Equal(j) {
			t.Fatalf("puppet %s does not survive parsing", j)
		}
	})
}

// FuzzGhostRoundTrip: every bare JID has a ghost, and comes back from it.
func FuzzGhostRoundTrip(f *testing.F) {
	for _, s := range []string{"juliet@capulet.lit", "capulet.lit", `a\20b@x`, "ÜBER@straße.example", "x_y=z@[::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		j, err := jid.Parse(s)
		if err != nil {
			return
		}
		j = j.Bare()
		if again, err := jid.Parse(j.String()); err != nil || !again.Equal(j) {
			return // not canonical ("..", say): xmppside refuses such addresses
		}
		g := testIDs.Ghost(j)
		back, err := testIDs.GhostJID(g)
		if err != nil || !back.Equal(j) {
			t.Fatalf("GhostJID(Ghost(%s)) = %s, %v (ghost %s)", j, back, err, g)
		}
		if !strings.HasPrefix(string(g), "@"+GhostPrefix) {
			t.Fatalf("ghost %s outside the namespace", g)
		}
	})
}

// A chat's portal has the alias its address would have as a ghost's
// localpart (#_xmpp_lounge=40conference.capulet.lit), in the namespace the
// homeserver asks the bridge about (Matrix AS API, "Querying room
// aliases"); AliasMUC takes back only a chat's address (XEP-0045 §4.2:
// room@service, no nick) encoded as the bridge would.
func TestGroupAlias(t *testing.T) {
	room := jid.MustParse("lounge@conference.capulet.lit")
	alias := testIDs.GroupAlias(room)
	if alias != "#_xmpp_lounge=40conference.capulet.lit:example.org" {
		t.Errorf("GroupAlias = %s", alias)
	}
	if back, err := testIDs.AliasMUC(alias); err != nil || !back.Equal(room) {
		t.Errorf("AliasMUC(%s) = %s, %v", alias, back, err)
	}
	for _, a := range []string{
		"#lounge:example.org",                                       // not in the namespace
		"#_xmpp_lounge=40conference.capulet.lit:other.org",          // other homeserver
		"#_xmpp_conference.capulet.lit:example.org",                 // a service, not a room
		"#_xmpp_lounge=40conference.capulet.lit=2fnick:example.org", // an occupant
		"#_xmpp_LOUNGE=40x:example.org",                             // not the bridge's encoding
		"#_xmpp_=zz:example.org",                                    // bad encoding
		"#_xmpp_:example.org", "#_xmpp_", "_xmpp_a=40b:example.org", "",
		"@_xmpp_lounge=40conference.capulet.lit:example.org", // a user ID
	} {
		if j, err := testIDs.AliasMUC(id.RoomAlias(a)); err == nil {
			t.Errorf("AliasMUC(%q) = %s, want refused", a, j)
		}
	}
}

// FuzzEscapeRoundTrip: Unescape(Escape(s)) == s for every string.
func FuzzEscapeRoundTrip(f *testing.F) {
	f.Add(`a\5cb\3a c@d`)
	f.Fuzz(func(t *testing.T, s string) {
		if got, ok := Unescape(Escape(s)); !ok || got != s {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", s, got, ok)
		}
	})
}
