package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"go.mau.fi/util/dbutil"

	"xmppbridge/internal/retry"
	"xmppbridge/mapping"
)

const (
	insertTxnQuery = `
		INSERT INTO txn_inbox (txn_id, body, done, received_at) VALUES ($1, $2, false, $3)
		ON CONFLICT (txn_id) DO NOTHING
	`
	getPendingTxnsQuery = `SELECT txn_id, body FROM txn_inbox WHERE done=false ORDER BY seq LIMIT $1`
	finishTxnQuery      = `UPDATE txn_inbox SET done=true WHERE txn_id=$1 AND done=false`
	getTxnDoneQuery     = `SELECT done FROM txn_inbox WHERE txn_id=$1`

	maxTxnSeqQuery       = `SELECT COALESCE(MAX(seq), 0) FROM txn_inbox`
	pruneCandidatesQuery = `
		SELECT seq, received_at FROM txn_inbox WHERE seq>$1 AND seq<=$2 ORDER BY seq LIMIT $3
	`
	pruneTxnsQuery = `DELETE FROM txn_inbox WHERE seq>$1 AND seq<=$2 AND done=true AND received_at<$3`
)

// Done transactions stay in the inbox so that a retried one is recognised
// (PutTxn returns false) instead of being processed twice. Retries come
// from the homeserver, which resends a transaction whose 200 it did not
// get, backing off up to minutes (Synapse caps its backoff near 8.5
// minutes), and from the bridge itself after a crash (a /sync batch stored
// again, a parked receipt's job run again), within moments of a restart.
// An hour covers those with room to spare; the newest 10,000 cover a
// bridge whose clock jumped, or one that was down past the hour while the
// homeserver queued its retries. A transaction is pruned only when both
// are past: done, not among the newest keepTxns, and received more than
// keepTxnsFor ago. Pending transactions are never pruned.
//
// On PostgreSQL a duplicate PutTxn spends a number of the seq sequence, so
// "the newest 10,000" counts numbers, not rows: a few fewer rows may be
// kept, never transactions of the last hour. On SQLite seq is the rowid,
// one more than the largest, so there it counts rows.
const (
	keepTxns    = 10_000
	keepTxnsFor = time.Hour
	// pruneEvery is how often the pruner runs; each run deletes in
	// batches of pruneBatch rows, pausing prunePause between them so that
	// the receipts' own writes get the database in between.
	pruneEvery = time.Minute
	pruneBatch = 500
	prunePause = 20 * time.Millisecond
)

func scanTxn(row dbutil.Scannable) (*mapping.Txn, error) {
	var t mapping.Txn
	if err := row.Scan(&t.ID, &t.Body); err != nil {
		return nil, err
	}
	return &t, nil
}

// PutTxn stores a transaction pushed by the homeserver. It returns false,
// storing nothing, if a transaction with the same id was stored before,
// whether or not it has been processed since.
func (db *Database) PutTxn(ctx context.Context, txn *mapping.Txn) (bool, error) {
	defer db.writing()()
	res, err := db.db.Exec(ctx, insertTxnQuery, txn.ID, txn.Body, time.Now().UnixMilli())
	if err != nil {
		return false, fmt.Errorf("store transaction %s: %w", txn.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store transaction %s: %w", txn.ID, err)
	}
	return n > 0, nil
}

// PendingTxns returns the oldest limit transactions not yet processed (all
// of them if limit is not positive), in the order they arrived, stopping
// once their bodies reach maxBytes (if positive): the rows are read one
// at a time, so no more than that and one transaction is in memory.
func (db *Database) PendingTxns(ctx context.Context, limit, maxBytes int) ([]*mapping.Txn, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	rows, err := db.db.Query(ctx, getPendingTxnsQuery, limit)
	if err != nil {
		return nil, fmt.Errorf("get pending transactions: %w", err)
	}
	defer rows.Close()
	var txns []*mapping.Txn
	size := 0
	for (maxBytes <= 0 || size < maxBytes) && rows.Next() {
		t, err := scanTxn(rows)
		if err != nil {
			return nil, fmt.Errorf("get pending transactions: %w", err)
		}
		txns = append(txns, t)
		size += len(t.Body)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("get pending transactions: %w", err)
	}
	return txns, nil
}

// FinishTxn marks the transaction processed, records the acks its events
// produced and stores their jobs, atomically, setting the jobs' IDs.
// Finishing a transaction again stores nothing, so that replaying it cannot
// send anything twice.
func (db *Database) FinishTxn(ctx context.Context, txnID string, acks []mapping.Ack, jobs []*mapping.Job) error {
	defer db.writing()()
	applied := false
	defer func() { db.marked(acks, applied) }()
	var commit func()
	err := db.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		err := execOne(ctx, db.db, finishTxnQuery, txnID)
		if errors.Is(err, mapping.ErrNotFound) {
			// Nothing pending under that id: finished before (its jobs are
			// stored already) or unknown (ErrNotFound).
			_, err = queryOne(ctx, db.db, dbutil.ScanSingleColumn[bool], getTxnDoneQuery, txnID)
			return err
		} else if err != nil {
			return err
		}
		_, commit, err = db.acks(ctx, acks, jobs)
		return err
	})
	if err != nil {
		return fmt.Errorf("finish transaction %s: %w", txnID, err)
	}
	if commit != nil {
		commit()
		applied = true
	}
	return nil
}

// FinishTxns is FinishTxn for several transactions at once, in one
// database transaction. Each must be pending; if one is not, nothing is
// stored and the error is mapping.ErrNotPending.
func (db *Database) FinishTxns(ctx context.Context, txnIDs []string, acks []mapping.Ack, jobs []*mapping.Job) error {
	defer db.writing()()
	applied := false
	defer func() { db.marked(acks, applied) }()
	var commit func()
	err := db.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		query, args := inList("UPDATE txn_inbox SET done=true WHERE done=false AND txn_id IN (", txnIDs)
		res, err := db.db.Exec(ctx, query+")", args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != int64(len(txnIDs)) {
			return mapping.ErrNotPending
		}
		_, commit, err = db.acks(ctx, acks, jobs)
		return err
	})
	if err != nil {
		return fmt.Errorf("finish %d transactions: %w", len(txnIDs), err)
	}
	commit()
	applied = true
	return nil
}

// pruner prunes the inbox every pruneEvery until ctx ends.
func (db *Database) pruner(ctx context.Context) {
	tick := time.NewTicker(db.opts.pruneEvery)
	defer tick.Stop()
	var failing retry.Outage
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := db.pruneTxns(ctx, time.Now())
		db.pruned.Add(n)
		switch {
		case err != nil && ctx.Err() == nil:
			if failing.Fail(time.Now()) == retry.First {
				db.log.Warn().Err(err).Msg("Failed to prune done transactions; will retry")
			}
		case err == nil:
			failing.End() // its end is not worth a line
			if n > 0 {
				db.log.Debug().Int64("deleted", n).Msg("Pruned done transactions")
			}
		}
	}
}

// pruneTxns deletes the done transactions that are neither among the
// newest db.opts.keepTxns nor received within db.opts.keepTxnsFor before
// now, a batch at a time, and returns how many it deleted.
//
// Each batch reads the next pruneBatch rows' seq and arrival time in
// arrival order and deletes the done ones up to the first that arrived
// within the hour, where it stops: rows arrive in seq order, so the rest
// are younger still. Every statement is bounded by pruneBatch rows, walks
// the primary key only, and runs on its own, off the receipts' path.
func (db *Database) pruneTxns(ctx context.Context, now time.Time) (int64, error) {
	maxSeq, err := queryOne(ctx, db.db, dbutil.ScanSingleColumn[int64], maxTxnSeqQuery)
	if err != nil {
		return 0, fmt.Errorf("prune transactions: %w", err)
	}
	upto := maxSeq - db.opts.keepTxns
	cutoff := now.Add(-db.opts.keepTxnsFor).UnixMilli()
	var deleted int64
	for after := int64(0); after < upto; {
		type candidate struct{ seq, receivedAt int64 }
		rows, err := queryMany(ctx, db.db, func(row dbutil.Scannable) (c candidate, err error) {
			return c, row.Scan(&c.seq, &c.receivedAt)
		}, pruneCandidatesQuery, after, upto, pruneBatch)
		if err != nil {
			return deleted, fmt.Errorf("prune transactions: %w", err)
		}
		end, young := after, false
		for _, c := range rows {
			if c.receivedAt >= cutoff {
				young = true
				break
			}
			end = c.seq
		}
		if end > after {
			unlock := db.writing()
			res, err := db.db.Exec(ctx, pruneTxnsQuery, after, end, cutoff)
			unlock()
			if err != nil {
				return deleted, fmt.Errorf("prune transactions: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return deleted, fmt.Errorf("prune transactions: %w", err)
			}
			deleted += n
		}
		if young || len(rows) < pruneBatch {
			break
		}
		after = end
		select {
		case <-ctx.Done():
			return deleted, ctx.Err()
		case <-time.After(prunePause):
		}
	}
	return deleted, nil
}

// oldestPendingQuery is the arrival of the oldest transaction still to
// process, by the partial index of pending ones (seq order is arrival).
const oldestPendingQuery = `SELECT received_at FROM txn_inbox WHERE done=false ORDER BY seq LIMIT 1`

// OldestPendingTxn is when the oldest transaction still to process came,
// zero if none waits: how far behind the homeserver the bridge is.
func (db *Database) OldestPendingTxn(ctx context.Context) (time.Time, error) {
	var at int64
	err := db.db.QueryRow(ctx, oldestPendingQuery).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	} else if err != nil {
		return time.Time{}, fmt.Errorf("look up the oldest pending transaction: %w", err)
	}
	return fromMilli(at), nil
}
