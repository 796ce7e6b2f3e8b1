package database

// The store bench: the lookups of the receipt path at 1 M and 10 M
// mappings, on SQLite and PostgreSQL. Run by scripts/bench.sh with
// BENCH_STORE=1, or:
//
//	go test -run XXX -bench Store -benchtime 200x -timeout 60m ./database/
//
// BENCH_STORE_SIZES (default 1000000,10000000) picks the sizes. The seeded
// SQLite files are kept under BENCH_DIR (else $TMPDIR) and reused by the
// next run once checked; PostgreSQL is seeded anew in a schema of its own
// each run and dropped after.

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"

	"xmppbridge/mapping"
)

// storeBenchSeed names the shape of the seeded data; change it when the
// seed changes, so that cached files of the old shape are not reused.
const storeBenchSeed = "v2: 100 messages a portal, direction alternating, portals with members"

// perPortal messages in each portal: message i (from 1) is in portal i/100.
const perPortal = 100

func storeBenchSizes(b *testing.B) []int {
	spec := os.Getenv("BENCH_STORE_SIZES")
	if spec == "" {
		spec = "1000000,10000000"
	}
	var sizes []int
	for _, s := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < perPortal {
			b.Fatalf("BENCH_STORE_SIZES: %q is not a size of at least %d", s, perPortal)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// seedColumns and seedSelect fill the message table from a series i = 1…n
// in one statement; the portals likewise from k = 0…n/100.
const (
	seedColumns = `rowid, room_id, event_id, xmpp_id, peer_jid, direction, mxid, ts, want_receipt, markable`
	seedSelect  = `i, '!r' || (i/100) || ':example.org', '$e' || i, 'm' || i, 'p' || (i/100) || '@xmpp.example',
		CASE WHEN i % 2 = 0 THEN 'matrix' ELSE 'xmpp' END, '@alice:example.org', i, true, true`
	portalSelect = `'!r' || k || ':example.org', 'direct', 'p' || k || '@xmpp.example', 0`

	sqliteSeedMessages = `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < $1)
		INSERT INTO message (` + seedColumns + `) SELECT ` + seedSelect + ` FROM s`
	sqliteSeedPortals = `WITH RECURSIVE s(k) AS (SELECT 0 UNION ALL SELECT k+1 FROM s WHERE k < $1)
		INSERT INTO portal (room_id, kind, jid, created_at) SELECT ` + portalSelect + ` FROM s`
	postgresSeedMessages = `INSERT INTO message (` + seedColumns + `) SELECT ` + seedSelect + ` FROM generate_series(1, $1::bigint) AS i`
	postgresSeedPortals  = `INSERT INTO portal (room_id, kind, jid, created_at) SELECT ` + portalSelect + ` FROM generate_series(0, $1::bigint) AS k`
	// Each portal's two members, as a direct portal has them: Alice, by
	// her pair, and the person.
	seedMatrixMembers = `INSERT INTO portal_member (room_id, member, direct_jid) SELECT room_id, '@alice:example.org', jid FROM portal`
	seedXMPPMembers   = `INSERT INTO portal_member (room_id, member) SELECT room_id, jid FROM portal`
)

const seededKey = "store_bench_seeded"

func seededMarker(n int) string { return fmt.Sprintf("%d rows, %s", n, storeBenchSeed) }

// seedStore fills an empty store with n messages. The secondary indexes
// of the message table are dropped for the insert and made again after
// (whatever indexes the schema has: they are read from the catalogue), which
// is many times faster than keeping them up to date row by row.
func seedStore(ctx context.Context, db *Database, n int) error {
	d := db.DB()
	var listIndexes, seedMessages, seedPortals string
	if d.Dialect == dbutil.Postgres {
		// Indexes that back a constraint (the primary key, event_id's
		// UNIQUE) cannot be dropped alone: they stay.
		listIndexes = `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'message'
			AND indexname NOT IN (SELECT conname FROM pg_constraint)`
		seedMessages, seedPortals = postgresSeedMessages, postgresSeedPortals
	} else {
		listIndexes = `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'message' AND sql IS NOT NULL`
		seedMessages, seedPortals = sqliteSeedMessages, sqliteSeedPortals
	}
	return d.DoTxn(ctx, nil, func(ctx context.Context) error {
		rows, err := d.Query(ctx, listIndexes)
		if err != nil {
			return err
		}
		var names, defs []string
		for rows.Next() {
			var name, def string
			if err := rows.Scan(&name, &def); err != nil {
				rows.Close()
				return err
			}
			names, defs = append(names, name), append(defs, def)
		}
		rows.Close()
		for _, name := range names {
			if _, err := d.Exec(ctx, "DROP INDEX "+name); err != nil {
				return err
			}
		}
		for _, q := range []struct {
			query string
			arg   int
		}{{seedMessages, n}, {seedPortals, n / perPortal}, {seedMatrixMembers, -1}, {seedXMPPMembers, -1}} {
			var args []any
			if q.arg >= 0 {
				args = append(args, q.arg)
			}
			if _, err := d.Exec(ctx, q.query, args...); err != nil {
				return fmt.Errorf("seed: %w", err)
			}
		}
		for _, def := range defs {
			if _, err := d.Exec(ctx, def); err != nil {
				return err
			}
		}
		if d.Dialect == dbutil.Postgres {
			if _, err := d.Exec(ctx, `SELECT setval(pg_get_serial_sequence('message', 'rowid'), $1)`, n); err != nil {
				return err
			}
		}
		return db.SetKV(ctx, seededKey, seededMarker(n))
	})
}

// checkSeeded tells whether db holds exactly the seed of n messages.
func checkSeeded(ctx context.Context, db *Database, n int) bool {
	if v, err := db.GetKV(ctx, seededKey); err != nil || v != seededMarker(n) {
		return false
	}
	var count, maxRow int64
	if err := db.DB().QueryRow(ctx, `SELECT count(*), max(rowid) FROM message`).Scan(&count, &maxRow); err != nil {
		return false
	}
	m, err := db.MessageByEventID(ctx, id.EventID(fmt.Sprintf("$e%d", n)))
	return count == int64(n) && maxRow == int64(n) && err == nil && m.XMPPID == fmt.Sprintf("m%d", n) &&
		m.RoomID == id.RoomID(fmt.Sprintf("!r%d:example.org", n/perPortal))
}

// openSQLiteBench opens the cached seeded file of n messages, seeding it
// if it is missing or not exactly the seed.
func openSQLiteBench(b *testing.B, n int) *Database {
	ctx := context.Background()
	dir := os.Getenv("BENCH_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("xmppbridge-store-bench-%d.db", n))
	open := func() *Database {
		db, err := Open(ctx, "sqlite3-fk-wal", path, zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		return db
	}
	db := open()
	if checkSeeded(ctx, db, n) {
		fmt.Printf("sqlite %d: reusing %s (checked)\n", n, path)
		return db
	}
	_ = db.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(path + suffix)
	}
	db = open()
	start := time.Now()
	if err := seedStore(ctx, db, n); err != nil {
		_ = db.Close()
		b.Fatal(err)
	}
	// Close checkpoints the WAL into the file; reopen as a bridge would.
	_ = db.Close()
	db = open()
	fmt.Printf("sqlite %d: seeded %s in %s\n", n, path, time.Since(start).Round(time.Second))
	if !checkSeeded(ctx, db, n) {
		b.Fatalf("sqlite %d: the seed does not read back", n)
	}
	return db
}

// openPostgresBench seeds n messages into a schema of its own, dropped
// when the benchmark ends.
func openPostgresBench(b *testing.B, n int) *Database {
	ctx := context.Background()
	base := os.Getenv(postgresEnv)
	if base == "" {
		if os.Getenv(skipPostgresEnv) == "1" {
			b.Skipf("PostgreSQL skipped because %s=1", skipPostgresEnv)
		}
		b.Fatalf("set %s to a PostgreSQL URI (or %s=1 to skip PostgreSQL)", postgresEnv, skipPostgresEnv)
	}
	admin, err := sql.Open("postgres", base)
	if err != nil {
		b.Fatal(err)
	}
	schema := fmt.Sprintf("xmppbridge_bench_%d_%s", n, randomHex(b))
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		_ = admin.Close()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			b.Errorf("drop schema %s: %v", schema, err)
		}
		_ = admin.Close()
	})
	db, err := Open(ctx, "postgres", withSearchPath(b, base, schema), zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := seedStore(ctx, db, n); err != nil {
		_ = db.Close()
		b.Fatal(err)
	}
	if _, err := db.DB().Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	fmt.Printf("postgres %d: seeded in %s\n", n, time.Since(start).Round(time.Second))
	if !checkSeeded(ctx, db, n) {
		b.Fatalf("postgres %d: the seed does not read back", n)
	}
	return db
}

// storeBenchResults are ns per lookup by "engine/op" and size, for the
// ratios printed at the end.
var storeBenchResults = struct {
	sync.Mutex
	m map[string]map[int]float64
}{m: map[string]map[int]float64{}}

// BenchmarkStore times the receipt path's lookups, a burst of 100 keys
// each, spread at random over the whole table, at each size.
func BenchmarkStore(b *testing.B) {
	sizes := storeBenchSizes(b)
	for _, engine := range []struct {
		name string
		open func(*testing.B, int) *Database
	}{{"sqlite", openSQLiteBench}, {"postgres", openPostgresBench}} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%s", engine.name, sizeName(n)), func(b *testing.B) {
				db := engine.open(b, n)
				defer db.Close()
				storeLookups(b, db, engine.name, n)
			})
		}
	}
	printStoreRatios(sizes)
}

func sizeName(n int) string {
	if n%1000000 == 0 {
		return fmt.Sprintf("%dM", n/1000000)
	}
	return strconv.Itoa(n)
}

func storeLookups(b *testing.B, db *Database, engine string, n int) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	const burst, sets = 100, 64
	// Messages to XMPP (even rows) by (peer, stanza id), as XMPP receipts
	// look them up; events as Matrix receipts do; portals by room.
	xmppKeys := make([][]mapping.XMPPKey, sets)
	events := make([][]id.EventID, sets)
	rooms := make([][]id.RoomID, sets)
	for s := range sets {
		for range burst {
			i := 2 * (1 + rng.IntN(n/2))
			xmppKeys[s] = append(xmppKeys[s], mapping.XMPPKey{Peer: fmt.Sprintf("p%d@xmpp.example", i/perPortal), ID: fmt.Sprintf("m%d", i)})
			events[s] = append(events[s], id.EventID(fmt.Sprintf("$e%d", 1+rng.IntN(n))))
			rooms[s] = append(rooms[s], id.RoomID(fmt.Sprintf("!r%d:example.org", rng.IntN(n/perPortal))))
		}
	}
	ops := []struct {
		name string
		do   func(s int) (int, error)
	}{
		{"MessagesByXMPPIDs", func(s int) (int, error) {
			m, err := db.MessagesByXMPPIDs(ctx, mapping.FromMatrix, xmppKeys[s])
			return len(m), err
		}},
		{"MessagesByEventIDs", func(s int) (int, error) {
			m, err := db.MessagesByEventIDs(ctx, events[s])
			return len(m), err
		}},
		{"PortalsByRooms", func(s int) (int, error) {
			m, err := db.PortalsByRooms(ctx, rooms[s])
			return len(m), err
		}},
	}
	for _, op := range ops {
		b.Run(op.name+"-100", func(b *testing.B) {
			// Once untimed, so that the first timed burst is not the one
			// that warms the caches.
			if _, err := op.do(0); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				found, err := op.do(i % sets)
				if err != nil {
					b.Fatal(err)
				}
				if found == 0 {
					b.Fatalf("%s found nothing", op.name)
				}
			}
			per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(per/1000, "µs/burst")
			storeBenchResults.Lock()
			k := engine + "/" + op.name
			if storeBenchResults.m[k] == nil {
				storeBenchResults.m[k] = map[int]float64{}
			}
			storeBenchResults.m[k][n] = per
			storeBenchResults.Unlock()
		})
	}
}

func printStoreRatios(sizes []int) {
	if len(sizes) < 2 {
		return
	}
	small, large := sizes[0], sizes[len(sizes)-1]
	storeBenchResults.Lock()
	defer storeBenchResults.Unlock()
	keys := make([]string, 0, len(storeBenchResults.m))
	for k := range storeBenchResults.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Printf("\nstore lookups, a burst of 100 keys: %s vs %s mappings\n", sizeName(large), sizeName(small))
	for _, k := range keys {
		r := storeBenchResults.m[k]
		if r[small] > 0 && r[large] > 0 {
			fmt.Printf("  %-30s %9.0f µs  %9.0f µs  ratio %.2f\n", k, r[small]/1000, r[large]/1000, r[large]/r[small])
		}
	}
}
