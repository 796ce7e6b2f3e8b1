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
}

// DefaultLimits are the limits when the configuration sets none: far above
// what a person's clients send (a client catching up on a long history
// marks each message once), far below what would let one of them fill the
// bridge.
var DefaultLimits = Limits{PeerRate: 1000, PeerBurst: 20000, Pending: 50000}

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
	tokens float64
	last   time.Time // when tokens was computed
	queued bool      // in the ring
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
	refused map[string]int
	lastLog time.Time
}

func newIntake(limits Limits, now func() time.Time, log zerolog.Logger) *intake {
	if limits.PeerRate <= 0 || limits.PeerBurst <= 0 || limits.Pending <= 0 {
		limits = DefaultLimits
	}
	return &intake{limits: limits, now: now, log: log, peers: map[string]*peerQueue{}, space: make(chan struct{}), refused: map[string]int{}}
}

// spend takes n from peer's budget. in.mu is held.
func (in *intake) spend(peer string, n int) (*peerQueue, bool) {
	now := in.now()
	q := in.queueOf(peer)
	q.tokens = min(q.tokens+now.Sub(q.last).Seconds()*in.limits.PeerRate, float64(in.limits.PeerBurst))
	q.last = now
	if q.tokens < float64(n) {
		in.refused[peer] += n
		in.logRefusals(now)
		return q, false
	}
	q.tokens -= float64(n)
	return q, true
}

// queueOf is peer's state, a full budget for one not seen lately. in.mu is
// held.
func (in *intake) queueOf(peer string) *peerQueue {
	q := in.peers[peer]
	if q == nil {
		q = &peerQueue{peer: peer, tokens: float64(in.limits.PeerBurst), last: in.now()}
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
		if !q.queued && q.tokens+now.Sub(q.last).Seconds()*in.limits.PeerRate >= float64(in.limits.PeerBurst) {
			delete(in.peers, p)
		}
	}
}

// logRefusals logs what was refused since the last time, once per
// overBudgetLogEvery. in.mu is held.
func (in *intake) logRefusals(now time.Time) {
	if len(in.refused) == 0 || now.Sub(in.lastLog) < overBudgetLogEvery {
		return
	}
	d := zerolog.Dict()
	total, shown := 0, 0
	for p, n := range in.refused {
		if shown < 10 { // a line, not a list of everyone
			d.Int(p, n)
			shown++
		}
		total += n
	}
	in.log.Warn().Dict("by_peer", d).Int("peers", len(in.refused)).Int("refused", total).Float64("rate", in.limits.PeerRate).Int("burst", in.limits.PeerBurst).
		Msg("XMPP people sent more receipts than their budget (limits.peer_*); the rest were dropped")
	clear(in.refused)
	in.lastLog = now
}
