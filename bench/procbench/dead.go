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
// paced100) and then in a burst (as p100), first alone, then again, by
// the same process, beside strangers whose server never answers. Each
// stranger sends one message to alice's puppet, which opens a portal and
// queues the fetch of their vCard, and then their avatar metadata, which
// queues the fetch of their avatar: IQs that the stand-in XMPP server
// never answers, so each waits out the bridge's 20 s. The two phases'
// figures, side by side, tell whether one person's dead server costs
// anyone else anything.
//
// How long the requests are outstanding: a bridge that fetches from
// remote entities in a few lanes of their own (4) and gives a request up
// after 3 tries has requests outstanding for about strangers × 2 × 3 ×
// 20 s / 4 (15 minutes for 30), far longer than the phase: every moment
// of it has 4 of them out. A bridge that sent them all at once has all
// out for the phase's first 20 s; what their timeouts do to the rest is
// what the phase's remaining seconds (BENCH_DEAD_SECONDS, 30 by default,
// then the burst) show.

// deadPhase is one phase of the dead shape: a paced run, then a burst.
type deadPhase struct{ paced, burst []receipt }

// deadScenarios are the dead shape, Matrix-bound and XMPP-bound.
func (d *driver) deadScenarios() []*scenario {
	var out []*scenario
	for _, dir := range []string{"x2m-0184", "m2x-delivery"} {
		s := &scenario{shape: "dead", dir: dir, portals: 100, dead: d.dead}
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
		for range 2 {
			var ph deadPhase
			ph.paced = add(rate * d.deadSeconds)
			ph.burst = add(d.n)
			s.phases = append(s.phases, ph)
		}
		s.setSeed()
		out = append(out, s)
	}
	return out
}

// phaseLabels name the runs of the dead shape's phases, in order.
func phaseLabels(s *scenario) []string {
	dead := fmt.Sprintf("+%d dead", s.dead)
	return []string{"paced alone", "burst alone", "paced " + dead, "burst " + dead}
}

// phaseEnv is what runOne lends the dead shape's phases.
type phaseEnv struct {
	xs      *standin.XMPPServer
	hs      *standin.Homeserver
	pid     int
	bridge  bool // the relay opens no portals: nothing to wait for
	puppet  string
	asks    *patternCount
	track   func(rs []receipt) *tracker
	send    func(t *tracker, rs []receipt, pace bool) (wait func())
	measure func(r *run, t *tracker, started time.Time)
	cur     *atomic.Pointer[tracker]
}

// runDead runs the phases of s, each part into a run of its own in
// res.phases.
func (d *driver) runDead(s *scenario, e *phaseEnv, res *run) {
	for n, ph := range s.phases {
		asked0 := e.asks.counts()
		var opened int64
		if n == 1 {
			var err error
			if opened, err = e.strangers(s.dead); err != nil {
				res.errs = err.Error()
			}
		}
		for _, part := range []struct {
			rs   []receipt
			pace bool
		}{{ph.paced, true}, {ph.burst, false}} {
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
			sub.outLo, sub.outHi = e.asks.outstanding(started, started.Add(sub.dur))
			asked0 = asked1
			res.stalled = res.stalled || sub.stalled
			res.sent += sub.sent
			res.phases = append(res.phases, sub)
		}
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

// strangers has n strangers write to alice's puppet, waits for the
// bridge to open their portals, then sends each one's avatar metadata
// (XEP-0084 §4.2, as their PEP service would): the bridge then asks
// their server for their vCard and their avatar, and never hears back.
// It tells how many portals the bridge opened, once their messages are
// on Matrix.
func (e *phaseEnv) strangers(n int) (int64, error) {
	rooms0, sent0 := e.hs.Count("createRoom"), e.hs.Count("send")
	var b strings.Builder
	for k := range n {
		fmt.Fprintf(&b, `<message from='%s/res' to='%s' type='chat' id='dead%d'><body>hello</body></message>`, stranger(k), e.puppet, k)
	}
	if err := e.xs.Write(b.String()); err != nil {
		return 0, fmt.Errorf("the strangers' messages: %w", err)
	}
	if e.bridge {
		for end := time.Now().Add(15 * time.Second); e.hs.Count("createRoom")-rooms0 < int64(n) && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
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
	if e.bridge {
		// The one-time work of their portals (a room, a message, names)
		// is over before the phase is measured: what it measures is
		// their requests being outstanding.
		for end := time.Now().Add(15 * time.Second); e.hs.Count("send")-sent0 < int64(n) && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second)
	}
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

// outstanding is the least and the most requests outstanding (seen less
// than askWait before) at any moment from from to to.
func (p *patternCount) outstanding(from, to time.Time) (lo, hi int) {
	p.mu.Lock()
	at := slices.Clone(p.at)
	p.mu.Unlock()
	points := []time.Time{from}
	for _, t := range at {
		for _, x := range []time.Time{t, t.Add(askWait)} {
			if x.After(from) && !x.After(to) {
				points = append(points, x)
			}
		}
	}
	lo = len(at)
	for _, x := range points {
		n := 0
		for _, t := range at {
			if !t.After(x) && x.Before(t.Add(askWait)) {
				n++
			}
		}
		lo, hi = min(lo, n), max(hi, n)
	}
	return lo, hi
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

// medianPhases is median for the dead shape: each phase's run of median
// speed (or p99, when paced), in a copy of the first run.
func medianPhases(runs []*run) (*run, string) {
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

// deadNotes compare the phases of a dead shape's row: the 100 portals'
// paced p99 and burst rate and p99 beside the dead contacts against
// alone, for the bridge and the relay, and what the bridge did for the
// strangers.
func deadNotes(r row) []string {
	var notes []string
	change := func(alone, dead float64) string {
		if alone == 0 {
			return "-"
		}
		return fmt.Sprintf("%+.0f%%", (dead/alone-1)*100)
	}
	for _, x := range []struct {
		n string
		r *run
	}{{"bridge", r.bridge}, {"relay", r.relay}} {
		p0, b0, p1, b1 := x.r.phases[0], x.r.phases[1], x.r.phases[2], x.r.phases[3]
		// Within 10%: no slower, and no more than 10% later at the p99
		// (sooner is no harm).
		verdict := "within 10%"
		if p1.stalled || b1.stalled || float64(p1.p99) > 1.1*float64(p0.p99) || b1.rate() < 0.9*b0.rate() || float64(b1.p99) > 1.1*float64(b0.p99) {
			verdict = "NOT within 10%"
		}
		notes = append(notes, fmt.Sprintf("%s: the %s beside %d dead contacts: paced p99 %s → %s (%s), burst %.0f/s → %.0f/s (%s), burst p99 %s → %s (%s): %s",
			r.s.name(), x.n, r.s.dead, ms(p0.p99), ms(p1.p99), change(float64(p0.p99), float64(p1.p99)),
			b0.rate(), b1.rate(), change(b0.rate(), b1.rate()), ms(b0.p99), ms(b1.p99), change(float64(b0.p99), float64(b1.p99)), verdict))
	}
	p1, b1 := r.bridge.phases[2], r.bridge.phases[3]
	notes = append(notes, fmt.Sprintf("%s: the bridge opened %d of %d strangers' portals and sent them %d vCard and %d avatar requests from then to the end of the paced run, %d and %d during the burst, none answered; outstanding at any moment: %d–%d through the paced run, %d–%d through the burst",
		r.s.name(), p1.opened, r.s.dead, p1.asked[0], p1.asked[1], b1.asked[0], b1.asked[1], p1.outLo, p1.outHi, b1.outLo, b1.outHi))
	return notes
}
