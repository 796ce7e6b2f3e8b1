package retry

import (
	"context"
	"testing"
	"time"
)

func TestBackoffDoublesToItsCapAndStartsOver(t *testing.T) {
	b := Backoff{First: time.Second, Max: 5 * time.Second}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits %v, want %v", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != time.Second {
		t.Errorf("after Reset the wait is %v, want %v", d, time.Second)
	}
}

// A try that held as long as the wait before it starts the waits over;
// one that failed at once, or sooner than that, goes on doubling.
func TestBackoffAfterAHeldTry(t *testing.T) {
	b := Backoff{First: time.Second, Max: 30 * time.Second}
	for i, c := range []struct{ held, want time.Duration }{
		{0, time.Second},                          // refused: 1 s
		{0, 2 * time.Second},                      // refused again: doubles
		{100 * time.Millisecond, 4 * time.Second}, // up, cut at once: doubles
		{3 * time.Second, 8 * time.Second},        // up 3 s, less than the 4 s wait before it
		{8 * time.Second, time.Second},            // up as long as the wait before: starts over
		{1500 * time.Millisecond, time.Second},    // up 1.5 s after a 1 s wait: starts over
		{0, 2 * time.Second},
	} {
		if got := b.After(c.held); got != c.want {
			t.Fatalf("try %d, held %v: wait %v, want %v", i, c.held, got, c.want)
		}
	}
}

func TestWaitEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Wait(ctx, time.Hour) {
		t.Error("Wait on an ended context reported it going")
	}
	if !Wait(context.Background(), time.Microsecond) {
		t.Error("Wait on a live context reported it ended")
	}
}
