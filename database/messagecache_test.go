package database

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// The messages kept in memory are what their rows say, through every write
// that changes a row (insert, acks, the event id, the room's stanza-id) and
// after a restart, by every lookup that reads them.
func TestMessageCacheAnswersAsTheRows(t *testing.T) {
	forEachEngine(t, func(t *testing.T, _ engine, s *store) {
		ctx := t.Context()
		toXMPP := withEvent(newMessage(bob, "m1", mapping.FromMatrix), "$m1")
		fromXMPP := newMessage(jid.MustParse("bob@example.net/phone"), "x1", mapping.FromXMPP)
		fromXMPP.TS = t0.Add(456789 * time.Nanosecond) // kept to the millisecond
		fromXMPP.Requests = mapping.Requests{Receipt: true, Markable: true}
		long := withEvent(newMessage(bob, "m2", mapping.FromMatrix), "$m2")
		long.Body = strings.Repeat("long ", maxCachedBody)
		for _, m := range []*mapping.Message{toXMPP, fromXMPP, long} {
			mustAdd(t, s, m)
		}
		rows := []*mapping.Message{toXMPP, fromXMPP, long}
		same := func(step string) {
			t.Helper()
			for _, m := range rows {
				row, err := queryOne(ctx, s.db, scanMessage, getMessageByRowQuery, m.RowID)
				must(t, err)
				byRow, err := s.MessageByRow(ctx, m.RowID)
				must(t, err)
				got := []*mapping.Message{byRow}
				if row.EventID != "" {
					byEvent, err := s.MessageByEventID(ctx, row.EventID)
					must(t, err)
					many, err := s.MessagesByEventIDs(ctx, []id.EventID{row.EventID, "$none"})
					must(t, err)
					got = append(got, byEvent, many[row.EventID])
				}
				byStanza, err := s.MessageByXMPPID(ctx, row.PeerJID, row.XMPPID, row.Direction)
				must(t, err)
				key := mapping.XMPPKey{Peer: row.PeerJID.String(), ID: row.XMPPID}
				many, err := s.MessagesByXMPPIDs(ctx, row.Direction, []mapping.XMPPKey{key, {Peer: key.Peer, ID: "none"}})
				must(t, err)
				got = append(got, byStanza, many[key])
				for i, g := range got {
					if !reflect.DeepEqual(g, row) {
						t.Errorf("%s: lookup %d of row %d gave\n%+v\nwhere the row is\n%+v", step, i, m.RowID, g, row)
					}
				}
			}
		}
		hits, _ := s.messages.stats()
		same("stored")
		if after, _ := s.messages.stats(); after == hits {
			t.Fatal("no lookup found its message in memory")
		}

		_, err := s.Acknowledge(ctx, []mapping.Ack{
			{Row: toXMPP.RowID, Kind: mapping.AckDelivered, At: t0.Add(time.Second)},
			{Row: fromXMPP.RowID, Kind: mapping.AckDisplayed, At: t0.Add(2 * time.Second)},
		})
		must(t, err)
		same("acknowledged")

		must(t, s.SetMessageEventID(ctx, fromXMPP.RowID, "!other:example.org", "$x1"))
		same("on Matrix")

		renamed, err := s.SetRoomStanzaID(ctx, toXMPP.RowID, "room-sid")
		if err != nil || !renamed {
			t.Fatalf("SetRoomStanzaID = %t, %v", renamed, err)
		}
		same("renamed")
		_, err = s.MessageByXMPPID(ctx, bob, "m1", mapping.FromMatrix)
		wantNotFound(t, "the stanza id before the room's", err)

		// After a restart, the newest rows are read into memory.
		s.reopen()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if m, _ := s.messages.row(fromXMPP.RowID); m != nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatal("the newest messages were not read into memory after a restart")
			}
			time.Sleep(10 * time.Millisecond)
		}
		same("reopened")
		if m, _ := s.messages.row(long.RowID); m != nil {
			t.Error("a message with a body longer than maxCachedBody was kept")
		}
	})
}

// A read that began before a write to its row keeps nothing (it may have
// read the row before the write); one that began after does.
func TestMessageCacheKeepsNoReadOlderThanAWrite(t *testing.T) {
	c := newMessageCache()
	m := &mapping.Message{RowID: 7, EventID: "$a", XMPPID: "a", PeerJID: bob, Direction: mapping.FromMatrix}
	gen := c.begin()
	c.wrote([]int64{7}, false, func(*mapping.Message) {})
	c.put(gen, m)
	if got, _ := c.row(7); got != nil {
		t.Fatal("a read older than a write was kept")
	}
	c.put(c.begin(), m)
	got, _ := c.row(7)
	if got == nil {
		t.Fatal("a read after the write was not kept")
	}
	got.EventID = "$changed" // a copy: the cache is not changed through it
	if found, missing, _ := c.events([]id.EventID{"$a", "$changed"}); found["$a"] == nil || len(missing) != 1 {
		t.Errorf("a caller changed the cached message: found %v, missing %v", found, missing)
	}

	// Past maxTouched, what was touched is forgotten: reads begun before
	// keep nothing.
	gen = c.begin()
	for r := int64(100); r < 100+maxTouched; r += 1000 {
		rows := make([]int64, 1000)
		for i := range rows {
			rows[i] = r + int64(i)
		}
		c.wrote(rows, false, func(*mapping.Message) {})
	}
	c.put(gen, &mapping.Message{RowID: 8, EventID: "$b"})
	if got, _ := c.row(8); got != nil {
		t.Error("a read begun before touched was emptied was kept")
	}
}

// The cache keeps the newest maxCachedMessages: the one put longest ago
// goes first, and its ids find nothing.
func TestMessageCacheDropsTheOldest(t *testing.T) {
	c := newMessageCache()
	for r := int64(1); r <= maxCachedMessages+1; r++ {
		c.put(c.begin(), &mapping.Message{RowID: r, EventID: id.EventID("$" + strconv.FormatInt(r, 10)), XMPPID: "x", PeerJID: bob, Direction: mapping.FromMatrix})
	}
	if got, _ := c.row(1); got != nil {
		t.Error("the oldest message was kept past maxCachedMessages")
	}
	if got, _ := c.row(2); got == nil {
		t.Error("the second oldest was dropped")
	}
	if len(c.byRow) != maxCachedMessages || len(c.byEvent) != maxCachedMessages {
		t.Errorf("%d messages, %d events kept, want %d", len(c.byRow), len(c.byEvent), maxCachedMessages)
	}
	// All had the same stanza id: the newest owns it.
	if found, _, _ := c.stanzas(mapping.FromMatrix, []mapping.XMPPKey{{Peer: bob.String(), ID: "x"}}); len(found) != 1 {
		t.Error("the newest message's stanza id finds nothing")
	}
}
