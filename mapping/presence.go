package mapping

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// Presence types of RFC 6121 (§4.7.1 and §3); "" is available presence.
const (
	PresenceAvailable    = ""
	PresenceUnavailable  = "unavailable"
	PresenceSubscribe    = "subscribe"
	PresenceSubscribed   = "subscribed"
	PresenceUnsubscribe  = "unsubscribe"
	PresenceUnsubscribed = "unsubscribed"
	PresenceProbe        = "probe"
	PresenceError        = "error"
)

// JobSubscribe has a puppet ask an XMPP person for a presence
// subscription (RFC 6121 §3.1.1), so that the person's client treats the
// puppet as a contact and returns receipts to it.
const JobSubscribe JobKind = "xmpp.subscribe"

// XMPPPresence is an incoming <presence/> as xmppside decoded it.
type XMPPPresence struct {
	ID       string
	From, To jid.JID
	Type     string // one of the Presence* types
	// Photo is the hash of the sender's avatar, "" for none (XEP-0153
	// §3.1); nil if the presence says nothing of it.
	Photo *string
	// Nick is the XEP-0172 nickname a subscription request carries, ""
	// if none.
	Nick string
	// MUC is what a multi-user chat says of its occupant (XEP-0045
	// muc#user), nil if it is not from one; Error the error of a
	// presence of type error.
	MUC   *MUCPresence
	Error *StanzaError
}

// MUCPresence is the muc#user part of an occupant's presence (XEP-0045
// §7.2.3, §17.2), and the XEP-0421 occupant-id the room gives them.
type MUCPresence struct {
	// Statuses are the status codes (§15.6): 110 this is the recipient's
	// own presence, 201 a new room, 303 a nick change (NewNick).
	Statuses []int
	// RealJID is the occupant's real JID where the room tells it (a
	// non-anonymous room, or to a moderator); zero otherwise.
	RealJID     jid.JID
	Role        string // moderator, participant, visitor, none
	Affiliation string
	NewNick     string // <item nick/> of a 303
	// Actor and Reason are the <actor nick/> and <reason/> of a kick
	// (307, §9.1) or ban (301, §9.2), "" if the room gave none.
	Actor, Reason string
	OccupantID    string // XEP-0421 §3, "" if none
}

// Has tells whether p carries status code c.
func (p *MUCPresence) Has(c int) bool { return p != nil && slices.Contains(p.Statuses, c) }

// OutPresence is a <presence/> a puppet sends; xmppside encodes it.
type OutPresence struct {
	ID       string
	From, To jid.JID
	Type     string
	// Caps attaches the puppets' entity capabilities (XEP-0115); xmppside
	// knows what they are, since it answers the disco#info they stand for.
	Caps bool
	// Nick is the XEP-0172 nickname the puppet gives itself ("": none).
	Nick string
	// Photo is the hash of the puppet's avatar (XEP-0153 §3.1), "" for
	// none; nil says nothing of it (§3.2).
	Photo *string
	// JoinMUC makes it a join of a multi-user chat (XEP-0045 §7.2.1,
	// To is room/nick). It asks for no history (§7.2.15), since the
	// bridge carries what is said from now on, unless HistorySince is
	// set: then for what was said since then, MaxHistory messages at
	// most (a rejoin's, for what the bridge missed while it was away).
	JoinMUC      bool
	HistorySince time.Time
	// MUCPassword is the room's password a join gives (§7.2.6), "" for
	// none. Never logged.
	MUCPassword string
}

// MaxHistory is how many messages a rejoin asks a chat for at most
// (XEP-0045 §7.2.15 "maxstanzas"): a room that keeps more sends no more.
const MaxHistory = 100

// Subscription is the presence subscription state between a puppet and an
// XMPP person (RFC 6121 §3, seen from the puppet's side, as in Appendix A).
type Subscription struct {
	MXID id.UserID
	JID  jid.JID // bare
	// FromThem: the person is subscribed to the puppet's presence
	// ("from" in the puppet's roster); they may see it and probe it.
	FromThem bool
	// ToThem: the puppet is subscribed to the person's presence ("to"):
	// the person approved the puppet's request.
	ToThem bool
}

// SubscriptionStore keeps the Subscriptions. Store embeds it.
type SubscriptionStore interface {
	// Subscription returns the pair's state, or ErrNotFound if nothing
	// was ever stored for it (which means neither direction).
	Subscription(ctx context.Context, mxid id.UserID, peer jid.JID) (*Subscription, error)
	// SetSubscriptionFrom sets FromThem of the pair, creating it if need be.
	SetSubscriptionFrom(ctx context.Context, mxid id.UserID, peer jid.JID, on bool) error
	// SetSubscriptionTo sets ToThem of the pair, creating it if need be.
	SetSubscriptionTo(ctx context.Context, mxid id.UserID, peer jid.JID, on bool) error
	// Subscribers lists the pairs whose person is subscribed to the
	// puppet's presence (FromThem).
	Subscribers(ctx context.Context) ([]*Subscription, error)
}

// PresencePolicy is how puppets treat subscriptions (config: xmpp.*).
type PresencePolicy struct {
	// AutoSubscribe approves a subscription request from anyone who may
	// talk to the Matrix user through the bridge; without it, only the
	// people who already have a portal with them.
	AutoSubscribe bool
	// SubscribeOnPortal has the puppet ask for a subscription to the
	// person when their portal is created.
	SubscribeOnPortal bool
}

// Reasons and outcomes of incoming presence, as counted under xmpp_presence.
const (
	PresenceApproved      = "subscribe_approved"
	PresenceDenied        = "subscribe_denied"
	PresenceProbeAnswered = "probe_answered"
	PresenceProbeDenied   = "probe_denied"
	PresenceIgnored       = "ignored"
)

// HandleXMPPPresence takes a presence addressed to one of the component's
// JIDs and returns what the puppet answers, in order. The component is the
// server of its puppets and, since they have no client of their own, also
// answers for them as their client would.
//
// Privacy: a puppet that stands for nobody, one of a user who may not use
// the bridge, and one asked by a person of a blocked domain all answer
// exactly like a puppet that may not talk to the asker, so no answer tells
// whether a Matrix user is there.
func (b *Bridge) HandleXMPPPresence(ctx context.Context, p *XMPPPresence) ([]*OutPresence, error) {
	return b.people.handleXMPPPresence(ctx, p)
}

func (b *people) handleXMPPPresence(ctx context.Context, p *XMPPPresence) ([]*OutPresence, error) {
	log := b.log.With().Str("from", p.From.String()).Str("to", p.To.String()).Str("type", p.Type).Logger()
	mxid, reason := b.resolvePuppet(p.To)
	if reason == "" && b.blocked(p.From) {
		reason = ReasonBlockedDomain
	}
	if reason == "" {
		// A chat a puppet was sent to speaks of its occupants (XEP-0045
		// §7.2), answered by nothing.
		if r := b.groups.known(p.From); r != nil {
			return nil, b.groups.presenceFromMUC(ctx, log, r, mxid, p)
		}
	}
	// RFC 6121 §3.1.3: a request to a full JID is treated as one to the
	// bare JID; a puppet's presence is its bare JID's (all of the user's
	// devices), as IM-NG addresses it.
	puppet, peer := p.To.Bare(), p.From.Bare()
	// Its presence comes from the full JID it speaks from; answers about
	// the subscription from the bare one (RFC 6121 §3.1.2).
	speaker, _ := puppet.WithResource(PuppetResource)
	answer := func(typ string, to jid.JID, outcome Reason) []*OutPresence {
		log.Debug().Str("outcome", string(outcome)).Str("reason", string(reason)).Msg("Answered presence")
		b.count("xmpp_presence", outcome)
		from := puppet
		if typ == PresenceAvailable || typ == PresenceUnavailable {
			from = speaker
		}
		out := &OutPresence{From: from, To: to, Type: typ, Caps: typ == PresenceAvailable}
		if typ == PresenceAvailable {
			// Best effort: the presence matters more than the profile.
			if err := b.withProfile(ctx, mxid, out); err != nil {
				log.Debug().Err(err).Msg("Presence without the profile")
			}
		}
		return []*OutPresence{out}
	}
	ignore := func(why Reason) ([]*OutPresence, error) {
		if why == "" {
			why = PresenceIgnored
		}
		log.Debug().Str("reason", string(why)).Msg("Ignored presence")
		b.count("xmpp_presence", why)
		return nil, nil
	}
	if p.Type == PresenceAvailable && reason == "" && p.Photo != nil {
		// XEP-0153 §3.2: another photo than the one the ghost has.
		job, err := b.photoChanged(ctx, mxid, peer, *p.Photo)
		if err != nil {
			return nil, err
		}
		if job != nil {
			if err := b.store.AddJobs(ctx, job); err != nil {
				return nil, fmt.Errorf("queue the vCard of %s: %w", peer, err)
			}
			b.queue(job)
		}
	}
	switch {
	case p.Type == PresenceAvailable || p.Type == PresenceUnavailable || p.Type == PresenceError:
		// A person's presence (broadcast to a puppet subscribed to them,
		// directed, or Prosody acknowledging a subscribe with
		// "unavailable") changes nothing on Matrix.
		return ignore(reason)
	case reason != "" && p.Type != PresenceSubscribe && p.Type != PresenceProbe:
		// RFC 6121 §8.5.1: for an account that does not exist, "For a
		// presence stanza of type "subscribed", "unsubscribe", or
		// "unsubscribed", the server MUST ignore the stanza."
		return ignore(reason)
	}
	var sub Subscription
	if reason == "" {
		s, err := b.store.Subscription(ctx, mxid, peer)
		if err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("look up subscription of %s and %s: %w", mxid, peer, err)
		} else if err == nil {
			sub = *s
		}
	}
	switch p.Type {
	case PresenceSubscribe:
		if reason != "" {
			// Answered like a request the user denies (below), so that
			// nobody learns from it whether the user is there.
			return answer(PresenceUnsubscribed, peer, PresenceDenied), nil
		}
		// XEP-0172 §4.1: the request carries the name its sender goes by,
		// which their ghost takes.
		job := b.ghostName(mxid, peer, p.Nick)
		if !sub.FromThem {
			// RFC 6121 §3.1.3 rule 1: no automatic approval unless the
			// account is configured for it, which the bridge is (for
			// the pairs that may talk).
			ok, stranger, err := b.mayTalk(ctx, mxid, peer)
			if err != nil {
				return nil, err
			}
			if !ok {
				// §3.1.4: the contact denies with "unsubscribed".
				return answer(PresenceUnsubscribed, peer, PresenceDenied), nil
			}
			if stranger {
				// The budget of the domain's subscriptions, and of its
				// new ghosts if the name makes one.
				if refused, err := b.admitStranger(ctx, peer, job != nil, ask{subscriptionsOfDomain, peer.Domainpart()}); err != nil {
					return nil, err
				} else if refused != "" {
					// Denied as the user would (§3.1.4): a presence
					// carries no stanza error the asker's client shows,
					// and a denial stores nothing.
					return answer(PresenceUnsubscribed, peer, refused), nil
				}
			}
			if err := b.store.SetSubscriptionFrom(ctx, mxid, peer, true); err != nil {
				return nil, fmt.Errorf("store subscription of %s to %s: %w", peer, mxid, err)
			}
		}
		// §3.1.3 rule 2 (already subscribed: "subscribed" again) and
		// §3.1.5: an approval is followed by the contact's presence.
		out := answer(PresenceSubscribed, peer, PresenceApproved)
		if job != nil {
			if err := b.store.AddJobs(ctx, job); err != nil {
				return nil, fmt.Errorf("queue the name of %s: %w", peer, err)
			}
			b.namedAfter(peer, p.Nick)
			b.queue(job)
		}
		avail := &OutPresence{From: speaker, To: peer, Caps: true}
		if err := b.withProfile(ctx, mxid, avail); err != nil {
			log.Debug().Err(err).Msg("Presence without the profile")
		}
		return append(out, avail), nil
	case PresenceProbe:
		if reason != "" || !sub.FromThem {
			// RFC 6121 §4.3.2 rule 1: "If the contact account does not
			// exist or the user's bare JID is in the contact's roster
			// with a subscription state other than "From", "From +
			// Pending Out", or "Both" ..., then the contact's server
			// SHOULD return a presence stanza of type "unsubscribed"".
			return answer(PresenceUnsubscribed, peer, PresenceProbeDenied), nil
		}
		// §4.3.2 rule 3: the presence of the contact's available
		// resources, to the entity that probed. A puppet is always
		// available: its Matrix user's devices are reached by Matrix.
		// (Following the user's m.presence is left out: Dendrite has
		// presence off by default, and it would tell strangers who may
		// subscribe when the user is online.)
		return answer(PresenceAvailable, p.From, PresenceProbeAnswered), nil
	case PresenceUnsubscribe:
		if !sub.FromThem {
			return ignore("")
		}
		if err := b.store.SetSubscriptionFrom(ctx, mxid, peer, false); err != nil {
			return nil, fmt.Errorf("cancel subscription of %s to %s: %w", peer, mxid, err)
		}
		// RFC 6121 §3.3.3: the contact's server sends "unavailable" from
		// the contact's available resources to the user.
		return answer(PresenceUnavailable, peer, "unsubscribe"), nil
	case PresenceUnsubscribed:
		// §3.2.3: the person cancels the puppet's subscription, or
		// denies its request.
		if sub.ToThem {
			if err := b.store.SetSubscriptionTo(ctx, mxid, peer, false); err != nil {
				return nil, fmt.Errorf("note %s cancelling %s's subscription: %w", peer, mxid, err)
			}
		}
		return ignore("unsubscribed")
	case PresenceSubscribed:
		// §3.1.6: an approval counts only if the user asked for it; the
		// user's server ignores any other. The puppet asks when the
		// portal is created, so a portal stands for the pending request.
		if sub.ToThem {
			return ignore("")
		}
		if _, err := b.store.PortalByPair(ctx, mxid, peer); isNotFound(err) {
			return ignore("unsolicited_subscribed")
		} else if err != nil {
			return nil, fmt.Errorf("look up portal of %s and %s: %w", mxid, peer, err)
		}
		if err := b.store.SetSubscriptionTo(ctx, mxid, peer, true); err != nil {
			return nil, fmt.Errorf("note %s approving %s's subscription: %w", peer, mxid, err)
		}
		return ignore("subscribed")
	}
	// RFC 6120 §8.2.3: another type is a bad-request; the server in
	// front of us refuses those already.
	return ignore("bad_type")
}

// SubscriberPresence is the presence every puppet owes the people
// subscribed to it: available (with caps) when the component has connected,
// unavailable before it disconnects. RFC 6121 §4.2.2: the server of a user
// who comes online broadcasts the initial presence "to all contacts that
// are subscribed to the user's presence" (from or both), and §4.5.2 the
// same for unavailable presence. Without it a contact would show a puppet
// online while the bridge is away, and offline (until it probes again)
// after the bridge is back. Puppets of users who may no longer use the
// bridge, and people of blocked domains, are left out.
func (b *Bridge) SubscriberPresence(ctx context.Context, available bool) ([]*OutPresence, error) {
	return b.people.subscriberPresence(ctx, available)
}

func (b *people) subscriberPresence(ctx context.Context, available bool) ([]*OutPresence, error) {
	subs, err := b.store.Subscribers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the puppets' subscribers: %w", err)
	}
	typ := PresenceUnavailable
	if available {
		typ = PresenceAvailable
	}
	out := make([]*OutPresence, 0, len(subs))
	for _, s := range subs {
		puppet, err := b.cfg.Identities.PuppetFrom(s.MXID)
		if err != nil {
			continue
		}
		if _, reason := b.resolvePuppet(puppet); reason != "" || b.blocked(s.JID) {
			continue
		}
		p := &OutPresence{From: puppet, To: s.JID, Type: typ, Caps: available}
		if available {
			if err := b.withProfile(ctx, s.MXID, p); err != nil {
				return nil, err
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// mayTalk tells whether a subscription request of peer to mxid's puppet is
// approved, once ResolvePuppet and the blocked domains have let it through,
// and whether peer is a stranger to mxid (no portal), whose approval
// spends a budget (limits.domain_subscriptions_per_hour).
func (b *people) mayTalk(ctx context.Context, mxid id.UserID, peer jid.JID) (ok, stranger bool, err error) {
	_, err = b.store.PortalByPair(ctx, mxid, peer)
	if isNotFound(err) {
		return b.cfg.Presence.AutoSubscribe, true, nil
	} else if err != nil {
		return false, false, fmt.Errorf("look up portal of %s and %s: %w", mxid, peer, err)
	}
	return true, false, nil
}

// subscribeArgs is the payload of a JobSubscribe.
type subscribeArgs struct {
	MXID id.UserID `json:"mxid"`
	JID  string    `json:"jid"`
}

// subscribeJobs are the jobs owed when the portal of mxid and peer is
// created: the puppet asks the person for a subscription.
func (b *people) subscribeJobs(mxid id.UserID, peer jid.JID) []*Job {
	if !b.cfg.Presence.SubscribeOnPortal {
		return nil
	}
	payload, _ := json.Marshal(subscribeArgs{MXID: mxid, JID: peer.Bare().String()}) // strings only
	return []*Job{newJob(JobSubscribe, about{mxid: mxid, peer: peer}, 0, payload)}
}

// portalJobs are the jobs owed when the portal of mxid and peer is
// created: the puppet asks the person for a subscription, and looks its
// user's profile up, which its vCard and presence show, and the person's
// vCard, which names their ghost and gives it an avatar (ghosts.go).
func (b *people) portalJobs(mxid id.UserID, peer jid.JID) []*Job {
	return append(b.subscribeJobs(mxid, peer), profileJob(profileArgs{MXID: mxid, Lookup: true}), vcardJob(mxid, peer), rosterJob(mxid, peer))
}

// A request for a subscription is about nothing else the bridge sends, and
// asking twice is harmless: no order.
var _ = register(JobSubscribe, jobKind{side: SideXMPP, order: noOrder, payload: subscribeArgs{}, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.people.sendSubscribe(ctx, job) }})

// sendSubscribe carries out a JobSubscribe, unless the person approved a
// request already; asking twice is harmless (servers deliver a pending
// request once).
func (b *people) sendSubscribe(ctx context.Context, job *Job) error {
	args, err := payloadOf[subscribeArgs](job)
	if err != nil {
		return err
	}
	peer, err := jid.Parse(args.JID)
	if err != nil {
		return fmt.Errorf("%w: bad jid %q: %w", ErrPermanent, args.JID, err)
	}
	if err := b.unreachable(args.MXID, peer); err != nil {
		return err
	}
	sub, err := b.store.Subscription(ctx, args.MXID, peer)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("look up subscription of %s and %s: %w", args.MXID, peer, err)
	} else if err == nil && sub.ToThem {
		b.count("xmpp_subscribe", "already")
		return nil
	}
	from, err := b.cfg.Identities.Puppet(args.MXID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	// RFC 6121 §3.1.1: to the bare JID, with an id. XEP-0172 §4.1: a
	// subscription request carries the nickname of who asks (the Matrix
	// display name), which the person's client shows instead of the
	// escaped JID. Without one (the homeserver unreachable, no name set),
	// the request goes without: it matters more than the name.
	nick, err := b.matrix.DisplayName(ctx, args.MXID)
	if err != nil {
		b.log.Debug().Err(err).Str("mxid", string(args.MXID)).Msg("No display name for the subscription request")
		nick = ""
	}
	out := &OutPresence{ID: NewXMPPID(), From: from, To: peer.Bare(), Type: PresenceSubscribe, Nick: nick}
	if err := b.xmpp.SendPresence(ctx, out); err != nil {
		return fmt.Errorf("ask %s for a subscription for %s: %w", peer, args.MXID, err)
	}
	b.count("xmpp_subscribe", "sent")
	return nil
}
