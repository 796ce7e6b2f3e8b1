package database

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"

	"xmppbridge/mapping"
)

const (
	// The "up to" forms move a member's watermark, forward only.
	ackDeliveredUpToQuery = `UPDATE portal_member SET delivered_upto=$1 WHERE room_id=$2 AND member=$3 AND delivered_upto<$1`
	ackDisplayedUpToQuery = `UPDATE portal_member SET read_upto=$1 WHERE room_id=$2 AND member=$3 AND read_upto<$1`

	// unreadBranch is one member's part of unreadUpToQuery: $U the row
	// read, $F the member's read_upto (the floor), $L the limit. The room
	// is the read row's, looked up by its key, so that a branch binds two
	// parameters and a statement holds 16 reads (unreadMarks). The limit
	// is written into the text, not bound: SQLite compiles a statement
	// again every time a LIMIT parameter is bound.
	unreadBranch = `SELECT * FROM (` + getMessageBaseQuery + `
		WHERE room_id=(SELECT room_id FROM message WHERE rowid=$U) AND rowid<=$U AND rowid>$F
		  AND displayed_at IS NULL AND direction='xmpp'
		ORDER BY rowid DESC LIMIT $L) AS u`
	// The room is CAST (see CAST in message.go).
	getNewestComposableQuery = getMessageBaseQuery + `WHERE room_id=CAST($1 AS TEXT) AND direction='xmpp' AND want_composing ORDER BY rowid DESC LIMIT 1`
)

// ackUpTo records an "up to" ack: the member's watermark moves forward,
// and the ack is new if it moved.
func (db *Database) ackUpTo(ctx context.Context, a mapping.Ack) (bool, error) {
	query := ackDeliveredUpToQuery
	if a.Kind == mapping.AckDisplayed {
		query = ackDisplayedUpToQuery
	}
	res, err := db.db.Exec(ctx, query, a.Row, a.UpTo, a.By)
	if err != nil {
		return false, fmt.Errorf("mark %s %s up to %d for %s: %w", a.UpTo, a.Kind, a.Row, a.By, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// markRows sets the kind's time on the rows that have none yet, a few
// hundred rows a statement, and returns the rows it set: only an empty
// column is set, so the first report of a kind wins.
func (db *Database) markRows(ctx context.Context, kind mapping.AckKind, at int64, rows []int64) (map[int64]bool, error) {
	column := "delivered_at"
	if kind == mapping.AckDisplayed {
		column = "displayed_at"
	}
	set := make(map[int64]bool, len(rows))
	for len(rows) > 0 {
		n := min(len(rows), 500)
		// The time is the last parameter, not a literal: the statement's
		// text then depends on the batch size only, and the statement
		// cache keeps it instead of compiling one every millisecond.
		query, args := inList(fmt.Sprintf("UPDATE message SET %s=$%d WHERE %s IS NULL AND rowid IN (", column, n+1, column), rows[:n])
		marked, err := queryMany(ctx, db.db, dbutil.ScanSingleColumn[int64], query+") RETURNING rowid", append(args, at)...)
		if err != nil {
			return nil, fmt.Errorf("mark %d messages %s: %w", n, kind, err)
		}
		for _, r := range marked {
			set[r] = true
		}
		rows = rows[n:]
	}
	return set, nil
}

// markedRows is what sets the kind's time at on the cached messages of
// set, as markRows did on their rows, to be called once committed.
func (db *Database) markedRows(kind mapping.AckKind, at int64, set map[int64]bool) func() {
	rows := make([]int64, 0, len(set))
	for r := range set {
		rows = append(rows, r)
	}
	t := fromMilli(at)
	return func() {
		db.messages.wrote(rows, false, func(m *mapping.Message) {
			if kind == mapping.AckDisplayed {
				m.DisplayedAt = t
			} else {
				m.DeliveredAt = t
			}
		})
	}
}

// acks records acks inside a transaction, with the jobs of the new ones
// and jobs: one statement per kind for the plain acks, however many, and
// one for all the jobs. It returns which acks were new, and a commit that
// sets the jobs' IDs, to be called only once the transaction is committed.
func (db *Database) acks(ctx context.Context, acks []mapping.Ack, jobs []*mapping.Job) (isNew []bool, commit func(), err error) {
	isNew = make([]bool, len(acks))
	plain := map[mapping.AckKind][]int{} // indexes into acks
	var marks []func()                   // the cached messages' changes, once committed
	for i, a := range acks {
		if a.UpTo == "" {
			plain[a.Kind] = append(plain[a.Kind], i)
		} else if isNew[i], err = db.ackUpTo(ctx, a); err != nil {
			return nil, nil, err
		}
	}
	for kind, idx := range plain {
		rows := make([]int64, len(idx))
		for j, i := range idx {
			rows[j] = acks[i].Row
		}
		at := toMilli(acks[idx[0]].At)
		set, err := db.markRows(ctx, kind, at, rows)
		if err != nil {
			return nil, nil, err
		}
		marks = append(marks, db.markedRows(kind, at, set))
		for _, i := range idx {
			// The same row twice in one batch: only the first is new.
			isNew[i] = set[acks[i].Row]
			delete(set, acks[i].Row)
		}
	}
	// The new acks' jobs, about their rows, then the others; copies, so
	// that a rolled-back transaction leaves no trace in the caller's jobs.
	var owners []*mapping.Job
	var toStore []*mapping.Job
	for i, a := range acks {
		if isNew[i] && a.Job != nil {
			c := *a.Job
			if c.MessageID == 0 {
				c.MessageID = a.Row
			}
			owners, toStore = append(owners, a.Job), append(toStore, &c)
		}
	}
	owners, toStore = append(owners, jobs...), append(toStore, jobs...)
	ids, err := db.insertJobs(ctx, 0, toStore)
	if err != nil {
		return nil, nil, err
	}
	return isNew, func() {
		for i, j := range owners {
			j.ID, j.MessageID = ids[i], toStore[i].MessageID
		}
		for _, m := range marks {
			m()
		}
	}, nil
}

// Acknowledge records acks and stores the jobs of the new ones, and jobs,
// in one transaction.
func (db *Database) Acknowledge(ctx context.Context, acks []mapping.Ack, jobs ...*mapping.Job) ([]bool, error) {
	defer db.writing()()
	applied := false
	defer func() { db.marked(acks, applied) }()
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
	applied = true
	return isNew, nil
}

// unreadMarks is how many members' reads one statement of UnreadUpTo
// asks about at most. A statement's branches are rounded up to a power of
// two, padded with a room that does not exist, so that the statement
// cache holds the few texts there are instead of compiling one for every
// count of reads.
//
// 16 reads are 32 parameters, and no more: SQLite tracks which
// parameters may change a plan in a 32-bit mask whose last bit stands for
// every parameter from the 32nd on, so that past it binding any of them
// can make SQLite compile the statement again on every run (with 32 rooms
// it did, each time: TestReceiptPathCompiledOnce). With the member's
// floor looked up in the statement (three parameters a read) a statement
// held 8, and an m.read over a thousand portals cost 10-15% more CPU.
const unreadMarks = 16

// unreadPadding is the row and floor of a branch of unreadUpToQuery that
// pads it: no message has row 0.
var unreadPadding = []any{int64(0), int64(0)}

// unreadQueries keeps the texts of unreadUpToQuery, by branches and limit:
// a few, built once instead of at every lookup.
var unreadQueries sync.Map

// unreadUpToQuery asks for the newest limit unread messages of each of n
// reads: one branch a read (each walks its room's part of
// message_unread_idx backwards from its row, at most limit rows), joined
// by UNION ALL. It is one statement and one read of the database, where a
// statement a room paid SQLite's locking and Go's call overhead a room.
func unreadUpToQuery(n, limit int) string {
	key := [2]int{n, limit}
	if q, ok := unreadQueries.Load(key); ok {
		return q.(string)
	}
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		b.WriteString(strings.NewReplacer("$U", fmt.Sprintf("$%d", 2*i+1), "$F", fmt.Sprintf("$%d", 2*i+2),
			"$L", strconv.Itoa(limit), ") AS u", fmt.Sprintf(") AS u%d", i)).Replace(unreadBranch))
	}
	unreadQueries.Store(key, b.String())
	return b.String()
}

// UnreadUpTo lists, for each member's read of upTo, the newest limit
// FromXMPP messages of the room with a row up to its row and above the
// member's read_upto that are not displayed yet, oldest first. Reads with
// none are absent. A statement holds one read of a room at most, so that
// the rows it finds are the read's by their room.
func (db *Database) UnreadUpTo(ctx context.Context, upTo map[mapping.Mark]int64, limit int) (map[mapping.Mark][]*mapping.Message, error) {
	marks := slices.SortedFunc(maps.Keys(upTo), func(a, b mapping.Mark) int {
		return cmp.Or(cmp.Compare(a.Room, b.Room), cmp.Compare(a.By, b.By))
	})
	floors, err := db.readFloors(ctx, marks)
	if err != nil {
		return nil, err
	}
	out := make(map[mapping.Mark][]*mapping.Message, len(marks))
	for len(marks) > 0 {
		chunk := map[id.RoomID]mapping.Mark{}
		var rest []mapping.Mark
		for _, m := range marks {
			if _, taken := chunk[m.Room]; taken || len(chunk) == unreadMarks {
				rest = append(rest, m)
			} else {
				chunk[m.Room] = m
			}
		}
		marks = rest
		n := 1
		for n < len(chunk) {
			n *= 2
		}
		args := make([]any, 0, 2*n)
		for _, m := range chunk {
			args = append(args, upTo[m], floors[m])
		}
		for range n - len(chunk) {
			args = append(args, unreadPadding...)
		}
		ms, err := queryMany(ctx, db.db, scanMessage, unreadUpToQuery(n, limit), args...)
		if err != nil {
			return nil, fmt.Errorf("list unread messages of %d rooms: %w", len(chunk), err)
		}
		for _, m := range ms {
			if mark, ok := chunk[m.RoomID]; ok {
				out[mark] = append(out[mark], m)
			}
		}
	}
	for _, ms := range out {
		// Oldest first; UNION ALL promises no order of its own.
		slices.SortFunc(ms, func(a, b *mapping.Message) int { return cmp.Compare(a.RowID, b.RowID) })
	}
	return out, nil
}

// readFloors is each mark's member's read_upto, from the portals (kept
// in memory by portalCache, which every committed ack moves): the floor
// below which UnreadUpTo lists nothing, bound instead of looked up in the
// statement. A portal or member that does not exist has 0.
func (db *Database) readFloors(ctx context.Context, marks []mapping.Mark) (map[mapping.Mark]int64, error) {
	floors := make(map[mapping.Mark]int64, len(marks))
	var missing []id.RoomID
	for _, m := range marks {
		if floor, ok := db.portals.readUpTo(m.Room, m.By); ok {
			floors[m] = floor
		} else if len(missing) == 0 || missing[len(missing)-1] != m.Room {
			missing = append(missing, m.Room)
		}
	}
	if len(missing) == 0 {
		return floors, nil
	}
	portals, err := db.PortalsByRooms(ctx, missing)
	if err != nil {
		return nil, err
	}
	for _, m := range marks {
		if _, ok := floors[m]; !ok {
			if p := portals[m.Room]; p != nil {
				floors[m] = p.Marks(m.By).ReadUpTo
			}
		}
	}
	return floors, nil
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
