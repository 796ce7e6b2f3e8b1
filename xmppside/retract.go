// XEP-0424: Message Retraction (urn:xmpp:message-retract:1, and the
// urn:xmpp:message-retract:0 of versions before 0.4 in a XEP-0422
// <apply-to/>).

package xmppside

import (
	"encoding/xml"

	"xmppbridge/mapping"
)

// NSFasten is the namespace of XEP-0422 Message Fastening, whose
// <apply-to/> carried retractions before XEP-0424 0.4.
const NSFasten = "urn:xmpp:fasten:0"

// retractFallbackBody is the body of a retraction for clients without
// XEP-0424, in the words of its example (§3); "/me" (XEP-0245) makes it
// read as said by the puppet.
const retractFallbackBody = "/me retracted a previous message, but it's unsupported by your client."

var _ = register(&xep{
	namespaces: []string{mapping.NSRetract, NSFasten},
	decode:     decodeRetract,
	finish:     finishRetract,
	encode:     []encodeStep{{at: wireRelations + 3, body: retractBody, write: encodeRetract}},
	features:   []discoFeature{{at: discoRelations + 3, ns: mapping.NSRetract, on: onBoth}},
})

// retractKept is what a message says it retracts, read as it comes.
var retractKept = newStateKey()

type retractRead struct {
	id      string // of the last <retract id='…'/> (§3)
	applyID string // of the first <apply-to/> that holds a <retract/>
	applied bool   // whether there is one
	// moderated is the first XEP-0425 moderated retraction, in either.
	moderated *mapping.XMPPModeration
}

// applyTo is XEP-0422's <apply-to id='…'/>; with a <retract/> of
// urn:xmpp:message-retract:0 inside it is a retraction of that message
// (XEP-0424 0.3 §3), with a XEP-0425 0.2 <moderated/> a room's
// moderation of it (moderate.go).
type applyTo struct {
	ID        string      `xml:"id,attr"`
	Retract   *struct{}   `xml:"urn:xmpp:message-retract:0 retract"`
	Moderated *moderated0 `xml:"urn:xmpp:message-moderate:0 moderated"`
}

// retract is XEP-0424's <retract id='…'/>; with a XEP-0425 0.3
// <moderated/> inside, a room's moderation of that message, the
// <reason/> beside it.
type retract struct {
	ID        string      `xml:"id,attr"`
	Moderated *moderated1 `xml:"urn:xmpp:message-moderate:1 moderated"`
	Reason    string      `xml:"urn:xmpp:message-retract:1 reason"`
}

// decodeRetract reads XEP-0424's <retract id='…'/>, and XEP-0422's
// <apply-to/>.
func decodeRetract(in *inMessage, start xml.StartElement) error {
	switch {
	case start.Name.Space == mapping.NSRetract && start.Name.Local == "retract":
		var r retract
		if err := in.d.DecodeElement(&r, &start); err != nil {
			return err
		}
		kept := stateOf[retractRead](in, retractKept)
		if _, ok := attr(start, "id"); ok {
			kept.id = r.ID
		}
		if r.Moderated != nil && kept.moderated == nil {
			kept.moderated = &mapping.XMPPModeration{ID: r.ID, By: r.Moderated.By, Reason: r.Reason}
		}
		return nil
	case start.Name.Space == NSFasten && start.Name.Local == "apply-to":
		var a applyTo
		if err := in.d.DecodeElement(&a, &start); err != nil {
			return err
		}
		kept := stateOf[retractRead](in, retractKept)
		if a.Retract != nil && !kept.applied {
			kept.applyID, kept.applied = a.ID, true
		}
		if kept.moderated == nil {
			kept.moderated = moderation0(a.ID, a.Moderated)
		}
		return nil
	}
	return in.skip()
}

// finishRetract makes XEP-0424's part of a message: the id of the message
// retracted, from <retract id/>, or else from the first <apply-to/> that
// holds a <retract/> of the older namespace. The fallback body is left
// as it came: the core ignores it when it acts on the retraction, and it
// says what happened where the core does not. A moderation (XEP-0425) is
// no retraction by its sender: it is the core's to judge as one, and the
// message retracts nothing of its own.
func finishRetract(in *inMessage) {
	kept := keptBy[retractRead](in, retractKept)
	if kept == nil {
		return
	}
	if mod := kept.moderated; mod != nil {
		if len(mod.ID) <= maxIDLen && mod.ID != "" {
			in.m.Moderation = mod
		}
		return
	}
	id := kept.id
	if id == "" && kept.applied {
		id = kept.applyID
	}
	if len(id) <= maxIDLen {
		in.m.Retract = id
	}
}

// retractBody is the body a retraction is sent with: XEP-0424's fallback
// text when the core gives none.
func retractBody(m *mapping.OutMessage, body string) string {
	if m.Retract != "" && body == "" {
		return retractFallbackBody
	}
	return body
}

// encodeRetract writes <retract id/> and the fallback marking the whole
// body (§3; the <store/> hint is hints.go's).
func encodeRetract(t *tokens, m *mapping.OutMessage) {
	if m.Retract != "" {
		t.empty(mapping.NSRetract, "retract", "id", m.Retract)
		encodeFallbackWhole(t, mapping.NSRetract)
	}
}
