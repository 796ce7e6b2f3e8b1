package xmppside

import (
	"encoding/xml"
	"slices"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// What a room says of its state, decoded: the subject (XEP-0045 §7.2.16
// on join, §8.1 when changed), from the spec's examples.
func TestDecodeRoomSubject(t *testing.T) {
	// §7.2.16, "Service Sends Room Subject": a subject and no body.
	m, err := decodeString(`<message from='coven@chat.shakespeare.lit/wiccarocks' id='F437C672-D438-4BD3-9BFF-091050D32EE2' to='crone1@shakespeare.lit/desktop' type='groupchat'>
  <subject>Fire Burn and Cauldron Bubble!</subject>
</message>`)
	if err != nil {
		t.Fatal(err)
	}
	if !m.HasSubject || m.Subject != "Fire Burn and Cauldron Bubble!" || m.HasBody || m.Type != mapping.TypeGroupchat {
		t.Errorf("decoded %+v, want the subject and no body", m)
	}
	// §8.1: an empty <subject/> clears the subject; it is still one.
	m, err = decodeString(`<message from='coven@chat.shakespeare.lit/wiccarocks' to='crone1@shakespeare.lit/desktop' type='groupchat'><subject></subject></message>`)
	if err != nil || !m.HasSubject || m.Subject != "" {
		t.Errorf("an empty subject: %+v, %v", m, err)
	}
	// A message with neither has no subject.
	m, err = decodeString(`<message from='coven@chat.shakespeare.lit/wiccarocks' to='crone1@shakespeare.lit/desktop' type='groupchat'><body>hi</body></message>`)
	if err != nil || m.HasSubject {
		t.Errorf("a body alone: %+v, %v", m, err)
	}
}

// A puppet's change of subject is §8.1's example: groupchat, a <subject/>,
// no body; an empty one clears it.
func TestEncodeRoomSubject(t *testing.T) {
	subject := "Fire Burn & Cauldron Bubble!"
	got := encodeString(t, &mapping.OutMessage{ID: "lh2bs617", Type: mapping.TypeGroupchat, Subject: &subject,
		From: jid.MustParse(`alice\3aexample.org@matrix.example.org/matrix`), To: jid.MustParse("coven@chat.shakespeare.lit")})
	want := `<message id="lh2bs617" from="alice\3aexample.org@matrix.example.org/matrix" to="coven@chat.shakespeare.lit" type="groupchat"><subject>Fire Burn &amp; Cauldron Bubble!</subject></message>`
	if got != want {
		t.Errorf("wrote\n  %s\nwant\n  %s", got, want)
	}
	empty := ""
	if got := encodeString(t, &mapping.OutMessage{ID: "x", Type: mapping.TypeGroupchat, Subject: &empty,
		From: jid.MustParse(`alice\3aexample.org@matrix.example.org`), To: jid.MustParse("coven@chat.shakespeare.lit")}); !strings.Contains(got, "<subject></subject>") {
		t.Errorf("an empty subject wrote %s", got)
	}
	if got := encodeString(t, &mapping.OutMessage{ID: "x", Type: mapping.TypeGroupchat, Body: "hi",
		From: jid.MustParse(`alice\3aexample.org@matrix.example.org`), To: jid.MustParse("coven@chat.shakespeare.lit")}); strings.Contains(got, "subject") {
		t.Errorf("a message without a subject wrote one: %s", got)
	}
}

func decodePresenceString(t *testing.T, s string) *mapping.XMPPPresence {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			p, err := decodePresence(d, &se)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
}

// What a room says of an occupant who goes: a nick change (§7.6, status
// 303 and the new nick), a kick (§9.1, 307, with its actor and reason), a
// ban (§9.2, 301), from the spec's examples.
func TestDecodeMUCDepartures(t *testing.T) {
	for _, tc := range []struct {
		name, stanza string
		want         mapping.MUCPresence
	}{
		{"§7.6 nick change", `<presence from='coven@chat.shakespeare.lit/thirdwitch' id='DC352437-C019-40EC-B590-AF29E879AF98' to='crone1@shakespeare.lit/desktop' type='unavailable'>
  <x xmlns='http://jabber.org/protocol/muc#user'>
    <item affiliation='member' jid='hag66@shakespeare.lit/pda' nick='oldhag' role='participant'/>
    <status code='303'/>
  </x>
</presence>`, mapping.MUCPresence{Statuses: []int{303}, Role: "participant", Affiliation: "member", NewNick: "oldhag", RealJID: jid.MustParse("hag66@shakespeare.lit/pda")}},
		{"§9.1 kick, to the kicked", `<presence from='harfleur@chat.shakespeare.lit/pistol' to='pistol@shakespeare.lit/harfleur' type='unavailable'>
  <x xmlns='http://jabber.org/protocol/muc#user'>
    <item affiliation='none' role='none'>
      <actor nick='Fluellen'/>
      <reason>Avaunt, you cullion!</reason>
    </item>
    <status code='110'/>
    <status code='307'/>
  </x>
</presence>`, mapping.MUCPresence{Statuses: []int{110, 307}, Role: "none", Affiliation: "none", Actor: "Fluellen", Reason: "Avaunt, you cullion!"}},
		{"§9.2 ban, to the others", `<presence from='coven@chat.shakespeare.lit/thirdwitch' to='crone1@shakespeare.lit/desktop' type='unavailable'>
  <x xmlns='http://jabber.org/protocol/muc#user'>
    <item affiliation='outcast' role='none'/>
    <status code='301'/>
  </x>
</presence>`, mapping.MUCPresence{Statuses: []int{301}, Role: "none", Affiliation: "outcast"}},
	} {
		p := decodePresenceString(t, tc.stanza)
		if p.Type != mapping.PresenceUnavailable || p.MUC == nil {
			t.Fatalf("%s: %+v", tc.name, p)
		}
		got := *p.MUC
		if !slices.Equal(got.Statuses, tc.want.Statuses) || got.Role != tc.want.Role || got.Affiliation != tc.want.Affiliation ||
			got.NewNick != tc.want.NewNick || got.Actor != tc.want.Actor || got.Reason != tc.want.Reason || !got.RealJID.Equal(tc.want.RealJID) {
			t.Errorf("%s: decoded %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
