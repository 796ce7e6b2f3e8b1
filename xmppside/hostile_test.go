package xmppside

import (
	"strings"
	"testing"

	"xmppbridge/mapping"
)

// Hostile stanzas cost what they weigh and no more, are dropped and
// counted, and leave the component serving: a stanza over
// limits.max_stanza_kib (a body of 4 MB, 2 MB of attributes: read no
// further than the limit, then skipped), an id of 100 KB (malformed), 20,000 receipts in one message (one is read),
// unknown elements nested 20,000 deep (skipped: a message without a
// body), a receipt for an id the bridge never sent. (The XMPP server in front bounds a stanza's size
// first: Prosody refuses c2s stanzas over 256 KiB and s2s over 512 KiB.)
func TestHostileStanzas(t *testing.T) {
	r := newStreamRig(t, mapping.PresencePolicy{AutoSubscribe: true})
	r.core.SetSides(&recMatrix{}, nil)
	from := `from='mallory@evil.example/x' to='` + pupBare + `'`
	for _, c := range []struct {
		name, stanza, counted string
	}{
		{"an id of 100 KB", `<message ` + from + ` type='chat' id='` + strings.Repeat("i", 100<<10) + `'><body>hi</body></message>`, "xmpp_message/malformed"},
		{"a body of 4 MB", `<message ` + from + ` type='chat' id='big1'><body>` + strings.Repeat("b", 4<<20) + `</body></message>`, "xmpp_stanza/too_large"},
		{"a million attributes' worth", `<message ` + from + ` type='chat' id='big2'>` + strings.Repeat(`<x a='`+strings.Repeat("v", 1000)+`'/>`, 2000) + `<body>hi</body></message>`, "xmpp_stanza/too_large"},
		{"20,000 children", `<message ` + from + ` type='chat' id='c1'>` + strings.Repeat(`<received xmlns='urn:xmpp:receipts' id='nope'/>`, 20000) + `</message>`, "xmpp_receipt/"},
		{"nesting 20,000 deep", `<message ` + from + ` type='chat' id='d1'>` + strings.Repeat("<a>", 20000) + strings.Repeat("</a>", 20000) + `</message>`, "xmpp_message/no_body"},
		{"a receipt for an id never sent", `<message ` + from + ` id='r1'><received xmlns='urn:xmpp:receipts' id='never-sent'/></message>`, "xmpp_receipt/"},
	} {
		before := total(r.counts, c.counted)
		if out := r.send(t, c.stanza); strings.Contains(out, "<message") && !strings.Contains(out, "type=\"error\"") {
			t.Errorf("%s: answered %.200s", c.name, out)
		}
		r.core.FlushReceipts(t.Context())
		if total(r.counts, c.counted) == before {
			t.Errorf("%s: nothing counted under %s: %v", c.name, c.counted, r.counts)
		}
	}
}

// total sums the counts whose key starts with prefix.
func total(counts map[string]int, prefix string) int {
	n := 0
	for k, v := range counts {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}
