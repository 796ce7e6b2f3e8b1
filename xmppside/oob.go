// XEP-0066: Out of Band Data, the <x xmlns='jabber:x:oob'/> of a message
// that carries a file: its URL, and a description (§3). Clients that
// upload with XEP-0363 (Conversations, Gajim, Dino, Monal) send the file's
// URL in it and as the body.

package xmppside

import (
	"encoding/xml"

	"xmppbridge/mapping"
)

var _ = register(&xep{
	namespaces: []string{mapping.NSOOB},
	decode:     decodeOOB,
	encode:     []encodeStep{{at: wireRelations + 10, write: encodeOOB}},
	features:   []discoFeature{{at: discoMessages + 6, ns: mapping.NSOOB, on: onPuppets}},
})

// maxOOBLen bounds a URL or description read: the body's own bound is
// the stanza's, and a URL longer than this is no file to fetch.
const maxOOBLen = 4096

// oobX is XEP-0066 §3's <x/>: <url/> required, <desc/> optional.
type oobX struct {
	URL  string `xml:"jabber:x:oob url"`
	Desc string `xml:"jabber:x:oob desc"`
}

// decodeOOB reads the first <x xmlns='jabber:x:oob'/> with a URL; others,
// and an <x/> without one (§3: <url/> is required), are skipped.
func decodeOOB(in *inMessage, start xml.StartElement) error {
	if start.Name.Local != "x" || in.m.OOB != nil {
		return in.skip()
	}
	var x oobX
	if err := in.d.DecodeElement(&x, &start); err != nil {
		return err
	}
	url := bounded(x.URL)
	if url == "" {
		return nil
	}
	in.m.OOB = &mapping.OOB{URL: url, Desc: bounded(x.Desc)}
	return nil
}

// encodeOOB writes <x><url/><desc/></x> (§3, Example 2).
func encodeOOB(t *tokens, m *mapping.OutMessage) {
	if m.OOB == nil {
		return
	}
	t.start(mapping.NSOOB, "x")
	t.text(mapping.NSOOB, "url", m.OOB.URL)
	if m.OOB.Desc != "" {
		t.text(mapping.NSOOB, "desc", m.OOB.Desc)
	}
	t.end()
}
