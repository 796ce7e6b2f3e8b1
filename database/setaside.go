package database

import (
	"context"
	"fmt"

	"go.mau.fi/util/dbutil"

	"xmppbridge/mapping"
)

const (
	putSetAsideQuery = `
		INSERT INTO set_aside (txn_id, event_id, room_id, sender, type, reason, error, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (txn_id, event_id) DO NOTHING
	`
	countSetAsideQuery  = `SELECT COUNT(*) FROM set_aside`
	newestSetAsideQuery = `
		SELECT txn_id, event_id, room_id, sender, type, reason, error, at
		FROM set_aside ORDER BY id DESC LIMIT 1
	`
)

func scanSetAside(row dbutil.Scannable) (*mapping.SetAside, error) {
	var s mapping.SetAside
	var at int64
	if err := row.Scan(&s.TxnID, &s.EventID, &s.Room, &s.Sender, &s.Type, &s.Reason, &s.Error, &at); err != nil {
		return nil, err
	}
	s.At = fromMilli(at)
	return &s, nil
}

// PutSetAside implements mapping.Store. Its text is made storable first:
// the row says why something could not be stored, and may quote it.
func (db *Database) PutSetAside(ctx context.Context, s *mapping.SetAside) (bool, error) {
	defer db.writing()()
	text := mapping.StorableText
	res, err := db.db.Exec(ctx, putSetAsideQuery, text(s.TxnID), text(string(s.EventID)), text(string(s.Room)),
		text(string(s.Sender)), text(s.Type), text(string(s.Reason)), text(s.Error), toMilli(s.At))
	if err != nil {
		return false, fmt.Errorf("set aside %s of transaction %s: %w", s.EventID, s.TxnID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("set aside %s of transaction %s: %w", s.EventID, s.TxnID, err)
	}
	return n > 0, nil
}

// SetAsideCount implements mapping.Store.
func (db *Database) SetAsideCount(ctx context.Context) (int, *mapping.SetAside, error) {
	n, err := queryOne(ctx, db.db, dbutil.ScanSingleColumn[int], countSetAsideQuery)
	if err != nil {
		return 0, nil, fmt.Errorf("count what was set aside: %w", err)
	}
	if n == 0 {
		return 0, nil, nil
	}
	newest, err := queryOne(ctx, db.db, scanSetAside, newestSetAsideQuery)
	if err != nil {
		return 0, nil, fmt.Errorf("read the newest item set aside: %w", err)
	}
	return n, newest, nil
}
