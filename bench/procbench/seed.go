package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"
	"mellium.im/xmpp/jid"

	"xmppbridge/database"
	"xmppbridge/mapping"
)

var ids = mapping.Identities{HomeserverDomain: "example.org", ComponentDomain: "matrix.example.org", BotLocalpart: "xmppbridge"}

const (
	alice  = id.UserID("@alice:example.org")
	secret = "bench-secret"
)

func peer(r int) jid.JID   { return jid.MustParse(fmt.Sprintf("p%d@xmpp.example", r)) }
func room(r int) id.RoomID { return id.RoomID(fmt.Sprintf("!r%d:example.org", r)) }
func eventID(i int) string { return fmt.Sprintf("$e%d", i) }
func xmppID(i int) string  { return fmt.Sprintf("m%d", i) }
func puppetOf(u id.UserID) string {
	j, err := ids.Puppet(u)
	if err != nil {
		panic(err)
	}
	return j.String()
}

// seed writes the bridge's SQLite database at path before the bridge
// starts: the portals, message i in room roomOf[i] (event $e<i>, stanza id
// m<i>) in direction dir with req, and every ghost marked registered in
// the state store, as a bridge that has run for a while has them.
func seed(ctx context.Context, path string, portals int, roomOf []int, dir mapping.Direction, req mapping.Requests) error {
	return seedMessages(ctx, "sqlite3-fk-wal", path, portals, directMessages(roomOf, dir, req, time.Now().Add(-time.Hour)))
}

// directMessages are message i in room roomOf[i] (event $e<i>, stanza id
// m<i>) in direction dir with req, alice's, the first at ts.
func directMessages(roomOf []int, dir mapping.Direction, req mapping.Requests, ts time.Time) []*mapping.Message {
	msgs := make([]*mapping.Message, len(roomOf))
	for i, r := range roomOf {
		msgs[i] = &mapping.Message{RoomID: room(r), EventID: id.EventID(eventID(i)), XMPPID: xmppID(i), PeerJID: peer(r),
			Direction: dir, MXID: alice, TS: ts.Add(time.Duration(i) * time.Millisecond), Requests: req}
	}
	return msgs
}

// seedMessages writes portals portals (room r with peer r), their ghosts
// marked registered, and msgs, into the database of dbType at uri.
func seedMessages(ctx context.Context, dbType, uri string, portals int, msgs []*mapping.Message) error {
	return seedPortals(ctx, dbType, uri, portals, msgs, nil)
}

// seedPortals writes portals portals (room r with peer r), their ghosts
// marked registered, what more writes (if not nil), and msgs, in one
// transaction.
func seedPortals(ctx context.Context, dbType, uri string, portals int, msgs []*mapping.Message, more func(context.Context, *database.Database, *sqlstatestore.SQLStateStore) error) error {
	db, err := database.Open(ctx, dbType, uri, zerolog.Nop())
	if err != nil {
		return err
	}
	defer db.Close()
	ss := sqlstatestore.NewSQLStateStore(db.DB(), dbutil.ZeroLogger(zerolog.Nop()), false)
	if err := database.EnsureVersionTable(ctx, ss.Database); err != nil {
		return err
	}
	if err := ss.Upgrade(ctx); err != nil {
		return err
	}
	ts := time.Now().Add(-time.Hour)
	return db.DB().DoTxn(ctx, nil, func(ctx context.Context) error {
		for r := range portals {
			if err := db.PutPortal(ctx, mapping.DirectPortal(room(r), alice, peer(r), ts)); err != nil {
				return err
			}
			if err := ss.MarkRegistered(ctx, ids.Ghost(peer(r))); err != nil {
				return err
			}
			// The bot is in the room, as it is from the first status event
			// of a portal on: its join is once a room, not a receipt's
			// cost (1,000 joins were 3 s of CPU in a burst of 20,000).
			if err := ss.SetMembership(ctx, room(r), ids.Bot(), event.MembershipJoin); err != nil {
				return err
			}
		}
		if more != nil {
			if err := more(ctx, db, ss); err != nil {
				return err
			}
		}
		for _, m := range msgs {
			if _, err := db.AddMessage(ctx, m); err != nil {
				return err
			}
		}
		return nil
	})
}
