package database

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// Each (message, kind) is acknowledged once: a second report, from another
// resource or device, is not new and stores no job.
func TestAcknowledgeOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		m1 := newMessage(bob, "m1", mapping.FromMatrix)
		m1.RoomID, m1.EventID = "!r:example.org", "$1"
		m2 := newMessage(bob, "m2", mapping.FromMatrix)
		m2.RoomID, m2.EventID = "!r:example.org", "$2"
		mustAdd(t, s, m1)
		mustAdd(t, s, m2)
		must(t, s.PutPortal(ctx, mapping.DirectPortal("!r:example.org", "@alice:example.org", bob, time.Time{})))
		at := time.UnixMilli(1700000000000)
		job := &mapping.Job{Kind: "matrix.delivery"}
		isNew, err := s.Acknowledge(ctx, []mapping.Ack{{Row: m1.RowID, Kind: mapping.AckDelivered, At: at, Job: job}})
		must(t, err)
		if !isNew[0] || job.ID == 0 || job.MessageID != m1.RowID {
			t.Fatalf("first ack: new %v, job %+v", isNew, job)
		}
		again := &mapping.Job{Kind: "matrix.delivery"}
		isNew, err = s.Acknowledge(ctx, []mapping.Ack{{Row: m1.RowID, Kind: mapping.AckDelivered, At: at.Add(time.Second), Job: again}})
		must(t, err)
		if isNew[0] || again.ID != 0 {
			t.Errorf("second ack: new %v, job %+v; want neither", isNew, again)
		}
		if n := len(allJobs(t, s)); n != 1 {
			t.Errorf("%d jobs, want the one delivery", n)
		}
		got, err := s.MessageByRow(ctx, m1.RowID)
		must(t, err)
		if !got.DeliveredAt.Equal(at) || !got.DisplayedAt.IsZero() {
			t.Errorf("delivered %v displayed %v; want the first time and none", got.DeliveredAt, got.DisplayedAt)
		}
		// Displayed is its own kind. The ghost's read position is a
		// watermark of the portal: forward only, new when it moves.
		isNew, err = s.Acknowledge(ctx, []mapping.Ack{
			{Row: m2.RowID, Kind: mapping.AckDisplayed, At: at},
			{Row: m2.RowID, Kind: mapping.AckDisplayed, At: at, UpTo: "!r:example.org", By: mapping.XMPPMember(bob)},
		})
		must(t, err)
		if !isNew[0] || !isNew[1] {
			t.Errorf("displayed up to m2: new %v, want both", isNew)
		}
		isNew, err = s.Acknowledge(ctx, []mapping.Ack{{Row: m1.RowID, Kind: mapping.AckDisplayed, At: at, UpTo: "!r:example.org", By: mapping.XMPPMember(bob)}})
		must(t, err)
		if isNew[0] {
			t.Error("an older displayed message moved the read position back")
		}
		if p, _ := s.PortalByRoom(ctx, "!r:example.org"); p.Marks(mapping.XMPPMember(bob)).ReadUpTo != m2.RowID || p.Marks(mapping.MatrixMember(alice)).ReadUpTo != 0 {
			t.Errorf("Bob read up to %d, Alice up to %d; want %d and 0", p.Marks(mapping.XMPPMember(bob)).ReadUpTo, p.Marks(mapping.MatrixMember(alice)).ReadUpTo, m2.RowID)
		}
	})
}

// FinishTxn records a transaction's acks with it, and a replay records
// nothing again.
func TestFinishTxnWithAcks(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		m := newMessage(bob, "m1", mapping.FromXMPP)
		mustAdd(t, s, m)
		_, err := s.PutTxn(ctx, &mapping.Txn{ID: "t1", Body: []byte("{}")})
		must(t, err)
		ackJob := &mapping.Job{Kind: "xmpp.receipt"}
		must(t, s.FinishTxn(ctx, "t1", []mapping.Ack{{Row: m.RowID, Kind: mapping.AckDisplayed, At: time.Now(), Job: ackJob}}, nil))
		if ackJob.ID == 0 {
			t.Error("the ack's job got no ID")
		}
		before := len(allJobs(t, s))
		must(t, s.FinishTxn(ctx, "t1", []mapping.Ack{{Row: m.RowID, Kind: mapping.AckDelivered, At: time.Now(), Job: &mapping.Job{Kind: "xmpp.receipt"}}}, nil))
		if n := len(allJobs(t, s)); n != before {
			t.Errorf("replayed FinishTxn stored %d jobs", n-before)
		}
		got, _ := s.MessageByRow(ctx, m.RowID)
		if got.DisplayedAt.IsZero() || !got.DeliveredAt.IsZero() {
			t.Errorf("displayed %v delivered %v; want displayed only", got.DisplayedAt, got.DeliveredAt)
		}
	})
}

// The "up to" ack of an m.read: every FromXMPP message of the room up to
// the row is marked, nothing after it and nothing from Matrix.
func TestAckUpTo(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		must(t, s.PutPortal(ctx, mapping.DirectPortal("!r:example.org", "@alice:example.org", bob, time.Time{})))
		var rows []int64
		for i, dir := range []mapping.Direction{mapping.FromXMPP, mapping.FromMatrix, mapping.FromXMPP, mapping.FromXMPP} {
			m := newMessage(bob, "u"+string(rune('0'+i)), dir)
			m.RoomID = "!r:example.org"
			m.Requests.Composing = i == 2
			mustAdd(t, s, m)
			rows = append(rows, m.RowID)
		}
		unread, err := unreadOf(ctx, s, "!r:example.org", rows[2], 10)
		must(t, err)
		if len(unread) != 2 || unread[0].RowID != rows[0] || unread[1].RowID != rows[2] {
			t.Fatalf("unread up to %d: %d messages", rows[2], len(unread))
		}
		if newest, _ := unreadOf(ctx, s, "!r:example.org", rows[2], 1); len(newest) != 1 || newest[0].RowID != rows[2] {
			t.Fatalf("the newest unread with limit 1: %d messages", len(newest))
		}
		if c, err := s.NewestComposable(ctx, "!r:example.org"); err != nil || c.RowID != rows[2] {
			t.Errorf("NewestComposable = %v, %v; want row %d", c, err, rows[2])
		}
		isNew, err := s.Acknowledge(ctx, []mapping.Ack{{Row: rows[2], Kind: mapping.AckDisplayed, At: time.Now(), UpTo: "!r:example.org", By: mapping.MatrixMember(alice), Job: &mapping.Job{Kind: "x"}}})
		must(t, err)
		if !isNew[0] {
			t.Error("up-to ack not new")
		}
		if unread, _ := unreadOf(ctx, s, "!r:example.org", rows[3], 10); len(unread) != 1 || unread[0].RowID != rows[3] {
			t.Errorf("after the ack, unread = %d messages, want only the last", len(unread))
		}
		if m, _ := s.MessageByRow(ctx, rows[1]); !m.DisplayedAt.IsZero() {
			t.Error("a message from Matrix was marked by an up-to ack")
		}
		if p, _ := s.PortalByRoom(ctx, "!r:example.org"); p.Marks(mapping.MatrixMember(alice)).ReadUpTo != rows[2] || p.Marks(mapping.MatrixMember(alice)).DeliveredUpTo != 0 {
			t.Errorf("watermarks read %d delivered %d, want %d and 0", p.Marks(mapping.MatrixMember(alice)).ReadUpTo, p.Marks(mapping.MatrixMember(alice)).DeliveredUpTo, rows[2])
		}
		// Putting the portal again keeps its watermarks.
		must(t, s.PutPortal(ctx, mapping.DirectPortal("!r:example.org", "@alice:example.org", bob, time.Time{})))
		if p, _ := s.PortalByRoom(ctx, "!r:example.org"); p.Marks(mapping.MatrixMember(alice)).ReadUpTo != rows[2] {
			t.Errorf("PutPortal reset the watermark to %d", p.Marks(mapping.MatrixMember(alice)).ReadUpTo)
		}
		isNew, err = s.Acknowledge(ctx, []mapping.Ack{{Row: rows[2], Kind: mapping.AckDisplayed, At: time.Now(), UpTo: "!r:example.org", By: mapping.MatrixMember(alice), Job: &mapping.Job{Kind: "x"}}})
		must(t, err)
		if isNew[0] {
			t.Error("repeated up-to ack was new")
		}
	})
}

// A burst of acks is recorded in a few statements and means what the same
// acks one by one would: the first report of each (row, kind) is new,
// a repeat in the same burst is not, and the new ones' jobs are stored in
// the order of their acks (the outbox runs them in that order).
func TestAcknowledgeBurst(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		const n = 600 // more than one statement's worth of rows and jobs
		var msgs []*mapping.Message
		for i := 0; i < n; i++ {
			m := newMessage(bob, fmt.Sprintf("b%d", i), mapping.FromMatrix)
			mustAdd(t, s, m)
			msgs = append(msgs, m)
		}
		// Row 5 was delivered before the burst.
		_, err := s.Acknowledge(ctx, []mapping.Ack{{Row: msgs[5].RowID, Kind: mapping.AckDelivered, At: time.Now()}})
		must(t, err)
		var acks []mapping.Ack
		var wantNew []bool
		for i, m := range msgs {
			acks = append(acks, mapping.Ack{Row: m.RowID, Kind: mapping.AckDelivered, At: time.Now(), Job: &mapping.Job{Kind: "matrix.delivery"}})
			wantNew = append(wantNew, i != 5)
			if i%100 == 0 {
				// Displayed is a kind of its own; a repeat is not new.
				acks = append(acks, mapping.Ack{Row: m.RowID, Kind: mapping.AckDisplayed, At: time.Now(), Job: &mapping.Job{Kind: "matrix.read"}},
					mapping.Ack{Row: m.RowID, Kind: mapping.AckDisplayed, At: time.Now(), Job: &mapping.Job{Kind: "matrix.read"}})
				wantNew = append(wantNew, true, false)
			}
		}
		extra := &mapping.Job{Kind: "xmpp.stanzas"}
		isNew, err := s.Acknowledge(ctx, acks, extra)
		must(t, err)
		var last int64
		for i, a := range acks {
			if isNew[i] != wantNew[i] {
				t.Fatalf("ack %d (row %d, %s): new %t, want %t", i, a.Row, a.Kind, isNew[i], wantNew[i])
			}
			if !isNew[i] {
				if a.Job.ID != 0 {
					t.Errorf("ack %d is not new but its job got ID %d", i, a.Job.ID)
				}
				continue
			}
			if a.Job.ID <= last || a.Job.MessageID != a.Row {
				t.Fatalf("ack %d: job %+v after job %d; want a rising ID about row %d", i, a.Job, last, a.Row)
			}
			last = a.Job.ID
		}
		if extra.ID <= last {
			t.Errorf("the extra job got ID %d, want one after the acks' jobs (%d)", extra.ID, last)
		}
		if got, want := len(allJobs(t, s)), n-1+n/100+1; got != want {
			t.Errorf("%d jobs stored, want %d", got, want)
		}
	})
}

// Several transactions finish as one, or, if one of them is not pending,
// not at all.
func TestFinishTxns(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		m := newMessage(bob, "m1", mapping.FromXMPP)
		mustAdd(t, s, m)
		for _, id := range []string{"t1", "t2", "t3"} {
			_, err := s.PutTxn(ctx, &mapping.Txn{ID: id, Body: []byte("{}")})
			must(t, err)
		}
		must(t, s.FinishTxn(ctx, "t3", nil, nil))
		job := &mapping.Job{Kind: "xmpp.stanzas"}
		err := s.FinishTxns(ctx, []string{"t1", "t2", "t3"}, []mapping.Ack{{Row: m.RowID, Kind: mapping.AckDelivered, At: time.Now()}}, []*mapping.Job{job})
		if !errors.Is(err, mapping.ErrNotPending) || job.ID != 0 {
			t.Fatalf("FinishTxns with a finished one: %v, job %+v; want ErrNotPending and nothing stored", err, job)
		}
		if pending, _ := s.PendingTxns(ctx, 0, 0); len(pending) != 2 {
			t.Fatalf("%d pending after the refused group, want 2", len(pending))
		}
		if got, _ := s.MessageByRow(ctx, m.RowID); !got.DeliveredAt.IsZero() {
			t.Fatal("the refused group recorded its ack")
		}
		must(t, s.FinishTxns(ctx, []string{"t1", "t2"}, []mapping.Ack{{Row: m.RowID, Kind: mapping.AckDelivered, At: time.Now()}}, []*mapping.Job{job}))
		if pending, _ := s.PendingTxns(ctx, 0, 0); len(pending) != 0 || job.ID == 0 {
			t.Errorf("after FinishTxns: %d pending, job %+v", len(pending), job)
		}
		if got, _ := s.MessageByRow(ctx, m.RowID); got.DeliveredAt.IsZero() {
			t.Error("the group's ack was not recorded")
		}
	})
}

// unreadOf is UnreadUpTo for Alice in one room.
func unreadOf(ctx context.Context, s contractStore, room id.RoomID, row int64, limit int) ([]*mapping.Message, error) {
	mark := mapping.Mark{Room: room, By: "@alice:example.org"}
	unread, err := s.UnreadUpTo(ctx, map[mapping.Mark]int64{mark: row}, limit)
	return unread[mark], err
}

// One UnreadUpTo answers for many rooms, each up to its own row and within
// the limit, across more rooms than one statement asks about.
func TestUnreadUpToManyRooms(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		const rooms = 2*unreadMarks + 7
		upTo := map[mapping.Mark]int64{}
		want := map[mapping.Mark][]int64{}
		for r := range rooms {
			room := id.RoomID(fmt.Sprintf("!r%d:example.org", r))
			peer := jid.MustParse(fmt.Sprintf("bob%d@xmpp.example", r))
			must(t, s.PutPortal(ctx, mapping.DirectPortal(room, "@alice:example.org", peer, time.Time{})))
			var rows []int64
			for i := range 4 {
				m := newMessage(peer, fmt.Sprintf("m%d", i), mapping.FromXMPP)
				m.RoomID = room
				mustAdd(t, s, m)
				rows = append(rows, m.RowID)
			}
			mark := mapping.Mark{Room: room, By: mapping.MatrixMember(alice)}
			switch r % 3 {
			case 0: // up to the third, newest two
				upTo[mark], want[mark] = rows[2], rows[1:3]
			case 1: // up to the first
				upTo[mark], want[mark] = rows[0], rows[:1]
			case 2: // read up to the third already: only the fourth is left
				_, err := s.Acknowledge(ctx, []mapping.Ack{{Row: rows[2], Kind: mapping.AckDisplayed, At: time.Now(), UpTo: room, By: mapping.MatrixMember(alice)}})
				must(t, err)
				upTo[mark] = rows[1] // behind the watermark: nothing
			}
		}
		got, err := s.UnreadUpTo(ctx, upTo, 2)
		must(t, err)
		for mark := range upTo {
			var rows []int64
			for _, m := range got[mark] {
				rows = append(rows, m.RowID)
			}
			if !slices.Equal(rows, want[mark]) {
				t.Errorf("%s: unread rows %v, want %v", mark.Room, rows, want[mark])
			}
		}
		if len(got) != len(want) {
			t.Errorf("%d rooms in the answer, want %d", len(got), len(want))
		}
	})
}
