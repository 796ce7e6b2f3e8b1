// XEP-0409: IM Routing-NG.

package xmppside

import "encoding/xml"

// NSIMNG is the namespace of XEP-0409 (§5), its element and its feature.
const NSIMNG = "urn:xmpp:im-ng:0"

var _ = register(&xep{
	namespaces: []string{NSIMNG},
	decode:     decodeIMNG,
	features:   []discoFeature{{at: discoMessages + 3, ns: NSIMNG, on: onBoth}},
})

// decodeIMNG reads XEP-0409's <im-ng/>: the message was routed as §4
// says.
func decodeIMNG(in *inMessage, start xml.StartElement) error {
	if start.Name.Local == "im-ng" {
		in.m.IMNG = true
	}
	return in.skip()
}
