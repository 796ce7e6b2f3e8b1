// XEP-0115: Entity Capabilities.

package xmppside

import (
	"crypto/sha1"
	"encoding/base64"
	"sort"
	"strings"

	"mellium.im/xmpp/jid"
)

// NSCaps is the namespace of XEP-0115, its <c/> element and its feature.
const NSCaps = "http://jabber.org/protocol/caps"

var _ = register(&xep{
	features: []discoFeature{{at: discoServices + 1, ns: NSCaps, on: onPuppets}},
})

// caps is <c xmlns='http://jabber.org/protocol/caps'/> in a puppet's
// presence (§4): the hash names the algorithm (SHA-1, which every
// implementation has), ver what the entity can do, node the software.
type caps struct {
	XMLName struct{} `xml:"http://jabber.org/protocol/caps c"`
	Hash    string   `xml:"hash,attr"`
	Node    string   `xml:"node,attr"`
	Ver     string   `xml:"ver,attr"`
}

// puppetVer is the verification string of every puppet: they all answer
// disco#info with the same identity and features. buildDisco computes it
// once every XEP has registered its features.
var puppetVer string

// capsNode is the caps node of the puppets of a component domain. XEP-0115
// §4 wants a URI that identifies the software, preferably a web page about
// it; the bridge has none, so it names itself by its own xmpp: URI.
func capsNode(domain jid.JID) string { return "xmpp:" + domain.Domainpart() }

// puppetCaps is the <c/> of the puppets of domain.
func puppetCaps(domain jid.JID) *caps {
	return &caps{Hash: "sha-1", Node: capsNode(domain), Ver: puppetVer}
}

// isPuppetCapsNode tells whether a disco#info node is the one a client
// derives from a puppet's caps (§6.2: node '#' ver), which it answers like
// a query without node.
func isPuppetCapsNode(domain jid.JID, node string) bool {
	return node == capsNode(domain)+"#"+puppetVer
}

// capsVer computes a verification string by the generation method of §5.1,
// for an entity with no XEP-0128 forms, with SHA-1.
func capsVer(ids []identity, features []string) string {
	// By category, then type (then xml:lang, which the puppets' identities
	// lack); "i;octet" collation is Go's byte-wise string order.
	sorted := append([]identity(nil), ids...)
	sort.Slice(sorted, func(a, b int) bool {
		if sorted[a].Category != sorted[b].Category {
			return sorted[a].Category < sorted[b].Category
		}
		return sorted[a].Type < sorted[b].Type
	})
	idStrings := make([]string, len(sorted))
	for i, id := range sorted {
		idStrings[i] = id.Category + "/" + id.Type + "//" + id.Name // category/type/lang/name
	}
	fs := append([]string(nil), features...)
	sort.Strings(fs)
	var s strings.Builder
	for _, part := range append(idStrings, fs...) {
		s.WriteString(part)
		s.WriteByte('<')
	}
	sum := sha1.Sum([]byte(s.String()))
	return base64.StdEncoding.EncodeToString(sum[:])
}
