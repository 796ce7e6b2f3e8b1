package mapping

import (
	"encoding/json"
	"fmt"
	"strconv"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// The sides a job sends to. While one is unreachable its jobs wait, and
// the other side's go on.
const (
	SideMatrix = "matrix"
	SideXMPP   = "xmpp"
)

// order is what the jobs of a kind keep their order within.
type order int

const (
	// noOrder: each job on its own, side by side with the others (within
	// the outbox's bound on what runs at once).
	noOrder order = iota
	// byRoom: the jobs of one portal room run one after the other.
	byRoom
	// byPair: the jobs of one (Matrix user, XMPP person) pair, so that
	// they follow the pair's sends to Matrix (pairLane).
	byPair
	// bySide: every job of the side ordered so runs in one line.
	bySide
	// byUser: the jobs about one Matrix user run one after the other.
	byUser
	// inRoom: no order among themselves, but the jobs of one room share
	// RoomSpread lanes: up to that many run at once, and a room flooded
	// with them holds no more of the outbox than that while other rooms'
	// jobs wait their turn.
	inRoom
)

// RoomSpread is how many jobs of an inRoom kind one room runs at once:
// enough that one room's burst of per-event receipts is not one request
// at a time, few enough to leave the outbox's other lanes to other rooms.
const RoomSpread = 8

// jobKind is what a kind of job is, declared once: the side it sends to,
// what orders it, the type its Payload decodes to (nil: the message row,
// Job.MessageID, alone), and whether it asks a remote entity.
type jobKind struct {
	side    string
	order   order
	payload any
	// asks: the job asks an XMPP entity the bridge does not run (a
	// person's server) and waits for its answer, which may never come.
	// Such jobs run in a small pool of their own, so that a dead or slow
	// server holds none of the places messages and receipts need, and
	// are tried AskTries times at most.
	asks bool
}

// AskTries is how many times a job that asks a remote entity is tried
// before it is given up: a server that times out or answers garbage that
// often will not tell us.
const AskTries = 3

// jobKinds declares every kind the outbox carries out (RunJob).
var jobKinds = map[JobKind]jobKind{
	// Messages reach the portal in order, and the portal is created once.
	JobSendToMatrix: {side: SideMatrix, order: byPair, payload: nil},
	// Behind the send it outran (early_receipts.go).
	JobReplayReceipt: {side: SideMatrix, order: byPair, payload: Receipt{}},
	JobJoin:          {side: SideMatrix, order: byRoom, payload: jobArgs{}},
	JobLeave:         {side: SideMatrix, order: byRoom, payload: jobArgs{}},
	JobNotice:        {side: SideMatrix, order: byRoom, payload: jobArgs{}},
	// After the pair's send that made the ghost (and named it after the
	// JID), so that the person's own name is the one that stays.
	JobGhostName: {side: SideMatrix, order: byPair, payload: jobArgs{}},
	// m.read only moves forward, and a burst's older reads stand aside
	// for the newest (receiptToMatrix).
	JobMatrixRead: {side: SideMatrix, order: byRoom, payload: receiptArgs{}},
	// Per event: a receipt or status about one message needs no order
	// with another's (MSC4089 receipts and status events are per event).
	JobMatrixDelivery: {side: SideMatrix, order: inRoom, payload: receiptArgs{}},
	JobMatrixStatus:   {side: SideMatrix, order: inRoom, payload: StatusArgs{}},
	// Messages and the notifications about them keep one order toward
	// XMPP: a composing notification must not overtake the message that
	// ends it, nor <displayed/> the <delivered/> before it.
	JobSendToXMPP:  {side: SideXMPP, order: bySide, payload: nil},
	JobSendStanzas: {side: SideXMPP, order: bySide, payload: []stanzaJob{}},
	// A request for a subscription is about nothing else the bridge
	// sends, and asking twice is harmless.
	JobSubscribe: {side: SideXMPP, order: noOrder, payload: subscribeArgs{}},
	// A user's profile changes reach each of their portals: looked up
	// once, in the order the changes came.
	JobPuppetProfile: {side: SideMatrix, order: byUser, payload: profileArgs{}},
	// Each reads the profile when it runs: an older one that runs late
	// still sends the newest.
	JobPresence: {side: SideXMPP, order: noOrder, payload: pairArgs{}},
	// Each reads the name when it runs, as JobPresence does; one pair's
	// writes in order, so that the newest name is the one that stays.
	JobRosterItem: {side: SideXMPP, order: byPair, payload: pairArgs{}, asks: true},
	// A person's vCard, fetched as the puppet of a user of theirs, then
	// given to their ghost, one change after the other.
	JobGhostVCard:   {side: SideXMPP, order: byPair, payload: pairArgs{}, asks: true},
	JobGhostProfile: {side: SideMatrix, order: byUser, payload: ghostProfileArgs{}},
	JobGhostAvatar:  {side: SideXMPP, order: byPair, payload: avatarArgs{}, asks: true},
	// In the pair's lane: the portal is created once, whatever comes.
	JobOpenPortal: {side: SideMatrix, order: byPair, payload: openArgs{}},
}

// Side is the server jobs of kind k send to. A kind the bridge does not
// know (a job left by another version) is the homeserver's, as before
// sides were declared; running it fails for good.
func (k JobKind) Side() string {
	if kind, ok := jobKinds[k]; ok {
		return kind.side
	}
	return SideMatrix
}

// Asks tells whether jobs of kind k ask a remote entity and wait for its
// answer (jobKind.asks).
func (k JobKind) Asks() bool { return jobKinds[k].asks }

// about is what a job concerns, for the lane its kind keeps.
type about struct {
	room id.RoomID
	mxid id.UserID
	peer jid.JID
}

// newJob makes a job of kind about a, in the lane its kind declares.
func newJob(kind JobKind, a about, row int64, payload []byte) *Job {
	j := &Job{Kind: kind, MessageID: row, Payload: payload}
	switch jobKinds[kind].order {
	case byRoom, inRoom:
		j.Lane = string(a.room)
	case byPair:
		if a.mxid != "" {
			j.Lane = pairLane(a.mxid, a.peer)
		}
	case bySide:
		j.Lane = kind.Side()
	case byUser:
		j.Lane = string(a.mxid)
	}
	return j
}

// Order is the lane j keeps its order in, within its side; "" needs no
// order: it runs side by side with the others. The kind decides: its
// room or pair is the one in Lane, and a kind ordered by side is so even
// in a job stored before its Lane said so.
func (j *Job) Order() string {
	kind := jobKinds[j.Kind]
	switch kind.order {
	case byRoom, byPair, byUser:
		return j.Lane
	case bySide:
		return kind.side
	case inRoom:
		return j.Lane + "#" + strconv.FormatInt(j.ID%RoomSpread, 10)
	}
	return ""
}

// pairLane is the lane of the sends of one (Matrix user, XMPP person) pair:
// its messages reach the portal in order, and the portal is created once.
func pairLane(mxid id.UserID, peer jid.JID) string {
	return string(mxid) + "|" + peer.String()
}

// payloadOf decodes the payload of job into the type its kind declares
// (jobKinds). One that does not decode never will: ErrPermanent.
func payloadOf[T any](job *Job) (T, error) {
	var v T
	if err := json.Unmarshal(job.Payload, &v); err != nil {
		return v, fmt.Errorf("%w: bad %s payload: %w", ErrPermanent, job.Kind, err)
	}
	return v, nil
}

// payloadJID parses a JID a payload carries.
func payloadJID(s string) (jid.JID, error) {
	j, err := jid.Parse(s)
	if err != nil {
		return jid.JID{}, fmt.Errorf("%w: bad jid in a payload: %w", ErrPermanent, err)
	}
	return j, nil
}

// pairArgs is the payload of the jobs about one (Matrix user, XMPP person)
// pair: her puppet's presence, vCard request or roster entry for him.
type pairArgs struct {
	MXID id.UserID `json:"mxid"`
	JID  string    `json:"jid"` // bare
}

// pairJob is a job of kind about the pair (mxid, peer).
func pairJob(kind JobKind, mxid id.UserID, peer jid.JID) *Job {
	payload, _ := json.Marshal(pairArgs{MXID: mxid, JID: peer.Bare().String()}) // strings only
	return newJob(kind, about{mxid: mxid, peer: peer}, 0, payload)
}

// pairOf decodes a pair job: the Matrix user, the person, and the full
// JID her puppet speaks from.
func (b *Bridge) pairOf(job *Job) (id.UserID, jid.JID, jid.JID, error) {
	args, err := payloadOf[pairArgs](job)
	if err != nil {
		return "", jid.JID{}, jid.JID{}, err
	}
	peer, err := payloadJID(args.JID)
	if err != nil {
		return "", jid.JID{}, jid.JID{}, err
	}
	from, err := b.cfg.Identities.PuppetFrom(args.MXID)
	if err != nil {
		return "", jid.JID{}, jid.JID{}, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	return args.MXID, peer, from, nil
}
