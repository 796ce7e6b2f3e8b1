package xmppside

import (
	"testing"
	"time"

	"xmppbridge/mapping"
)

// XEP-0114 acknowledges nothing: what was written in the resendWindow
// before a cut is owed to the next stream, and nothing older; what the
// bridge's own stop ends is not (serveOnce), and the count is bounded.
func TestResendAfterCut(t *testing.T) {
	var c Component
	t0 := time.Unix(1000, 0)
	msg := func(id string) *mapping.OutMessage { return &mapping.OutMessage{ID: id} }
	c.wrote([]*mapping.OutMessage{msg("old")}, t0)
	c.wrote([]*mapping.OutMessage{msg("a"), msg("b")}, t0.Add(3800*time.Millisecond))
	c.wrote([]*mapping.OutMessage{msg("c")}, t0.Add(4*time.Second))
	c.cut(t0.Add(4*time.Second + 500*time.Millisecond))
	var got []string
	for _, m := range c.owed {
		got = append(got, m.ID)
	}
	if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Errorf("owed after the cut: %q, want a b c", got)
	}
	if len(c.sent) != 0 || c.sentCount != 0 {
		t.Errorf("the cut stream still keeps %d batches (%d messages)", len(c.sent), c.sentCount)
	}

	var d Component
	for i := range resendMax + 10 {
		d.wrote([]*mapping.OutMessage{msg("m")}, t0.Add(time.Duration(i)*time.Microsecond))
	}
	if d.sentCount != resendMax {
		t.Errorf("kept %d messages, want at most %d", d.sentCount, resendMax)
	}
}
