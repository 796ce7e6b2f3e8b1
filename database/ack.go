package database

import (
	"context"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"

	"xmppbridge/mapping"
)

const (
	// Only an empty column is set: the first report of a kind wins, and the
	// affected-row count tells the caller whether this one was first.
	ackDeliveredQuery = `UPDATE message SET delivered_at=$2 WHERE rowid=$1 AND delivered_at IS NULL`
	ackDisplayedQuery = `UPDATE message SET displayed_at=$2 WHERE rowid=$1 AND displayed_at IS NULL`

	// The "up to" forms, over FromXMPP messages of a room.
	// The "up to" forms move the portal's watermark, forward only.
	ackDeliveredUpToQuery = `UPDATE portal SET delivered_upto=$1 WHERE room_id=$2 AND delivered_upto<$1`
	ackDisplayedUpToQuery = `UPDATE portal SET read_upto=$1 WHERE room_id=$2 AND read_upto<$1`

	getUnreadUpToQuery = getMessageBaseQuery + `
		WHERE room_id=$1 AND rowid<=$2 AND displayed_at IS NULL AND direction='xmpp'
		  AND rowid > COALESCE((SELECT read_upto FROM portal WHERE portal.room_id=$1), 0)
		ORDER BY rowid DESC LIMIT $3`
	getNewestComposableQuery = getMessageBaseQuery + `WHERE room_id=$1 AND direction='xmpp' AND want_composing ORDER BY rowid DESC LIMIT 1`

	getNewestDeliveredQuery = getMessageBaseQuery + `WHERE room_id=$1 AND direction=$2 AND delivered_at IS NOT NULL ORDER BY rowid DESC LIMIT 1`
	getNewestDisplayedQuery = getMessageBaseQuery + `WHERE room_id=$1 AND direction=$2 AND displayed_at IS NOT NULL ORDER BY rowid DESC LIMIT 1`
)

// ack records one ack inside a transaction and stores its job if it is new.
func (db *Database) ack(ctx context.Context, a mapping.Ack) (bool, int64, error) {
	query := ackDeliveredQuery
	args := []any{a.Row, toMilli(a.At)}
	switch {
	case a.Kind == mapping.AckDisplayed && a.UpTo != "":
		query = ackDisplayedUpToQuery
	case a.UpTo != "":
		query = ackDeliveredUpToQuery
	case a.Kind == mapping.AckDisplayed:
		query = ackDisplayedQuery
	}
	if a.UpTo != "" {
		args = []any{a.Row, a.UpTo}
	}
	res, err := db.db.Exec(ctx, query, args...)
	if err != nil {
		return false, 0, fmt.Errorf("mark message %d %s: %w", a.Row, a.Kind, err)
	}
	n, err := res.RowsAffected()
	if err != nil || n == 0 || a.Job == nil {
		return n > 0, 0, err
	}
	msgID := a.Job.MessageID
	if msgID == 0 {
		msgID = a.Row
	}
	ids, err := db.insertJobs(ctx, msgID, []*mapping.Job{a.Job})
	if err != nil {
		return false, 0, err
	}
	return true, ids[0], nil
}

// acks records several acks and jobs inside a transaction; it returns which
// acks were new, and sets the IDs only after the caller's commit.
func (db *Database) acks(ctx context.Context, acks []mapping.Ack, jobs []*mapping.Job) (isNew []bool, commit func(), err error) {
	isNew = make([]bool, len(acks))
	ackJobIDs := make([]int64, len(acks))
	for i, a := range acks {
		if isNew[i], ackJobIDs[i], err = db.ack(ctx, a); err != nil {
			return nil, nil, err
		}
	}
	return db.finishAcks(ctx, acks, jobs, isNew, ackJobIDs)
}

// acksNoResult records acks whose newness nobody asks: the plain ones (no
// job, not "up to") in one statement per kind, the others one by one.
func (db *Database) acksNoResult(ctx context.Context, acks []mapping.Ack, jobs []*mapping.Job) (commit func(), err error) {
	isNew := make([]bool, len(acks))
	ackJobIDs := make([]int64, len(acks))
	plain := map[mapping.AckKind][]int64{}
	at := map[mapping.AckKind]int64{}
	for i, a := range acks {
		if a.Job == nil && a.UpTo == "" {
			plain[a.Kind] = append(plain[a.Kind], a.Row)
			at[a.Kind] = toMilli(a.At)
			continue
		}
		if isNew[i], ackJobIDs[i], err = db.ack(ctx, a); err != nil {
			return nil, err
		}
	}
	for kind, rows := range plain {
		column := "delivered_at"
		if kind == mapping.AckDisplayed {
			column = "displayed_at"
		}
		for len(rows) > 0 {
			n := min(len(rows), 500)
			query, args := inList(fmt.Sprintf("UPDATE message SET %s=%d WHERE %s IS NULL AND rowid IN (", column, at[kind], column), rows[:n])
			if _, err := db.db.Exec(ctx, query+")", args...); err != nil {
				return nil, fmt.Errorf("mark %d messages %s: %w", n, kind, err)
			}
			rows = rows[n:]
		}
	}
	_, commit, err = db.finishAcks(ctx, acks, jobs, isNew, ackJobIDs)
	return commit, err
}

func (db *Database) finishAcks(ctx context.Context, acks []mapping.Ack, jobs []*mapping.Job, isNew []bool, ackJobIDs []int64) ([]bool, func(), error) {
	jobIDs, err := db.insertJobs(ctx, 0, jobs)
	if err != nil {
		return nil, nil, err
	}
	return isNew, func() {
		for i, a := range acks {
			if isNew[i] && a.Job != nil {
				a.Job.ID = ackJobIDs[i]
				if a.Job.MessageID == 0 {
					a.Job.MessageID = a.Row
				}
			}
		}
		for i, j := range jobs {
			j.ID = jobIDs[i]
		}
	}, nil
}

// Acknowledge records acks and stores the jobs of the new ones, and jobs,
// in one transaction.
func (db *Database) Acknowledge(ctx context.Context, acks []mapping.Ack, jobs ...*mapping.Job) ([]bool, error) {
	var isNew []bool
	var commit func()
	err := db.db.DoTxn(ctx, nil, func(ctx context.Context) (err error) {
		isNew, commit, err = db.acks(ctx, acks, jobs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("acknowledge %d messages: %w", len(acks), err)
	}
	commit()
	return isNew, nil
}

// NewestAcked is the newest message (by row) of room in direction dir with
// an ack of kind.
func (db *Database) NewestAcked(ctx context.Context, room id.RoomID, dir mapping.Direction, kind mapping.AckKind) (*mapping.Message, error) {
	query := getNewestDeliveredQuery
	if kind == mapping.AckDisplayed {
		query = getNewestDisplayedQuery
	}
	m, err := queryOne(ctx, db.db, scanMessage, query, room, dir)
	if err != nil {
		return nil, fmt.Errorf("get newest %s %s message of %s: %w", kind, dir, room, err)
	}
	return m, nil
}

// UnreadUpTo lists the newest limit FromXMPP messages of room up to row not
// yet displayed, oldest first.
func (db *Database) UnreadUpTo(ctx context.Context, room id.RoomID, row int64, limit int) ([]*mapping.Message, error) {
	ms, err := queryMany(ctx, db.db, scanMessage, getUnreadUpToQuery, room, row, limit)
	if err != nil {
		return nil, fmt.Errorf("list unread messages of %s up to %d: %w", room, row, err)
	}
	slices.Reverse(ms)
	return ms, nil
}

// NewestComposable is the newest FromXMPP message of room that asked for
// composing events.
func (db *Database) NewestComposable(ctx context.Context, room id.RoomID) (*mapping.Message, error) {
	m, err := queryOne(ctx, db.db, scanMessage, getNewestComposableQuery, room)
	if err != nil {
		return nil, fmt.Errorf("get newest composable message of %s: %w", room, err)
	}
	return m, nil
}
