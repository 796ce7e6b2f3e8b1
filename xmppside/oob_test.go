package xmppside

import (
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// XEP-0066 §3's example: a message with a URL in <x xmlns='jabber:x:oob'/>.
const oobExample = `<message from='stpeter@jabber.org/work' to='MaineBoy@jabber.org/home'>
  <body>Yeah, but do you have a license to Jabber?</body>
  <x xmlns='jabber:x:oob'>
    <url>http://www.jabber.org/images/psa-license.jpg</url>
    <desc>A license to Jabber!</desc>
  </x>
</message>`

func TestOOBDecode(t *testing.T) {
	m := decodeRaw(t, oobExample)
	if m.OOB == nil || m.OOB.URL != "http://www.jabber.org/images/psa-license.jpg" || m.OOB.Desc != "A license to Jabber!" || m.Body != "Yeah, but do you have a license to Jabber?" {
		t.Fatalf("decoded oob %+v body %q", m.OOB, m.Body)
	}
	// §3: <url/> is required; an <x/> without one is no file. The first
	// with one counts.
	m = decodeRaw(t, `<message from='a@b/c' to='d@e'><body>hi</body><x xmlns='jabber:x:oob'><desc>no url</desc></x>`+
		`<x xmlns='jabber:x:oob'><url> https://e/1.png </url><desc>first</desc></x><x xmlns='jabber:x:oob'><url>https://e/2.png</url></x></message>`)
	if m.OOB == nil || m.OOB.URL != "https://e/1.png" || m.OOB.Desc != "first" {
		t.Errorf("decoded %+v, want the first <x/> with a URL", m.OOB)
	}
	long := strings.Repeat("a", maxOOBLen)
	if m := decodeRaw(t, `<message from='a@b/c' to='d@e'><x xmlns='jabber:x:oob'><url>https://e/`+long+`</url></x></message>`); m.OOB != nil {
		t.Error("a URL past maxOOBLen was taken")
	}
}

func TestOOBEncode(t *testing.T) {
	out := encodeString(t, &mapping.OutMessage{ID: "m1", From: jid.MustParse("a@b/c"), To: jid.MustParse("d@e"), Type: "chat",
		Body: "https://up/x.png", OOB: &mapping.OOB{URL: "https://up/x.png", Desc: "the view"}})
	for _, want := range []string{`<body>https://up/x.png</body>`, `<x xmlns="jabber:x:oob"><url xmlns="jabber:x:oob">https://up/x.png</url><desc xmlns="jabber:x:oob">the view</desc></x>`} {
		if !strings.Contains(out, want) {
			t.Errorf("%s\nlacks %s", out, want)
		}
	}
}
