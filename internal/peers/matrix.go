package peers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// MatrixUser is a real Matrix client that keeps syncing and remembers every
// event it has seen, by room: timeline, state, invites and ephemeral.
type MatrixUser struct {
	Client *mautrix.Client

	mu      sync.Mutex
	events  []*event.Event // in arrival order; RoomID is set on each
	arrived chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewMatrixUser starts syncing as the logged-in client.
func NewMatrixUser(ctx context.Context, cli *mautrix.Client) *MatrixUser {
	ctx, cancel := context.WithCancel(ctx)
	u := &MatrixUser{Client: cli, arrived: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go u.syncLoop(ctx)
	return u
}

func (u *MatrixUser) syncLoop(ctx context.Context) {
	defer close(u.done)
	since := ""
	for ctx.Err() == nil {
		resp, err := u.Client.SyncRequest(ctx, 1000, since, "", false, event.PresenceOnline)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		since = resp.NextBatch
		var got []*event.Event
		add := func(room id.RoomID, class event.TypeClass, evts []*event.Event) {
			for _, e := range evts {
				e.RoomID = room
				if e.StateKey != nil {
					e.Type.Class = event.StateEventType
				} else if class != event.UnknownEventType {
					e.Type.Class = class
				}
				_ = e.Content.ParseRaw(e.Type)
				got = append(got, e)
			}
		}
		for room, r := range resp.Rooms.Invite {
			add(room, event.StateEventType, r.State.Events)
		}
		for room, r := range resp.Rooms.Join {
			add(room, event.StateEventType, r.State.Events)
			add(room, event.MessageEventType, r.Timeline.Events)
			add(room, event.EphemeralEventType, r.Ephemeral.Events)
		}
		// A room the user was removed from: its last events, their own
		// leave among them.
		for room, r := range resp.Rooms.Leave {
			add(room, event.StateEventType, r.State.Events)
			add(room, event.MessageEventType, r.Timeline.Events)
		}
		if len(got) > 0 {
			u.mu.Lock()
			u.events = append(u.events, got...)
			u.mu.Unlock()
			select {
			case u.arrived <- struct{}{}:
			default:
			}
		}
	}
}

// Wait returns the first event seen (at any time) that matches.
func (u *MatrixUser) Wait(ctx context.Context, timeout time.Duration, match func(*event.Event) bool) (*event.Event, error) {
	return u.WaitSince(ctx, 0, timeout, match)
}

// Mark is the number of events seen so far, for WaitSince.
func (u *MatrixUser) Mark() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.events)
}

// WaitSince returns the first matching event among those seen after mark.
func (u *MatrixUser) WaitSince(ctx context.Context, mark int, timeout time.Duration, match func(*event.Event) bool) (*event.Event, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		u.mu.Lock()
		for _, e := range u.events[min(mark, len(u.events)):] {
			if match(e) {
				u.mu.Unlock()
				return e, nil
			}
		}
		n := len(u.events)
		u.mu.Unlock()
		select {
		case <-u.arrived:
		case <-deadline.C:
			return nil, fmt.Errorf("%s: no matching event within %s (%d seen)", u.Client.UserID, timeout, n)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Events returns the events seen so far that match.
func (u *MatrixUser) Events(match func(*event.Event) bool) []*event.Event {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []*event.Event
	for _, e := range u.events {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// SendText sends an m.text and returns its event id.
func (u *MatrixUser) SendText(ctx context.Context, room id.RoomID, body string) (id.EventID, error) {
	resp, err := u.Client.SendText(ctx, room, body)
	if err != nil {
		return "", err
	}
	return resp.EventID, nil
}

// CreateDM creates a direct-message room with invitee.
func (u *MatrixUser) CreateDM(ctx context.Context, invitee id.UserID) (id.RoomID, error) {
	resp, err := u.Client.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{invitee}})
	if err != nil {
		return "", err
	}
	return resp.RoomID, nil
}

// Close stops syncing.
func (u *MatrixUser) Close() {
	u.cancel()
	<-u.done
}

// IsInvite matches the invite of user into a room, sent by sender.
func IsInvite(user, sender id.UserID) func(*event.Event) bool {
	return func(e *event.Event) bool {
		if e.Type != event.StateMember || e.StateKey == nil || id.UserID(*e.StateKey) != user || e.Sender != sender {
			return false
		}
		m := e.Content.AsMember()
		return m.Membership == event.MembershipInvite
	}
}

// IsMembership matches user's membership change to m in room.
func IsMembership(room id.RoomID, user id.UserID, m event.Membership) func(*event.Event) bool {
	return func(e *event.Event) bool {
		return e.RoomID == room && e.Type == event.StateMember && e.StateKey != nil && id.UserID(*e.StateKey) == user && e.Content.AsMember().Membership == m
	}
}

// IsText matches an m.room.message in room from sender with body.
func IsText(room id.RoomID, sender id.UserID, body string) func(*event.Event) bool {
	return func(e *event.Event) bool {
		return e.RoomID == room && e.Type == event.EventMessage && e.Sender == sender && e.Content.AsMessage().Body == body
	}
}

// Rooms is the set of rooms the events are in.
func Rooms(evts []*event.Event) map[id.RoomID]bool {
	rooms := map[id.RoomID]bool{}
	for _, e := range evts {
		rooms[e.RoomID] = true
	}
	return rooms
}

// Unique drops repeats of the same event (a sync can show an event twice,
// e.g. an invite in invite_state and again in the timeline).
func Unique(evts []*event.Event) []*event.Event {
	seen := map[id.EventID]bool{}
	var out []*event.Event
	for _, e := range evts {
		if !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	return out
}
