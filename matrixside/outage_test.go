package matrixside

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"xmppbridge/internal/logtest"
	"xmppbridge/mapping"
)

// awayInbox is a database whose writes and reads of the inbox fail while
// it is away.
type awayInbox struct {
	Inbox
	mu                  sync.Mutex
	writeAway, readAway bool
}

func (a *awayInbox) set(write, read bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.writeAway, a.readAway = write, read
}

func (a *awayInbox) PutTxn(ctx context.Context, txn *mapping.Txn) (bool, error) {
	a.mu.Lock()
	away := a.writeAway
	a.mu.Unlock()
	if away {
		return false, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	}
	return a.Inbox.PutTxn(ctx, txn)
}

func (a *awayInbox) PendingTxns(ctx context.Context, limit, maxBytes int) ([]*mapping.Txn, error) {
	a.mu.Lock()
	away := a.readAway
	a.mu.Unlock()
	if away {
		return nil, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	}
	return a.Inbox.PendingTxns(ctx, limit, maxBytes)
}

// A database that is away is said once for the whole outage, however many
// of the homeserver's requests wait for it side by side, and its return
// once; the next outage is said again. Reading the pending transactions,
// which Run tries every second, is said the same way.
func TestDatabaseAwayIsSaidOncePerOutage(t *testing.T) {
	s, db, ts := newServer(t)
	inbox := &awayInbox{Inbox: db}
	s.Store = inbox
	logs := &logtest.Buffer{}
	s.Log = logs.Logger()
	s.HoldFor = 300 * time.Millisecond
	said := func(level, msg string) int {
		n := 0
		for _, l := range logs.Lines(t) {
			if l.Level == level && strings.HasPrefix(l.Message, msg) {
				n++
			}
		}
		return n
	}
	put := func(ids ...string) []int {
		statuses := make([]int, len(ids))
		var wg sync.WaitGroup
		for i, txnID := range ids {
			wg.Go(func() { statuses[i], _ = do(t, "PUT", ts.URL+txnPath+txnID, "hs-secret", `{"events":[]}`) })
		}
		wg.Wait()
		return statuses
	}
	const (
		holding = "Cannot store transactions"
		stored  = "Transactions are stored again"
		failing = "Failed to read pending transactions"
		read    = "Pending transactions are read again"
	)
	steps := []struct {
		name                string
		writeAway, readAway bool
		puts                []string // transactions put side by side
		status              int      // what each is answered
		rounds              int      // then rounds of processPending
		holding, stored     int      // warn and info lines so far
		failing, read       int      // error and info lines so far
	}{
		{"three requests held side by side", true, false, []string{"a1", "a2", "a3"}, 500, 0, 1, 0, 0, 0},
		{"back: two stored", false, false, []string{"b1", "b2"}, 200, 0, 1, 1, 0, 0},
		{"stored again: nothing to say", false, false, []string{"c1"}, 200, 0, 1, 1, 0, 0},
		{"away again: a new outage", true, false, []string{"d1"}, 500, 0, 2, 1, 0, 0},
		{"reads fail three rounds", false, true, nil, 0, 3, 2, 1, 1, 0},
		{"reads work again", false, false, nil, 0, 2, 2, 1, 1, 1},
	}
	for _, st := range steps {
		inbox.set(st.writeAway, st.readAway)
		for i, status := range put(st.puts...) {
			if status != st.status {
				t.Errorf("%s: %s answered %d, want %d", st.name, st.puts[i], status, st.status)
			}
		}
		for range st.rounds {
			s.processPending(context.Background())
		}
		got := [4]int{said("warn", holding), said("info", stored), said("error", failing), said("info", read)}
		if want := [4]int{st.holding, st.stored, st.failing, st.read}; got != want {
			t.Errorf("%s: said %v (held, stored again, read failed, read again), want %v", st.name, got, want)
		}
	}
}
