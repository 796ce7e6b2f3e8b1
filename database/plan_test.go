package database

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/internal/sqlitestat"
	"xmppbridge/mapping"
)

// The lookups and writes on the receipt path must each be answered by an
// index, at a cost that does not grow with a room's history or the table's
// size: a receipt storm in a room with a long history froze the bridge when
// one of them walked the room's rows (the newest displayed message, found
// by walking backwards). These tests check the plans each engine chooses
// and count the rows visited, never the time taken.

const (
	hotRoom  = id.RoomID("!hot:example.org")
	hotPeer  = "juliet@capulet.lit"
	hotMXID  = id.UserID("@alice:example.org")
	burstLen = 5 // keys per batched lookup
)

// history is a store seeded with one portal's long history: n messages in
// hotRoom, all from Matrix and never displayed by the XMPP person (clients
// that send no markers) except the first and the last, which came from
// XMPP, the first asking for composing events; as many in another room;
// and a thousand other portals.
type history struct {
	n       int
	newest  int64   // row of the last message (from XMPP)
	fromMX  []int64 // rows of the newest burstLen messages from Matrix
	fromMXX []string
}

func seedHistory(t *testing.T, s *store, n int) history {
	t.Helper()
	return seedHistoryBurst(t, s, n, burstLen)
}

// seedHistoryBurst is seedHistory with burst keys in a batched lookup.
func seedHistoryBurst(t *testing.T, s *store, n, burst int) history {
	t.Helper()
	ctx := t.Context()
	seed := func(room id.RoomID, peer, prefix string) {
		// A recursive CTE, which both engines take, instead of n round trips.
		q := fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d)
			INSERT INTO message (room_id, event_id, xmpp_id, peer_jid, direction, mxid, ts,
				want_receipt, want_delivered, want_displayed, want_composing, markable)
			SELECT $1, '$%s' || i, '%s' || i, $2, CASE WHEN i = 1 OR i = %d THEN 'xmpp' ELSE 'matrix' END, $3, i,
				true, true, true, i = 1, true
			FROM n`, n, prefix, prefix, n)
		if _, err := s.DB().Exec(ctx, q, room, peer, hotMXID); err != nil {
			t.Fatalf("seed %s: %v", room, err)
		}
	}
	seed(hotRoom, hotPeer, "h")
	seed("!other:example.org", "romeo@montague.lit", "o")
	q := `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1000)
		INSERT INTO portal (room_id, kind, jid, created_at) SELECT '!p' || i || ':example.org', 'direct', 'p' || i || '@x.example', 0 FROM n`
	if _, err := s.DB().Exec(ctx, q); err != nil {
		t.Fatalf("seed portals: %v", err)
	}
	q = `INSERT INTO portal_member (room_id, member, direct_jid) SELECT room_id, $1, jid FROM portal`
	if _, err := s.DB().Exec(ctx, q, hotMXID); err != nil {
		t.Fatalf("seed portal members: %v", err)
	}
	// Owed sends, as while a homeserver is slow.
	q = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1000)
		INSERT INTO outbox (kind, not_before, lane) SELECT 'matrix.delivery', i, $1 FROM n`
	if _, err := s.DB().Exec(ctx, q, hotRoom); err != nil {
		t.Fatalf("seed outbox: %v", err)
	}
	must(t, s.PutPortal(ctx, mapping.DirectPortal(hotRoom, hotMXID, jid.MustParse(hotPeer), time.Time{})))
	must(t, s.PutPortal(ctx, mapping.DirectPortal("!other:example.org", hotMXID, jid.MustParse("romeo@montague.lit"), time.Time{})))
	if s.DB().Dialect == dbutil.Postgres {
		// Plans from statistics, as on a server that has been running.
		if _, err := s.DB().Exec(ctx, "ANALYZE"); err != nil {
			t.Fatal(err)
		}
	}
	h := history{n: n}
	must(t, s.DB().QueryRow(ctx, "SELECT max(rowid) FROM message WHERE room_id=$1", hotRoom).Scan(&h.newest))
	rows, err := s.DB().Query(ctx, "SELECT rowid, xmpp_id FROM message WHERE room_id=$1 AND direction='matrix' ORDER BY rowid DESC LIMIT $2", hotRoom, burst)
	must(t, err)
	for rows.Next() {
		var r int64
		var x string
		must(t, rows.Scan(&r, &x))
		h.fromMX, h.fromMXX = append(h.fromMX, r), append(h.fromMXX, x)
	}
	must(t, rows.Err())
	return h
}

// lookup is one statement of the receipt path with the arguments it gets
// for the newest messages of the hot room.
type lookup struct {
	name  string
	query string
	args  []any
	index string // an index the plan must use, where a partial one matters
}

func receiptLookups(h history) []lookup {
	keys := make([]mapping.XMPPKey, len(h.fromMXX))
	evs := make([]id.EventID, len(h.fromMXX))
	for i, x := range h.fromMXX {
		keys[i] = mapping.XMPPKey{Peer: hotPeer, ID: x}
		evs[i] = id.EventID("$" + x)
	}
	byIDs, byIDsArgs := xmppKeysQuery(mapping.FromMatrix, keys, map[mapping.XMPPKey]bool{})
	byEvents, byEventsArgs := inList(getMessageBaseQuery+"WHERE event_id IN (", evs)
	rooms, roomsArgs := inList(getPortalBaseQuery+"WHERE p.room_id IN (", []id.RoomID{hotRoom, "!p1:example.org", "!p999:example.org"})
	mark, markArgs := inList(fmt.Sprintf("UPDATE message SET displayed_at=$%d WHERE displayed_at IS NULL AND rowid IN (", len(h.fromMX)+1), h.fromMX)
	del, delArgs := inList("DELETE FROM outbox WHERE id IN (", []int64{1, 2, 3})
	// As many reads as one statement asks about: the hot room's newest
	// row, again, and padding as UnreadUpTo pads.
	unreadArgs := []any{h.newest, int64(0)}
	for i := 1; i < unreadMarks; i++ {
		if i < unreadMarks/2 {
			unreadArgs = append(unreadArgs, h.newest, int64(i))
		} else {
			unreadArgs = append(unreadArgs, unreadPadding...)
		}
	}
	return []lookup{
		// XMPP → Matrix: a burst of receipts, looked up and recorded.
		{"messages by stanza id", byIDs, byIDsArgs, "message_xmpp_id_idx"},
		{"message by stanza id", getMessageByXMPPIDQuery, []any{hotPeer, h.fromMXX[0], string(mapping.FromMatrix)}, "message_xmpp_id_idx"},
		{"mark displayed", mark + ") RETURNING rowid", append(markArgs, int64(1)), ""},
		{"move the ghost's read position", ackDisplayedUpToQuery, []any{h.fromMX[0], hotRoom, hotPeer}, ""},
		{"portal of a read job", getPortalByRoomQuery, []any{hotRoom}, ""},
		{"finished jobs", del + ")", delArgs, ""},
		// Matrix → XMPP: a transaction's receipts.
		{"messages by event", byEvents + ")", byEventsArgs, ""},
		{"portals by room", rooms + ")", roomsArgs, ""},
		{"unread up to", unreadUpToQuery(unreadMarks, burstLen), unreadArgs, "message_unread_idx"},
		{"move the read watermark", ackDisplayedUpToQuery, []any{h.newest, hotRoom, hotMXID}, ""},
		{"newest composable", getNewestComposableQuery, []any{hotRoom}, "message_composable_idx"},
		// SQLite takes the unique index on event_id for "event_id IS NULL"
		// (as few rows: only messages not on Matrix yet have none).
		{"unsent to Matrix", hasUnsentToMatrixQuery, []any{hotPeer, hotMXID}, ""},
		{"portal by pair", getPortalByPairQuery, []any{hotMXID, hotPeer}, ""},
		{"message by row", getMessageByRowQuery, []any{h.newest}, ""},
		{"event of a sent message", setMessageEventIDQuery, []any{h.newest, hotRoom, "$new"}, ""},
	}
}

// Every receipt-path statement is answered through an index: no full scan
// of a table, no sort, and the partial index made for it where there is
// one. Checked with SQLite's EXPLAIN QUERY PLAN and PostgreSQL's EXPLAIN.
func TestReceiptPathPlans(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, s *store) {
		h := seedHistory(t, s, 20000)
		for _, l := range receiptLookups(h) {
			var plan []string
			if e.name == "sqlite" {
				plan = sqlitePlan(t, s, l)
			} else {
				plan = postgresPlan(t, s, l)
			}
			text := strings.Join(plan, "\n")
			if bad := badPlan.FindString(text); bad != "" {
				t.Errorf("%s: %q in the plan:\n%s", l.name, bad, text)
			}
			if l.index != "" && !strings.Contains(text, l.index) {
				t.Errorf("%s: the plan does not use %s:\n%s", l.name, l.index, text)
			}
		}
	})
}

// badPlan is what a receipt-path plan must not hold: a full scan of one of
// the bridge's tables (SQLite "SCAN t", PostgreSQL "Seq Scan on t") or a
// sort (SQLite's temporary B-tree, PostgreSQL's Sort node).
var badPlan = regexp.MustCompile(`(?m)^(SCAN (message|portal|portal_member|outbox|txn_inbox)\b.*|.*TEMP B-TREE.*|Seq Scan on \w+|Sort\b.*)$`)

func sqlitePlan(t *testing.T, s *store, l lookup) []string {
	rows, err := s.DB().Query(t.Context(), "EXPLAIN QUERY PLAN "+l.query, l.args...)
	if err != nil {
		t.Fatalf("%s: %v", l.name, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		must(t, rows.Scan(&id, &parent, &unused, &detail))
		plan = append(plan, detail)
	}
	must(t, rows.Err())
	return plan
}

// pgNode is a node of PostgreSQL's EXPLAIN (FORMAT JSON).
type pgNode struct {
	Type      string   `json:"Node Type"`
	Relation  string   `json:"Relation Name"`
	Index     string   `json:"Index Name"`
	Rows      float64  `json:"Actual Rows"`
	Loops     float64  `json:"Actual Loops"`
	Filtered  float64  `json:"Rows Removed by Filter"`
	Rechecked float64  `json:"Rows Removed by Index Recheck"`
	Plans     []pgNode `json:"Plans"`
}

// postgresExplain runs EXPLAIN with options on l in a transaction it rolls
// back (ANALYZE runs the statement) and returns the plan's root.
func postgresExplain(t *testing.T, s *store, options string, l lookup) pgNode {
	tx, err := s.DB().RawDB.BeginTx(t.Context(), nil)
	must(t, err)
	defer func() { _ = tx.Rollback() }()
	var out string
	if err := tx.QueryRowContext(t.Context(), "EXPLAIN ("+options+") "+l.query, l.args...).Scan(&out); err != nil {
		t.Fatalf("%s: %v", l.name, err)
	}
	var plans []struct {
		Plan pgNode `json:"Plan"`
	}
	if err := json.Unmarshal([]byte(out), &plans); err != nil || len(plans) != 1 {
		t.Fatalf("%s: EXPLAIN output %q: %v", l.name, out, err)
	}
	return plans[0].Plan
}

func postgresPlan(t *testing.T, s *store, l lookup) []string {
	var plan []string
	var walk func(n pgNode)
	walk = func(n pgNode) {
		line := n.Type
		if n.Relation != "" {
			line += " on " + n.Relation
		}
		if n.Index != "" {
			line += " using " + n.Index
		}
		plan = append(plan, line)
		for _, c := range n.Plans {
			walk(c)
		}
	}
	walk(postgresExplain(t, s, "FORMAT JSON", l))
	return plan
}

// rowsVisited is what running l costs: SQLite's virtual machine steps,
// PostgreSQL's rows produced or filtered out by every node of the plan.
func rowsVisited(t *testing.T, e engine, s *store, l lookup) int {
	if e.name == "sqlite" {
		st, err := sqlitestat.Run(s.path, l.query, l.args...)
		if err != nil {
			t.Fatalf("%s: %v", l.name, err)
		}
		return st.VMSteps
	}
	var sum func(n pgNode) float64
	sum = func(n pgNode) float64 {
		v := (n.Rows + n.Filtered + n.Rechecked) * max(n.Loops, 1)
		for _, c := range n.Plans {
			v += sum(c)
		}
		return v
	}
	return int(sum(postgresExplain(t, s, "ANALYZE, FORMAT JSON", l)))
}

// The same lookups, for the newest messages of a room with 10 and with
// 100,000 messages of history, visit about as many rows: nothing on the
// receipt path grows with the history or the table.
func TestReceiptPathRowsVisited(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, small *store) {
		big := e.newStore(t)
		hs, hb := seedHistory(t, small, 10), seedHistory(t, big, 100000)
		ls, lb := receiptLookups(hs), receiptLookups(hb)
		for i := range ls {
			vs, vb := rowsVisited(t, e, small, ls[i]), rowsVisited(t, e, big, lb[i])
			t.Logf("%s: %d at 10 messages, %d at 100,000", ls[i].name, vs, vb)
			if vb > 2*vs+50 {
				t.Errorf("%s visits %d rows at 100,000 messages of history and %d at 10: it grows with the history", ls[i].name, vb, vs)
			}
		}
	})
}

// A correction in a chat finds its original by origin-id among the
// room's newest mapping.RecentWindow messages (RecentByOriginID): one that
// names none, the worst case, visits as many rows in a room of 1,000
// messages as in one of 100,000, through an index, and is compiled once.
func TestCorrectionLookupBounded(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, small *store) {
		big := e.newStore(t)
		seedHistory(t, small, 1000)
		seedHistory(t, big, 100000)
		l := lookup{"a correction's original", getRecentByOriginIDQuery, []any{hotRoom, "no-such-origin"}, ""}
		vs, vb := rowsVisited(t, e, small, l), rowsVisited(t, e, big, l)
		t.Logf("%s: %d at 1,000 messages, %d at 100,000", l.name, vs, vb)
		if vb > 2*vs+50 {
			t.Errorf("%s visits %d rows at 100,000 messages of history and %d at 1,000: it grows with the history", l.name, vb, vs)
		}
		if e.name == "sqlite" {
			st, err := sqlitestat.RunAgain(big.path, l.query, l.args, []any{"!p1:example.org", "another"})
			if err != nil || st.Reprepares > 0 || st.FullScanSteps > 0 {
				t.Errorf("%s: compiled again with other arguments, or a full scan: %+v, %v", l.name, st, err)
			}
		}
	})
}

// No receipt-path statement is compiled again each time it runs. SQLite
// recompiles a cached statement when a value bound to it may change its
// plan (a LIMIT parameter; any parameter past the 32nd; an integer in an
// equality that becomes or stops being 0 or 1; a parameter compared with
// a column of a table with a partial index, once its bindings are
// cleared, as go-sqlite3 clears them for its cache), which made a cached
// lookup cost as much as a new one, most of the CPU of m.read receipts
// over many portals. Each lookup runs with its arguments, then with
// others, as the next burst brings: every number 1,000 more, every string
// another.
func TestReceiptPathCompiledOnce(t *testing.T) {
	// SQLite only: PostgreSQL plans a statement with parameters once,
	// generic after five runs, whatever is bound.
	// Bursts of 100 keys: most statements have more than 32 parameters.
	s := newSQLiteStore(t)
	for _, l := range receiptLookups(seedHistoryBurst(t, s, 300, 100)) {
		again := make([]any, len(l.args))
		for i, a := range l.args {
			switch v := reflect.ValueOf(a); v.Kind() {
			case reflect.String:
				again[i] = v.String() + "x"
			case reflect.Int, reflect.Int64:
				again[i] = v.Int() + 1000
			default:
				again[i] = a
			}
		}
		st, err := sqlitestat.RunAgain(s.path, l.query, l.args, again)
		if err != nil {
			t.Fatalf("%s: %v", l.name, err)
		}
		if st.Reprepares != 0 {
			t.Errorf("%s: compiled again when run with other arguments", l.name)
		}
	}
}
