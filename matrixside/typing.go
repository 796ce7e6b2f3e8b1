package matrixside

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
)

// TypingTimeout is how long a ghost shows as typing without news: the
// homeserver clears it by itself, so a lost cancellation cannot leave it.
const TypingTimeout = 30 * time.Second

// typingRequestTimeout bounds one typing request: typing is best effort,
// a slow homeserver must not hold a room's next state for long.
const typingRequestTimeout = 10 * time.Second

// typists sends the ghosts' typing off the caller's path (the XMPP read
// loop): one request at a time per room, the last state winning, and none
// for a state the homeserver already has (clients repeat <active/> with
// every message), except to show typing again before TypingTimeout runs
// out. Typing is ephemeral: nothing is queued or retried; the next change
// tries again. The map holds only rooms where a ghost types or a request
// is on its way.
type typists struct {
	set func(ctx context.Context, room id.RoomID, user id.UserID, on bool, timeout time.Duration) error
	now func() time.Time
	log zerolog.Logger

	mu    sync.Mutex
	rooms map[id.RoomID]*typingState
}

// typingState is what the homeserver was told of a ghost's typing in one
// room, and what it should be told next.
type typingState struct {
	user                    id.UserID
	want, sent, known, busy bool
	sentAt                  time.Time
}

func newTypists(set func(context.Context, id.RoomID, id.UserID, bool, time.Duration) error, log zerolog.Logger) *typists {
	return &typists{set: set, now: time.Now, log: log, rooms: map[id.RoomID]*typingState{}}
}

// show sets user's typing in room to on, without waiting. done, if not
// nil, is called when no request is left on its way for the room (tests).
func (t *typists) show(room id.RoomID, user id.UserID, on bool, done func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.rooms[room]
	if st == nil {
		st = &typingState{}
		t.rooms[room] = st
	}
	if st.user != user {
		st.user, st.known = user, false
	}
	st.want = on
	if st.busy {
		return // the request on its way sends this after it
	}
	st.busy = true
	go t.send(room, st, done)
}

// send tells the homeserver st's wanted state until it has the newest.
func (t *typists) send(room id.RoomID, st *typingState, done func()) {
	if done != nil {
		defer done()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		want, user := st.want, st.user
		if st.known && want == st.sent && (!want || t.now().Sub(st.sentAt) < TypingTimeout/2) {
			break
		}
		t.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), typingRequestTimeout)
		err := t.set(ctx, room, user, want, TypingTimeout)
		cancel()
		t.mu.Lock()
		if err != nil {
			t.log.Debug().Err(err).Str("room", string(room)).Msg("Failed to set typing")
			st.known = false
			break
		}
		st.sent, st.known, st.sentAt = want, true, t.now()
	}
	st.busy = false
	if !st.want {
		delete(t.rooms, room)
	}
}

// ShowTyping implements mapping.MatrixSide.
func (h *Homeserver) ShowTyping(room id.RoomID, user id.UserID, on bool) {
	h.typists.show(room, user, on, nil)
}

// setTyping is one typing request, as user.
func (h *Homeserver) setTyping(ctx context.Context, room id.RoomID, user id.UserID, on bool, timeout time.Duration) error {
	intent, err := h.intent(ctx, user)
	if err != nil {
		return err
	}
	_, err = intent.UserTyping(ctx, room, on, timeout)
	return h.classify(ctx, err)
}
