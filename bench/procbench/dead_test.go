package main

import (
	"math"
	"slices"
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
		from, to      float64
		covered, mean float64
		most          int
	}{
		{0, 10, 1, 4, 4},
		{5, 30, 1, 4, 4},         // the first four end as the next four start
		{30, 50, 0.5, 2, 4},      // the four of 20 s end at 40 s
		{41, 49, 0, 0, 0},        // none out
		{45, 54.99, 0.5, 0.5, 1}, // the one of 50 s
	} {
		covered, mean, most := p.outstanding(at(c.from), at(c.to))
		// Sampled every 10 ms: a share is right within a sample or two.
		if math.Abs(covered-c.covered) > 0.01 || math.Abs(mean-c.mean) > 0.05 || most != c.most {
			t.Errorf("from %v s to %v s: %.3f covered, %.2f on average, %d at most; want %.2f, %.2f, %d",
				c.from, c.to, covered, mean, most, c.covered, c.mean, c.most)
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
		if len(s.dead.paced) != 2*rate || len(s.dead.burst) != 500 || s.dead.strangers != 75 {
			t.Errorf("%s: %d paced, %d in a burst, %d strangers; want %d, 500, 75", s.name(), len(s.dead.paced), len(s.dead.burst), s.dead.strangers, 2*rate)
		}
		for _, r := range append(slices.Clone(s.dead.paced), s.dead.burst...) {
			if seen[r.i] {
				t.Errorf("%s: message %d has two receipts", s.name(), r.i)
			}
			seen[r.i] = true
			if r.room != s.roomOf[r.i] || r.room >= 100 {
				t.Errorf("%s: receipt of message %d in room %d, seeded in %d", s.name(), r.i, r.room, s.roomOf[r.i])
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
