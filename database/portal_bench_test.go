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

// BenchmarkPortalsByRooms: the portals of a transaction's 100 receipts,
// each in a room of its own among 1,000, as pushed m.read over many
// portals looks them up (one lookup a transaction).
func BenchmarkPortalsByRooms(b *testing.B) {
	ctx := b.Context()
	db, err := Open(ctx, "sqlite3-fk-wal", filepath.Join(b.TempDir(), "bridge.db"), zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	rooms := make([]id.RoomID, 1000)
	for i := range rooms {
		rooms[i] = id.RoomID(fmt.Sprintf("!r%d:example.org", i))
		p := mapping.DirectPortal(rooms[i], "@alice:example.org", jid.MustParse(fmt.Sprintf("p%d@xmpp.example", i)), time.Unix(0, 0))
		if err := db.PutPortal(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		batch := make([]id.RoomID, 100)
		for j := range batch {
			batch[j] = rooms[(i*100+j*7)%len(rooms)]
		}
		if ps, err := db.PortalsByRooms(ctx, batch); err != nil || len(ps) != 100 {
			b.Fatalf("%d portals, %v", len(ps), err)
		}
	}
}
