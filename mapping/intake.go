package mapping

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// The intake of receipts from XMPP: what the read loop hands over, waiting
// to be looked up and recorded a burst at a time (FlushReceipts). One XMPP
// person flooding receipts or markers, valid or not, must not slow the
// others: each has a budget (a token bucket, Limits), what is past it is
// refused and counted, and bursts are taken from the people in turn, so a
// long queue of one person's receipts delays another's by one turn at most.
// Memory is bounded by Limits.Pending: past it the read loop waits, which
// holds back the XMPP server (XEP-0114 has no other flow control) instead of
// growing without end.

// Limits bound what XMPP people can make the bridge do (config: limits.*).
type Limits struct {
	// PeerRate is how many receipts, markers and chat states a second one
	// XMPP person may send, on average; PeerBurst how many at once.
	PeerRate  float64
	PeerBurst int
	// Pending is how many receipts may wait to be recorded, everyone's
	// together.
	Pending int
	// What strangers may have the bridge create, each an hour (and as
	// many at once): portals opened by messages of one person
	// (JIDPortals) and of one domain's people (DomainPortals), ghosts of
	// one domain's people (DomainGhosts), and subscriptions approved for
	// one domain's people without a portal (DomainSubscriptions). Zero:
	// DefaultLimits'.
	JIDPortals, DomainPortals, DomainGhosts, DomainSubscriptions int
	// MediaFetches is how many files one XMPP person may have the bridge
	// fetch from the URLs they send (media.go), an hour.
	MediaFetches int
}

// DefaultLimits are the limits when the configuration sets none: far above
// what a person's clients send (a client catching up on a long history
// marks each message once), far below what would let one of them fill the
// bridge. A person opens chats with a few Matrix users in an hour, a busy
// server with a few dozen; a script making accounts on its own server,
// with hundreds.
var DefaultLimits = Limits{PeerRate: 1000, PeerBurst: 20000, Pending: 50000, JIDPortals: 10, DomainPortals: 100, DomainGhosts: 50, DomainSubscriptions: 50, MediaFetches: 60}

const (
	// takePerPeer and takeTotal bound one burst: per person, and in all.
	takePerPeer = 500
	takeTotal   = 2000
	// overBudgetLogEvery is how often refusals are logged, with their
	// count per person since the last time.
	overBudgetLogEvery = 10 * time.Second
)

type peerQueue struct {
	peer   string
	rs     []xmppReceipt
	budget bucket
	queued bool // in the ring
}

type intake struct {
	mu      sync.Mutex
	limits  Limits
	now     func() time.Time
	log     zerolog.Logger
	peers   map[string]*peerQueue // by bare JID
	ring    []*peerQueue          // people with receipts waiting, in turn
	pending int
	space   chan struct{} // closed when receipts leave a full intake
	refused refusals
	// strangers holds the budgets of what people without a portal may
	// have created; it is here, with the other budgets of what XMPP
	// people may make the bridge do.
	strangers *strangers
}

func newIntake(limits Limits, now func() time.Time, log zerolog.Logger) *intake {
	s := newStrangers(limits, now, log)
	if limits.PeerRate <= 0 || limits.PeerBurst <= 0 || limits.Pending <= 0 {
		limits = DefaultLimits
	}
	return &intake{limits: limits, now: now, log: log, peers: map[string]*peerQueue{}, space: make(chan struct{}), strangers: s}
}

// spend takes n from peer's budget. in.mu is held.
func (in *intake) spend(peer string, n int) (*peerQueue, bool) {
	now := in.now()
	q := in.queueOf(peer)
	if !in.rate().take(&q.budget, now, n) {
		in.refused.add(peer, n)
		in.logRefusals(now)
		return q, false
	}
	return q, true
}

// queueOf is peer's state, a full budget for one not seen lately. in.mu is
// held.
func (in *intake) queueOf(peer string) *peerQueue {
	q := in.peers[peer]
	if q == nil {
		q = &peerQueue{peer: peer, budget: in.rate().full(in.now())}
		in.peers[peer] = q
	}
	return q
}

// allow tells whether peer may have n more things done (chat states),
// spending its budget.
func (in *intake) allow(peer string, n int) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	_, ok := in.spend(peer, n)
	return ok
}

// add queues rs, all from one peer, if its budget allows; it waits while
// the intake is full. It returns false if they were refused.
func (in *intake) add(ctx context.Context, peer string, rs []xmppReceipt) (bool, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for in.pending >= in.limits.Pending {
		space := in.space
		in.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			in.mu.Lock()
			return false, ctx.Err()
		}
		in.mu.Lock()
	}
	q, ok := in.spend(peer, len(rs))
	if !ok {
		return false, nil
	}
	q.rs = append(q.rs, rs...)
	in.pending += len(rs)
	if !q.queued {
		q.queued = true
		in.ring = append(in.ring, q)
	}
	return true, nil
}

// take returns the next burst: up to takePerPeer of each person's oldest
// receipts, in turn, takeTotal in all; more tells whether some are left.
func (in *intake) take() (rs []xmppReceipt, more bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	wasFull := in.pending >= in.limits.Pending
	for len(in.ring) > 0 && len(rs) < takeTotal {
		q := in.ring[0]
		n := min(len(q.rs), takePerPeer, takeTotal-len(rs))
		rs = append(rs, q.rs[:n]...)
		q.rs = q.rs[n:]
		in.ring = in.ring[1:]
		if len(q.rs) > 0 {
			in.ring = append(in.ring, q) // its next turn, after the others
		} else {
			q.rs, q.queued = nil, false
		}
	}
	in.pending -= len(rs)
	if wasFull && in.pending < in.limits.Pending {
		close(in.space)
		in.space = make(chan struct{})
	}
	in.forgetIdle()
	in.logRefusals(in.now())
	return rs, len(in.ring) > 0
}

// held is how many receipts wait to be taken.
func (in *intake) held() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.pending
}

// putBack returns receipts that could not be recorded, ahead of the ones
// that came since, in their order.
func (in *intake) putBack(rs []xmppReceipt) {
	in.mu.Lock()
	defer in.mu.Unlock()
	byPeer := map[string][]xmppReceipt{}
	var order []string
	for _, r := range rs {
		p := r.peer.String()
		if byPeer[p] == nil {
			order = append(order, p)
		}
		byPeer[p] = append(byPeer[p], r)
	}
	for _, p := range order {
		q := in.queueOf(p)
		q.rs = append(slices.Clip(byPeer[p]), q.rs...)
		if !q.queued {
			q.queued = true
			in.ring = append(in.ring, q)
		}
	}
	in.pending += len(rs) // may pass the limit: these were accepted already
}

// forgetIdle drops the state of people with nothing waiting and a full
// budget, which is what a new person gets: the map holds only those seen
// lately. in.mu is held.
func (in *intake) forgetIdle() {
	if len(in.peers) < 1024 {
		return
	}
	now := in.now()
	for p, q := range in.peers {
		if !q.queued && in.rate().isFull(q.budget, now) {
			delete(in.peers, p)
		}
	}
}

// rate is the budget of each person's receipts.
func (in *intake) rate() rate {
	return rate{perSecond: in.limits.PeerRate, burst: float64(in.limits.PeerBurst)}
}

// logRefusals logs what was refused since the last time, once per
// overBudgetLogEvery. in.mu is held.
func (in *intake) logRefusals(now time.Time) {
	in.refused.log(now, func(by *zerolog.Event, who, total int) {
		in.log.Warn().Dict("by_peer", by).Int("peers", who).Int("refused", total).Float64("rate", in.limits.PeerRate).Int("burst", in.limits.PeerBurst).
			Msg("XMPP people sent more receipts than their budget (limits.peer_*); the rest were dropped")
	})
}

// bucket is a token bucket, the one budget type of the bridge: a person's
// receipts (intake) and what strangers may have it create (strangers). Its
// rate says how fast it fills and how much it holds.
type bucket struct {
	tokens float64
	last   time.Time // when tokens was computed
}

// rate is how a bucket fills: perSecond tokens a second, up to burst.
type rate struct{ perSecond, burst float64 }

// perHour is a rate of n an hour, n of them at once.
func perHour(n int) rate { return rate{perSecond: float64(n) / 3600, burst: float64(n)} }

// full is a bucket as a newcomer gets it.
func (r rate) full(now time.Time) bucket { return bucket{tokens: r.burst, last: now} }

// fill brings b's tokens up to now.
func (r rate) fill(b *bucket, now time.Time) {
	b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*r.perSecond, r.burst)
	b.last = now
}

// take spends n of b's tokens if it holds them, and tells whether it did.
func (r rate) take(b *bucket, now time.Time, n int) bool {
	r.fill(b, now)
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// isFull tells whether b is as full as a newcomer's would be: nothing is
// lost by forgetting it.
func (r rate) isFull(b bucket, now time.Time) bool {
	return b.tokens+now.Sub(b.last).Seconds()*r.perSecond >= r.burst
}

// refusals gathers what a budget refused, by whom, to be logged once per
// overBudgetLogEvery: a flood of refusals makes a line, not a flood of
// lines.
type refusals struct {
	by   map[string]int
	last time.Time
}

func (r *refusals) add(who string, n int) {
	if r.by == nil {
		r.by = map[string]int{}
	}
	r.by[who] += n
}

// log hands write what was refused since the last time (up to 10 of whom,
// how many, and how much in all) and forgets it, if overBudgetLogEvery
// has passed since.
func (r *refusals) log(now time.Time, write func(by *zerolog.Event, who, total int)) {
	if len(r.by) == 0 || now.Sub(r.last) < overBudgetLogEvery {
		return
	}
	d := zerolog.Dict()
	total, shown := 0, 0
	for who, n := range r.by {
		if shown < 10 { // a line, not a list of everyone
			d.Int(who, n)
			shown++
		}
		total += n
	}
	write(d, len(r.by), total)
	clear(r.by)
	r.last = now
}

// Why a stranger's message or subscription was refused (counted under
// xmpp_message and xmpp_presence).
const (
	ReasonJIDBudget    Reason = "jid_budget"    // limits.jid_new_portals_per_hour
	ReasonDomainBudget Reason = "domain_budget" // limits.domain_new_portals_per_hour, limits.domain_subscriptions_per_hour
	ReasonGhostBudget  Reason = "ghost_budget"  // limits.domain_new_ghosts_per_hour
	ReasonMediaBudget  Reason = "media_budget"  // limits.media_fetches_per_hour (counted under media_fetch)
)

// budgetKind is one of the stranger budgets.
type budgetKind int

const (
	portalsOfJID budgetKind = iota
	portalsOfDomain
	ghostsOfDomain
	subscriptionsOfDomain
	mediaOfJID // files fetched for one person (media.go)
	budgetKinds
)

// refusedAs is the reason a refusal by each budget is counted under.
var refusedAs = [budgetKinds]Reason{ReasonJIDBudget, ReasonDomainBudget, ReasonGhostBudget, ReasonDomainBudget, ReasonMediaBudget}

// ask is one token of a budget, for the person or domain key.
type ask struct {
	kind budgetKind
	key  string
}

// strangers bounds what XMPP people without a portal can make the bridge
// create: a ghost account, a room and an invite for each new (user,
// person) pair, a subscription row. A budget per person alone is
// multiplied by the accounts a server makes at will, so the domain has
// one too. The buckets are in memory: a restart forgets them, which costs
// at most one more burst.
type strangers struct {
	mu      sync.Mutex
	now     func() time.Time
	log     zerolog.Logger
	rates   [budgetKinds]rate
	buckets map[ask]*bucket
	refused refusals
}

func newStrangers(l Limits, now func() time.Time, log zerolog.Logger) *strangers {
	or := func(n, def int) int {
		if n > 0 {
			return n
		}
		return def
	}
	d := DefaultLimits
	s := &strangers{now: now, log: log, buckets: map[ask]*bucket{}}
	s.rates[portalsOfJID] = perHour(or(l.JIDPortals, d.JIDPortals))
	s.rates[portalsOfDomain] = perHour(or(l.DomainPortals, d.DomainPortals))
	s.rates[ghostsOfDomain] = perHour(or(l.DomainGhosts, d.DomainGhosts))
	s.rates[subscriptionsOfDomain] = perHour(or(l.DomainSubscriptions, d.DomainSubscriptions))
	s.rates[mediaOfJID] = perHour(or(l.MediaFetches, d.MediaFetches))
	return s
}

// admit spends one token of each budget asked, all of them or none: a
// refusal by the domain's budget costs the person's nothing. It returns
// why it refused, or "".
func (s *strangers) admit(asks ...ask) Reason {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, a := range asks {
		b := s.bucketOf(a, now)
		r := s.rates[a.kind]
		r.fill(b, now)
		if b.tokens < 1 {
			s.refused.add(string(refusedAs[a.kind])+" "+a.key, 1)
			s.logRefusals(now)
			return refusedAs[a.kind]
		}
	}
	for _, a := range asks {
		s.rates[a.kind].take(s.buckets[a], now, 1)
	}
	s.forgetFull(now)
	s.logRefusals(now)
	return ""
}

// logRefusals logs what was refused since the last time, once per
// overBudgetLogEvery. s.mu is held.
func (s *strangers) logRefusals(now time.Time) {
	s.refused.log(now, func(by *zerolog.Event, who, total int) {
		s.log.Warn().Dict("by_budget", by).Int("keys", who).Int("refused", total).
			Msg("XMPP strangers asked for more new portals, ghosts or subscriptions, or people for more file fetches, than their budget (limits.*_per_hour); the rest were refused")
	})
}

// bucketOf is a's bucket, a full one for a key not seen lately. s.mu is
// held.
func (s *strangers) bucketOf(a ask, now time.Time) *bucket {
	b := s.buckets[a]
	if b == nil {
		full := s.rates[a.kind].full(now)
		b = &full
		s.buckets[a] = b
	}
	return b
}

// forgetFull drops the buckets that have filled up again, which is what a
// newcomer gets: the map holds only the keys seen lately. s.mu is held.
func (s *strangers) forgetFull(now time.Time) {
	if len(s.buckets) < 1024 {
		return
	}
	for a, b := range s.buckets {
		if s.rates[a.kind].isFull(*b, now) {
			delete(s.buckets, a)
		}
	}
}
