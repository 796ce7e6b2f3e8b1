package mapping_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/internal/safely"
	. "xmppbridge/mapping"
	"xmppbridge/mapping/memstore"
)

// faultyStore is a memstore.Store whose portal lookups fail for chosen
// rooms: by panicking, or as a store that is away.
type faultyStore struct {
	*memstore.Store
	panicIn, downIn id.RoomID
}

var errStoreDown = errors.New("connection refused")

func (s *faultyStore) PortalByRoom(ctx context.Context, room id.RoomID) (*Portal, error) {
	switch room {
	case s.panicIn:
		var p *Portal
		_ = p.Kind // a nil dereference, as a bug would make
	case s.downIn:
		return nil, errStoreDown
	}
	return s.Store.PortalByRoom(ctx, room)
}

// handleTxns stores txns and has the core handle them as one group, as the
// transaction processor does.
func (h *harness) handleTxns(t *testing.T, txns ...MatrixTxn) error {
	t.Helper()
	for _, txn := range txns {
		if _, err := h.store.PutTxn(t.Context(), &Txn{ID: txn.ID, Body: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	return h.b.HandleMatrixTxns(t.Context(), txns)
}

// sentBodies are the bodies that went to XMPP, in order.
func (h *harness) sentBodies() []string {
	var out []string
	for _, m := range h.xmpp.sent {
		if m.Body != "" {
			out = append(out, m.Body)
		}
	}
	return out
}

// An event whose handling fails for its data (the store refuses it, as
// PostgreSQL refuses U+0000 in text; or its handling panics) is set aside
// with a row and a count, and the rest of its transaction and the
// transactions after it are processed; met again (the transaction
// replayed), it is neither stored nor counted twice. A failure of the
// store itself sets nothing aside: the group fails, stays pending, and is
// retried.
func TestEventSetAside(t *testing.T) {
	const room = id.RoomID("!dm:example.org")
	for _, tc := range []struct {
		name       string
		bad        MatrixEvent
		store      func(*memstore.Store) *faultyStore
		wantReason Reason
		wantErr    bool
	}{
		{"refused", textEvent("$bad", alice, room, "a\x00b"), nil, SetAsideRefused, false},
		{"panic", textEvent("$bad", alice, "!boom:example.org", "hi"), func(m *memstore.Store) *faultyStore {
			return &faultyStore{Store: m, panicIn: "!boom:example.org"}
		}, SetAsidePanic, false},
		{"store down", textEvent("$bad", alice, "!down:example.org", "hi"), func(m *memstore.Store) *faultyStore {
			return &faultyStore{Store: m, downIn: "!down:example.org"}
		}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.store != nil {
				h.withStore(tc.store(h.store))
			}
			ctx := t.Context()
			must(t, h.store.PutPortal(ctx, DirectPortal(room, alice, jid.MustParse(julietJID), time.Time{})))
			first := MatrixTxn{ID: "t1", Events: []MatrixEvent{textEvent("$e1", alice, room, "before"), tc.bad, textEvent("$e2", alice, room, "after")}}
			second := MatrixTxn{ID: "t2", Events: []MatrixEvent{textEvent("$e3", alice, room, "next")}}
			err := h.handleTxns(t, first, second)
			h.drain(t)
			pending, _ := h.store.PendingTxns(ctx, 0, 0)
			n, newest, _ := h.store.SetAsideCount(ctx)
			if tc.wantErr {
				if err == nil || !errors.Is(err, errStoreDown) || len(pending) != 2 || n != 0 {
					t.Fatalf("a failing store: %v, %d pending, %d set aside; want the error, both pending, none set aside", err, len(pending), n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(h.sentBodies(), ","); got != "before,after,next" {
				t.Errorf("sent to XMPP %q, want before,after,next", got)
			}
			if len(pending) != 0 {
				t.Errorf("%d transactions still pending", len(pending))
			}
			if n != 1 || newest.TxnID != "t1" || newest.EventID != "$bad" || newest.Room != tc.bad.Room || newest.Sender != alice ||
				newest.Type != "m.room.message" || newest.Reason != tc.wantReason || newest.Error == "" {
				t.Errorf("set aside %d, newest %+v; want $bad of t1, %s", n, newest, tc.wantReason)
			}
			if h.counts["set_aside/"+string(tc.wantReason)] != 1 {
				t.Errorf("counts %v, want set_aside/%s once", h.counts, tc.wantReason)
			}
			// Not lost silently: the sender of a message in a portal sees
			// that it failed (the bot's failure status on it); a room the
			// bridge has no portal in gets none.
			var want []string
			if tc.bad.Room == room {
				want = []string{fmt.Sprintf("%s $bad false %s", room, tc.wantReason)}
			}
			h.matrix.mu.Lock()
			failures := slices.Clone(h.matrix.failures)
			h.matrix.mu.Unlock()
			if !slices.Equal(failures, want) {
				t.Errorf("failure statuses %q, want %q", failures, want)
			}
			// The homeserver's retry of the first transaction, pending again.
			h.store.MarkPending("t1")
			must(t, h.b.HandleMatrixTxn(ctx, first))
			if n, _, _ := h.store.SetAsideCount(ctx); n != 1 || h.counts["set_aside/"+string(tc.wantReason)] != 1 {
				t.Errorf("met again: %d rows, counts %v; want one of each", n, h.counts)
			}
		})
	}
}

// A transaction the core cannot finish for its data, with no event to
// blame, is set aside whole and marked done.
func TestTxnSetAside(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	_, _ = h.store.PutTxn(ctx, &Txn{ID: "t1", Body: []byte("{}")})
	must(t, h.b.SetAsideTxn(ctx, "t1", SetAsidePanic, fmt.Errorf("%w in matrix_transactions: boom", safely.ErrPanic)))
	if pending, _ := h.store.PendingTxns(ctx, 0, 0); len(pending) != 0 {
		t.Errorf("still pending: %d", len(pending))
	}
	if n, newest, _ := h.store.SetAsideCount(ctx); n != 1 || newest.TxnID != "t1" || newest.EventID != "" || newest.Reason != SetAsidePanic || newest.Error != "panic in matrix_transactions: boom" {
		t.Errorf("set aside %d, %+v", n, newest)
	}
}

// What can and cannot succeed, as the transaction processor asks.
func TestCannotSucceed(t *testing.T) {
	h := newHarness(t)
	var v any
	syntax := json.Unmarshal([]byte("{"), &v)
	log := zerolog.Nop()
	for _, tc := range []struct {
		err    error
		reason Reason
		ok     bool
	}{
		{nil, "", false},
		{errStoreDown, "", false},
		{context.Canceled, "", false},
		{fmt.Errorf("store message: %w", memstore.Refusal("no")), SetAsideRefused, true},
		{new(safely.Guard).Run(&log, nil, "test", func() error { panic("boom") }), SetAsidePanic, true},
		{fmt.Errorf("read payload: %w", syntax), SetAsideDecode, true},
	} {
		if reason, ok := h.b.CannotSucceed(tc.err); reason != tc.reason || ok != tc.ok {
			t.Errorf("CannotSucceed(%v) = %q, %t; want %q, %t", tc.err, reason, ok, tc.reason, tc.ok)
		}
	}
}

// A permitted user who invites a second ghost into a portal: until group
// chats exist, the second ghost declines, saying the rule in words the user
// understands, counted; the first portal goes on. The same for another
// Matrix user inviting a ghost into someone's portal. The first ghost
// invited again by someone else stays (it is in the room for the first
// pair), and nothing is stored for the second pair.
func TestSecondGhostDeclines(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	const room = id.RoomID("!dm:example.org")
	romeo := jid.MustParse("romeo@montague.lit")
	romeoGhost := testIDs.Ghost(romeo)
	const bob = id.UserID("@bob:example.org")
	h.matrixEvents(t, memberEvent(alice, room, julietGhost, MembershipInvite))
	second := memberEvent(alice, room, romeoGhost, MembershipInvite)
	second.ID = "$second"
	other := memberEvent(bob, room, testIDs.Ghost(jid.MustParse("nurse@capulet.lit")), MembershipInvite)
	other.ID = "$other"
	again := memberEvent(bob, room, julietGhost, MembershipInvite)
	again.ID = "$again"
	h.matrixEvents(t, second, other, again)
	reason := SecondGhostReason(jid.MustParse(julietJID))
	if !strings.Contains(reason, julietJID) || !strings.Contains(reason, "one XMPP contact per room") {
		t.Errorf("reason %q does not name the rule and the contact", reason)
	}
	// Each joins, says why (a homeserver may drop a declined invite's
	// reason) and leaves with the reason.
	var joins, notices, leaves []string
	for _, g := range []id.UserID{romeoGhost, testIDs.Ghost(jid.MustParse("nurse@capulet.lit"))} {
		joins = append(joins, string(room)+" "+string(g))
		notices = append(notices, string(room)+" "+string(g)+" "+reason)
		leaves = append(leaves, string(room)+" "+string(g)+" "+reason)
	}
	if !slices.Equal(h.matrix.joins[1:], joins) || !slices.Equal(h.matrix.notices, notices) || !slices.Equal(h.matrix.leaves, leaves) {
		t.Errorf("joins %q, notices %q, leaves %q; want %q, %q, %q", h.matrix.joins[1:], h.matrix.notices, h.matrix.leaves, joins, notices, leaves)
	}
	if h.counts["matrix_invite/"+string(ReasonSecondGhost)] != 3 {
		t.Errorf("counts %v, want matrix_invite/second_ghost 3 times", h.counts)
	}
	if p, err := h.store.PortalByRoom(ctx, room); err != nil || p.User() != alice || p.JID.String() != julietJID {
		t.Errorf("portal = %+v, %v; want alice's with juliet", p, err)
	}
	for _, pair := range []struct {
		mxid id.UserID
		peer jid.JID
	}{{alice, romeo}, {bob, jid.MustParse(julietJID)}} {
		if _, err := h.store.PortalByPair(ctx, pair.mxid, pair.peer); !errors.Is(err, ErrNotFound) {
			t.Errorf("a portal of %s with %s: %v", pair.mxid, pair.peer, err)
		}
	}
	if n, _, _ := h.store.SetAsideCount(ctx); n != 0 {
		t.Errorf("%d set aside; a second ghost is answered, not set aside", n)
	}
	h.matrixEvents(t, textEvent("$m1", alice, room, "still here"))
	if got := strings.Join(h.sentBodies(), ","); got != "still here" {
		t.Errorf("sent %q; the first portal must go on", got)
	}
}

// The bot's status says how many items were set aside, and the newest and
// why.
func TestStatusSaysSetAside(t *testing.T) {
	h := newHarness(t)
	botRoom(t, h)
	if got := h.say(t, mgmt, "status"); !strings.Contains(got, "Set aside (could never be processed): none") {
		t.Errorf("status %q, want it to say none was set aside", got)
	}
	ctx := t.Context()
	must(t, h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{})))
	h.matrixEvents(t, textEvent("$bad", alice, "!dm:example.org", "a\x00b"))
	got := h.say(t, mgmt, "status")
	if !strings.Contains(got, "Set aside (could never be processed): 1; the newest, a m.room.message event from @alice:example.org") ||
		!strings.Contains(got, "refused (") {
		t.Errorf("status %q, want one set aside, the message, refused", got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
