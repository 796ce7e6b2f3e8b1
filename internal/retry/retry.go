// Package retry is the bridge's one way of trying again after a failure:
// a wait that doubles from a first one up to a cap, and starts over after
// a success.
package retry

import (
	"context"
	"fmt"
	"time"
)

// Backoff is the wait before the next try. Its zero value is not usable:
// set First and Max.
type Backoff struct {
	First, Max time.Duration
	next, last time.Duration
}

// Next is the wait before the next try; each call doubles the one after,
// up to Max.
func (b *Backoff) Next() time.Duration {
	if b.next < b.First {
		b.next = b.First
	}
	d := b.next
	b.next = min(b.next*2, b.Max)
	b.last = d
	return d
}

// Reset starts over from First: the last try succeeded, or held long
// enough that the next failure is a fresh one.
func (b *Backoff) Reset() { b.next = b.First }

// After is the wait after a try that held for held before it failed (0:
// it never got going). One that held at least as long as the wait before
// it was a fresh failure, and the wait starts over from First; one that
// failed sooner goes on doubling. So a stream cut again and again
// after a few seconds up is tried again a second later each time, while
// one refused or dropped at once backs off.
func (b *Backoff) After(held time.Duration) time.Duration {
	if held > 0 && held >= b.last {
		b.Reset()
	}
	return b.Next()
}

// Wait waits d, or until ctx ends; it tells whether ctx is still going.
func Wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Hold tries again every `every` for up to `limit` while try fails, or
// until ctx ends: for a caller that keeps what it holds (a request, a
// stream) waiting rather than give it up. It returns try's last error, or
// ctx's.
func Hold(ctx context.Context, limit, every time.Duration, try func() error) error {
	deadline := time.Now().Add(limit)
	err := try()
	for err != nil && time.Now().Before(deadline) {
		if !Wait(ctx, every) {
			return fmt.Errorf("stopped waiting: %w", err)
		}
		err = try()
	}
	return err
}
