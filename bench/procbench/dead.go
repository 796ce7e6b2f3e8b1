package main

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"xmppbridge/internal/standin"
	"xmppbridge/mapping"
)

// The dead shape: the receipts of 100 portals, paced at 1,000/s (as
// paced100) and then in a burst (as p100), by a bridge alone and, in its
// own turn of the same run, by a bridge beside strangers whose server
// never answers. Each stranger sends one message to alice's puppet, which
// opens a portal and queues the fetch of their vCard, and then their
// avatar metadata, which queues the fetch of their avatar: IQs that the
// stand-in XMPP server never answers, so each waits out the bridge's 20 s.
// The two bridges' figures, side by side, tell whether one person's dead
// server costs anyone else anything. Two processes rather than two phases
// of one: a bridge's second phase is slower than its first whatever it
// holds (the pruning of what the first left behind), which would be read
// as the strangers' doing.
//
// How long the requests are outstanding: a bridge that fetches from
// remote entities in a few lanes of their own (4) and gives a request up
// after 3 tries has requests outstanding for about strangers × 3 × 20 s /
// 4 (7.5 minutes for 30), far longer than the shape: every moment of it
// has 4 of them out (a person's avatar waits behind their vCard, in their
// lane). A bridge that sent them all at once has them all out for the
// paced run's first 20 s; what their timeouts do to the rest is what the
// run's remaining seconds (BENCH_DEAD_SECONDS, 30 by default) and the
// burst show.

// deadTarget is the turn of the bridge beside the dead strangers.
const deadTarget = "bridge+dead"

// deadShape is what the dead shape sends: a paced run, then a burst.
type deadShape struct {
	paced, burst []receipt
	strangers    int
}

// deadScenarios are the dead shape, Matrix-bound and XMPP-bound.
func (d *driver) deadScenarios() []*scenario {
	var out []*scenario
	for _, dir := range []string{"x2m-0184", "m2x-delivery"} {
		s := &scenario{shape: "dead", dir: dir, portals: 100, dead: &deadShape{strangers: d.dead}}
		kind := xmppReceived
		if dir == "m2x-delivery" {
			kind = matrixDelivery
		}
		// Each receipt is about a message of its own: a second receipt
		// about the same message is a duplicate, which the bridge drops.
		add := func(n int) []receipt {
			rs := make([]receipt, n)
			for j := range rs {
				i := len(s.roomOf)
				s.roomOf = append(s.roomOf, i%s.portals)
				rs[j] = receipt{i: i, room: i % s.portals, kind: kind}
			}
			return rs
		}
		s.dead.paced = add(rate * d.deadSeconds)
		s.dead.burst = add(d.n)
		s.setSeed()
		out = append(out, s)
	}
	return out
}

// partEnv is what runOne lends the dead shape.
type partEnv struct {
	xs        *standin.XMPPServer
	hs        *standin.Homeserver
	pid       int
	strangers int // 0: the bridge alone, or the relay
	puppet    string
	asks      *patternCount
	track     func(rs []receipt) *tracker
	send      func(t *tracker, rs []receipt, pace bool) (wait func())
	measure   func(r *run, t *tracker, started time.Time)
	cur       *atomic.Pointer[tracker]
}

// runDead runs the dead shape, its paced run and its burst each into a
// run of its own in res.phases, after the strangers' first messages if
// there are strangers.
func runDead(s *scenario, e *partEnv, res *run) {
	asked0 := e.asks.counts()
	var opened int64
	if e.strangers > 0 {
		var err error
		if opened, err = e.sendStrangers(); err != nil {
			res.errs = err.Error()
		}
	}
	for _, part := range []struct {
		rs   []receipt
		pace bool
	}{{s.dead.paced, true}, {s.dead.burst, false}} {
		sub := &run{paced: part.pace, sent: len(part.rs), opened: opened}
		cpu0, _ := cpuTime(e.pid)
		t := e.track(part.rs)
		e.cur.Store(t)
		started := time.Now()
		wait := e.send(t, part.rs, part.pace)
		if part.pace {
			wait()
		}
		e.measure(sub, t, started)
		cpu1, _ := cpuTime(e.pid)
		sub.cpu = cpu1 - cpu0
		asked1 := e.asks.counts()
		sub.asked = [2]int64{asked1[0] - asked0[0], asked1[1] - asked0[1]}
		asked0 = asked1
		sub.covered, sub.meanOut, sub.mostOut = e.asks.outstanding(started, started.Add(sub.dur))
		res.stalled = res.stalled || sub.stalled
		res.sent += sub.sent
		res.phases = append(res.phases, sub)
	}
}

// stranger is the k-th dead contact: someone<k>@dead.example, the next
// ones on dead2.example and so on, as many on each as the bridge lets one
// domain make new ghosts at once by default
// (limits.domain_new_ghosts_per_hour).
func stranger(k int) string {
	per := mapping.DefaultLimits.DomainGhosts
	if k < per {
		return fmt.Sprintf("someone%d@dead.example", k)
	}
	return fmt.Sprintf("someone%d@dead%d.example", k, k/per+1)
}

// sendStrangers has the strangers write to alice's puppet, waits for the
// bridge to open their portals, then sends each one's avatar metadata
// (XEP-0084 §4.2, as their PEP service would): the bridge then asks
// their server for their vCard and their avatar, and never hears back.
// It tells how many portals the bridge opened, once their messages are
// on Matrix.
func (e *partEnv) sendStrangers() (int64, error) {
	n := e.strangers
	rooms0, sent0 := e.hs.Count("createRoom"), e.hs.Count("send")
	var b strings.Builder
	for k := range n {
		fmt.Fprintf(&b, `<message from='%s/res' to='%s' type='chat' id='dead%d'><body>hello</body></message>`, stranger(k), e.puppet, k)
	}
	if err := e.xs.Write(b.String()); err != nil {
		return 0, fmt.Errorf("the strangers' messages: %w", err)
	}
	for end := time.Now().Add(15 * time.Second); e.hs.Count("createRoom")-rooms0 < int64(n) && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	b.Reset()
	for k := range n {
		sum := sha1.Sum([]byte(stranger(k)))
		h := hex.EncodeToString(sum[:])
		fmt.Fprintf(&b, `<message from='%s' to='%s'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='urn:xmpp:avatar:metadata'><item id='%s'><metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='4096' height='64' id='%s' type='image/png' width='64'/></metadata></item></items></event></message>`,
			stranger(k), e.puppet, h, h)
	}
	if err := e.xs.Write(b.String()); err != nil {
		return 0, fmt.Errorf("the strangers' avatar metadata: %w", err)
	}
	opened := e.hs.Count("createRoom") - rooms0
	// The one-time work of their portals (a room, a message, names) is
	// over before the receipts are measured: what they measure is the
	// strangers' requests being outstanding.
	for end := time.Now().Add(15 * time.Second); e.hs.Count("send")-sent0 < int64(n) && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	return opened, nil
}

// askPatterns are what the component's requests to the dead contacts
// hold: a vCard request (XEP-0054) and an avatar data request (XEP-0084).
var askPatterns = []string{"vcard-temp", "urn:xmpp:avatar:data"}

// patternCount counts occurrences of its patterns in what is written to
// it, across chunk boundaries,
// and when each was seen.
type patternCount struct {
	pats []string
	mu   sync.Mutex
	n    []int64
	at   []time.Time
	tail string
}

func newPatternCount(pats ...string) *patternCount {
	return &patternCount{pats: pats, n: make([]int64, len(pats))}
}

// Write takes the next chunk of the stream.
func (p *patternCount) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	chunk := p.tail + string(b)
	keep := 0
	for k, pat := range p.pats {
		c := strings.Count(chunk, pat)
		p.n[k] += int64(c)
		for range c {
			p.at = append(p.at, now)
		}
		keep = max(keep, len(pat)-1)
	}
	// Keep what could be the start of a pattern cut by the chunk end, and
	// never a whole one, which was counted.
	keep = min(keep, len(chunk))
	p.tail = chunk[len(chunk)-keep:]
	for _, pat := range p.pats {
		if k := strings.LastIndex(p.tail, pat); k >= 0 {
			p.tail = p.tail[k+len(pat):]
		}
	}
	return len(b), nil
}

func (p *patternCount) Close() error { return nil }

func (p *patternCount) counts() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.n)
}

// askWait is how long the bridge waits for the answer to a request to
// a remote entity (xmppside's vCardTimeout); the stand-in answers none, so
// each request is outstanding that long.
const askWait = 20 * time.Second

// outstanding tells, of the moments from from to to (sampled every 10
// ms), the share when at least one request was outstanding (seen less
// than askWait before), and the mean and the most outstanding at once.
func (p *patternCount) outstanding(from, to time.Time) (covered, mean float64, most int) {
	p.mu.Lock()
	at := slices.Clone(p.at)
	p.mu.Unlock()
	samples, some, sum := 0, 0, 0
	for x := from; !x.After(to); x = x.Add(10 * time.Millisecond) {
		n := 0
		for _, t := range at {
			if !t.After(x) && x.Before(t.Add(askWait)) {
				n++
			}
		}
		samples++
		sum += n
		most = max(most, n)
		if n > 0 {
			some++
		}
	}
	return float64(some) / float64(samples), float64(sum) / float64(samples), most
}

// tee writes to each of its writers.
type tee []io.WriteCloser

func (t tee) Write(b []byte) (int, error) {
	for _, w := range t {
		if _, err := w.Write(b); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func (t tee) Close() error {
	for _, w := range t {
		_ = w.Close()
	}
	return nil
}

// medianParts is median for the dead shape: of each of its parts (the
// paced run, the burst), the run of median p99 or speed, in a copy of the
// first run.
func medianParts(runs []*run) (*run, string) {
	whole := *runs[0]
	whole.phases = nil
	var lists []string
	for k := range runs[0].phases {
		var ph []*run
		for _, r := range runs {
			ph = append(ph, r.phases[k])
		}
		m, list := median(ph)
		whole.phases = append(whole.phases, m)
		if list != "" {
			lists = append(lists, list)
		}
	}
	return &whole, strings.Join(lists, "; ")
}

// deadNotes compare the bridge beside the dead contacts with the bridge
// alone: the 100 portals' paced p99 and burst rate and p99; and tell what
// the bridge did for the strangers.
func deadNotes(r row) []string {
	change := func(alone, dead float64) string {
		if alone == 0 {
			return "-"
		}
		return fmt.Sprintf("%+.0f%%", (dead/alone-1)*100)
	}
	// A stalled run's p99 is of the receipts that arrived: its figure is
	// the stall.
	p99 := func(alone, dead *run) string {
		if dead.stalled {
			return fmt.Sprintf("%s → STALLED (%d of %d)", ms(alone.p99), dead.got, dead.want)
		}
		return fmt.Sprintf("%s → %s (%s)", ms(alone.p99), ms(dead.p99), change(float64(alone.p99), float64(dead.p99)))
	}
	p0, b0, p1, b1 := r.bridge.phases[0], r.bridge.phases[1], r.dead.phases[0], r.dead.phases[1]
	// Within 10%: no slower, and no more than 10% later at the p99
	// (sooner is no harm).
	verdict := "within 10%"
	if p1.stalled || b1.stalled || float64(p1.p99) > 1.1*float64(p0.p99) || b1.rate() < 0.9*b0.rate() || float64(b1.p99) > 1.1*float64(b0.p99) {
		verdict = "NOT within 10%"
	}
	return []string{
		fmt.Sprintf("%s: the bridge beside %d dead contacts against the bridge alone: paced p99 %s, burst %.0f/s → %.0f/s (%s), burst p99 %s: %s",
			r.s.name(), r.s.dead.strangers, p99(p0, p1), b0.rate(), b1.rate(), change(b0.rate(), b1.rate()), p99(b0, b1), verdict),
		fmt.Sprintf("%s: the bridge opened %d of %d strangers' portals and sent them %d vCard and %d avatar requests from then to the end of the paced run, %d and %d during the burst, none answered; some outstanding %.0f%% of the paced run (%.1f on average, at most %d) and %.0f%% of the burst (%.1f, %d)",
			r.s.name(), p1.opened, r.s.dead.strangers, p1.asked[0], p1.asked[1], b1.asked[0], b1.asked[1],
			100*p1.covered, p1.meanOut, p1.mostOut, 100*b1.covered, b1.meanOut, b1.mostOut),
	}
}
