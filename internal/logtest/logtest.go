// Package logtest reads back what the bridge logged, for tests that check
// what is said and at which level.
package logtest

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Buffer is a zerolog JSON sink that a test reads while others write.
type Buffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Logger logs into b at every level.
func (b *Buffer) Logger() zerolog.Logger { return zerolog.New(b) }

// Line is one logged line: its level, message and the fields tests ask
// about.
type Line struct {
	Level     string `json:"level"`
	Message   string `json:"message"`
	Ephemeral string `json:"ephemeral"`
	Error     string `json:"error"` // the console prints it in red
}

// Lines is what was logged so far.
func (b *Buffer) Lines(t testing.TB) []Line {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	return Parse(t, b.buf.String())
}

// Parse reads zerolog JSON lines.
func Parse(t testing.TB, logged string) []Line {
	t.Helper()
	var out []Line
	for _, l := range strings.Split(logged, "\n") {
		if l == "" {
			continue
		}
		var ll Line
		if err := json.Unmarshal([]byte(l), &ll); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, ll)
	}
	return out
}

// Count is how many lines have level and a message starting with prefix.
func Count(lines []Line, level, prefix string) int {
	n := 0
	for _, l := range lines {
		if l.Level == level && strings.HasPrefix(l.Message, prefix) {
			n++
		}
	}
	return n
}

// Wait waits until ok holds of what was logged, and returns it; the test
// fails if it never does.
func (b *Buffer) Wait(t testing.TB, what string, ok func([]Line) bool) []Line {
	t.Helper()
	return Wait(t, what, func() []Line { return b.Lines(t) }, ok)
}

// Wait waits until ok holds of what logged returns, and returns it; the
// test fails if it never does.
func Wait(t testing.TB, what string, logged func() []Line, ok func([]Line) bool) []Line {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		lines := logged()
		if ok(lines) {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log never showed %s:\n%+v", what, lines)
		}
	}
}
