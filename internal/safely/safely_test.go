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

	want := errors.New("plain failure")
	if err := Run(&log, count, "job", func() error { return want }); err != want {
		t.Errorf("a plain error came back as %v", err)
	}
	err := Run(&log, count, "job", func() error {
		var m map[string]int
		m["x"] = 1 // nil map: the kind of bug a stranger's input finds
		return nil
	})
	if !errors.Is(err, ErrPanic) {
		t.Fatalf("a panic came back as %v, want ErrPanic", err)
	}
	if counts["panic/job"] != 1 {
		t.Errorf("counts %v, want one panic/job", counts)
	}
	if out := buf.String(); !strings.Contains(out, "safely_test.go") || strings.Count(out, "\n") != 1 {
		t.Errorf("want one log line with the stack, got:\n%s", out)
	}
}
