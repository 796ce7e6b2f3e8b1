package xmppside

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"xmppbridge/mapping"
)

// FuzzDecodeMessage: no input crashes the decoder of receipts, x:events,
// markers, chat states and relations, and nothing unbounded gets through.
func FuzzDecodeMessage(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.xml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	f.Add(`<message from='a@b/c' to='d@e'><x xmlns='jabber:x:event'><id></id></x><received xmlns='urn:xmpp:receipts'/></message>`)
	// Relations (relations_test.go): overlapping fallback ranges around an
	// emoji, a reversed one, repeated reactions.
	f.Add(`<message from='a@b/c' to='d@e' id='1'><body>🎂> q` + "\n" + `hi</body><reply xmlns='urn:xmpp:reply:0' to='d@e' id='0'/>` +
		`<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='1' end='5'/><body start='0' end='2'/></fallback></message>`)
	f.Add(`<message from='a@b/c' to='d@e' id='1'><body>🎂> q</body><reply xmlns='urn:xmpp:reply:0' id='0'/>` +
		`<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='3' end='2'/></fallback></message>`)
	f.Add(`<message from='a@b/c' to='d@e'><reactions xmlns='urn:xmpp:reactions:0' id='0'><reaction> 👍</reaction><reaction>👍 </reaction><reaction/></reactions></message>`)
	// A room's history (XEP-0045 §7.2.15 with XEP-0203) and its notice of
	// a configuration change (§10.2.1).
	f.Add(`<message from='r@c/n' to='d@e' type='groupchat'><body>b</body><delay xmlns='urn:xmpp:delay' from='r@c' stamp='2002-10-13T23:58:37.5+02:00'/></message>`)
	f.Add(`<message from='r@c' to='d@e' type='groupchat'><x xmlns='http://jabber.org/protocol/muc#user'><status code='104'/><status code='99999999999999999999'/></x></message>`)
	f.Fuzz(func(t *testing.T, s string) {
		m, err := decodeString(s)
		if err != nil {
			return
		}
		if d := m.Delay; d != nil && (d.Bad && !d.Stamp.IsZero() || d.Stamp.Location() != time.UTC) {
			t.Fatalf("a delay both bad and stamped, or not in UTC: %+v", d)
		}
		for _, code := range m.MUCStatus {
			if code < 100 || code > 999 || len(m.MUCStatus) > maxMUCStatuses {
				t.Fatalf("statuses %v got through", m.MUCStatus)
			}
		}
		ids := []string{m.ID, m.OriginID, m.StanzaID, m.Replace, m.Retract}
		for i, a := range m.Acks {
			if a.ID == "" || slices.ContainsFunc(m.Acks[:i], func(b mapping.XMPPAck) bool { return b.Wire == a.Wire }) {
				t.Fatalf("receipts %v: one of no id, or two of one form", m.Acks)
			}
			ids = append(ids, a.ID)
		}
		for _, v := range ids {
			if len(v) > maxIDLen {
				t.Fatalf("an id of %d bytes got through", len(v))
			}
		}
		if m.Event != nil && len(m.Event.ID) > maxIDLen {
			t.Fatalf("an x:event id of %d bytes got through", len(m.Event.ID))
		}
		if m.Event != nil && m.HasBody {
			t.Fatal("a message with a body decoded as a notification")
		}
		if r := m.Reply; r != nil && (r.ID == "" || len(r.ID) > maxIDLen || len(r.To) > maxJIDLen) {
			t.Fatalf("a reply to %d bytes of id, %d of author got through", len(r.ID), len(r.To))
		}
		if r := m.Reply; r != nil && (!utf8.ValidString(m.Body) || !utf8.ValidString(r.Fallback)) {
			// encoding/xml refuses invalid UTF-8, so only a cut inside a
			// code point makes any.
			t.Fatalf("the fallback was cut inside a code point: %q, %q", m.Body, r.Fallback)
		}
		if r := m.Reactions; r != nil {
			if r.ID == "" || len(r.ID) > maxIDLen || len(r.Keys) > maxReactions {
				t.Fatalf("reactions to %d bytes of id, with %d keys, got through", len(r.ID), len(r.Keys))
			}
			for i, k := range r.Keys {
				if k == "" || len(k) > maxReactionLen || k != strings.TrimSpace(k) || slices.Contains(r.Keys[:i], k) {
					t.Fatalf("reaction key %q of %q got through", k, r.Keys)
				}
			}
		}
	})
}
