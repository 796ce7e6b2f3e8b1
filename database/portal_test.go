package database

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// A database made by the v9 schema, whose portal was the room of one pair
// with the pair's watermarks on its row, upgrades to portals with members:
// each portal direct, with the Matrix user holding what she told XMPP and
// the person what he displayed, found by room, by pair and by user as
// before, and the watermarks still what the receipts are judged by. On
// both engines.
func TestUpgradeFromV9(t *testing.T) {
	forEachUpgrade(t, "testdata/v9-latest.sql", func(t *testing.T, old *dbutil.Database) {
		ctx := t.Context()
		carol := jid.MustParse("carol@example.net")
		for _, q := range []struct {
			room       id.RoomID
			mxid       id.UserID
			jid        jid.JID
			delivered  int64
			read, peer int64
		}{
			{"!a:example.org", alice, bob, 3, 2, 5},
			{"!b:example.org", alice, carol, 0, 0, 0},
			{"!c:example.org", dave, bob, 7, 7, 1},
		} {
			_, err := old.Exec(ctx, `INSERT INTO portal (room_id, mxid, jid, created_at, read_upto, delivered_upto, peer_read_upto)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`, q.room, q.mxid, q.jid.String(), t0.UnixMilli(), q.read, q.delivered, q.peer)
			must(t, err)
		}
		// Bob's messages to Alice, rows 1 to 4, none displayed one by one.
		for i := range 4 {
			_, err := old.Exec(ctx, `INSERT INTO message (room_id, xmpp_id, peer_jid, direction, mxid, ts) VALUES ('!a:example.org', $1, $2, 'xmpp', $3, 0)`,
				string(rune('w'+i)), bob.String(), alice)
			must(t, err)
		}
	}, func(t *testing.T, db *Database) {
		ctx := t.Context()
		p, err := db.PortalByRoom(ctx, "!a:example.org")
		must(t, err)
		if p.Kind != mapping.PortalDirect || p.User() != alice || !p.JID.Equal(bob) || !p.CreatedAt.Equal(t0) || len(p.Members) != 2 {
			t.Errorf("portal after the upgrade = %+v", p)
		}
		if m := p.Marks(mapping.MatrixMember(alice)); m.DeliveredUpTo != 3 || m.ReadUpTo != 2 {
			t.Errorf("Alice's marks = %+v, want delivered 3, read 2", m)
		}
		if m := p.Marks(mapping.XMPPMember(bob)); m.ReadUpTo != 5 || m.DeliveredUpTo != 0 {
			t.Errorf("Bob's marks = %+v, want read 5", m)
		}
		if p, err := db.PortalByPair(ctx, dave, bob); err != nil || p.RoomID != "!c:example.org" || p.Marks(mapping.MatrixMember(dave)).ReadUpTo != 7 {
			t.Errorf("Dave's portal with Bob = %+v, %v", p, err)
		}
		if ps, err := db.PortalsOf(ctx, alice); err != nil || len(ps) != 2 || ps[0].RoomID != "!a:example.org" || ps[1].RoomID != "!b:example.org" {
			t.Errorf("Alice's portals = %v, %v", ps, err)
		}
		// What Alice read stays read: only rows 3 and 4 are left.
		mark := mapping.Mark{Room: "!a:example.org", By: mapping.MatrixMember(alice)}
		unread, err := db.UnreadUpTo(ctx, map[mapping.Mark]int64{mark: 4}, 10)
		must(t, err)
		if got := unread[mark]; len(got) != 2 || got[0].RowID != 3 || got[1].RowID != 4 {
			t.Errorf("unread after the upgrade: %d messages, want rows 3 and 4", len(got))
		}
		// The pair is still one room: a new room moves it, watermarks
		// and all, and the old room is no portal any more.
		must(t, db.PutPortal(ctx, mapping.DirectPortal("!a2:example.org", alice, bob, t0.Add(time.Hour))))
		if p, err := db.PortalByPair(ctx, alice, bob); err != nil || p.RoomID != "!a2:example.org" || p.Marks(mapping.XMPPMember(bob)).ReadUpTo != 5 {
			t.Errorf("the pair's portal after a new room = %+v, %v", p, err)
		}
		_, err = db.PortalByRoom(ctx, "!a:example.org")
		wantNotFound(t, "the old room", err)
	})
}

// A portal's members are judged one by one: an "up to" ack moves only
// its member's watermark, a group portal holds many of each side, and a
// room is one portal: neither a pair nor a group can take another's room.
func TestPortalMembers(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		muc := jid.MustParse("coven@chat.shakespeare.lit")
		group := &mapping.Portal{RoomID: "!g:example.org", Kind: mapping.PortalGroup, JID: muc, CreatedAt: t0,
			Members: []mapping.Member{{ID: mapping.MatrixMember(alice)}, {ID: mapping.MatrixMember(dave)}, {ID: mapping.XMPPMember(bob)}}}
		must(t, s.PutPortal(ctx, group))
		m := newMessage(bob, "g1", mapping.FromXMPP)
		m.RoomID = "!g:example.org"
		mustAdd(t, s, m)
		isNew, err := s.Acknowledge(ctx, []mapping.Ack{{Row: m.RowID, Kind: mapping.AckDisplayed, At: t0, UpTo: "!g:example.org", By: mapping.MatrixMember(alice)}})
		must(t, err)
		if !isNew[0] {
			t.Error("Alice's read in the group was not new")
		}
		p, err := s.PortalByRoom(ctx, "!g:example.org")
		must(t, err)
		if p.Kind != mapping.PortalGroup || !p.JID.Equal(muc) || p.User() != "" || len(p.Members) != 3 {
			t.Fatalf("group portal = %+v", p)
		}
		if p.Marks(mapping.MatrixMember(alice)).ReadUpTo != m.RowID || p.Marks(mapping.MatrixMember(dave)).ReadUpTo != 0 {
			t.Errorf("Alice read up to %d, Dave up to %d; want %d and 0", p.Marks(mapping.MatrixMember(alice)).ReadUpTo, p.Marks(mapping.MatrixMember(dave)).ReadUpTo, m.RowID)
		}
		// Dave's unread is his own.
		mark := mapping.Mark{Room: "!g:example.org", By: mapping.MatrixMember(dave)}
		if unread, err := s.UnreadUpTo(ctx, map[mapping.Mark]int64{mark: m.RowID}, 10); err != nil || len(unread[mark]) != 1 {
			t.Errorf("Dave's unread = %v, %v; want the message", unread[mark], err)
		}
		// A new member joins; those there keep their marks.
		group.Members = []mapping.Member{{ID: mapping.XMPPMember(jid.MustParse("carol@example.net"))}}
		must(t, s.PutPortal(ctx, group))
		if p, _ := s.PortalByRoom(ctx, "!g:example.org"); len(p.Members) != 4 || p.Marks(mapping.MatrixMember(alice)).ReadUpTo != m.RowID {
			t.Errorf("after a join: %+v", p)
		}
		if ps, err := s.PortalsOf(ctx, dave); err != nil || len(ps) != 1 || ps[0].RoomID != "!g:example.org" {
			t.Errorf("Dave's portals = %v, %v", ps, err)
		}
		// The group's room is not a pair's, nor another group's.
		if err := s.PutPortal(ctx, mapping.DirectPortal("!g:example.org", alice, bob, t0)); err == nil || !s.Refuses(err) {
			t.Errorf("a pair took the group's room: %v", err)
		}
		other := &mapping.Portal{RoomID: "!g:example.org", Kind: mapping.PortalGroup, JID: jid.MustParse("other@chat.example"), Members: group.Members}
		if err := s.PutPortal(ctx, other); err == nil || !s.Refuses(err) {
			t.Errorf("another group took the room: %v", err)
		}
		// Alice's direct portal with Bob is another room, and found by the pair.
		must(t, s.PutPortal(ctx, mapping.DirectPortal("!d:example.org", alice, bob, t0)))
		if p, err := s.PortalByPair(ctx, alice, bob); err != nil || p.RoomID != "!d:example.org" {
			t.Errorf("Alice's portal with Bob = %+v, %v", p, err)
		}
	})
}

// A portal read again after any write that changes it is the written one,
// though reads are kept in memory (portalcache.go): marks moved by an ack,
// by a finished transaction, a member added, the pair's room moved.
func TestPortalReadsSeeEveryWrite(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		must(t, s.PutPortal(ctx, mapping.DirectPortal("!a:example.org", alice, bob, t0)))
		read := func(room id.RoomID) *mapping.Portal {
			t.Helper()
			ps, err := s.PortalsByRooms(ctx, []id.RoomID{room})
			must(t, err)
			p, err := s.PortalByRoom(ctx, room)
			must(t, err)
			if q := ps[room]; q == nil || q.Marks(mapping.MatrixMember(alice)) != p.Marks(mapping.MatrixMember(alice)) || len(q.Members) != len(p.Members) {
				t.Fatalf("PortalsByRooms %+v, PortalByRoom %+v", q, p)
			}
			return p
		}
		read("!a:example.org") // now known
		m := newMessage(bob, "m1", mapping.FromXMPP)
		m.RoomID = "!a:example.org"
		mustAdd(t, s, m)
		_, err := s.Acknowledge(ctx, []mapping.Ack{{Row: m.RowID, Kind: mapping.AckDelivered, At: t0, UpTo: "!a:example.org", By: mapping.MatrixMember(alice)}})
		must(t, err)
		if got := read("!a:example.org").Marks(mapping.MatrixMember(alice)).DeliveredUpTo; got != m.RowID {
			t.Errorf("delivered up to %d after an ack, want %d", got, m.RowID)
		}
		_, err = s.PutTxn(ctx, &mapping.Txn{ID: "t1", Body: []byte("{}")})
		must(t, err)
		must(t, s.FinishTxn(ctx, "t1", []mapping.Ack{{Row: m.RowID, Kind: mapping.AckDisplayed, At: t0, UpTo: "!a:example.org", By: mapping.MatrixMember(alice)}}, nil))
		if got := read("!a:example.org").Marks(mapping.MatrixMember(alice)).ReadUpTo; got != m.RowID {
			t.Errorf("read up to %d after a finished transaction, want %d", got, m.RowID)
		}
		p := mapping.DirectPortal("!a:example.org", alice, bob, t0)
		p.Members = append(p.Members, mapping.Member{ID: mapping.MatrixMember(dave)})
		must(t, s.PutPortal(ctx, p))
		if got := read("!a:example.org"); got.Member(mapping.MatrixMember(dave)) == nil {
			t.Errorf("a member put is not read back: %+v", got)
		}
		must(t, s.PutPortal(ctx, mapping.DirectPortal("!b:example.org", alice, bob, t0)))
		_, err = s.PortalByRoom(ctx, "!a:example.org")
		wantNotFound(t, "the pair's old room", err)
		if got := read("!b:example.org"); got.Marks(mapping.MatrixMember(alice)).ReadUpTo != m.RowID {
			t.Errorf("the moved portal's marks: %+v", got)
		}
	})
}

// A read that began before a write forgot a room does not store what it
// read: it may be older than the write.
func TestPortalCacheKeepsNoReadOlderThanAWrite(t *testing.T) {
	var c portalCache
	_, missing, gen := c.get([]id.RoomID{"!a:example.org"})
	if len(missing) != 1 {
		t.Fatalf("missing %v", missing)
	}
	c.forget("!a:example.org") // a write, done while the read was on its way
	c.put(gen, mapping.DirectPortal("!a:example.org", alice, bob, t0))
	if found, _, _ := c.get([]id.RoomID{"!a:example.org"}); len(found) != 0 {
		t.Error("a read older than a write was kept")
	}
	_, _, gen = c.get(nil)
	c.put(gen, mapping.DirectPortal("!a:example.org", alice, bob, t0))
	found, _, _ := c.get([]id.RoomID{"!a:example.org"})
	if p := found["!a:example.org"]; p == nil {
		t.Fatal("a read after the write was not kept")
	} else {
		p.Members[0].ReadUpTo = 99 // a copy: the cache is not changed through it
	}
	if found, _, _ := c.get([]id.RoomID{"!a:example.org"}); found["!a:example.org"].Members[0].ReadUpTo != 0 {
		t.Error("a caller changed the cached portal")
	}
}

// A group portal is found by its chat, one per chat; a member leaves it
// with their marks; a message sent to a chat is renamed by the stanza-id
// the room gave it (XEP-0359 §3), once.
func TestGroupPortalStore(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		muc := jid.MustParse("watch@chat.messina.lit")
		group := &mapping.Portal{RoomID: "!w:example.org", Kind: mapping.PortalGroup, JID: muc, CreatedAt: t0,
			Members: []mapping.Member{{ID: mapping.MatrixMember(alice)}, {ID: mapping.MatrixMember(dave)}}}
		must(t, s.PutPortal(ctx, group))
		p, err := s.GroupPortal(ctx, muc)
		if err != nil || p.RoomID != "!w:example.org" {
			t.Fatalf("GroupPortal = %+v, %v", p, err)
		}
		if _, err := s.GroupPortal(ctx, jid.MustParse("other@chat.messina.lit")); !errors.Is(err, mapping.ErrNotFound) {
			t.Errorf("GroupPortal of another chat: %v, want not found", err)
		}
		second := &mapping.Portal{RoomID: "!w2:example.org", Kind: mapping.PortalGroup, JID: muc, CreatedAt: t0,
			Members: []mapping.Member{{ID: mapping.MatrixMember(alice)}}}
		if err := s.PutPortal(ctx, second); err == nil {
			t.Error("a second portal of the same chat was stored")
		}
		ps, err := s.GroupPortals(ctx)
		if err != nil || len(ps) != 1 || ps[0].RoomID != "!w:example.org" {
			t.Errorf("GroupPortals = %+v, %v", ps, err)
		}
		must(t, s.PutPortal(ctx, mapping.DirectPortal("!d:example.org", dave, bob, t0)))
		if n, err := s.GroupsOf(ctx, dave); err != nil || n != 1 {
			t.Errorf("GroupsOf(dave) = %d, %v; want 1 (a direct portal is none)", n, err)
		}
		must(t, s.RemoveMember(ctx, "!w:example.org", mapping.MatrixMember(dave)))
		if n, err := s.GroupsOf(ctx, dave); err != nil || n != 0 {
			t.Errorf("GroupsOf(dave) after leaving = %d, %v; want 0", n, err)
		}
		if p, err := s.PortalByRoom(ctx, "!w:example.org"); err != nil || p.Member(mapping.MatrixMember(dave)) != nil || p.Member(mapping.MatrixMember(alice)) == nil {
			t.Errorf("after Dave left: %+v, %v", p, err)
		}
		m := newMessage(muc, "mxOURS", mapping.FromMatrix)
		m.RoomID = "!w:example.org"
		mustAdd(t, s, m)
		changed, err := s.SetRoomStanzaID(ctx, m.RowID, "room-sid-1")
		if err != nil || !changed {
			t.Fatalf("SetRoomStanzaID = %v, %v", changed, err)
		}
		if changed, err := s.SetRoomStanzaID(ctx, m.RowID, "room-sid-1"); err != nil || changed {
			t.Errorf("SetRoomStanzaID again = %v, %v; want no change", changed, err)
		}
		got, err := s.MessageByXMPPID(ctx, muc, "room-sid-1", mapping.FromMatrix)
		if err != nil || got.RowID != m.RowID || got.StanzaID != "room-sid-1" || got.OriginID != m.OriginID {
			t.Errorf("by the room's stanza-id: %+v, %v", got, err)
		}
	})
}

// A message belongs to a room and to the member who sent it: the Matrix
// user of one from Matrix, the person of one from XMPP in a direct portal,
// and in a group the occupant, whom the room's JID does not name.
func TestMessageSender(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		muc := jid.MustParse("watch@chat.messina.lit")
		occupant := mapping.OccupantMember(muc, "ZmFsc3RhZmY")
		for _, c := range []struct {
			m    *mapping.Message
			want mapping.MemberID
		}{
			{newMessage(jid.MustParse("bob@example.net/balcony"), "from-bob", mapping.FromXMPP), mapping.XMPPMember(bob)},
			{newMessage(bob, "to-bob", mapping.FromMatrix), mapping.MatrixMember(alice)},
			{func() *mapping.Message {
				m := newMessage(jid.MustParse("watch@chat.messina.lit/Falstaff"), "room-sid", mapping.FromXMPP)
				m.MXID, m.Sender = "", occupant
				return m
			}(), occupant},
		} {
			mustAdd(t, s, c.m)
			got, err := s.MessageByRow(ctx, c.m.RowID)
			if err != nil || got.Sender != c.want || got.SentBy() != c.want {
				t.Errorf("message %s: sender %q, %v; want %q", c.m.XMPPID, got.Sender, err, c.want)
			}
		}
	})
}

// A database made by the v11 schema, whose messages had no sender,
// upgrades to one where each has the sender SentBy would give it: in a
// group, the occupant as the nick named them then. On both engines.
func TestUpgradeFromV11(t *testing.T) {
	forEachUpgrade(t, "testdata/v11-latest.sql", func(t *testing.T, old *dbutil.Database) {
		for _, q := range []string{
			`INSERT INTO portal (room_id, kind, jid, created_at) VALUES ('!d:example.org', 'direct', 'bob@example.net', 0)`,
			`INSERT INTO portal (room_id, kind, jid, created_at) VALUES ('!g:example.org', 'group', 'watch@chat.messina.lit', 0)`,
			`INSERT INTO message (room_id, xmpp_id, peer_jid, peer_resource, direction, mxid, ts) VALUES ('!d:example.org', 'a', 'bob@example.net', 'balcony', 'xmpp', '@alice:example.org', 0)`,
			`INSERT INTO message (room_id, xmpp_id, peer_jid, direction, mxid, ts) VALUES ('!d:example.org', 'b', 'bob@example.net', 'matrix', '@alice:example.org', 0)`,
			`INSERT INTO message (room_id, xmpp_id, peer_jid, peer_resource, direction, ts) VALUES ('!g:example.org', 'c', 'watch@chat.messina.lit', 'Falstaff', 'xmpp', 0)`,
			`INSERT INTO message (room_id, xmpp_id, peer_jid, direction, mxid, ts) VALUES ('!g:example.org', 'd', 'watch@chat.messina.lit', 'matrix', '@dave:example.org', 0)`,
		} {
			_, err := old.Exec(t.Context(), q)
			must(t, err)
		}
	}, func(t *testing.T, db *Database) {
		for row, want := range []mapping.MemberID{"bob@example.net", "@alice:example.org", "watch@chat.messina.lit/Falstaff", "@dave:example.org"} {
			m, err := db.MessageByRow(t.Context(), int64(row+1))
			if err != nil || m.Sender != want {
				t.Errorf("row %d after the upgrade: sender %q, %v; want %q", row+1, m.Sender, err, want)
			}
		}
	})
}

// A correction in a chat names the message it corrects by its sender's
// id (XEP-0308), not the room's stanza-id: found among the room's newest
// RecentWindow messages only, the newest of the same origin-id winning,
// never another room's.
func TestRecentByOriginID(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		muc := jid.MustParse("watch@chat.messina.lit")
		add := func(room id.RoomID, i int, origin string) *mapping.Message {
			m := newMessage(muc, "sid-"+string(room)+strconv.Itoa(i), mapping.FromXMPP)
			m.RoomID, m.OriginID, m.TS = room, origin, t0.Add(time.Duration(i)*time.Second)
			mustAdd(t, s, m)
			return m
		}
		add("!w:example.org", 0, "first")
		for i := 1; i <= mapping.RecentWindow+10; i++ {
			add("!w:example.org", i, "o"+strconv.Itoa(i))
		}
		again := add("!w:example.org", mapping.RecentWindow+11, "o"+strconv.Itoa(mapping.RecentWindow+5))
		add("!other:example.org", 1000, "elsewhere")
		if m, err := s.RecentByOriginID(ctx, "!w:example.org", "o"+strconv.Itoa(mapping.RecentWindow+5)); err != nil || m.RowID != again.RowID {
			t.Errorf("a recent origin-id used twice: %+v, %v; want the newest, row %d", m, err, again.RowID)
		}
		if m, err := s.RecentByOriginID(ctx, "!w:example.org", "o20"); err != nil || m.OriginID != "o20" {
			t.Errorf("one inside the window: %+v, %v", m, err)
		}
		for _, c := range []struct {
			room   id.RoomID
			origin string
		}{{"!w:example.org", "first"}, {"!w:example.org", "o1"}, {"!w:example.org", ""}, {"!w:example.org", "elsewhere"}} {
			if m, err := s.RecentByOriginID(ctx, c.room, c.origin); !errors.Is(err, mapping.ErrNotFound) {
				t.Errorf("origin-id %q, past the window or of another room: %+v, %v; want not found", c.origin, m, err)
			}
		}
	})
}

// A committed "up to" ack moves its member's mark in the cached portal,
// forward only, as its SQL does (ackUpTo), and leaves the portal cached:
// a group's hundred members need not be read again at every receipt. A
// read that began before it is not stored.
func TestPortalCacheAdvances(t *testing.T) {
	var c portalCache
	group := &mapping.Portal{RoomID: "!g:example.org", Kind: mapping.PortalGroup, JID: jid.MustParse("watch@chat.messina.lit"),
		Members: []mapping.Member{{ID: mapping.MatrixMember(alice), ReadUpTo: 5}, {ID: mapping.MatrixMember(dave)}}}
	_, _, gen := c.get(nil)
	c.put(gen, group)
	_, _, before := c.get([]id.RoomID{"!g:example.org"})
	c.advance([]mapping.Ack{
		{Row: 3, Kind: mapping.AckDisplayed, UpTo: "!g:example.org", By: mapping.MatrixMember(alice)}, // older: stays 5
		{Row: 7, Kind: mapping.AckDisplayed, UpTo: "!g:example.org", By: mapping.MatrixMember(dave)},
		{Row: 6, Kind: mapping.AckDelivered, UpTo: "!g:example.org", By: mapping.MatrixMember(dave)},
		{Row: 9, Kind: mapping.AckDisplayed, UpTo: "!g:example.org", By: "@nobody:example.org"},
		{Row: 9, Kind: mapping.AckDisplayed, UpTo: "!other:example.org", By: mapping.MatrixMember(alice)},
		{Row: 2, Kind: mapping.AckDelivered},
	})
	found, _, _ := c.get([]id.RoomID{"!g:example.org", "!other:example.org"})
	p := found["!g:example.org"]
	if p == nil || len(found) != 1 {
		t.Fatalf("after the acks the cache holds %+v", found)
	}
	if a, d := p.Marks(mapping.MatrixMember(alice)), p.Marks(mapping.MatrixMember(dave)); a.ReadUpTo != 5 || d.ReadUpTo != 7 || d.DeliveredUpTo != 6 || len(p.Members) != 2 {
		t.Errorf("marks: Alice %+v, Dave %+v, members %d", a, d, len(p.Members))
	}
	c.put(before, group) // read before the acks: older than them
	if found, _, _ := c.get([]id.RoomID{"!g:example.org"}); found["!g:example.org"].Marks(mapping.MatrixMember(dave)).ReadUpTo != 7 {
		t.Error("a read older than the acks was kept")
	}
}

// How a puppet joins a chat (XEP-0045 §7.2.6: the nick and the room's
// password the bot's join was told) is kept on the member's row: set for
// one not a member yet, replaced when set again, kept by a PutPortal of
// the member, gone with the member.
func TestSetJoin(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		muc := jid.MustParse("watch@chat.messina.lit")
		room := id.RoomID("!w:example.org")
		must(t, s.PutPortal(ctx, &mapping.Portal{RoomID: room, Kind: mapping.PortalGroup, JID: muc, CreatedAt: t0,
			Members: []mapping.Member{{ID: mapping.MatrixMember(dave)}}}))
		member := func() *mapping.Member {
			t.Helper()
			p, err := s.PortalByRoom(ctx, room)
			if err != nil {
				t.Fatal(err)
			}
			return p.Member(mapping.MatrixMember(alice))
		}
		must(t, s.SetJoin(ctx, room, mapping.Member{ID: mapping.MatrixMember(alice), Nick: "Hero", Password: "cauldronburn"}))
		if m := member(); m == nil || m.Nick != "Hero" || m.Password != "cauldronburn" {
			t.Fatalf("after SetJoin: %+v", m)
		}
		must(t, s.PutPortal(ctx, &mapping.Portal{RoomID: room, Kind: mapping.PortalGroup, JID: muc, Members: []mapping.Member{{ID: mapping.MatrixMember(alice)}}}))
		if m := member(); m == nil || m.Nick != "Hero" || m.Password != "cauldronburn" {
			t.Errorf("after PutPortal of the member: %+v", m)
		}
		must(t, s.SetJoin(ctx, room, mapping.Member{ID: mapping.MatrixMember(alice), Nick: "Margaret"}))
		if m := member(); m == nil || m.Nick != "Margaret" || m.Password != "" {
			t.Errorf("after SetJoin again: %+v", m)
		}
		if p, _ := s.PortalByRoom(ctx, room); p.Member(mapping.MatrixMember(dave)) == nil || p.Member(mapping.MatrixMember(dave)).Nick != "" {
			t.Errorf("Dave's row changed: %+v", p.Members)
		}
		must(t, s.RemoveMember(ctx, room, mapping.MatrixMember(alice)))
		if m := member(); m != nil {
			t.Errorf("after RemoveMember: %+v", m)
		}
		if err := s.SetJoin(ctx, "!none:example.org", mapping.Member{ID: mapping.MatrixMember(alice), Nick: "x"}); err == nil {
			t.Error("SetJoin of a room that is no portal succeeded")
		}
	})
}

// A rejoin asks a chat for what was said since its portal's newest
// message: LastInRoom is that message's time, whichever way it went, and
// not found in a room with none.
func TestLastInRoom(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		_, err := s.LastInRoom(ctx, "!w:example.org")
		wantNotFound(t, "a room with no message", err)
		for i, dir := range []mapping.Direction{mapping.FromXMPP, mapping.FromMatrix, mapping.FromXMPP} {
			m := newMessage(jid.MustParse("watch@chat.messina.lit"), "sid"+strconv.Itoa(i), dir)
			m.RoomID, m.TS = "!w:example.org", t0.Add(time.Duration([]int{1, 3, 2}[i])*time.Second)
			mustAdd(t, s, m)
		}
		if got, err := s.LastInRoom(ctx, "!w:example.org"); err != nil || !got.Equal(t0.Add(3*time.Second)) {
			t.Errorf("LastInRoom = %s, %v; want %s", got, err, t0.Add(3*time.Second))
		}
	})
}
