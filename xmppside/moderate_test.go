package xmppside

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"mellium.im/xmlstream"

	"xmppbridge/mapping"
)

// XEP-0425's own examples of a room's moderation broadcast (§3.1, Example
// 5), in 0.2 (Prosody's mod_muc_moderation) and 0.3, decoded: the
// room's stanza-id of the message, the moderator and the reason; a
// moderation retracts nothing as its sender's retraction (XEP-0424),
// and a <moderated/> without a retraction in 0.2 is none.
func TestDecodeModerationSpecExamples(t *testing.T) {
	want := &mapping.XMPPModeration{ID: "stanza-id-1", By: "room@muc.example.com/macbeth", Reason: "This message contains inappropriate content for this forum"}
	for _, file := range []string{"xep0425-v0.2-example5-moderated.xml", "xep0425-example5-moderated.xml"} {
		t.Run(file, func(t *testing.T) {
			m := decodeFile(t, file)
			if !reflect.DeepEqual(m.Moderation, want) {
				t.Errorf("moderation %+v, want %+v", m.Moderation, want)
			}
			if m.Retract != "" || m.HasBody {
				t.Errorf("read as a retraction %q or a message %q", m.Retract, m.Body)
			}
		})
	}
	for _, inner := range []string{
		// 0.2 left room for moderations that retract nothing.
		`<apply-to xmlns='urn:xmpp:fasten:0' id='s1'><moderated xmlns='urn:xmpp:message-moderate:0' by='r@m/x'/></apply-to>`,
		// An id too long, or none, names nothing.
		`<retract xmlns='urn:xmpp:message-retract:1' id='` + string(bytes.Repeat([]byte("i"), maxIDLen+1)) + `'><moderated xmlns='urn:xmpp:message-moderate:1'/></retract>`,
		`<retract xmlns='urn:xmpp:message-retract:1'><moderated xmlns='urn:xmpp:message-moderate:1'/></retract>`,
	} {
		m, err := decodeString(`<message from='r@m' to='a@b' type='groupchat'>` + inner + `</message>`)
		if err != nil {
			t.Fatal(err)
		}
		if m.Moderation != nil || m.Retract != "" {
			t.Errorf("%.80s read as moderation %+v, retraction %q", inner, m.Moderation, m.Retract)
		}
	}
}

// The request a puppet sends is XEP-0425 0.2's (§3, Example 4), the one
// Prosody's mod_muc_moderation reads: an <apply-to/> naming the room's
// stanza-id, holding <moderate/> with a <retract/> and the <reason/> in
// <moderate/>'s namespace.
func TestModerateRequestIsTheSpecExample(t *testing.T) {
	type request struct {
		ID       string `xml:"id,attr"`
		Moderate *struct {
			Retract *struct{} `xml:"urn:xmpp:message-retract:0 retract"`
			Reason  *string   `xml:"urn:xmpp:message-moderate:0 reason"`
		} `xml:"urn:xmpp:message-moderate:0 moderate"`
	}
	type iq struct {
		ApplyTo request `xml:"urn:xmpp:fasten:0 apply-to"`
	}
	data, err := os.ReadFile(filepath.Join("testdata", "xep0425-v0.2-example4-request.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var spec iq
	if err := xml.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	e := xml.NewEncoder(&buf)
	if _, err := xmlstream.Copy(e, moderateRequest("stanza-id-1", "This message contains inappropriate content for this forum")); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	var ours request
	if err := xml.Unmarshal(buf.Bytes(), &ours); err != nil {
		t.Fatal(err)
	}
	if spec.ApplyTo.Moderate == nil || !reflect.DeepEqual(ours, spec.ApplyTo) {
		t.Errorf("the request is %s,\nnot as the spec's example", buf.String())
	}
	// Without a reason, none is sent.
	buf.Reset()
	e = xml.NewEncoder(&buf)
	if _, err := xmlstream.Copy(e, moderateRequest("s", "")); err != nil {
		t.Fatal(err)
	}
	_ = e.Flush()
	ours = request{}
	if err := xml.Unmarshal(buf.Bytes(), &ours); err != nil || ours.Moderate == nil || ours.Moderate.Reason != nil || ours.Moderate.Retract == nil {
		t.Errorf("the request without a reason is %s (%v)", buf.String(), err)
	}
}
