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
	next       time.Duration
}

// Next is the wait before the next try; each call doubles the one after,
// up to Max.
func (b *Backoff) Next() time.Duration {
	if b.next < b.First {
		b.next = b.First
	}
	d := b.next
	b.next = min(b.next*2, b.Max)
	return d
}

// Reset starts over from First: the last try succeeded, or held long
// enough that the next failure is a fresh one.
func (b *Backoff) Reset() { b.next = b.First }

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
