package database

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"

	"xmppbridge/mapping"
)

const (
	insertTxnQuery = `
		INSERT INTO txn_inbox (txn_id, body, done, received_at) VALUES ($1, $2, false, $3)
		ON CONFLICT (txn_id) DO NOTHING
	`
	getPendingTxnsQuery = `SELECT txn_id, body FROM txn_inbox WHERE done=false ORDER BY seq`
	finishTxnQuery      = `UPDATE txn_inbox SET done=true WHERE txn_id=$1 AND done=false`
	getTxnDoneQuery     = `SELECT done FROM txn_inbox WHERE txn_id=$1`
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

// PendingTxns returns the transactions not yet processed, in the order they
// arrived.
func (db *Database) PendingTxns(ctx context.Context) ([]*mapping.Txn, error) {
	txns, err := queryMany(ctx, db.db, scanTxn, getPendingTxnsQuery)
	if err != nil {
		return nil, fmt.Errorf("get pending transactions: %w", err)
	}
	return txns, nil
}

// FinishTxn marks the transaction processed, records the acks its events
// produced and stores their jobs, atomically, setting the jobs' IDs.
// Finishing a transaction again stores nothing, so that replaying it cannot
// send anything twice.
func (db *Database) FinishTxn(ctx context.Context, txnID string, acks []mapping.Ack, jobs []*mapping.Job) error {
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
	}
	return nil
}

// FinishTxns is FinishTxn for several transactions at once, in one
// database transaction. Each must be pending; if one is not, nothing is
// stored and the error is mapping.ErrNotPending.
func (db *Database) FinishTxns(ctx context.Context, txnIDs []string, acks []mapping.Ack, jobs []*mapping.Job) error {
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
	return nil
}
