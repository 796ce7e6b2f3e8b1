// Package safely runs work that others handed the bridge (a stanza, a
// transaction, a job, a burst of receipts) so that a panic in it fails that
// work alone, never the process: a process that dies on a stranger's odd
// input dies again on the same input after every restart, and takes every
// other user with it.
package safely

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/rs/zerolog"
)

// ErrPanic is wrapped by the error Run returns for work that panicked.
var ErrPanic = errors.New("panic")

// Guard runs work under a recover. The zero Guard is ready to use; one
// Guard serves a part of the bridge for its lifetime, so that it logs the
// stack of each place that panicked once, not once per stanza a stranger
// repeats.
type Guard struct {
	seen sync.Map // panic sites whose stack was logged
}

// Run calls f and returns its error. A panic in f is counted with count,
// if not nil, as ("panic", where), logged to log (with its stack the first
// time its site panics), and returned as an error wrapping ErrPanic, for
// the caller to treat the work as failed for good.
func (g *Guard) Run(log *zerolog.Logger, count func(what, reason string), where string, f func() error) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if count != nil {
			count("panic", where)
		}
		site, stack := panicSite()
		ev := log.Error().Str("where", where).Str("panic", fmt.Sprint(r)).Str("site", site)
		if _, seen := g.seen.LoadOrStore(site, true); !seen {
			ev = ev.Str("stack", stack)
		}
		ev.Msg("Recovered from a panic; the work that caused it is given up, the bridge goes on")
		err = fmt.Errorf("%w in %s: %v", ErrPanic, where, r)
	}()
	return f()
}

// panicSite names the function and line that panicked, from within a
// deferred recover, and gives the whole stack.
func panicSite() (site, stack string) {
	stack = string(debug.Stack())
	pcs := make([]uintptr, 32)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	panicking := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			panicking = true
		case panicking && !strings.HasPrefix(f.Function, "runtime."):
			return fmt.Sprintf("%s:%d", f.Function, f.Line), stack
		}
		if !more {
			return "unknown", stack
		}
	}
}
