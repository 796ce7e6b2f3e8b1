package matrixside

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
)

// typingRecorder is a homeserver's typing API that holds each request
// until the test lets it go, so that what arrives meanwhile can be seen
// to coalesce.
type typingRecorder struct {
	mu      sync.Mutex
	sent    []string
	arrived chan struct{} // a request came
	release chan error    // what it is answered
}

func (r *typingRecorder) set(_ context.Context, room id.RoomID, user id.UserID, on bool, timeout time.Duration) error {
	r.arrived <- struct{}{}
	err := <-r.release
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, fmt.Sprintf("%s %s %v %s", room, user, on, timeout))
	return err
}

func (r *typingRecorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sent...)
}

// The ghost's typing (XEP-0085 chat states and XEP-0022 composing events
// turned into m.typing) goes one request at a time per room: the states
// that arrive while one is on its way collapse into the newest, a state
// the homeserver has is not sent again, and a room is forgotten once its
// ghost stopped typing.
func TestTypingCoalesces(t *testing.T) {
	rec := &typingRecorder{arrived: make(chan struct{}), release: make(chan error)}
	ty := newTypists(rec.set, zerolog.Nop())
	now := time.Unix(1000, 0)
	ty.now = func() time.Time { return now }
	idle := make(chan struct{}, 10)
	done := func() { idle <- struct{}{} }
	answer := func(err error) { <-rec.arrived; rec.release <- err }
	sent := func(want ...string) {
		t.Helper()
		<-idle
		if got := rec.got(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("sent %q, want %q", got, want)
		}
	}

	ty.show("!a:x", "@g:x", true, done)
	<-rec.arrived // on its way, held
	ty.show("!a:x", "@g:x", false, done)
	ty.show("!a:x", "@g:x", true, done)
	ty.show("!a:x", "@g:x", false, done) // the newest of those waiting
	rec.release <- nil
	answer(nil)
	sent("!a:x @g:x true 30s", "!a:x @g:x false 30s")

	// Repeated <active/> while the homeserver already has it: nothing.
	ty.show("!a:x", "@g:x", true, done)
	answer(nil)
	sent("!a:x @g:x true 30s", "!a:x @g:x false 30s", "!a:x @g:x true 30s")
	ty.show("!a:x", "@g:x", true, done)
	sent("!a:x @g:x true 30s", "!a:x @g:x false 30s", "!a:x @g:x true 30s")

	// Past half the timeout the same state is shown again, so that the
	// homeserver does not clear it while the person still types.
	now = now.Add(TypingTimeout/2 + time.Second)
	ty.show("!a:x", "@g:x", true, done)
	answer(nil)
	sent("!a:x @g:x true 30s", "!a:x @g:x false 30s", "!a:x @g:x true 30s", "!a:x @g:x true 30s")

	// A failed request is not retried, and leaves the state unknown, so
	// the same state is sent again next time; once the ghost stopped, the
	// room is forgotten.
	ty.show("!a:x", "@g:x", false, done)
	answer(errors.New("down"))
	<-idle
	ty.show("!a:x", "@g:x", false, done)
	answer(nil)
	<-idle
	ty.mu.Lock()
	left := len(ty.rooms)
	ty.mu.Unlock()
	if got := rec.got(); len(got) != 6 || got[4] != "!a:x @g:x false 30s" || got[5] != got[4] || left != 0 {
		t.Fatalf("sent %q, rooms left %d", got, left)
	}
}
