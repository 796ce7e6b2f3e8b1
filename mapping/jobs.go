package mapping

import (
	"context"
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
	// byPair: the jobs of one direct portal, named by its pair (Matrix
	// user, XMPP person; pairLane) rather than by its room, which the
	// first of them may have to create and a later `open` may move: the
	// pair names the same direct room before it exists, while it does and
	// after it moved, so its sends keep one order throughout. A group
	// portal's room exists before anything is sent to it: byRoom.
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

// jobKind is what a kind of job is, declared once, beside its handler, by
// the file that owns it (register): the side it sends to, what orders it,
// the type its Payload decodes to (nil: the message row, Job.MessageID,
// alone), whether it asks a remote entity, and what carries it out.
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
	// run carries out one job of the kind, for RunJob.
	run func(*Bridge, context.Context, *Job) error
}

// AskTries is how many times a job that asks a remote entity is tried
// before it is given up: a server that times out or answers garbage that
// often will not tell us.
const AskTries = 3

// jobKinds is every kind the outbox carries out (RunJob), as registered.
var jobKinds = map[JobKind]jobKind{}

// register declares kind k, from a package-level var beside its handler:
// adding a kind then touches the file that owns it and no list elsewhere.
// A kind registered twice, or without a handler, panics when the package
// is initialised, at start-up: which of two declarations won would
// otherwise depend on the order of the files.
func register(k JobKind, kind jobKind) struct{} {
	if _, dup := jobKinds[k]; dup {
		panic(fmt.Sprintf("mapping: job kind %q registered twice", k))
	}
	if kind.run == nil {
		panic(fmt.Sprintf("mapping: job kind %q registered without a handler", k))
	}
	jobKinds[k] = kind
	return struct{}{}
}

// RunJob carries out one job, for the outbox, with its kind's handler. An
// error wrapping ErrPermanent means it will never succeed; any other, that
// its side failed and the job is to be retried. A kind the bridge does not
// know (a job left by another version) never will.
func (b *Bridge) RunJob(ctx context.Context, job *Job) error {
	kind, ok := jobKinds[job.Kind]
	if !ok {
		return fmt.Errorf("%w: unknown job kind %q", ErrPermanent, job.Kind)
	}
	return kind.run(b, ctx, job)
}

// Outbox carries out the jobs the core stores: package outbox, which
// decides when and how many at once; what each does is RunJob's, and
// which side and lane each takes its kind's (register).
type Outbox interface {
	// Queue hands over jobs the store has just stored (their IDs set),
	// so that they need not wait for a look at the store.
	Queue(jobs ...*Job)
	// Wake has the outbox try every side again now: one reconnected.
	Wake()
	// Rescan has the outbox read the store for due jobs now, rather than
	// at its next look: some may be there that Queue never saw.
	Rescan()
}

// noOutbox is the outbox until SetOutbox: jobs wait in the store for the
// first look of the one set later.
type noOutbox struct{}

func (noOutbox) Queue(...*Job) {}
func (noOutbox) Wake()         {}
func (noOutbox) Rescan()       {}

// SetOutbox connects the core to what runs its jobs.
func (b *Bridge) SetOutbox(o Outbox) { b.out = o }

func (b *core) queue(jobs ...*Job) { b.out.Queue(jobs...) }

// stored is told how each store write that stores jobs went, and returns
// its error. A write that failed may yet have committed (PostgreSQL took
// the COMMIT, and the answer was lost with the connection): its jobs are
// in the store but were never queued, and the retry finds the work done
// (a duplicate, a receipt already recorded, a transaction no longer
// pending) and queues nothing. So the first write that succeeds after a
// failure has the outbox read the store at once, not up to scanEvery
// later.
func (b *core) stored(err error) error {
	if err != nil {
		b.storeFailed.Store(true)
	} else if b.storeFailed.Load() && b.storeFailed.Swap(false) { // no write on the hot path
		b.out.Rescan()
	}
	return err
}

// Wake makes the outbox try every side again now, paused or not: a side
// reconnected.
func (b *Bridge) Wake() { b.out.Wake() }

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

// withPayload is a kind's handler that takes its payload decoded
// (payloadOf): one that does not decode fails for good before f runs.
func withPayload[T any](f func(*Bridge, context.Context, *Job, T) error) func(*Bridge, context.Context, *Job) error {
	return func(b *Bridge, ctx context.Context, job *Job) error {
		args, err := payloadOf[T](job)
		if err != nil {
			return err
		}
		return f(b, ctx, job, args)
	}
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
func (b *core) pairOf(job *Job) (id.UserID, jid.JID, jid.JID, error) {
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
