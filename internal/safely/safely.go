// Package safely runs work that others handed the bridge (a stanza, a
// transaction, a job, a burst of receipts) so that a panic in it fails that
// work alone, never the process: a process that dies on a stranger's odd
// input dies again on the same input after every restart, and takes every
// other user with it.
package safely

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/rs/zerolog"
)

// ErrPanic is wrapped by the error Run returns for work that panicked.
var ErrPanic = errors.New("panic")

// Run calls f and returns its error. A panic in f is logged once, with
// its stack, counted as ("panic", where), and returned as an error
// wrapping ErrPanic, for the caller to treat the work as failed for good.
func Run(log *zerolog.Logger, count func(what, reason string), where string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if count != nil {
				count("panic", where)
			}
			log.Error().Str("where", where).Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack())).Msg("Recovered from a panic; the work that caused it is given up, the bridge goes on")
			err = fmt.Errorf("%w in %s: %v", ErrPanic, where, r)
		}
	}()
	return f()
}
