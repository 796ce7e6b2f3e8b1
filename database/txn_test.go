package database

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"xmppbridge/mapping"
)

// pruneTestOptions keep the newest 5 done transactions and those of the
// last hour, and leave pruning to the test.
func pruneTestOptions() options {
	opts := defaultOptions()
	opts.keepTxns = 5
	opts.pruneEvery = time.Hour
	return opts
}

func putTxns(ctx context.Context, t *testing.T, s *store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		added, err := s.PutTxn(ctx, &mapping.Txn{ID: id, Body: []byte(`{"id":"` + id + `"}`)})
		must(t, err)
		if !added {
			t.Fatalf("PutTxn(%s) took it for a duplicate", id)
		}
	}
}

func pendingIDs(t *testing.T, s *store) []string {
	t.Helper()
	txns, err := s.PendingTxns(t.Context(), 0, 0)
	must(t, err)
	ids := []string{}
	for _, txn := range txns {
		if string(txn.Body) != `{"id":"`+txn.ID+`"}` {
			t.Errorf("pending %s has body %s", txn.ID, txn.Body)
		}
		ids = append(ids, txn.ID)
	}
	return ids
}

// Done transactions are pruned once they are neither among the newest
// keepTxns nor younger than keepTxnsFor; the kept ones are still
// recognised as duplicates, pending ones are never pruned, and pruning
// goes in batches.
func TestPruneTxns(t *testing.T) {
	forEachEngineWith(t, pruneTestOptions(), func(t *testing.T, _ engine, s *store) {
		ctx := t.Context()
		const n = 2*pruneBatch + 30 // three batches
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("t%04d", i)
		}
		// One commit, not a thousand (PostgreSQL syncs each).
		must(t, s.DB().DoTxn(ctx, nil, func(ctx context.Context) error {
			putTxns(ctx, t, s, ids...)
			return nil
		}))
		// All done but t0003 and t0700 (old, but pending) and the last.
		var done []string
		for i, id := range ids[:n-1] {
			if i != 3 && i != 700 {
				done = append(done, id)
			}
		}
		for len(done) > 0 {
			k := min(len(done), 200)
			must(t, s.FinishTxns(ctx, done[:k], nil, nil))
			done = done[k:]
		}

		// Within the hour, nothing goes, however many there are.
		deleted, err := s.pruneTxns(ctx, time.Now())
		must(t, err)
		if deleted != 0 {
			t.Errorf("pruned %d transactions of the last hour", deleted)
		}

		// Past the hour, all done ones but the newest 5.
		deleted, err = s.pruneTxns(ctx, time.Now().Add(2*time.Hour))
		must(t, err)
		if want := int64(n - 5 - 2); deleted != want {
			t.Errorf("pruned %d transactions, want %d", deleted, want)
		}
		if got, want := pendingIDs(t, s), []string{"t0003", "t0700", ids[n-1]}; !reflect.DeepEqual(got, want) {
			t.Errorf("pending after pruning = %q, want %q", got, want)
		}
		// Again: nothing more to prune.
		deleted, err = s.pruneTxns(ctx, time.Now().Add(2*time.Hour))
		must(t, err)
		if deleted != 0 {
			t.Errorf("second pruning deleted %d", deleted)
		}
		// A homeserver retry of a kept one is still a duplicate; so is one
		// of a pending one, however old.
		for _, id := range append(ids[n-5:], "t0003", "t0700") {
			added, err := s.PutTxn(ctx, &mapping.Txn{ID: id, Body: []byte("{}")})
			must(t, err)
			if added {
				t.Errorf("PutTxn(%s) after pruning stored it again", id)
			}
		}
		// The pruned ones are forgotten.
		if added, err := s.PutTxn(ctx, &mapping.Txn{ID: "t0010", Body: []byte(`{"id":"t0010"}`)}); err != nil || !added {
			t.Errorf("PutTxn of a pruned transaction = %t, %v; want it stored anew", added, err)
		}
		var rows int
		must(t, s.DB().QueryRow(ctx, "SELECT count(*) FROM txn_inbox").Scan(&rows))
		if want := 5 + 2 + 1; rows != want {
			t.Errorf("%d rows left in txn_inbox, want %d", rows, want)
		}

		// Finishing a pruned transaction again is what it was for an unknown
		// one: not found, and nothing stored.
		wantNotFound(t, "FinishTxn of a pruned transaction", s.FinishTxn(ctx, "t0011", nil, []*mapping.Job{{Kind: "x"}}))
	})
}

// The newest keepTxns are kept however old they are, and the hour keeps
// more than them when it holds more.
func TestPruneTxnsKeepsTheHour(t *testing.T) {
	forEachEngineWith(t, pruneTestOptions(), func(t *testing.T, _ engine, s *store) {
		ctx := t.Context()
		putTxns(ctx, t, s, "old1", "old2", "old3")
		// Older than the hour: received_at as PutTxn would have stored it
		// then.
		must(t, execOne(ctx, s.DB(), "UPDATE txn_inbox SET received_at=$1 WHERE txn_id IN ('old1', 'old2', 'old3')",
			time.Now().Add(-2*time.Hour).UnixMilli()))
		var recent []string
		for i := range 10 {
			recent = append(recent, fmt.Sprintf("new%d", i))
		}
		putTxns(ctx, t, s, recent...)
		must(t, s.FinishTxns(ctx, append([]string{"old1", "old2", "old3"}, recent...), nil, nil))

		deleted, err := s.pruneTxns(ctx, time.Now())
		must(t, err)
		if deleted != 3 {
			t.Errorf("pruned %d, want the 3 older than the hour", deleted)
		}
		for _, id := range recent {
			if added, err := s.PutTxn(ctx, &mapping.Txn{ID: id, Body: []byte("{}")}); err != nil || added {
				t.Errorf("PutTxn(%s) of the last hour = %t, %v; want a duplicate", id, added, err)
			}
		}
	})
}

// PendingTxns returns the pending transactions in arrival order, between
// done ones and after pruning, and reads them from the index of pending
// ones rather than the whole inbox.
func TestPendingTxnsOrder(t *testing.T) {
	forEachEngineWith(t, pruneTestOptions(), func(t *testing.T, e engine, s *store) {
		ctx := t.Context()
		// Ids that sort against arrival order.
		var ids, want []string
		for i := range 60 {
			ids = append(ids, fmt.Sprintf("z%02d", 60-i))
		}
		putTxns(ctx, t, s, ids...)
		var done []string
		for i, id := range ids {
			if i%3 == 0 {
				want = append(want, id)
			} else {
				done = append(done, id)
			}
		}
		must(t, s.FinishTxns(ctx, done, nil, nil))
		if got := pendingIDs(t, s); !reflect.DeepEqual(got, want) {
			t.Errorf("PendingTxns = %q, want %q", got, want)
		}
		if _, err := s.pruneTxns(ctx, time.Now().Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got := pendingIDs(t, s); !reflect.DeepEqual(got, want) {
			t.Errorf("PendingTxns after pruning = %q, want %q", got, want)
		}

		var plan []string
		if e.name == "sqlite" {
			plan = sqlitePlan(t, s, lookup{name: "pending transactions", query: getPendingTxnsQuery, args: []any{64}})
		} else {
			// Too few rows for the planner to prefer an index of its own
			// accord.
			conn, err := s.DB().RawDB.Conn(ctx)
			must(t, err)
			defer conn.Close()
			_, err = conn.ExecContext(ctx, "SET enable_seqscan = off")
			must(t, err)
			rows, err := conn.QueryContext(ctx, "EXPLAIN "+getPendingTxnsQuery, 64)
			must(t, err)
			for rows.Next() {
				var line string
				must(t, rows.Scan(&line))
				plan = append(plan, line)
			}
			must(t, rows.Err())
			_, _ = conn.ExecContext(ctx, "RESET enable_seqscan")
		}
		if text := strings.Join(plan, "\n"); !strings.Contains(text, "txn_inbox_pending_idx") {
			t.Errorf("PendingTxns does not read txn_inbox_pending_idx:\n%s", text)
		}
	})
}

// The pruner runs by itself, on both engines.
func TestPrunerRuns(t *testing.T) {
	opts := defaultOptions()
	opts.keepTxns, opts.keepTxnsFor, opts.pruneEvery = 0, 0, 10*time.Millisecond
	forEachEngineWith(t, opts, func(t *testing.T, _ engine, s *store) {
		ctx := t.Context()
		putTxns(ctx, t, s, "p1", "p2", "p3", "p4")
		must(t, s.FinishTxns(ctx, []string{"p1", "p2", "p3"}, nil, nil))
		deadline := time.Now().Add(10 * time.Second)
		for s.pruned.Load() < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("the pruner deleted %d of the 3 done transactions", s.pruned.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got := pendingIDs(t, s); !reflect.DeepEqual(got, []string{"p4"}) {
			t.Errorf("pending after the pruner = %q, want p4", got)
		}
	})
}

// A batch of pending transactions stops once their bodies reach maxBytes,
// with at least one in it however large: after an outage the processor
// reads the inbox a batch at a time, and memory must not grow with the
// size of what waits (matrixside.pendingBytes).
func TestPendingTxnsBoundedInBytes(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		for i := range 5 {
			body := fmt.Sprintf(`{"events":[],"pad":%q}`, strings.Repeat("x", 1000))
			if _, err := s.PutTxn(ctx, &mapping.Txn{ID: fmt.Sprintf("big%d", i), Body: []byte(body)}); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct{ limit, maxBytes, want int }{
			{0, 0, 5},    // no bound
			{3, 0, 3},    // by count
			{0, 2500, 3}, // 1,000 and some a body: the third passes 2,500
			{0, 1, 1},    // at least one
			{2, 100000, 2},
		} {
			txns, err := s.PendingTxns(ctx, c.limit, c.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(txns) != c.want || txns[0].ID != "big0" {
				t.Errorf("PendingTxns(limit %d, maxBytes %d) = %d transactions, want %d from big0", c.limit, c.maxBytes, len(txns), c.want)
			}
		}
	})
}
