package safely

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestRun(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	counts := map[string]int{}
	count := func(what, reason string) { counts[what+"/"+reason]++ }
	var g Guard

	want := errors.New("plain failure")
	if err := g.Run(&log, count, "job", func() error { return want }); err != want {
		t.Errorf("a plain error came back as %v", err)
	}
	nilMap := func() error {
		var m map[string]int
		m["x"] = 1 // a nil map: the kind of bug a stranger's input finds
		return nil
	}
	for range 3 { // a stranger repeating the same stanza
		if err := g.Run(&log, count, "job", nilMap); !errors.Is(err, ErrPanic) {
			t.Fatalf("a panic came back as %v, want ErrPanic", err)
		}
	}
	if err := g.Run(&log, count, "job", func() error { panic("elsewhere") }); !errors.Is(err, ErrPanic) {
		t.Fatalf("a panic came back as %v, want ErrPanic", err)
	}
	if counts["panic/job"] != 4 {
		t.Errorf("counts %v, want four panic/job", counts)
	}
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 4 {
		t.Errorf("%d log lines, want one a panic:\n%s", n, out)
	}
	// The stack once per place that panicked: two places.
	if n := strings.Count(out, `"stack"`); n != 2 {
		t.Errorf("%d stacks logged, want 2 (one a site):\n%s", n, out)
	}
	// The site is the function that panicked, not the runtime's.
	if n := strings.Count(out, `"site":"xmppbridge/internal/safely.TestRun.func`); n != 4 {
		t.Errorf("%d lines name the test's function as the site, want 4:\n%s", n, out)
	}
}
