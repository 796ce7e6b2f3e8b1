package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// The room's newest RecentWindow rows by the (room_id, ts) index, and of
// those the newest with the origin-id. The LIMIT is written in, not
// bound: SQLite compiles a statement again when a value bound to a LIMIT
// changes.
var getRecentByOriginIDQuery = getMessageBaseQuery + `
		WHERE rowid IN (SELECT rowid FROM message WHERE room_id=CAST($1 AS TEXT) ORDER BY ts DESC LIMIT ` + strconv.Itoa(mapping.RecentWindow) + `)
		  AND origin_id=CAST($2 AS TEXT) AND origin_id <> ''
		ORDER BY ts DESC LIMIT 1`

// CAST: a parameter that a column of message is compared with is written
// "column = CAST($n AS TEXT)", not "column = $n", because message has
// partial indexes. SQLite replaces the column by the parameter in the
// other terms (constant propagation) and, deciding whether a partial index
// applies, compares the parameter's value with the literals of the index's
// condition ("direction='xmpp'"); from then on the statement is compiled
// again whenever its bindings are cleared, which go-sqlite3 does each time
// it puts the statement back in its cache. A cached lookup then cost as
// much as a new one: half the CPU of m.read receipts over 1,000 portals.
// A CAST is not a bare parameter, so it is not compared; it is still a
// constant that the index is searched by. TestReceiptPathCompiledOnce
// catches a receipt-path statement that is compiled again.

const (
	messageColumns = `
		rowid, room_id, event_id, xmpp_id, origin_id, stanza_id, peer_jid, peer_resource,
		direction, mxid, sender, body, ts, want_receipt, want_delivered, want_displayed,
		want_composing, want_offline, markable, delivered_at, displayed_at,
		rel_kind, rel_to, rel_key
	`
	getMessageBaseQuery      = `SELECT ` + messageColumns + ` FROM message `
	getMessageByRowQuery     = getMessageBaseQuery + `WHERE rowid=$1`
	getMessageByEventIDQuery = getMessageBaseQuery + `WHERE event_id=$1`
	// "xmpp_id <> ''" lets PostgreSQL use the partial unique index. The
	// direction is CAST (see CAST above).
	getMessageByXMPPIDQuery = getMessageBaseQuery + `WHERE peer_jid=$1 AND xmpp_id=$2 AND direction=CAST($3 AS TEXT) AND xmpp_id <> ''`
	// DO NOTHING without a target covers both ways a message can be known
	// (event_id, and the partial index on the stanza id); RETURNING then
	// yields no row, which is how AddMessage tells a duplicate.
	insertMessageQuery = `
		INSERT INTO message (
			room_id, event_id, xmpp_id, origin_id, stanza_id, peer_jid, peer_resource,
			direction, mxid, sender, body, ts, want_receipt, want_delivered, want_displayed,
			want_composing, want_offline, markable, delivered_at, displayed_at,
			rel_kind, rel_to, rel_key
		)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
		ON CONFLICT DO NOTHING
		RETURNING rowid
	`
	setMessageEventIDQuery = `UPDATE message SET room_id=$2, event_id=$3 WHERE rowid=$1`
	setRoomStanzaIDQuery   = `UPDATE message SET xmpp_id=$2, stanza_id=$2 WHERE rowid=$1 AND xmpp_id<>$2`
	getRoomMessagesQuery   = getMessageBaseQuery + `WHERE room_id=$1 ORDER BY ts, rowid`
	// By the (room_id, ts) index, one row.
	getLastInRoomQuery = `SELECT ts FROM message WHERE room_id=CAST($1 AS TEXT) ORDER BY ts DESC LIMIT 1`
	// "event_id IS NULL" lets both engines use the partial index.
	// The reactions to a message that no redaction points at, by the
	// relation index. The kinds and the direction are CAST (see CAST).
	getReactionsQuery = getMessageBaseQuery + `
		WHERE rel_to=$1 AND rel_kind=CAST('reaction' AS TEXT) AND direction=CAST($2 AS TEXT)
		  AND NOT EXISTS (SELECT 1 FROM message AS d WHERE d.rel_to=message.rowid AND d.rel_kind=CAST('redact' AS TEXT))
		ORDER BY rowid`
	hasUnsentToMatrixQuery = `SELECT EXISTS (SELECT 1 FROM message WHERE peer_jid=$1 AND mxid=$2 AND direction='xmpp' AND event_id IS NULL)`
)

func scanMessage(row dbutil.Scannable) (*mapping.Message, error) {
	var m mapping.Message
	var eventID sql.NullString
	var peer string
	var ts int64
	var deliveredAt, displayedAt sql.NullInt64
	err := row.Scan(
		&m.RowID, &m.RoomID, &eventID, &m.XMPPID, &m.OriginID, &m.StanzaID, &peer, &m.PeerResource,
		&m.Direction, &m.MXID, &m.Sender, &m.Body, &ts, &m.Requests.Receipt, &m.Requests.Delivered, &m.Requests.Displayed,
		&m.Requests.Composing, &m.Requests.Offline, &m.Requests.Markable, &deliveredAt, &displayedAt,
		&m.RelKind, &m.RelTo, &m.RelKey,
	)
	if err != nil {
		return nil, err
	}
	if m.PeerJID, err = parseJID(peer); err != nil {
		return nil, err
	}
	m.EventID = id.EventID(eventID.String)
	m.TS = fromMilli(ts)
	m.DeliveredAt = fromMilli(deliveredAt.Int64)
	m.DisplayedAt = fromMilli(displayedAt.Int64)
	return &m, nil
}

func messageArgs(m *mapping.Message) []any {
	return []any{
		m.RoomID, dbutil.StrPtr(m.EventID), m.XMPPID, m.OriginID, m.StanzaID, bareJID(m.PeerJID), m.PeerResource,
		m.Direction, m.MXID, m.SentBy(), m.Body, toMilli(m.TS), m.Requests.Receipt, m.Requests.Delivered, m.Requests.Displayed,
		m.Requests.Composing, m.Requests.Offline, m.Requests.Markable,
		dbutil.UnixMilliPtr(m.DeliveredAt), dbutil.UnixMilliPtr(m.DisplayedAt),
		m.RelKind, m.RelTo, m.RelKey,
	}
}

// AddMessage stores msg and, in the same transaction, jobs about it. It
// returns false and stores nothing if msg is already known by its event id
// or by its (peer, stanza id, direction). On success msg.RowID, and each
// job's ID and MessageID, are set; on failure or duplicate they are left
// alone. PeerJID is stored bare.
func (db *Database) AddMessage(ctx context.Context, msg *mapping.Message, jobs ...*mapping.Job) (bool, error) {
	defer db.writing()()
	gen := db.messages.begin()
	var rowID int64
	var jobIDs []int64
	err := db.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		err := db.db.QueryRow(ctx, insertMessageQuery, messageArgs(msg)...).Scan(&rowID)
		if errors.Is(err, sql.ErrNoRows) {
			rowID = 0
			return nil
		} else if err != nil {
			return err
		}
		jobIDs, err = db.insertJobs(ctx, rowID, jobs)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store %s message %q (event %s) with %s: %w",
			msg.Direction, msg.XMPPID, msg.EventID, msg.PeerJID.Bare(), err)
	} else if rowID == 0 {
		return false, nil
	}
	msg.RowID = rowID
	for i, job := range jobs {
		job.ID = jobIDs[i]
		job.MessageID = rowID
	}
	if stored, err := storedForm(msg, rowID); err == nil {
		db.messages.put(gen, stored)
	}
	return true, nil
}

// MessageByRow returns the message stored in row.
func (db *Database) MessageByRow(ctx context.Context, row int64) (*mapping.Message, error) {
	cached, gen := db.messages.row(row)
	if cached != nil {
		return cached, nil
	}
	m, err := queryOne(ctx, db.db, scanMessage, getMessageByRowQuery, row)
	if err != nil {
		return nil, fmt.Errorf("get message %d: %w", row, err)
	}
	db.messages.put(gen, m)
	return m, nil
}

// MessageByEventID returns the message bridged as or from event ev.
func (db *Database) MessageByEventID(ctx context.Context, ev id.EventID) (*mapping.Message, error) {
	found, _, gen := db.messages.events([]id.EventID{ev})
	if m := found[ev]; m != nil {
		return m, nil
	}
	m, err := queryOne(ctx, db.db, scanMessage, getMessageByEventIDQuery, ev)
	if err != nil {
		return nil, fmt.Errorf("get message by event %s: %w", ev, err)
	}
	db.messages.put(gen, m)
	return m, nil
}

// MessageByXMPPID returns the message with stanza id xmppID exchanged with
// the bare JID of peer in direction dir. An empty xmppID names no message.
func (db *Database) MessageByXMPPID(ctx context.Context, peer jid.JID, xmppID string, dir mapping.Direction) (*mapping.Message, error) {
	if xmppID == "" {
		return nil, fmt.Errorf("get %s message with %s by empty stanza id: %w", dir, peer.Bare(), mapping.ErrNotFound)
	}
	key := mapping.XMPPKey{Peer: bareJID(peer), ID: xmppID}
	found, _, gen := db.messages.stanzas(dir, []mapping.XMPPKey{key})
	if m := found[key]; m != nil {
		return m, nil
	}
	m, err := queryOne(ctx, db.db, scanMessage, getMessageByXMPPIDQuery, key.Peer, xmppID, dir)
	if err != nil {
		return nil, fmt.Errorf("get %s message %q with %s: %w", dir, xmppID, peer.Bare(), err)
	}
	db.messages.put(gen, m)
	return m, nil
}

// RecentByOriginID implements mapping.Store.
func (db *Database) RecentByOriginID(ctx context.Context, room id.RoomID, origin string) (*mapping.Message, error) {
	m, err := queryOne(ctx, db.db, scanMessage, getRecentByOriginIDQuery, room, origin)
	if err != nil {
		return nil, fmt.Errorf("get a recent message of %s by origin-id %q: %w", room, origin, err)
	}
	return m, nil
}

// LastInRoom implements mapping.Store.
func (db *Database) LastInRoom(ctx context.Context, room id.RoomID) (time.Time, error) {
	ts, err := queryOne(ctx, db.db, dbutil.ScanSingleColumn[int64], getLastInRoomQuery, room)
	if err != nil {
		return time.Time{}, fmt.Errorf("get the newest message of %s: %w", room, err)
	}
	return fromMilli(ts), nil
}

// SetMessageEventID records the room and event a stored message became on
// Matrix. It fails if another message already has ev.
func (db *Database) SetMessageEventID(ctx context.Context, row int64, room id.RoomID, ev id.EventID) error {
	defer db.writing()()
	if err := execOne(ctx, db.db, setMessageEventIDQuery, row, room, dbutil.StrPtr(ev)); err != nil {
		return fmt.Errorf("set event of message %d to %s in %s: %w", row, ev, room, err)
	}
	db.messages.wrote([]int64{row}, true, func(m *mapping.Message) { m.RoomID, m.EventID = room, ev })
	return nil
}

// SetRoomStanzaID implements mapping.Store.
func (db *Database) SetRoomStanzaID(ctx context.Context, row int64, sid string) (bool, error) {
	defer db.writing()()
	res, err := db.db.Exec(ctx, setRoomStanzaIDQuery, row, sid)
	if err != nil {
		return false, fmt.Errorf("name message %d by the room's stanza-id %q: %w", row, sid, err)
	}
	n, err := res.RowsAffected()
	if n > 0 {
		db.messages.wrote([]int64{row}, true, func(m *mapping.Message) { m.XMPPID, m.StanzaID = sid, sid })
	}
	return n > 0, err
}

// HasUnsentToMatrix implements mapping.Store.
func (db *Database) HasUnsentToMatrix(ctx context.Context, mxid id.UserID, peer jid.JID) (bool, error) {
	unsent, err := queryOne(ctx, db.db, dbutil.ScanSingleColumn[bool], hasUnsentToMatrixQuery, bareJID(peer), mxid)
	if err != nil {
		return false, fmt.Errorf("look for messages from %s to %s not on Matrix yet: %w", peer, mxid, err)
	}
	return unsent, nil
}

// Reactions implements mapping.Store.
func (db *Database) Reactions(ctx context.Context, target int64, dir mapping.Direction) ([]*mapping.Message, error) {
	ms, err := queryMany(ctx, db.db, scanMessage, getReactionsQuery, target, dir)
	if err != nil {
		return nil, fmt.Errorf("look up the reactions to message %d: %w", target, err)
	}
	return ms, nil
}

// Messages returns every message of a room, oldest first (for people and
// tools looking at the id map; the bridge itself looks up one at a time).
func (db *Database) Messages(ctx context.Context, room id.RoomID) ([]*mapping.Message, error) {
	ms, err := queryMany(ctx, db.db, scanMessage, getRoomMessagesQuery, room)
	if err != nil {
		return nil, fmt.Errorf("list messages of %s: %w", room, err)
	}
	return ms, nil
}

// MessagesByEventIDs looks up many events in one query per inBatch.
func (db *Database) MessagesByEventIDs(ctx context.Context, evs []id.EventID) (map[id.EventID]*mapping.Message, error) {
	out, evs, gen := db.messages.events(evs)
	if len(evs) == 0 {
		return out, nil
	}
	ms, err := queryIn(ctx, db.db, scanMessage, getMessageBaseQuery+"WHERE event_id IN (", evs,
		func(m *mapping.Message) id.EventID { return m.EventID })
	if err != nil {
		return nil, fmt.Errorf("get %d messages by event: %w", len(evs), err)
	}
	for ev, m := range ms {
		out[ev] = m
		db.messages.put(gen, m)
	}
	return out, nil
}

// MessagesByXMPPIDs looks up many (peer, stanza id) pairs of direction dir
// in one query per few hundred.
func (db *Database) MessagesByXMPPIDs(ctx context.Context, dir mapping.Direction, keys []mapping.XMPPKey) (map[mapping.XMPPKey]*mapping.Message, error) {
	out, keys, gen := db.messages.stanzas(dir, keys)
	seen := make(map[mapping.XMPPKey]bool, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), 300)
		query, args := xmppKeysQuery(dir, keys[:n], seen)
		keys = keys[n:]
		if query == "" {
			continue
		}
		ms, err := queryMany(ctx, db.db, scanMessage, query, args...)
		if err != nil {
			return nil, fmt.Errorf("get %d %s messages by stanza id: %w", len(args)/2, dir, err)
		}
		for _, m := range ms {
			out[mapping.XMPPKey{Peer: m.PeerJID.String(), ID: m.XMPPID}] = m
		}
		db.messages.put(gen, ms...)
	}
	return out, nil
}

// xmppKeysQuery is the query of MessagesByXMPPIDs for keys not yet in seen
// (which it adds to), "" if there are none. A join with the pairs as a
// table: SQLite scans the whole index for "(peer_jid, xmpp_id) IN (VALUES
// ...)", but searches it for each row of a joined VALUES. Both engines name
// the columns of VALUES column1, column2.
func xmppKeysQuery(dir mapping.Direction, keys []mapping.XMPPKey, seen map[mapping.XMPPKey]bool) (string, []any) {
	var b strings.Builder
	b.WriteString("SELECT " + messageColumns + " FROM (VALUES ")
	args := []any{dir}
	for _, k := range keys {
		if seen[k] || k.ID == "" {
			continue
		}
		seen[k] = true
		if len(args) > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "($%d,$%d)", len(args)+1, len(args)+2)
		args = append(args, k.Peer, k.ID)
	}
	if len(args) == 1 {
		return "", nil
	}
	b.WriteString(") AS k JOIN message ON peer_jid=k.column1 AND xmpp_id=k.column2 WHERE direction=CAST($1 AS TEXT) AND xmpp_id <> ''")
	return b.String(), args
}

// inList appends "$1,$2,…" for vals to prefix and returns the arguments.
func inList[T any](prefix string, vals []T) (string, []any) {
	var b strings.Builder
	b.WriteString(prefix)
	args := make([]any, len(vals))
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "$%d", i+1)
		args[i] = v
	}
	return b.String(), args
}
