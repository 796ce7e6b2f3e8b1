// XEP-0444: Message Reactions (urn:xmpp:reactions:0).

package xmppside

import (
	"encoding/xml"
	"slices"
	"strings"

	"xmppbridge/mapping"
)

// What the bridge takes of one <reactions/>: a set, not a place to store
// text. Extra keys are dropped, and so are longer ones (cutting an emoji
// short makes another).
const (
	maxReactions   = 64
	maxReactionLen = 64 // bytes, after trimming
)

var _ = register(&xep{
	namespaces: []string{mapping.NSReactions},
	decode:     decodeReactions,
	finish:     finishReactions,
	encode:     []encodeStep{{at: wireRelations + 2, write: encodeReactions}},
	features:   []discoFeature{{at: discoRelations + 2, ns: mapping.NSReactions, on: onBoth}},
})

// reactionsKept are the <reactions/> of a message: how many, and the
// first.
var reactionsKept = newStateKey()

type reactionsRead struct {
	n     int
	first reactionsElem
}

// reactionsElem is <reactions id='…'><reaction>…</reaction>…</reactions>
// (§3.1): the sender's whole set of reactions to the message with that
// id, each <reaction/> one emoji; an empty set removes them all (§3.2).
type reactionsElem struct {
	ID        string   `xml:"id,attr"`
	Reactions []string `xml:"reaction"`
}

// decodeReactions reads XEP-0444's <reactions/>.
func decodeReactions(in *inMessage, start xml.StartElement) error {
	if start.Name.Local != "reactions" {
		return in.skip()
	}
	kept := stateOf[reactionsRead](in, reactionsKept)
	kept.n++
	if kept.n > 1 {
		return in.skip()
	}
	return in.d.DecodeElement(&kept.first, &start)
}

// finishReactions makes the message's reactions. §5: a message MUST NOT
// carry more than one <reactions/>, and one that does is not read (it
// says two different sets); one without id names nothing. The keys are
// trimmed, and empty ones and repeats ignored (§5: "SHOULD ignore
// duplicate reactions"), in order.
func finishReactions(in *inMessage) {
	kept := keptBy[reactionsRead](in, reactionsKept)
	if kept == nil || kept.n != 1 {
		return
	}
	r := kept.first
	if r.ID == "" || len(r.ID) > maxIDLen {
		return
	}
	in.m.Reactions = &mapping.XMPPReactions{ID: r.ID, Keys: cleanReactions(r.Reactions)}
}

// cleanReactions is the set keys stand for (finishReactions).
func cleanReactions(keys []string) []string {
	var out []string
	for _, k := range keys {
		if len(out) == maxReactions {
			break
		}
		k = strings.TrimSpace(k)
		if k == "" || len(k) > maxReactionLen || slices.Contains(out, k) {
			continue
		}
		out = append(out, k)
	}
	return out
}

// encodeReactions writes the puppet's whole set of reactions to a message
// (§3.1, §3.2: an empty set is an empty <reactions/>), each key once (§5:
// MUST NOT repeat one). The bridge writes no body of its own, as none of
// XEP-0444's examples has one: it would be a message of its own in every
// client without reactions, for every change of the set, removals too.
// A body the core gives is marked as the fallback it is.
func encodeReactions(t *tokens, m *mapping.OutMessage) {
	r := m.Reactions
	if r == nil {
		return
	}
	t.start(mapping.NSReactions, "reactions", "id", r.ID)
	for i, k := range r.Keys {
		if k != "" && !slices.Contains(r.Keys[:i], k) {
			t.text("", "reaction", k)
		}
	}
	t.end()
	if m.Body != "" {
		encodeFallbackWhole(t, mapping.NSReactions)
	}
}
