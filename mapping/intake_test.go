package mapping

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"mellium.im/xmpp/jid"
)

// FakeClock is a clock a test moves by hand. It is exported for the
// external tests too (strangers_test.go).
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewFakeClock is a FakeClock at t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{t: t} }

func (c *FakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *FakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func receiptsFrom(peer string, n int) []xmppReceipt {
	rs := make([]xmppReceipt, n)
	for i := range rs {
		rs[i] = xmppReceipt{peer: jid.MustParse(peer), mxid: "@alice:example.org", xid: fmt.Sprintf("%s-%d", peer, i), kind: kindReceived}
	}
	return rs
}

// A person's budget is a token bucket: a burst at once, then the rate;
// what is past it is refused, and logged once per interval however much.
func TestIntakeBudget(t *testing.T) {
	clock := NewFakeClock(time.Unix(1700000000, 0))
	var log bytes.Buffer
	in := newIntake(Limits{PeerRate: 100, PeerBurst: 1000, Pending: 1 << 20}, clock.Now, zerolog.New(&log))
	ctx := context.Background()
	if ok, _ := in.add(ctx, "flood@x.example", receiptsFrom("flood@x.example", 1000)); !ok {
		t.Fatal("the burst was refused")
	}
	for i := 0; i < 50; i++ {
		if ok, _ := in.add(ctx, "flood@x.example", receiptsFrom("flood@x.example", 1)); ok {
			t.Fatal("a receipt past the burst was taken")
		}
	}
	// Another person's budget is their own.
	if ok, _ := in.add(ctx, "calm@x.example", receiptsFrom("calm@x.example", 1)); !ok {
		t.Error("another person was refused")
	}
	clock.Add(time.Second) // 100 more
	if ok, _ := in.add(ctx, "flood@x.example", receiptsFrom("flood@x.example", 100)); !ok {
		t.Error("the rate's worth after a second was refused")
	}
	if ok, _ := in.add(ctx, "flood@x.example", receiptsFrom("flood@x.example", 1)); ok {
		t.Error("one past the rate's worth was taken")
	}
	if n := strings.Count(log.String(), "budget"); n != 1 {
		t.Errorf("%d log lines about the budget, want 1 for the interval:\n%s", n, log.String())
	}
	clock.Add(overBudgetLogEvery)
	_, _ = in.add(ctx, "flood@x.example", receiptsFrom("flood@x.example", 5000))
	if n := strings.Count(log.String(), "budget"); n != 2 {
		t.Errorf("%d log lines about the budget after an interval, want 2", n)
	}
}

// Bursts are taken from the people in turn: a long queue of one person's
// receipts delays another's by one turn, not by the whole queue.
func TestIntakeTakesInTurn(t *testing.T) {
	clock := NewFakeClock(time.Unix(1700000000, 0))
	in := newIntake(Limits{PeerRate: 1, PeerBurst: 1 << 20, Pending: 1 << 20}, clock.Now, zerolog.Nop())
	ctx := context.Background()
	_, _ = in.add(ctx, "flood@x.example", receiptsFrom("flood@x.example", 10*takeTotal))
	_, _ = in.add(ctx, "calm@x.example", receiptsFrom("calm@x.example", 3))
	rs, more := in.take()
	calm := 0
	for i, r := range rs {
		if r.peer.String() == "calm@x.example" {
			calm++
			if i >= takePerPeer+3 {
				t.Errorf("the calm person's receipt came %dth, after more than one turn of the flood", i)
			}
		}
	}
	if calm != 3 || !more || len(rs) != takeTotal {
		t.Errorf("first burst: %d receipts, %d of the calm person's, more %v; want %d, 3, true", len(rs), calm, more, takeTotal)
	}
	// The flood's receipts keep their order across bursts.
	next, _ := in.take()
	if want := fmt.Sprintf("flood@x.example-%d", takeTotal-3); next[0].xid != want {
		t.Errorf("second burst starts with %s, want %s", next[0].xid, want)
	}
	// Put back after a failed write: first again, in order.
	in.putBack(next[:2])
	again, _ := in.take()
	if again[0].xid != next[0].xid || again[1].xid != next[1].xid {
		t.Errorf("after putBack the burst starts %s %s, want %s %s", again[0].xid, again[1].xid, next[0].xid, next[1].xid)
	}
}

// Memory is bounded: past Pending the read loop waits until a burst has
// been taken, and gives up when its context ends.
func TestIntakeFullWaits(t *testing.T) {
	clock := NewFakeClock(time.Unix(1700000000, 0))
	in := newIntake(Limits{PeerRate: 1, PeerBurst: 1 << 20, Pending: 10}, clock.Now, zerolog.Nop())
	ctx := context.Background()
	_, _ = in.add(ctx, "a@x.example", receiptsFrom("a@x.example", 10))
	done := make(chan bool)
	go func() {
		ok, err := in.add(ctx, "b@x.example", receiptsFrom("b@x.example", 1))
		done <- ok && err == nil
	}()
	select {
	case <-done:
		t.Fatal("add did not wait while the intake was full")
	case <-time.After(50 * time.Millisecond):
	}
	in.take()
	if ok := <-done; !ok {
		t.Error("the waiting add was refused once there was room")
	}
	_, _ = in.add(ctx, "a@x.example", receiptsFrom("a@x.example", 10))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := in.add(cctx, "a@x.example", receiptsFrom("a@x.example", 1)); err == nil {
		t.Error("add on a full intake with an ended context did not fail")
	}
}
