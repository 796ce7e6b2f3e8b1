package mapping_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

func (f *fakeXMPP) SendPresence(_ context.Context, p *OutPresence) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.presences = append(f.presences, p)
	return nil
}

// presenceHarness is a harness whose puppets follow policy.
func presenceHarness(t *testing.T, policy PresencePolicy) *harness {
	t.Helper()
	h := newHarness(t)
	h.b.Config().Presence = policy
	return h
}

var (
	autoPolicy   = PresencePolicy{AutoSubscribe: true, SubscribeOnPortal: true}
	julietPhone  = jid.MustParse(julietJID + "/phone")
	alicePuppet  = jid.MustParse(alicePup)
	julietBareID = jid.MustParse(julietJID)
)

// presenceFrom is a presence of type typ from Juliet's phone to to.
func presenceFrom(typ, to string) *XMPPPresence {
	return &XMPPPresence{From: julietPhone, To: jid.MustParse(to), Type: typ}
}

// answers runs p through the core and renders the answers as
// "type from to caps" ("available" for the empty type).
func (h *harness) answers(t *testing.T, p *XMPPPresence) []string {
	t.Helper()
	out, err := h.b.HandleXMPPPresence(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range out {
		typ := o.Type
		if typ == PresenceAvailable {
			typ = "available"
		}
		s := fmt.Sprintf("%s %s %s", typ, o.From, o.To)
		if o.Caps {
			s += " caps"
		}
		got = append(got, s)
	}
	return got
}

// subState is a Subscription's two directions, comparable.
type subState struct{ FromThem, ToThem bool }

func (h *harness) subscription(t *testing.T) subState {
	t.Helper()
	s, err := h.store.Subscription(context.Background(), alice, julietBareID)
	if errors.Is(err, ErrNotFound) {
		return subState{}
	} else if err != nil {
		t.Fatal(err)
	}
	return subState{s.FromThem, s.ToThem}
}

func wantAnswers(t *testing.T, got []string, want ...string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("answers\n  %q\nwant\n  %q", got, want)
	}
}

var (
	approved = []string{
		"subscribed " + alicePup + " " + julietJID,
		"available " + aliceFrom + " " + julietJID + " caps",
	}
	denied = "unsubscribed " + alicePup + " " + julietJID
)

// RFC 6121 §3.1.3 rule 1: a contact's server does not approve on the
// contact's behalf "unless the contact has ... (b) configured its account
// to automatically approve subscription requests"; xmpp.auto_subscribe is
// that configuration. The approval goes "from the contact's bare JID to the
// user's bare JID" and is followed by the contact's presence, with its
// entity capabilities (XEP-0115).
func TestSubscribeApproved(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	// To a full JID: §3.1.3, treated "as if the request had been directed
	// to the contact's bare JID".
	wantAnswers(t, h.answers(t, presenceFrom(PresenceSubscribe, alicePup+"/desk")), approved...)
	if got := h.subscription(t); got != (subState{FromThem: true}) {
		t.Errorf("subscription %+v, want from", got)
	}
	if h.counts["xmpp_presence/"+PresenceApproved] != 1 {
		t.Errorf("counts %v", h.counts)
	}
}

// Without xmpp.auto_subscribe, only a pair that has a portal is approved;
// anyone else is denied with "unsubscribed" (RFC 6121 §3.1.4, a contact's
// denial), and nothing is stored.
func TestSubscribeWithoutAutoNeedsPortal(t *testing.T) {
	h := presenceHarness(t, PresencePolicy{})
	wantAnswers(t, h.answers(t, presenceFrom(PresenceSubscribe, alicePup)), denied)
	if got := h.subscription(t); got != (subState{}) {
		t.Errorf("a denied request stored %+v", got)
	}
	_ = h.store.PutPortal(context.Background(), DirectPortal("!dm:example.org", alice, julietBareID, time.Time{}))
	wantAnswers(t, h.answers(t, presenceFrom(PresenceSubscribe, alicePup)), approved...)
	if got := h.subscription(t); !got.FromThem {
		t.Errorf("subscription %+v, want from", got)
	}
}

// RFC 6121 §3.1.3 rule 2: "If the contact exists and the user already has
// a subscription to the contact's presence, then the contact's server MUST
// auto-reply on behalf of the contact by sending a presence stanza of type
// "subscribed"", whatever the policy says now.
func TestSubscribeAgainAutoReplies(t *testing.T) {
	h := presenceHarness(t, PresencePolicy{})
	_ = h.store.SetSubscriptionFrom(context.Background(), alice, julietBareID, true)
	wantAnswers(t, h.answers(t, presenceFrom(PresenceSubscribe, alicePup)), approved...)
}

// Privacy: a puppet of nobody, of a user who may not use the bridge, one
// asked from a blocked domain and one that may not talk to the asker all
// answer alike (from the JID asked, of course), so that no answer tells
// whether a Matrix user is there. RFC 6121 §4.3.2 rule 1 wants exactly that
// answer to a probe "If the contact account does not exist".
func TestRefusalsLookAlike(t *testing.T) {
	for _, tc := range []struct {
		name   string
		to     string
		from   string
		policy PresencePolicy
	}{
		{"unknown puppet", "nobody@matrix.example.org", "", autoPolicy},
		{"not permitted", `eve\3aevil.example@matrix.example.org`, "", autoPolicy},
		{"blocked domain", alicePup, "x@spam.example/r", autoPolicy},
		{"may not talk", alicePup, "", PresencePolicy{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := presenceHarness(t, tc.policy)
			from := julietPhone
			if tc.from != "" {
				from = jid.MustParse(tc.from)
			}
			asked := jid.MustParse(tc.to)
			want := fmt.Sprintf("unsubscribed %s %s", asked, from.Bare())
			for _, typ := range []string{PresenceSubscribe, PresenceProbe} {
				full, _ := asked.WithResource("r")
				got := h.answers(t, &XMPPPresence{From: from, To: full, Type: typ})
				wantAnswers(t, got, want)
			}
			// §8.5.1: the other subscription types are ignored.
			for _, typ := range []string{PresenceSubscribed, PresenceUnsubscribe, PresenceUnsubscribed, PresenceAvailable} {
				wantAnswers(t, h.answers(t, &XMPPPresence{From: from, To: asked, Type: typ}))
			}
			if subs := h.store.StoredSubscriptions(); len(subs) != 0 {
				t.Errorf("stored %v", subs)
			}
		})
	}
}

// RFC 6121 §4.3.2: a probe from someone not subscribed gets
// "unsubscribed" (rule 1); from a subscriber, the contact's presence, sent
// to the entity that probed (rule 3). Prosody probes from the full JID of
// the resource that just came online.
func TestProbe(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	wantAnswers(t, h.answers(t, presenceFrom(PresenceProbe, alicePup)), denied)
	_ = h.store.SetSubscriptionFrom(context.Background(), alice, julietBareID, true)
	wantAnswers(t, h.answers(t, presenceFrom(PresenceProbe, alicePup)), "available "+aliceFrom+" "+julietPhone.String()+" caps")
	if h.counts["xmpp_presence/"+PresenceProbeAnswered] != 1 || h.counts["xmpp_presence/"+PresenceProbeDenied] != 1 {
		t.Errorf("counts %v", h.counts)
	}
}

// RFC 6121 §3.3.3: on an inbound unsubscribe, the contact's server cancels
// the subscription and sends "unavailable" from the contact to the user;
// one from someone not subscribed changes nothing and gets no answer.
func TestUnsubscribe(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	wantAnswers(t, h.answers(t, presenceFrom(PresenceUnsubscribe, alicePup)))
	_ = h.store.SetSubscriptionFrom(context.Background(), alice, julietBareID, true)
	_ = h.store.SetSubscriptionTo(context.Background(), alice, julietBareID, true)
	wantAnswers(t, h.answers(t, presenceFrom(PresenceUnsubscribe, alicePup)), "unavailable "+aliceFrom+" "+julietJID)
	if got := h.subscription(t); got != (subState{ToThem: true}) {
		t.Errorf("subscription %+v, want to only", got)
	}
	// Cancelled, a probe is denied again (§4.3.2 rule 1).
	wantAnswers(t, h.answers(t, presenceFrom(PresenceProbe, alicePup)), denied)
}

// RFC 6121 §3.1.6 and §3.2.3: the person approves the puppet's request
// (which exists once the portal does) or cancels the puppet's
// subscription; neither is answered. An approval nobody asked for is
// ignored, as §3.1.6 has the user's server do.
func TestSubscribedAndUnsubscribed(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	wantAnswers(t, h.answers(t, presenceFrom(PresenceSubscribed, alicePup)))
	if got := h.subscription(t); got.ToThem {
		t.Fatalf("an unsolicited approval was stored: %+v", got)
	}
	_ = h.store.PutPortal(context.Background(), DirectPortal("!dm:example.org", alice, julietBareID, time.Time{}))
	wantAnswers(t, h.answers(t, presenceFrom(PresenceSubscribed, alicePup)))
	if got := h.subscription(t); got != (subState{ToThem: true}) {
		t.Fatalf("subscription %+v, want to", got)
	}
	wantAnswers(t, h.answers(t, presenceFrom(PresenceUnsubscribed, alicePup)))
	if got := h.subscription(t); got.ToThem {
		t.Errorf("subscription %+v after unsubscribed, want none", got)
	}
}

// A person's own presence (broadcast to a puppet subscribed to them, or
// Prosody acknowledging a subscribe with "unavailable") is not answered.
func TestPersonPresenceIgnored(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	_ = h.store.SetSubscriptionFrom(context.Background(), alice, julietBareID, true)
	for _, typ := range []string{PresenceAvailable, PresenceUnavailable, PresenceError} {
		wantAnswers(t, h.answers(t, presenceFrom(typ, alicePup)))
	}
	if got := h.subscription(t); got != (subState{FromThem: true}) {
		t.Errorf("subscription %+v changed", got)
	}
}

func wantSubscribeSent(t *testing.T, h *harness, n int) {
	t.Helper()
	if len(h.xmpp.presences) != n {
		t.Fatalf("presences sent %+v, want %d subscribe", h.xmpp.presences, n)
	}
	for _, p := range h.xmpp.presences {
		// RFC 6121 §3.1.1: to the contact's bare JID, with an id.
		if p.Type != PresenceSubscribe || !p.From.Equal(alicePuppet) || !p.To.Equal(julietBareID) || p.ID == "" || p.Caps {
			t.Errorf("sent %+v, want a subscribe from %s to %s with an id", p, alicePup, julietJID)
		}
	}
}

// XEP-0172 §4.1: "a user SHOULD include the nickname in a subscription
// request"; the puppet's is its Matrix user's display name, and without
// one the request goes without a nick.
func TestSubscribeCarriesTheDisplayNameAsNick(t *testing.T) {
	for _, name := range []string{"Alice Liddell", ""} {
		h := presenceHarness(t, autoPolicy)
		h.matrix.names = map[id.UserID]string{alice: name}
		if _, err := h.b.HandleXMPPMessage(context.Background(), chat("m1", "Wherefore art thou?")); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
		wantSubscribeSent(t, h, 1)
		if got := h.xmpp.presences[0].Nick; got != name {
			t.Errorf("nick %q, want %q", got, name)
		}
	}
}

// When Juliet's first message creates the portal, Alice's puppet asks her
// for a subscription, through the outbox: while the XMPP side is down the
// request waits and goes out after the reconnect.
func TestSubscribeOnPortalFromXMPP(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	h.xmpp.fail = ErrNotConnected
	if _, err := h.b.HandleXMPPMessage(context.Background(), chat("m1", "Wherefore art thou?")); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.matrix.texts) != 1 {
		t.Fatalf("texts %q", h.matrix.texts)
	}
	// The subscribe waits, with the fetch of Juliet's vCard (ghosts.go)
	// and the puppet's roster entry (roster.go).
	jobs, _ := h.store.DueJobs(context.Background(), time.Now().Add(time.Hour), 10)
	var kinds []JobKind
	for _, j := range jobs {
		kinds = append(kinds, j.Kind)
	}
	if len(jobs) != 3 || jobs[0].Kind != JobSubscribe || jobs[1].Kind != JobGhostVCard || jobs[2].Kind != JobRosterItem || jobs[0].Kind.Side() != "xmpp" || jobs[1].Kind.Side() != "xmpp" || jobs[2].Kind.Side() != "xmpp" {
		t.Fatalf("jobs %v, want the subscribe, the vCard and the roster entry waiting for XMPP", kinds)
	}
	h.xmpp.fail = nil
	h.drain(t)
	wantSubscribeSent(t, h, 1)
	// A second message reuses the portal and asks nothing more.
	_, _ = h.b.HandleXMPPMessage(context.Background(), chat("m2", "Deny thy father"))
	h.drain(t)
	wantSubscribeSent(t, h, 1)
}

// When Alice invites Juliet's ghost, the portal opens and the puppet asks
// Juliet for a subscription; a re-invite does not ask someone who approved.
func TestSubscribeOnPortalFromMatrixInvite(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	invite := []MatrixEvent{memberEvent(alice, "!dm:example.org", julietGhost, MembershipInvite)}
	if err := h.handleTxn(context.Background(), MatrixTxn{ID: "t1", Events: invite}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	wantSubscribeSent(t, h, 1)
	_ = h.store.SetSubscriptionTo(context.Background(), alice, julietBareID, true)
	_ = h.handleTxn(context.Background(), MatrixTxn{ID: "t2", Events: invite})
	h.drain(t)
	wantSubscribeSent(t, h, 1)
	if len(h.matrix.joins) != 2 {
		t.Errorf("joins %q", h.matrix.joins)
	}
}

// xmpp.subscribe_on_portal: false asks nothing.
func TestNoSubscribeOnPortalWhenOff(t *testing.T) {
	h := presenceHarness(t, PresencePolicy{AutoSubscribe: true})
	_, _ = h.b.HandleXMPPMessage(context.Background(), chat("m1", "hello"))
	_ = h.handleTxn(context.Background(), MatrixTxn{ID: "t1", Events: []MatrixEvent{memberEvent(alice, "!dm2:example.org", testIDs.Ghost(jid.MustParse("romeo@montague.lit")), MembershipInvite)}})
	h.drain(t)
	if len(h.xmpp.presences) != 0 || len(h.matrix.texts) != 1 {
		t.Errorf("presences %+v texts %q", h.xmpp.presences, h.matrix.texts)
	}
}

// RFC 6121 §4.2.2 and §4.5.2: initial and unavailable presence go "to all
// contacts that are subscribed to the user's presence". The puppets' owed
// presence lists exactly the people with a subscription from, and not
// those of blocked domains nor the puppets of users the bridge no longer
// serves.
func TestSubscriberPresence(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	ctx := context.Background()
	stranger := id.UserID("@eve:evil.example") // not of a permitted domain
	for _, s := range []struct {
		mxid     id.UserID
		peer     string
		from, to bool
	}{
		{alice, julietJID, true, false},
		{alice, "romeo@montague.lit", false, true},  // only "to": not a subscriber
		{alice, "spammer@spam.example", true, true}, // a blocked domain
		{stranger, julietJID, true, true},
	} {
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(h.store.SetSubscriptionFrom(ctx, s.mxid, jid.MustParse(s.peer), s.from))
		must(h.store.SetSubscriptionTo(ctx, s.mxid, jid.MustParse(s.peer), s.to))
	}
	for _, available := range []bool{true, false} {
		ps, err := h.b.SubscriberPresence(ctx, available)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range ps {
			got = append(got, fmt.Sprintf("%q %s %s %t", p.Type, p.From, p.To, p.Caps))
		}
		want := fmt.Sprintf(`["unavailable" %s %s false]`, aliceFrom, julietJID)
		if available {
			want = fmt.Sprintf(`["" %s %s true]`, aliceFrom, julietJID)
		}
		if fmt.Sprint(got) != want {
			t.Errorf("available=%t: %v, want %s", available, got, want)
		}
	}
}

// XEP-0172 §4.2: a message's <nick/> is how its sender would be called;
// the ghost takes it as its name on Matrix, once per change, after the
// send that made the ghost.
func TestGhostTakesTheSendersNick(t *testing.T) {
	h := newHarness(t)
	for i, nick := range []string{"Juliet", "Juliet", "", "Juliet Capulet"} {
		m := chat(fmt.Sprintf("n%d", i), "hello")
		m.Nick = nick
		if _, err := h.b.HandleXMPPMessage(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
	}
	want := []string{string(julietGhost) + " Juliet", string(julietGhost) + " Juliet Capulet"}
	if fmt.Sprint(h.matrix.ghostNames) != fmt.Sprint(want) {
		t.Errorf("ghost names %q, want %q", h.matrix.ghostNames, want)
	}
	if len(h.matrix.texts) != 4 {
		t.Errorf("%d messages bridged, want 4", len(h.matrix.texts))
	}
}

// XEP-0172 §4.1: a subscription request the puppet approves carries the
// name its sender goes by, which their ghost takes; a refused one names
// nothing (the person may not use the bridge).
func TestGhostTakesTheNickOfASubscription(t *testing.T) {
	h := presenceHarness(t, autoPolicy)
	ctx := context.Background()
	sub := &XMPPPresence{From: jid.MustParse(julietJID + "/balcony"), To: jid.MustParse(alicePup), Type: PresenceSubscribe, Nick: "Juliet"}
	if _, err := h.b.HandleXMPPPresence(ctx, sub); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if want := string(julietGhost) + " Juliet"; len(h.matrix.ghostNames) != 1 || h.matrix.ghostNames[0] != want {
		t.Errorf("ghost names %q, want [%q]", h.matrix.ghostNames, want)
	}
	spam := &XMPPPresence{From: jid.MustParse("eve@spam.example/x"), To: jid.MustParse(alicePup), Type: PresenceSubscribe, Nick: "Eve"}
	if _, err := h.b.HandleXMPPPresence(ctx, spam); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.matrix.ghostNames) != 1 {
		t.Errorf("a refused request named a ghost: %q", h.matrix.ghostNames)
	}
}
