package mapping

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/internal/retry"
)

// Kinds of sends toward Matrix that answer XMPP receipts.
const (
	JobMatrixDelivery JobKind = "matrix.delivery" // a delivery receipt, by row
	JobMatrixRead     JobKind = "matrix.read"     // the ghost's m.read, by row
	JobMatrixStatus   JobKind = "matrix.status"   // a failure status, by row
)

// StatusArgs is the payload of a JobMatrixStatus.
type StatusArgs struct {
	Retriable bool   `json:"retriable"`
	Condition string `json:"condition"`
	Text      string `json:"text,omitempty"`
	// ByBridge: the bridge itself could not carry the event (it was set
	// aside), not the XMPP side refusing it. Room and Event name it, as
	// it has no message row.
	ByBridge bool       `json:"by_bridge,omitempty"`
	Room     id.RoomID  `json:"room,omitempty"`
	Event    id.EventID `json:"event,omitempty"`
}

// xmppReceipt is a receipt from XMPP waiting to be checked and recorded.
type xmppReceipt struct {
	peer jid.JID   // bare sender (a chat's, for an occupant's marker)
	mxid id.UserID // the puppet's Matrix user it was addressed to
	xid  string    // the stanza id it is about
	kind *xmppReceiptKind
	// by is the occupant of a chat whose displayed marker it is, about
	// any message of the chat by its stanza-id ("" for one of a person).
	by MemberID
}

// receiptsFromXMPP handles what an incoming message says about earlier ones:
// receipts, notifications, markers, chat states, and errors answering a
// message the bridge sent. It is the XMPP → Matrix table of docs/protocols.md.
//
// Receipts are not looked up here, on the XMPP read loop, but gathered and
// checked and recorded by the core's loop a burst at a time (Run, FlushReceipts):
// one query and one write for many receipts instead of one each.
func (b *receipts) receiptsFromXMPP(ctx context.Context, log zerolog.Logger, mxid id.UserID, m *XMPPMessage) error {
	peer := m.From.Bare()
	var rs []xmppReceipt
	receiptsIn(m, func(kind *xmppReceiptKind, xid string) {
		rs = append(rs, xmppReceipt{peer: peer, mxid: mxid, xid: xid, kind: kind})
	})
	if len(rs) > 0 {
		ok, err := b.in.add(ctx, peer.String(), rs)
		if err != nil {
			return err
		} else if !ok {
			for _, r := range rs {
				b.count("xmpp_receipt", ReasonOverBudget)
				log.Debug().Str("receipt", string(r.kind.wire)).Str("for", r.xid).Msg("Refused a receipt past its sender's budget")
			}
		}
		b.poke()
	}
	return b.typingFromXMPP(ctx, log, mxid, peer, m)
}

// markerInGroup takes an occupant's XEP-0333 displayed marker in the chat
// room: "up to" the message it names by the room's stanza-id (XEP-0333
// §3, "groupchat"), whoever sent it, so it becomes the occupant's ghost's
// m.read. It waits in the intake with the other receipts (flushReceipts).
func (b *receipts) markerInGroup(ctx context.Context, log zerolog.Logger, room jid.JID, by MemberID, xid string) {
	ok, err := b.in.add(ctx, string(by), []xmppReceipt{{peer: room, xid: xid, kind: kindMarkerDisplayed, by: by}})
	if err != nil || !ok {
		b.count("xmpp_receipt", ReasonOverBudget)
		log.Debug().Err(err).Str("for", xid).Msg("Refused a marker past its occupant's budget")
		return
	}
	b.poke()
}

// ourMessage finds the message the bridge sent to peer with stanza id xid
// and checks it against mayAnswer.
func (b *receipts) ourMessage(ctx context.Context, peer jid.JID, mxid id.UserID, xid string, asked func(Requests) bool) (*Message, Reason, error) {
	msg, err := b.store.MessageByXMPPID(ctx, peer, xid, FromMatrix)
	if isNotFound(err) {
		msg = nil
	} else if err != nil {
		return nil, "", fmt.Errorf("look up message %q to %s: %w", xid, peer, err)
	}
	return msg, mayAnswer(msg, mxid, asked), nil
}

// errorFromXMPP turns an error answering a message the bridge sent into a
// failure status on its Matrix event (RFC 6120 §8.3.2: "wait" is worth
// retrying, the other types are not).
func (b *receipts) errorFromXMPP(ctx context.Context, log zerolog.Logger, mxid id.UserID, m *XMPPMessage) error {
	if m.ID == "" || m.Error == nil {
		b.count("xmpp_error", ReasonUnknownID)
		return nil
	}
	msg, reason, err := b.ourMessage(ctx, m.From.Bare(), mxid, m.ID, nil)
	if err != nil {
		return err
	}
	if reason != "" {
		log.Debug().Str("reason", string(reason)).Msg("Ignored an error stanza")
		b.count("xmpp_error", reason)
		return nil
	}
	payload, _ := json.Marshal(StatusArgs{Retriable: m.Error.Type == "wait", Condition: m.Error.Condition, Text: m.Error.Text})
	job := newJob(JobMatrixStatus, about{room: msg.RoomID}, msg.RowID, payload)
	if err := b.store.AddJobs(ctx, job); err != nil {
		return fmt.Errorf("queue failure status of %s: %w", msg.EventID, err)
	}
	b.count("xmpp_error", "status")
	b.queue(job)
	return nil
}

// receiptArgs is what a receipt job needs of its message, carried in the
// job so that sending it reads nothing back.
type receiptArgs struct {
	Room  id.RoomID  `json:"r"`
	Event id.EventID `json:"e"`
	Peer  string     `json:"p"`
	// By is the occupant of a chat whose ghost's m.read it is ("": the
	// person's of Peer).
	By MemberID `json:"b,omitempty"`
}

// receiptJob is a job of kind telling Matrix of a receipt about msg by
// member by ("": the person of a direct portal): its payload for the
// store, and the same as the send takes it in memory (Job.Made), so that
// a receipt sent soon after in the same process is not decoded again.
func receiptJob(kind JobKind, room id.RoomID, msg *Message, by MemberID) *Job {
	args := receiptArgs{Room: msg.RoomID, Event: msg.EventID, Peer: msg.PeerJID.String(), By: by}
	payload, _ := json.Marshal(args) // strings only
	job := newJob(kind, about{room: room}, msg.RowID, payload)
	job.Made = receiptMade{msg: &Message{RowID: msg.RowID, RoomID: msg.RoomID, EventID: msg.EventID, PeerJID: msg.PeerJID}, by: by}
	return job
}

// receiptMade is what receiptToMatrix reads of a receipt job's payload,
// as receiptJob made it: the message (only what the payload names) and
// the member.
type receiptMade struct {
	msg *Message
	by  MemberID
}

// m.read only moves forward, and a burst's older reads stand aside for the
// newest (receiptToMatrix). A receipt or status about one message needs
// no order with another's (MSC4089 receipts and status events are per
// event): inRoom.
var (
	_ = register(JobMatrixRead, jobKind{side: SideMatrix, order: byRoom, payload: receiptArgs{}, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.receipts.receiptToMatrix(ctx, job) }})
	_ = register(JobMatrixDelivery, jobKind{side: SideMatrix, order: inRoom, payload: receiptArgs{}, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.receipts.receiptToMatrix(ctx, job) }})
	_ = register(JobMatrixStatus, jobKind{side: SideMatrix, order: inRoom, payload: StatusArgs{}, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.receipts.receiptToMatrix(ctx, job) }})
)

// receiptToMatrix carries out one of the jobs above.
func (b *receipts) receiptToMatrix(ctx context.Context, job *Job) error {
	var msg *Message
	var args receiptArgs
	by := MemberID("")
	if made, ok := job.Made.(receiptMade); ok {
		msg, by = made.msg, made.by
	} else if job.Kind != JobMatrixStatus && json.Unmarshal(job.Payload, &args) == nil && args.Event != "" {
		peer, err := jid.Parse(args.Peer)
		if err != nil {
			return fmt.Errorf("%w: bad peer in receipt job: %w", ErrPermanent, err)
		}
		msg = &Message{RowID: job.MessageID, RoomID: args.Room, EventID: args.Event, PeerJID: peer}
		by = args.By
	} else if st, err := payloadOf[StatusArgs](job); job.Kind == JobMatrixStatus && job.MessageID == 0 {
		if err != nil {
			return err
		}
		msg = &Message{RoomID: st.Room, EventID: st.Event} // an event set aside
	} else {
		var err error
		if msg, err = b.store.MessageByRow(ctx, job.MessageID); err != nil {
			return fmt.Errorf("load message %d: %w", job.MessageID, err)
		}
	}
	if msg.EventID == "" || msg.RoomID == "" {
		return fmt.Errorf("%w: message %d has no Matrix event", ErrPermanent, msg.RowID)
	}
	// The payload names no user: a receipt of a blocked domain's person
	// goes no further, whoever's portal it is in.
	if err := b.unreachable(msg.MXID, msg.PeerJID); err != nil {
		return err
	}
	ghost := b.cfg.Identities.Ghost(msg.PeerJID)
	if by == "" {
		by = XMPPMember(msg.PeerJID)
	} else if room, key, ok := by.Occupant(); ok {
		var err error
		if ghost, err = b.cfg.Identities.OccupantGhost(room, key); err != nil {
			return fmt.Errorf("%w: %w", ErrPermanent, err)
		}
	}
	switch job.Kind {
	case JobMatrixDelivery:
		return b.matrix.SendDelivery(ctx, msg.RoomID, ghost, msg.EventID)
	case JobMatrixRead:
		// m.read is "up to" and only moves forward: a burst of markers
		// became one job per flush (FlushReceipts), and of the jobs of
		// several flushes only the newest is posted. Each job moved the
		// portal's watermark, so a watermark past this row means a newer
		// job follows in this lane: one look at the portal by its key,
		// whatever the room's history.
		portal, err := b.store.PortalByRoom(ctx, msg.RoomID)
		if err != nil {
			return fmt.Errorf("look up portal %s: %w", msg.RoomID, err)
		}
		if portal.Marks(by).ReadUpTo > msg.RowID {
			b.count("matrix_read", "coalesced")
			return nil
		}
		return b.matrix.SendRead(ctx, msg.RoomID, ghost, msg.EventID)
	default:
		var args StatusArgs
		if err := json.Unmarshal(job.Payload, &args); err != nil {
			return fmt.Errorf("%w: bad status payload: %w", ErrPermanent, err)
		}
		return b.matrix.SendFailure(ctx, msg.RoomID, msg.EventID, args)
	}
}

// FlushReceipts checks the receipts gathered since the last call against
// the messages they name, all looked up in one query, and records the valid
// ones with their jobs in one transaction. On a store error they wait for
// the next call, and it returns false: nothing accepted is lost, and the
// log says so once per outage. Run calls it when woken; a test may call
// it instead, to record what was taken so far at once.
func (b *Bridge) FlushReceipts(ctx context.Context) bool { return b.receipts.flushReceipts(ctx) }

func (b *receipts) flushReceipts(ctx context.Context) (ok bool) {
	rs, more := b.in.take()
	if len(rs) == 0 {
		return true
	}
	b.flushing.Store(int64(len(rs)))
	defer b.flushing.Store(0)
	failed := false
	defer func() {
		if more && !failed {
			b.poke() // the next burst, after this one
		}
	}()
	wait := func(err error, what string) {
		failed = true
		b.in.putBack(rs)
		if ctx.Err() != nil {
			return
		}
		// Once per outage: the receipts wait, and Run tries again every
		// flushEvery meanwhile.
		b.flushMu.Lock()
		say := b.flushFailing.Fail(b.now())
		b.flushMu.Unlock()
		if say != retry.First {
			b.log.Debug().Err(err).Int("receipts", len(rs)).Msg("Failed again to " + what + " receipts from XMPP")
			return
		}
		b.log.Err(err).Int("receipts", len(rs)).Msg("Failed to " + what + " receipts from XMPP; they wait, and are tried again every second")
	}
	keys := make([]XMPPKey, len(rs))
	for i, r := range rs {
		keys[i] = XMPPKey{Peer: r.peer.String(), ID: r.xid}
	}
	msgs, err := b.store.MessagesByXMPPIDs(ctx, FromMatrix, keys)
	if err != nil {
		wait(err, "look up")
		return false
	}
	// An occupant's marker may name a message of anyone in the chat.
	var fromGroups map[XMPPKey]*Message
	var groupKeys []XMPPKey
	for i, r := range rs {
		if r.by != "" && msgs[keys[i]] == nil {
			groupKeys = append(groupKeys, keys[i])
		}
	}
	if len(groupKeys) > 0 {
		if fromGroups, err = b.store.MessagesByXMPPIDs(ctx, FromXMPP, groupKeys); err != nil {
			wait(err, "look up")
			return false
		}
	}
	acks := make([]Ack, 0, len(rs))
	// The newest message of each room each member marks displayed in the
	// burst: its m.read is the one their ghost posts (forward only, "up
	// to").
	read := map[Mark]*Message{}
	for i := range rs {
		r := &rs[i]
		msg := msgs[keys[i]]
		if r.by != "" {
			if msg == nil {
				msg = fromGroups[keys[i]]
			}
			if msg == nil || msg.EventID == "" {
				b.count("xmpp_receipt", ReasonUnknownID)
				continue
			}
			// Only the occupant's mark moves (below): the message's own
			// displayed_at is not one reader's to set.
			mark := Mark{Room: msg.RoomID, By: r.by}
			if newest := read[mark]; newest == nil || msg.RowID > newest.RowID {
				read[mark] = msg
			}
			b.count("xmpp_receipt", "group_marker")
			continue
		}
		if reason := mayAnswer(msg, r.mxid, r.kind.asked); reason != "" {
			b.log.Debug().Str("receipt", string(r.kind.wire)).Str("for", r.xid).Str("from", keys[i].Peer).Str("reason", string(reason)).Msg("Ignored a receipt")
			b.count("xmpp_receipt", reason)
			continue
		}
		ack := Ack{Row: msg.RowID, Kind: r.kind.ack, At: b.now()}
		if r.kind.job == JobMatrixRead {
			// Recorded on the row (once per message and kind); posted
			// once per room below.
			mark := Mark{Room: msg.RoomID, By: XMPPMember(r.peer)}
			if newest := read[mark]; newest == nil || msg.RowID > newest.RowID {
				read[mark] = msg
			}
		} else {
			ack.Job = receiptJob(r.kind.job, msg.RoomID, msg, "")
		}
		acks = append(acks, ack)
		b.count("xmpp_receipt", Reason(string(r.kind.wire)))
	}
	for mark, msg := range read {
		// New only if it moves the member's watermark: an older marker
		// after a newer one raises nothing.
		by := MemberID("") // a direct portal's person: the payload's peer
		if _, _, ok := mark.By.Occupant(); ok {
			by = mark.By
		}
		acks = append(acks, Ack{Row: msg.RowID, Kind: AckDisplayed, At: b.now(), UpTo: mark.Room, By: mark.By,
			Job: receiptJob(JobMatrixRead, mark.Room, msg, by)})
	}
	if len(acks) == 0 {
		return true
	}
	isNew, err := b.store.Acknowledge(ctx, acks)
	if b.stored(err) != nil {
		wait(err, "record")
		return false
	}
	b.flushMu.Lock()
	said, _, _ := b.flushFailing.End()
	b.flushMu.Unlock()
	if said {
		b.log.Info().Msg("Receipts from XMPP are recorded again")
	}
	jobs := make([]*Job, 0, len(acks))
	for i := range acks {
		if isNew[i] && acks[i].Job != nil {
			jobs = append(jobs, acks[i].Job)
		}
	}
	b.queue(jobs...)
	for i, n := range isNew {
		if !n && acks[i].UpTo == "" {
			b.count("xmpp_receipt", ReasonDuplicate)
			b.log.Debug().Int64("row", acks[i].Row).Str("kind", string(acks[i].Kind)).Msg("Receipt already translated")
		}
	}
	return true
}
