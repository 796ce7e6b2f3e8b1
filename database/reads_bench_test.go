package database

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// BenchmarkReadsOfATransaction: the store's part of a transaction of 100
// pushed m.read, each in a room of its own among 1,000 direct portals of
// 20 messages from XMPP, as readsToXMPP and FinishTxns do it: "unread"
// the unread messages up to each read (one UnreadUpTo), "acks" its
// delivered and displayed marks moved (one Acknowledge of 200 "up to"
// acks). Each iteration reads the next message of its rooms, so run it
// with -benchtime 200x to read every message once, as the load bench's
// p1000/m2x-read does; each run starts on a new database.
func BenchmarkReadsOfATransaction(b *testing.B) {
	for _, part := range []string{"unread", "acks"} {
		b.Run(part, func(b *testing.B) { readsOfATransaction(b, part) })
	}
}

func readsOfATransaction(b *testing.B, part string) {
	const portals, perPortal, perTxn = 1000, 20, 100
	ctx := b.Context()
	db, err := Open(ctx, "sqlite3-fk-wal", filepath.Join(b.TempDir(), "bridge.db"), zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	alice := id.UserID("@alice:example.org")
	rooms := make([]id.RoomID, portals)
	for i := range rooms {
		rooms[i] = id.RoomID(fmt.Sprintf("!r%d:example.org", i))
		p := mapping.DirectPortal(rooms[i], alice, jid.MustParse(fmt.Sprintf("p%d@xmpp.example", i)), time.Unix(0, 0))
		if err := db.PutPortal(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.db.Exec(ctx, `
		WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < $1 - 1)
		INSERT INTO message (room_id, event_id, xmpp_id, peer_jid, direction, mxid, ts, want_displayed, markable)
		SELECT '!r' || (i % $2) || ':example.org', '$e' || i, 'x' || i, 'p' || (i % $2) || '@xmpp.example', 'xmpp', $3, i, true, true FROM n`,
		portals*perPortal, portals, alice); err != nil {
		b.Fatal(err)
	}
	// The rows in the order inserted: message i is row first+i.
	var first int64
	if err := db.db.QueryRow(ctx, `SELECT MIN(rowid) FROM message`).Scan(&first); err != nil {
		b.Fatal(err)
	}
	// The bridge has looked the portals up before (prefetch).
	if _, err := db.PortalsByRooms(ctx, rooms); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		upTo := make(map[mapping.Mark]int64, perTxn)
		for j := range perTxn {
			k := (i*perTxn + j) % (portals * perPortal)
			upTo[mapping.Mark{Room: rooms[k%portals], By: mapping.MemberID(alice)}] = first + int64(k)
		}
		timed(b, part == "unread", func() {
			if unread, err := db.UnreadUpTo(ctx, upTo, 50); err != nil || len(unread) != perTxn {
				b.Fatalf("%d reads with unread messages of %d: %v", len(unread), perTxn, err)
			}
		})
		acks := make([]mapping.Ack, 0, 2*perTxn)
		for mark, row := range upTo {
			acks = append(acks,
				mapping.Ack{Row: row, Kind: mapping.AckDelivered, At: time.Unix(1, 0), UpTo: mark.Room, By: mark.By},
				mapping.Ack{Row: row, Kind: mapping.AckDisplayed, At: time.Unix(1, 0), UpTo: mark.Room, By: mark.By})
		}
		timed(b, part == "acks", func() {
			if _, err := db.Acknowledge(ctx, acks); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// timed runs f with the benchmark's timer running only if on.
func timed(b *testing.B, on bool, f func()) {
	if !on {
		b.StopTimer()
		defer b.StartTimer()
	}
	f()
}
