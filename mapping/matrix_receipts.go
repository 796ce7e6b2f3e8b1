package mapping

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// JobSendStanzas sends receipts and notifications to XMPP, in order.
const JobSendStanzas JobKind = "xmpp.stanzas"

// clockSkew is how much earlier than a portal's creation an event may be
// stamped and still count as after the user's invite: the homeserver's
// clock and the bridge's are not the same clock.
const clockSkew = time.Second

// receiptPlan gathers what one transaction's receipts cause, so that the
// store records it with the transaction, at once.
type receiptPlan struct {
	acks []Ack
	// out is every stanza the transaction's receipts raise, in order: one
	// job for them all, stored with the transaction.
	out []*OutMessage
	// delivered is what this transaction already acknowledged as
	// delivered, by row; readUpTo the row up to which each member of a
	// room read.
	delivered map[int64]bool
	readUpTo  map[Mark]int64
	// portals caches the lookups of one transaction (nil: not a portal):
	// its receipts are mostly about a few rooms.
	portals map[id.RoomID]*Portal
	puppets map[id.UserID]jid.JID
	// msgs are the messages the receipts speak of, looked up at once.
	msgs map[id.EventID]*Message
	// unsent tells, by portal, whether a message from XMPP is still on its
	// way to it; jobs are the receipts parked until it has arrived
	// (early_receipts.go).
	unsent map[id.RoomID]bool
	jobs   []*Job
	// reads is the newest m.read of each member of a room, expanded at
	// the end.
	reads map[Mark]*pendingRead
	order []Mark // the reads, as first read
	// typing is who types in each room, as of the typing events handled
	// so far (typingFromMatrix).
	typing map[id.RoomID]map[id.UserID]bool
}

func newReceiptPlan() *receiptPlan {
	return &receiptPlan{delivered: map[int64]bool{}, readUpTo: map[Mark]int64{},
		portals: map[id.RoomID]*Portal{}, puppets: map[id.UserID]jid.JID{}, unsent: map[id.RoomID]bool{}, reads: map[Mark]*pendingRead{}, typing: map[id.RoomID]map[id.UserID]bool{}}
}

func (b *receipts) planPortal(ctx context.Context, plan *receiptPlan, room id.RoomID) (*Portal, error) {
	if p, ok := plan.portals[room]; ok {
		return p, nil
	}
	p, err := b.store.PortalByRoom(ctx, room)
	if isNotFound(err) {
		p, err = nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("look up portal: %w", err)
	}
	plan.portals[room] = p
	return p, nil
}

// isDelivered tells whether by acknowledged m as delivered in this plan.
func (p *receiptPlan) isDelivered(m *Message, by MemberID) bool {
	return p.delivered[m.RowID] || m.RowID <= p.readUpTo[Mark{Room: m.RoomID, By: by}]
}

// stanzaJob is the JSON form of the stanzas of a JobSendStanzas.
type stanzaJob struct {
	ID        string       `json:"id"`
	From      string       `json:"from"`
	To        string       `json:"to"`
	Type      string       `json:"type,omitempty"`
	Acks      []XMPPAck    `json:"acks,omitempty"`
	Event     *stanzaEvent `json:"event,omitempty"`
	ChatState string       `json:"chat_state,omitempty"`
	// Error makes it the answer to a message the bridge could not carry.
	Error *StanzaError `json:"error,omitempty"`

	// Received and Displayed are how a job stored by a version before
	// Acks named its receipt (out reads them).
	Received  string `json:"received,omitempty"`
	Displayed string `json:"displayed,omitempty"`
}

// stanzaEvent is the JSON of a stanza's XEP-0022 notice. A job stored by
// a version before Acks kept its receipt events here too.
type stanzaEvent struct {
	ID                                       string
	Offline, Delivered, Displayed, Composing bool
}

// out is the stanza s stores, from and to parsed.
func (s stanzaJob) out(from, to jid.JID) *OutMessage {
	m := &OutMessage{ID: s.ID, From: from, To: to, Type: s.Type, Acks: s.Acks, ChatState: s.ChatState, Error: s.Error}
	old := func(raised bool, wire ReceiptWire, xid string) {
		if raised && xid != "" {
			m.Acks = append(m.Acks, XMPPAck{Wire: wire, ID: xid})
		}
	}
	old(true, WireReceived, s.Received)
	if e := s.Event; e != nil {
		old(e.Offline, WireEventOffline, e.ID)
		old(e.Delivered, WireEventDelivered, e.ID)
		old(e.Displayed, WireEventDisplayed, e.ID)
		if e.Composing || !e.Offline && !e.Delivered && !e.Displayed {
			m.Event = &EventNotice{ID: e.ID, Composing: e.Composing}
		}
	}
	old(true, WireMarkerDisplayed, s.Displayed)
	return m
}

func stanzasJob(out []*OutMessage) *Job {
	js := make([]stanzaJob, len(out))
	for i, m := range out {
		js[i] = stanzaJob{ID: m.ID, From: m.From.String(), To: m.To.String(), Type: m.Type, Acks: m.Acks, ChatState: m.ChatState, Error: m.Error}
		if e := m.Event; e != nil {
			js[i].Event = &stanzaEvent{ID: e.ID, Composing: e.Composing}
		}
	}
	payload, _ := json.Marshal(js)
	job := newJob(JobSendStanzas, about{}, 0, payload)
	job.Made = out // sendStanzas takes them as they are
	return job
}

// Messages and the notifications about them keep one order toward XMPP
// (JobSendToXMPP): <displayed/> must not overtake the <delivered/> before
// it.
var _ = register(JobSendStanzas, jobKind{side: SideXMPP, order: bySide, payload: []stanzaJob{}, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.receipts.sendStanzas(ctx, job) }})

// sendStanzas runs a JobSendStanzas: its stanzas, in one write, as
// stanzasJob made them or read back from the store.
func (b *receipts) sendStanzas(ctx context.Context, job *Job) error {
	stanzas, ok := job.Made.([]*OutMessage)
	if !ok {
		var err error
		if stanzas, err = storedStanzas(job); err != nil {
			return err
		}
	}
	// One write for them all. A retry after a failure part-way resends
	// the ones before it: a receipt twice is harmless, one lost is not.
	out := make([]*OutMessage, 0, len(stanzas))
	// Whose puppet each stanza comes from, once per address: the
	// permission and blocks in force now decide what still goes.
	users := map[string]id.UserID{}
	var refused error
	for _, m := range stanzas {
		from := m.From.String()
		user, ok := users[from]
		if !ok {
			user, _ = b.cfg.Identities.PuppetUser(m.From) // "": the component's own
			users[from] = user
		}
		if err := b.unreachable(user, m.To); err != nil {
			refused = err
			continue
		}
		out = append(out, m)
	}
	if len(out) == 0 && refused != nil {
		return refused
	}
	if err := b.xmpp.Send(ctx, out...); err != nil {
		return fmt.Errorf("send %d receipts to XMPP: %w", len(out), err)
	}
	b.count("receipts_to_xmpp", "sent")
	return nil
}

// storedStanzas decodes the stanzas of a JobSendStanzas read back from
// the store.
func storedStanzas(job *Job) ([]*OutMessage, error) {
	js, err := payloadOf[[]stanzaJob](job)
	if err != nil {
		return nil, err
	}
	out := make([]*OutMessage, 0, len(js))
	// A job's stanzas come from few puppets and go to few people: each
	// address is parsed (PRECIS, not cheap) once.
	parsed := map[string]jid.JID{}
	parse := func(a string) (jid.JID, error) {
		if j, ok := parsed[a]; ok {
			return j, nil
		}
		j, err := jid.Parse(a)
		parsed[a] = j
		return j, err
	}
	for _, s := range js {
		from, err1 := parse(s.From)
		to, err2 := parse(s.To)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: bad address in stanza job", ErrPermanent)
		}
		out = append(out, s.out(from, to))
	}
	return out, nil
}

// handleReceipt takes one receipt of a transaction: looked up, checked
// (mayCross), and its stanzas planned.
func (b *receipts) handleReceipt(ctx context.Context, rc Receipt, plan *receiptPlan) error {
	skip := func(reason Reason) error {
		b.count("matrix_receipt", reason)
		return nil
	}
	var portal *Portal
	if rc.Type.crosses() {
		var err error
		if portal, err = b.planPortal(ctx, plan, rc.Room); err != nil {
			return err
		}
	}
	msg := plan.msgs[rc.Event]
	_, reason := b.mayCross(rc, portal, msg)
	if reason == ReasonUnknownEvent {
		return b.parkUnknown(ctx, plan, portal, rc)
	} else if reason != "" {
		return skip(reason)
	}
	from, ok := plan.puppets[rc.User]
	if !ok {
		var err error
		if from, err = b.cfg.Identities.PuppetFrom(rc.User); err != nil {
			return skip(ReasonNotPortalUser)
		}
		plan.puppets[rc.User] = from
	}
	// Judged by what this member told XMPP so far.
	mark := Mark{Room: rc.Room, By: MatrixMember(rc.User)}
	marks := portal.Marks(mark.By)
	if !matrixReceiptKinds[rc.Type].upTo {
		if msg.RowID <= marks.DeliveredUpTo || msg.RowID <= marks.ReadUpTo && b.cfg.Receipts.ReadImpliesDelivered {
			return skip(ReasonDone)
		}
		return b.deliveryToXMPP(from, mark.By, msg, plan)
	}
	// m.read is "up to": of several in the transactions handled together,
	// only the newest of each member of a room is expanded (readsToXMPP),
	// one lookup of unread messages for the lot.
	pr := plan.reads[mark]
	if pr == nil {
		plan.order = append(plan.order, mark)
	} else {
		b.count("matrix_receipt", "read_coalesced")
	}
	if pr == nil || msg.RowID > pr.msg.RowID {
		plan.reads[mark] = &pendingRead{from: from, portal: portal, msg: msg}
	}
	return nil
}

// pendingRead is the newest m.read of a member of a room in the
// transactions handled.
type pendingRead struct {
	from   jid.JID
	portal *Portal
	msg    *Message
}

// readsToXMPP expands the newest m.read of each member of a room, once
// every receipt of the transactions has been seen, in the order they were
// first read.
func (b *receipts) readsToXMPP(ctx context.Context, plan *receiptPlan) error {
	upTo := make(map[Mark]int64, len(plan.order))
	for _, mark := range plan.order {
		r := plan.reads[mark]
		if r.msg.RowID <= r.portal.Marks(mark.By).ReadUpTo || r.msg.RowID <= plan.readUpTo[mark] {
			b.count("matrix_receipt", ReasonDone)
			continue
		}
		if r.portal.Kind == PortalGroup && kindMarkerDisplayed.asked(r.msg.Requests) && r.msg.StanzaID != "" {
			// In a group a read is one marker, for the newest markable
			// message up to it (groupDisplayed): the one read is. Nothing
			// to look up, however many members read at once.
			b.readToXMPP(r.from, mark.By, r.portal, r.msg, []*Message{r.msg}, plan)
			continue
		}
		upTo[mark] = r.msg.RowID
	}
	if len(upTo) == 0 {
		return nil
	}
	limit := b.cfg.Receipts.MaxDisplayedPerRead
	if limit <= 0 {
		limit = 50
	}
	// Only the newest few are told (the cap); all are marked (readToXMPP).
	// One lookup for all the rooms: a lookup a room cost more than the
	// rest of the m.read.
	unread, err := b.store.UnreadUpTo(ctx, upTo, limit)
	if err != nil {
		return err
	}
	for _, mark := range plan.order {
		if _, ok := upTo[mark]; ok {
			r := plan.reads[mark]
			b.readToXMPP(r.from, mark.By, r.portal, r.msg, unread[mark], plan)
		}
	}
	return nil
}

// to is where a receipt about msg goes: the bare JID (IM-NG: all of the
// person's clients), or the resource it came from if so configured.
func (b *core) to(msg *Message) jid.JID {
	if b.cfg.Receipts.ToFullJID && msg.PeerResource != "" {
		if full, err := msg.PeerJID.WithResource(msg.PeerResource); err == nil {
			return full
		}
	}
	return msg.PeerJID
}

func (b *receipts) deliveryToXMPP(from jid.JID, by MemberID, msg *Message, plan *receiptPlan) error {
	if !msg.DeliveredAt.IsZero() || plan.isDelivered(msg, by) {
		b.count("matrix_receipt", ReasonDone)
		return nil
	}
	plan.delivered[msg.RowID] = true
	plan.acks = append(plan.acks, Ack{Row: msg.RowID, Kind: AckDelivered, At: b.now()})
	plan.out = append(plan.out, b.deliveryStanzas(from, msg)...)
	b.count("matrix_receipt", "delivery")
	return nil
}

// readToXMPP expands an m.read, an "up to" marker (Matrix receipts module),
// into XEP-0022's per-message events: for every message up to the read one
// not displayed yet, oldest first, its delivery receipt if it was never
// sent, then one <displayed/> each (capped; the newest win), then one
// XEP-0333 <displayed/> for the newest markable message.
//
// unread are the newest messages of the room up to read not displayed yet
// (at most receipts.max_displayed_per_read of them), oldest first; by is
// the member who read.
func (b *receipts) readToXMPP(from jid.JID, by MemberID, portal *Portal, read *Message, unread []*Message, plan *receiptPlan) {
	mark := Mark{Room: portal.RoomID, By: by}
	var capped []*Message
	for _, m := range unread {
		if m.RowID > plan.readUpTo[mark] && !m.TS.Before(portal.CreatedAt.Add(-clockSkew)) {
			// Delivered already by an earlier read's watermark?
			if m.RowID <= portal.Marks(by).DeliveredUpTo {
				m.DeliveredAt = portal.CreatedAt
			}
			capped = append(capped, m)
		}
	}
	if len(capped) == 0 {
		b.count("matrix_receipt", ReasonDone)
		return
	}
	var out []*OutMessage
	if portal.Kind == PortalGroup {
		out = b.groupDisplayed(from, portal, capped)
	} else if b.cfg.Receipts.ReadImpliesDelivered {
		for _, m := range capped {
			if m.DeliveredAt.IsZero() && !plan.isDelivered(m, by) {
				out = append(out, b.deliveryStanzas(from, m)...)
			}
		}
	}
	if portal.Kind != PortalGroup {
		out = append(out, b.displayedStanzas(from, capped)...)
	}
	// Everything up to the read message is displayed now, and delivered
	// if reading implies it: one up-to ack each, however many messages.
	now := b.now()
	if b.cfg.Receipts.ReadImpliesDelivered {
		plan.acks = append(plan.acks, Ack{Row: read.RowID, Kind: AckDelivered, At: now, UpTo: portal.RoomID, By: by})
	}
	plan.acks = append(plan.acks, Ack{Row: read.RowID, Kind: AckDisplayed, At: now, UpTo: portal.RoomID, By: by})
	plan.out = append(plan.out, out...)
	plan.readUpTo[mark] = read.RowID
	b.count("matrix_receipt", "read")
	return
}

// prefetch looks up, in one query each, every event the transaction's
// receipts name and every room they are in: one lookup of each for a
// transaction instead of one per receipt.
func (b *receipts) prefetch(ctx context.Context, receipts []Receipt, plan *receiptPlan) error {
	evs := make([]id.EventID, 0, len(receipts))
	var rooms []id.RoomID
	for _, rc := range receipts {
		evs = append(evs, rc.Event)
		if _, ok := plan.portals[rc.Room]; !ok {
			plan.portals[rc.Room] = nil // not a portal unless found
			rooms = append(rooms, rc.Room)
		}
	}
	plan.msgs = map[id.EventID]*Message{}
	if len(evs) == 0 {
		return nil
	}
	portals, err := b.store.PortalsByRooms(ctx, rooms)
	if err != nil {
		return err
	}
	for room, p := range portals {
		plan.portals[room] = p
	}
	if plan.msgs, err = b.store.MessagesByEventIDs(ctx, evs); err != nil {
		return err
	}
	return nil
}

// offlineEvent raises XEP-0022's offline event for a message that asked for
// it, if the Matrix user is offline as it is bridged: the bridge is the
// puppets' server, and the message waits on the homeserver as in offline
// storage (XEP-0022 §3.2). Unknown presence raises nothing rather than a
// guess. The event tells the sender whether the user is online, which is
// theirs to share: only while their receipts reach XMPP (the bot's
// `receipts on`, which it also is), and only to a person who had a portal
// with them before this message (portalBefore), not to anyone who writes
// for the first time, and so before any presence is looked up.
func (b *receipts) offlineEvent(ctx context.Context, msg *Message, portalBefore bool) {
	if !portalBefore || !b.bot.tellsXMPP(msg.MXID, false) {
		b.count("receipts_to_xmpp", "offline_withheld")
		return
	}
	offline, err := b.matrix.Offline(ctx, msg.MXID)
	if err != nil || !offline {
		return
	}
	from, err := b.cfg.Identities.PuppetFrom(msg.MXID)
	if err != nil {
		return
	}
	job := stanzasJob([]*OutMessage{ackStanza(from, b.to(msg), TypeChat, WireEventOffline, msg.XMPPID)})
	if err := b.store.AddJobs(ctx, job); err != nil {
		b.log.Err(err).Msg("Failed to queue an offline event")
		return
	}
	b.queue(job)
	b.count("receipts_to_xmpp", "offline")
}
