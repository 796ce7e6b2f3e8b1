package xmppside

import (
	"testing"

	"xmppbridge/mapping"
)

// XEP-0447 §3.1, Example 1: summit.jpg shared with a <url-data/> and a
// <jinglepub/> source, and the XEP-0446 metadata.
const sfsExample = `<message to='juliet@shakespeare.lit' from='romeo@montague.lit/resource' id='sharing-a-file'>
  <file-sharing xmlns='urn:xmpp:sfs:0' disposition='inline'>
    <file xmlns='urn:xmpp:file:metadata:0'>
      <media-type>image/jpeg</media-type>
      <name>summit.jpg</name>
      <size>3032449</size>
      <dimensions>4096x2160</dimensions>
      <hash xmlns='urn:xmpp:hashes:2' algo='sha3-256'>2XarmwTlNxDAMkvymloX3S5+VbylNrJt/l5QyPa+YoU=</hash>
      <hash xmlns='urn:xmpp:hashes:2' algo='id-blake2b256'>2AfMGH8O7UNPTvUVAM9aK13mpCY=</hash>
      <desc>Photo from the summit.</desc>
      <thumbnail xmlns='urn:xmpp:thumbs:1' uri='cid:sha1+ffd7c8d28e9c5e82afea41f97108c6b4@bob.xmpp.org' media-type='image/png' width='128' height='96'/>
    </file>
    <sources>
      <url-data xmlns='http://jabber.org/protocol/url-data' target='https://download.montague.lit/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/summit.jpg' />
      <jinglepub xmlns='urn:xmpp:jinglepub:1' from='romeo@montague.lit/resource' id='9559976B-3FBF-4E7E-B457-2DAA225972BB'>
        <description xmlns='urn:xmpp:jingle:apps:file-transfer:5' />
      </jinglepub>
    </sources>
  </file-sharing>
</message>`

const sfsExampleURL = "https://download.montague.lit/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/summit.jpg"

func TestSFSDecode(t *testing.T) {
	cases := []struct {
		name, raw string
		want      *mapping.SharedFile
	}{
		// §3.1, Example 1: the url-data is the file, the jinglepub a
		// source the bridge cannot use.
		{"example 1", sfsExample, &mapping.SharedFile{URL: sfsExampleURL, Ignored: 1, Name: "summit.jpg", Desc: "Photo from the summit."}},
		// Only sources the bridge cannot use: a jinglepub, an ftp
		// url-data; the first http(s) one is the file, later ones ignored.
		{"no http source", `<message from='romeo@montague.lit/r' to='juliet@shakespeare.lit'><file-sharing xmlns='urn:xmpp:sfs:0'><file xmlns='urn:xmpp:file:metadata:0'><name>a.txt</name></file><sources>` +
			`<url-data xmlns='http://jabber.org/protocol/url-data' target='ftp://files.montague.lit/a.txt'/><jinglepub xmlns='urn:xmpp:jinglepub:1' id='x'/></sources></file-sharing></message>`,
			&mapping.SharedFile{Ignored: 2, Name: "a.txt"}},
		{"first http source", `<message from='romeo@montague.lit/r' to='juliet@shakespeare.lit'><file-sharing xmlns='urn:xmpp:sfs:0'><sources>` +
			`<url-data xmlns='http://jabber.org/protocol/url-data' target='http://a.montague.lit/1'/><url-data xmlns='http://jabber.org/protocol/url-data' target='https://b.montague.lit/2'/></sources></file-sharing></message>`,
			&mapping.SharedFile{URL: "http://a.montague.lit/1", Ignored: 1}},
		// §3.3, Example 4: sources attached to an earlier message are no
		// file shared.
		{"attached sources", `<message to='juliet@shakespeare.lit' from='romeo@montague.lit/resource2'><attach-to id='sharing-a-file' xmlns='urn:xmpp:message-attaching:1'/><sources xmlns='urn:xmpp:sfs:0'>` +
			`<jinglepub xmlns='urn:xmpp:jinglepub:1' from='romeo@montague.lit/resource2' id='9559976B-3FBF-4E7E-B457-2DAA225972BB'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5' /></jinglepub></sources><store xmlns='urn:xmpp:hints' /></message>`, nil},
	}
	for _, c := range cases {
		m := decodeRaw(t, c.raw)
		if (m.Shared == nil) != (c.want == nil) || (m.Shared != nil && *m.Shared != *c.want) {
			t.Errorf("%s: decoded %+v, want %+v", c.name, m.Shared, c.want)
		}
	}
	// §3.1, Example 2: the fallback body and XEP-0066 <x/> beside it.
	m := decodeRaw(t, `<message to='juliet@shakespeare.lit' from='romeo@montague.lit/resource' id='sharing-a-file'>`+
		`<file-sharing xmlns='urn:xmpp:sfs:0' disposition='inline'><sources><url-data xmlns='http://jabber.org/protocol/url-data' target='`+sfsExampleURL+`'/></sources></file-sharing>`+
		`<body>Photo from the summit: `+sfsExampleURL+`</body><x xmlns='jabber:x:oob'><url>`+sfsExampleURL+`</url></x></message>`)
	if m.Shared == nil || m.Shared.URL != sfsExampleURL || m.OOB == nil || m.Body != "Photo from the summit: "+sfsExampleURL {
		t.Errorf("example 2: shared %+v oob %+v body %q", m.Shared, m.OOB, m.Body)
	}
}
