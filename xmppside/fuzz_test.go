package xmppside

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeMessage: no input crashes the decoder of receipts, x:events,
// markers and chat states, and nothing unbounded gets through.
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
	f.Fuzz(func(t *testing.T, s string) {
		m, err := decodeString(s)
		if err != nil {
			return
		}
		for _, v := range []string{m.ID, m.Received, m.Displayed, m.OriginID, m.StanzaID} {
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
	})
}
