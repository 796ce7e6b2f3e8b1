// XEP-0447: Stateless file sharing, the <file-sharing xmlns='urn:xmpp:sfs:0'/>
// of a message that shares a file: its XEP-0446 metadata
// (<file xmlns='urn:xmpp:file:metadata:0'/>) and its sources, of which the
// bridge fetches a XEP-0103 <url-data/> with an http(s) target as it
// fetches a XEP-0066 URL (§3.2).

package xmppside

import (
	"encoding/xml"
	"strings"

	"xmppbridge/mapping"
)

var _ = register(&xep{
	namespaces: []string{mapping.NSSFS},
	decode:     decodeSFS,
	features:   []discoFeature{{at: discoMessages + 7, ns: mapping.NSSFS, on: onPuppets}},
})

// sfsElem is §3.1's <file-sharing/>: a XEP-0446 <file/> (of which the
// bridge reads the name and description: the bytes say the type, size
// and pixels) and <sources/>.
type sfsElem struct {
	File struct {
		Name string   `xml:"urn:xmpp:file:metadata:0 name"`
		Desc []string `xml:"urn:xmpp:file:metadata:0 desc"`
	} `xml:"urn:xmpp:file:metadata:0 file"`
	Sources struct {
		URLData []struct {
			Target string `xml:"target,attr"`
		} `xml:"http://jabber.org/protocol/url-data url-data"`
		Other []struct {
			XMLName xml.Name
		} `xml:",any"`
	} `xml:"urn:xmpp:sfs:0 sources"`
}

// decodeSFS reads the first <file-sharing/>; another, and the other
// elements of the namespace (§3.3's <sources/> attached to an earlier
// message), are skipped. The first <url-data/> with an http(s) target
// is the file's URL; every other source is counted as ignored. The name
// and the first <desc/> (XEP-0446 allows one per xml:lang) are the
// sender's word, bounded as XEP-0066's <x/> is.
func decodeSFS(in *inMessage, start xml.StartElement) error {
	if start.Name.Local != "file-sharing" || in.m.Shared != nil {
		return in.skip()
	}
	var e sfsElem
	if err := in.d.DecodeElement(&e, &start); err != nil {
		return err
	}
	s := &mapping.SharedFile{Ignored: len(e.Sources.Other), Name: bounded(e.File.Name)}
	for _, u := range e.Sources.URLData {
		if t := strings.TrimSpace(u.Target); s.URL == "" && len(t) <= maxOOBLen && mapping.IsHTTPURL(t) {
			s.URL = t
		} else {
			s.Ignored++
		}
	}
	if len(e.File.Desc) > 0 {
		s.Desc = bounded(e.File.Desc[0])
	}
	in.m.Shared = s
	return nil
}

// bounded is v trimmed, or "" past maxOOBLen.
func bounded(v string) string {
	v = strings.TrimSpace(v)
	if len(v) > maxOOBLen {
		return ""
	}
	return v
}
