package mapping_test

import (
	"context"
	"testing"

	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// The routing rows of XEP-0409 §4 that TestXMPPRefusals and
// TestXMPPFullJIDWithoutIMNGIsBridged leave out, for messages to a full
// puppet JID. A puppet has one resource, PuppetResource, the one it speaks
// from: it stands for all of the Matrix user's devices, reached through
// the portal; no other resource of it exists.

// "Any message of normal type, or type 'chat', 'groupchat' or 'headline'
// sent to a bare JID is distributed to all IM-NG clients", and "When a
// server receives a message with type other than than 'groupchat' or
// 'headline' that does not contain an <im-ng xmlns='urn:xmpp:im-ng:0'>
// element it is to be routed by the above rules as if they were sent to the
// bare JID": a normal message to a full JID reaches the portal.
func TestIMNGNormalToFullJIDIsBridged(t *testing.T) {
	h := newHarness(t)
	m := chat("n1", "a normal message to a resource")
	m.Type, m.To = TypeNormal, jid.MustParse(alicePup+"/desk")
	if reply, err := h.b.HandleXMPPMessage(context.Background(), m); err != nil || reply != nil {
		t.Fatalf("reply %+v, err %v", reply, err)
	}
	h.drain(t)
	if len(h.matrix.texts) != 1 {
		t.Errorf("texts %q, want the message bridged", h.matrix.texts)
	}
}

// "A message sent to a full JID with an <im-ng/> element ... is only to be
// delivered to that client": to the puppet's own resource, that is the
// portal (a reply to a message the puppet sent, as a client sends it).
func TestIMNGChatToThePuppetsResourceIsBridged(t *testing.T) {
	h := newHarness(t)
	m := chat("r1", "a reply to the puppet's own resource")
	m.To, m.IMNG = jid.MustParse(aliceFrom), true
	if reply, err := h.b.HandleXMPPMessage(context.Background(), m); err != nil || reply != nil {
		t.Fatalf("reply %+v, err %v", reply, err)
	}
	h.drain(t)
	if len(h.matrix.texts) != 1 {
		t.Errorf("texts %q, want the message bridged", h.matrix.texts)
	}
}

// Groupchat and headline messages are excepted from that rule: to a full
// JID they are for that resource only, which a puppet does not have; and
// the bridge carries neither type (bare or full), so they are dropped
// without an answer, as to the bare JID.
func TestIMNGGroupchatAndHeadlineToFullJIDDropped(t *testing.T) {
	for _, tc := range []struct {
		typ    string
		reason Reason
		imng   bool
	}{
		{TypeGroupchat, ReasonGroupchat, false},
		{TypeHeadline, ReasonHeadline, false},
		{TypeGroupchat, ReasonGroupchat, true},
		{TypeHeadline, ReasonHeadline, true},
	} {
		h := newHarness(t)
		m := chat("g1", "to one resource")
		m.Type, m.To, m.IMNG = tc.typ, jid.MustParse(alicePup+"/desk"), tc.imng
		reply, err := h.b.HandleXMPPMessage(context.Background(), m)
		if err != nil || reply != nil {
			t.Errorf("%s (im-ng %v): reply %+v, err %v; want a silent drop", tc.typ, tc.imng, reply, err)
		}
		h.drain(t)
		if len(h.matrix.texts) != 0 || h.counts["xmpp_message/"+string(tc.reason)] != 1 {
			t.Errorf("%s (im-ng %v): texts %q counts %v", tc.typ, tc.imng, h.matrix.texts, h.counts)
		}
	}
}

// "A message of type error, sent to a full JID without an <im-ng
// xmlns='urn:xmpp:im-ng:0'> element is to be distributed to all IM-NG
// clients": an error from Juliet to a full puppet JID, answering a message
// the bridge sent, is handled as one to the bare JID (it becomes the
// message's failure status) and is never answered (RFC 6120 §8.3.1).
func TestIMNGErrorToFullJIDHandledAsBare(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 1)
	m := receipt(func(m *XMPPMessage) {
		m.Type, m.ID, m.To = TypeError, ids[0], jid.MustParse(alicePup+"/desk")
		m.Error = &StanzaError{Type: "cancel", Condition: "service-unavailable"}
	})
	h.handle(t, m)
	if want := "!dm:example.org $a1 false service-unavailable"; len(h.matrix.failures) != 1 || h.matrix.failures[0] != want {
		t.Errorf("failures %q, want [%q]", h.matrix.failures, want)
	}
}
