package main

import (
	"strings"
	"testing"
	"time"

	"xmppbridge/mapping"
)

// What the component sends is read in chunks cut anywhere: a request cut
// in two is counted once, and a whole one kept in the tail is not counted
// again.
func TestPatternCountAcrossChunks(t *testing.T) {
	stream := `<iq to='someone0@dead.example' type='get'><vCard xmlns="vcard-temp"/></iq>` +
		`<iq to='someone1@dead.example' type='get'><pubsub><items node="urn:xmpp:avatar:data"/></pubsub></iq>` +
		`<message><received xmlns='urn:xmpp:receipts' id='m1'/></message>` +
		`<iq to='someone2@dead.example' type='get'><vCard xmlns="vcard-temp"/></iq>`
	for _, size := range []int{1, 2, 3, 7, 10, 19, 20, 21, 64, len(stream)} {
		p := newPatternCount(askPatterns...)
		for s := stream; s != ""; {
			n := min(size, len(s))
			_, _ = p.Write([]byte(s[:n]))
			s = s[n:]
		}
		if got := p.counts(); got[0] != 2 || got[1] != 1 {
			t.Errorf("chunks of %d: counted %v, want [2 1]", size, got)
		}
	}
}

// A request to a server that never answers is outstanding for askWait
// after it was sent.
func TestOutstanding(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	// Four at 0 s, four more at 20 s (as four lanes of 20 s timeouts ask),
	// one at 50 s.
	p := &patternCount{at: []time.Time{at(0), at(0), at(0), at(0), at(20), at(20), at(20), at(20), at(50)}}
	for _, c := range []struct {
		from, to float64
		lo, hi   int
	}{
		{0, 10, 4, 4},
		{5, 30, 4, 4}, // the first four end as the next four start
		{19, 21, 4, 4},
		{30, 45, 0, 4},
		{41, 49, 0, 0},
		{45, 55, 0, 1},
		{-5, 1, 0, 4},
	} {
		lo, hi := p.outstanding(at(c.from), at(c.to))
		if lo != c.lo || hi != c.hi {
			t.Errorf("from %v s to %v s: %d–%d outstanding, want %d–%d", c.from, c.to, lo, hi, c.lo, c.hi)
		}
	}
}

// Every receipt of the dead shape is about a message of its own (a second
// receipt about one message is a duplicate the bridge drops), in one of
// the 100 portals; and no domain has more strangers than the bridge lets
// it make new ghosts at once, or some would be refused and ask nothing.
func TestDeadShape(t *testing.T) {
	d := &driver{n: 500, deadSeconds: 2, dead: 75, shapes: "dead"}
	scs := d.scenarios()
	if len(scs) != 2 {
		t.Fatalf("%d scenarios, want 2", len(scs))
	}
	for _, s := range scs {
		seen := map[int]bool{}
		for _, ph := range s.phases {
			if len(ph.paced) != 2*rate || len(ph.burst) != 500 {
				t.Errorf("%s: a phase of %d paced and %d in a burst, want %d and 500", s.name(), len(ph.paced), len(ph.burst), 2*rate)
			}
			for _, r := range append(ph.paced, ph.burst...) {
				if seen[r.i] {
					t.Errorf("%s: message %d has two receipts", s.name(), r.i)
				}
				seen[r.i] = true
				if r.room != s.roomOf[r.i] || r.room >= 100 {
					t.Errorf("%s: receipt of message %d in room %d, seeded in %d", s.name(), r.i, r.room, s.roomOf[r.i])
				}
			}
		}
		if len(seen) != len(s.roomOf) {
			t.Errorf("%s: %d receipts for %d seeded messages", s.name(), len(seen), len(s.roomOf))
		}
	}
	perDomain := map[string]int{}
	people := map[string]bool{}
	for k := range d.dead {
		j := stranger(k)
		people[j] = true
		_, dom, _ := strings.Cut(j, "@")
		perDomain[dom]++
	}
	if len(people) != d.dead {
		t.Errorf("%d strangers for %d", len(people), d.dead)
	}
	for dom, n := range perDomain {
		if n > mapping.DefaultLimits.DomainGhosts {
			t.Errorf("%s has %d strangers, more than its %d new ghosts at once", dom, n, mapping.DefaultLimits.DomainGhosts)
		}
	}
}
