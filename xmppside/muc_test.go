package xmppside

import (
	"encoding/xml"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmlstream"
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

// XEP-0045 §7.2.15, "Delivery of Discussion History": the room's
// <delay/> (XEP-0203 §4) names the room in "from", and its stamp is when
// the message was said. A delay someone else put on it (an occupant's
// client, passing on an offline message) is not the room's; a stamp that
// is no XEP-0082 DateTime is kept as bad.
func TestDecodeRoomHistoryDelay(t *testing.T) {
	m, err := decodeString(`<message
    from='coven@chat.shakespeare.lit/firstwitch'
    id='162BEBB1-F6DB-4D9A-9BD8-CFDCC801A0B2'
    to='hecate@shakespeare.lit/broom'
    type='groupchat'>
  <body>Thrice the brinded cat hath mew'd.</body>
  <delay xmlns='urn:xmpp:delay'
     from='coven@chat.shakespeare.lit'
     stamp='2002-10-13T23:58:37Z'/>
</message>`)
	if err != nil {
		t.Fatal(err)
	}
	if m.Delay == nil || m.Delay.Bad || !m.Delay.Stamp.Equal(time.Date(2002, 10, 13, 23, 58, 37, 0, time.UTC)) {
		t.Errorf("the room's delay decoded as %+v", m.Delay)
	}
	// XEP-0082 §3.2 allows fractions of a second and an offset.
	m, _ = decodeString(`<message from='coven@chat.shakespeare.lit/firstwitch' to='hecate@shakespeare.lit/broom' type='groupchat'><body>b</body><delay xmlns='urn:xmpp:delay' from='coven@chat.shakespeare.lit' stamp='2002-10-14T01:58:37.125+02:00'/></message>`)
	if m.Delay == nil || !m.Delay.Stamp.Equal(time.Date(2002, 10, 13, 23, 58, 37, 125e6, time.UTC)) {
		t.Errorf("a stamp with an offset decoded as %+v", m.Delay)
	}
	for _, delay := range []string{
		`<delay xmlns='urn:xmpp:delay' from='firstwitch@shakespeare.lit' stamp='2002-10-13T23:58:37Z'/>`,
		`<delay xmlns='urn:xmpp:delay' stamp='2002-10-13T23:58:37Z'/>`,
		`<delay xmlns='urn:xmpp:delay' from='coven@chat.shakespeare.lit/firstwitch' stamp='2002-10-13T23:58:37Z'/>`,
	} {
		m, _ = decodeString(`<message from='coven@chat.shakespeare.lit/firstwitch' to='hecate@shakespeare.lit/broom' type='groupchat'><body>b</body>` + delay + `</message>`)
		if m.Delay != nil {
			t.Errorf("%s: kept %+v, want no delay of the room's", delay, m.Delay)
		}
	}
	m, _ = decodeString(`<message from='coven@chat.shakespeare.lit/firstwitch' to='hecate@shakespeare.lit/broom' type='groupchat'><body>b</body><delay xmlns='urn:xmpp:delay' from='coven@chat.shakespeare.lit' stamp='yesterday'/></message>`)
	if m.Delay == nil || !m.Delay.Bad {
		t.Errorf("a stamp that is no date: %+v, want bad", m.Delay)
	}
}

// XEP-0045 §10.2.1, "Notification of Configuration Changes": the room's
// message with status 104 and no body.
func TestDecodeRoomConfigChange(t *testing.T) {
	m, err := decodeString(`<message from='coven@chat.shakespeare.lit'
    id='80349046-F26A-44F3-A7A6-54825064DD9E'
    to='crone1@shakespeare.lit/desktop'
    type='groupchat'>
  <x xmlns='http://jabber.org/protocol/muc#user'>
    <status code='104'/>
  </x>
</message>`)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.MUCStatus, []int{104}) || m.HasBody {
		t.Errorf("decoded %+v, want status 104 and no body", m)
	}
	// A room's mediated invitation (§7.8.2) carries no status; bounded.
	m, _ = decodeString(`<message from='coven@chat.shakespeare.lit' to='hecate@shakespeare.lit'><x xmlns='http://jabber.org/protocol/muc#user'><invite from='crone1@shakespeare.lit/desktop'><reason>Hey</reason></invite>` + strings.Repeat(`<status code='170'/>`, 20) + `</x></message>`)
	if len(m.MUCStatus) != maxMUCStatuses {
		t.Errorf("kept %d statuses, want at most %d", len(m.MUCStatus), maxMUCStatuses)
	}
}

// XEP-0045 §10.2: the owner's submission of the room's form (Examples
// 163-165) is every field with the value the room gave it, the name
// changed, fixed fields left out, of type submit.
func TestRenamedForm(t *testing.T) {
	var q ownerQuery
	// What Prosody 0.12.3 answered an owner, cut to a few fields.
	if err := xml.Unmarshal([]byte(`<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='form'>
<title>Configuration for lounge@conference.localhost</title>
<field type='hidden' var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>
<field type='fixed'><value>Room information</value></field>
<field type='text-single' var='muc#roomconfig_roomname' label='Title'><value>Old</value></field>
<field type='boolean' var='muc#roomconfig_persistentroom' label='Persistent'><value>1</value></field>
<field type='list-multi' var='muc#roomconfig_presencebroadcast'><value>moderator</value><value>participant</value></field>
</x></query>`), &q); err != nil {
		t.Fatal(err)
	}
	r, ok := renamedForm(q.Form, "Fire & Cauldron")
	if !ok {
		t.Fatal("no form made")
	}
	var b strings.Builder
	e := xml.NewEncoder(&b)
	if _, err := xmlstream.Copy(e, r); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	want := `<query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="submit">` +
		`<field var="FORM_TYPE"><value>http://jabber.org/protocol/muc#roomconfig</value></field>` +
		`<field var="muc#roomconfig_roomname"><value>Fire &amp; Cauldron</value></field>` +
		`<field var="muc#roomconfig_persistentroom"><value>1</value></field>` +
		`<field var="muc#roomconfig_presencebroadcast"><value>moderator</value><value>participant</value></field></x></query>`
	if b.String() != want {
		t.Errorf("submitted\n  %s\nwant\n  %s", b.String(), want)
	}
	q.Form.Fields = slices.DeleteFunc(q.Form.Fields, func(f formField) bool { return f.Var == fieldRoomName })
	if _, ok := renamedForm(q.Form, "x"); ok {
		t.Error("a form without the name's field was submitted")
	}
	if _, ok := renamedForm(nil, "x"); ok {
		t.Error("no form was submitted")
	}
}
