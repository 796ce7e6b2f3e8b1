package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// Outbox carries out the jobs the core stores: package outbox, which
// decides when and how many at once; what each does is RunJob's, and
// which side and lane each takes its kind's (jobs.go).
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

func (b *Bridge) queue(jobs ...*Job) { b.out.Queue(jobs...) }

// stored is told how each store write that stores jobs went, and returns
// its error. A write that failed may yet have committed (PostgreSQL took
// the COMMIT, and the answer was lost with the connection): its jobs are
// in the store but were never queued, and the retry finds the work done
// (a duplicate, a receipt already recorded, a transaction no longer
// pending) and queues nothing. So the first write that succeeds after a
// failure has the outbox read the store at once, not up to scanEvery
// later.
func (b *Bridge) stored(err error) error {
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

// The kinds of sends the outbox carries out.
const (
	JobSendToMatrix JobKind = "matrix.send"       // a FromXMPP message, by row
	JobSendToXMPP   JobKind = "xmpp.send"         // a FromMatrix message, by row
	JobJoin         JobKind = "matrix.join"       // a ghost accepts an invite
	JobLeave        JobKind = "matrix.leave"      // a ghost declines or leaves
	JobNotice       JobKind = "matrix.notice"     // a ghost explains something
	JobGhostName    JobKind = "matrix.ghost_name" // a ghost takes its person's name
)

// jobArgs is the payload of the jobs that are not about one message row.
type jobArgs struct {
	Room   id.RoomID `json:"room"`
	User   id.UserID `json:"user"`
	Reason string    `json:"reason,omitempty"`
	Body   string    `json:"body,omitempty"`
	HTML   string    `json:"html,omitempty"` // a notice's formatted body
}

func argsJob(kind JobKind, args jobArgs) *Job {
	payload, _ := json.Marshal(args) // cannot fail: strings only
	return newJob(kind, about{room: args.Room}, 0, payload)
}

// RunJob carries out one job, for the outbox. An error wrapping
// ErrPermanent means it will never succeed; any other, that its side
// failed and the job is to be retried.
func (b *Bridge) RunJob(ctx context.Context, job *Job) error {
	switch job.Kind {
	case JobSendToMatrix:
		return b.sendToMatrix(ctx, job.MessageID)
	case JobSendToXMPP:
		return b.sendToXMPP(ctx, job.MessageID)
	case JobMatrixDelivery, JobMatrixRead, JobMatrixStatus:
		return b.receiptToMatrix(ctx, job)
	case JobSendStanzas:
		return b.sendStanzas(ctx, job)
	case JobSubscribe:
		return b.sendSubscribe(ctx, job)
	case JobReplayReceipt:
		return b.replayReceipt(ctx, job)
	case JobPuppetProfile:
		return b.updateProfile(ctx, job)
	case JobPresence:
		return b.sendPresence(ctx, job)
	case JobRosterItem:
		return b.setRosterItem(ctx, job)
	case JobGhostVCard:
		return b.fetchVCard(ctx, job)
	case JobGhostAvatar:
		return b.fetchAvatar(ctx, job)
	case JobGhostProfile:
		return b.setGhostProfile(ctx, job)
	case JobOpenPortal:
		return b.openPortal(ctx, job)
	}
	args, err := payloadOf[jobArgs](job)
	if err != nil {
		return err
	}
	switch job.Kind {
	case JobJoin:
		return b.matrix.Join(ctx, args.Room, args.User)
	case JobLeave:
		return b.matrix.Leave(ctx, args.Room, args.User, args.Reason)
	case JobNotice:
		return b.matrix.SendNotice(ctx, args.Room, args.User, args.Body, args.HTML, "notice-"+strconv.FormatInt(job.ID, 10))
	case JobGhostName:
		peer, err := b.cfg.Identities.GhostJID(args.User)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPermanent, err)
		}
		if err := b.unreachable("", peer); err != nil {
			return err
		}
		if err := b.matrix.SetGhostName(ctx, args.User, args.Body); err != nil {
			return err
		}
		return b.namedByNick(ctx, peer)
	}
	return fmt.Errorf("%w: unknown job kind %q", ErrPermanent, job.Kind)
}

// mayReach is the one rule of whom a send may still be for: a Matrix user
// who may use the bridge (bridge.permissions) and an XMPP person of a
// domain not blocked (xmpp.blocked_domains), judged when the send runs,
// not when it was queued, so that a permission revoked or a domain
// blocked stops what existing portals owe as well as what comes in. It
// returns "" if they may, or why not; mxid "" (a job that does not say
// whose it is) is judged by peer alone.
func (b *Bridge) mayReach(mxid id.UserID, peer jid.JID) Reason {
	if b.blocked(peer) {
		return ReasonBlockedDomain
	}
	if mxid != "" && !b.cfg.Permissions.Allowed(mxid) {
		return ReasonNotPermitted
	}
	return ""
}

// unreachable is the error of a send between mxid and peer that mayReach
// refuses, counted as send_refused: it is dropped, never retried. nil if
// it may go.
func (b *Bridge) unreachable(mxid id.UserID, peer jid.JID) error {
	reason := b.mayReach(mxid, peer)
	if reason == "" {
		return nil
	}
	b.count("send_refused", reason)
	return fmt.Errorf("%w: no send between %s and %s: %s", ErrPermanent, mxid, peer, reason)
}

// sendToMatrix posts a message from XMPP into its portal, creating the
// portal first if this is the pair's first message.
func (b *Bridge) sendToMatrix(ctx context.Context, row int64) error {
	msg, err := b.store.MessageByRow(ctx, row)
	if err != nil {
		return fmt.Errorf("load message %d: %w", row, err)
	}
	if msg.EventID != "" {
		return nil // sent before a crash, noted, job not yet removed
	}
	mxid := msg.MXID
	ghost := b.cfg.Identities.Ghost(msg.PeerJID)
	portalBefore := msg.RoomID != "" // a portal stood when the message came
	portal, err := b.ensurePortal(ctx, mxid, msg.PeerJID)
	if err != nil {
		return err
	}
	// The transaction id is the row: a retry after a crash between the
	// send and SetMessageEventID yields the same event, not a second one.
	var ev id.EventID
	if msg.RelKind != RelNone {
		ev, err = b.relationToMatrix(ctx, portal.RoomID, ghost, msg, relationTxn(row))
	} else {
		ev, err = b.matrix.SendMessage(ctx, portal.RoomID, ghost, b.matrixText(msg.Body), relationTxn(row))
	}
	if errors.Is(err, ErrTooLarge) {
		return b.tooLarge(ctx, msg, fmt.Errorf("send message %d to %s: %w", row, portal.RoomID, err))
	} else if err != nil {
		return fmt.Errorf("send message %d to %s: %w", row, portal.RoomID, err)
	}
	if err := b.store.SetMessageEventID(ctx, row, portal.RoomID, ev); err != nil {
		return fmt.Errorf("note event %s of message %d: %w", ev, row, err)
	}
	b.count("bridged", "to_matrix")
	if msg.Requests.Offline {
		b.offlineEvent(ctx, msg, portalBefore)
	}
	return nil
}

// ErrTooLarge marks a send the homeserver refused for its size (HTTP 413,
// M_TOO_LARGE); it comes wrapped with ErrPermanent.
var ErrTooLarge = errors.New("too large for the homeserver")

// tooLarge answers the sender of msg, which the homeserver refused (err,
// wrapping ErrTooLarge) for its size, with a stanza error, so that the
// message is not lost without a word: RFC 6120 §8.3.3.9 <not-acceptable/>
// ("does not meet criteria defined by the recipient or server"), of type
// modify since a shorter message would pass, which XEP-0086 gives the
// legacy code 406 that clients older than the RFC's conditions still
// show. It goes the way of receipts, a job of the XMPP side, without the
// body (RFC 6120 §8.2 leaves it out at will; this one is too large). It
// returns err, the send's own failure, unless the answer could not be
// stored, for the send to be tried again.
func (b *Bridge) tooLarge(ctx context.Context, msg *Message, err error) error {
	b.count("xmpp_message", ReasonTooLarge)
	if msg.XMPPID == "" || msg.Direction != FromXMPP {
		return err // nothing to answer: no id to answer, or not from XMPP
	}
	from, perr := b.cfg.Identities.Puppet(msg.MXID)
	if perr != nil {
		return err
	}
	to := msg.PeerJID
	if msg.PeerResource != "" {
		if full, rerr := msg.PeerJID.WithResource(msg.PeerResource); rerr == nil {
			to = full
		}
	}
	answer := stanzasJob([]*OutMessage{{ID: msg.XMPPID, From: from, To: to, Type: TypeError, Error: &StanzaError{
		Type: "modify", Condition: "not-acceptable",
		Text: "This message is too large for the Matrix homeserver and was not delivered; send it shorter or in parts.",
	}}})
	if aerr := b.store.AddJobs(ctx, answer); aerr != nil {
		return fmt.Errorf("answer the sender of message %d, too large: %w", msg.RowID, aerr)
	}
	b.queue(answer)
	return err
}

// ReasonTooLarge: a message the homeserver refused for its size.
const ReasonTooLarge Reason = "too_large"

// ensurePortal is the portal of mxid and peer, created now (the ghost
// creates the DM and invites mxid) if there is none; an error wrapping
// ErrPermanent if nothing may go between them any more (mayReach): every
// message to Matrix, and every chat a user starts, comes this way.
func (b *Bridge) ensurePortal(ctx context.Context, mxid id.UserID, peer jid.JID) (*Portal, error) {
	if err := b.unreachable(mxid, peer); err != nil {
		return nil, err
	}
	p, err := b.store.PortalByPair(ctx, mxid, peer)
	if err == nil {
		return p, nil
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("look up portal: %w", err)
	}
	// A ghost made for a Matrix user's own `start` is known from now on:
	// the person's messages to others spend no budget of new ghosts.
	if err := b.noteGhost(ctx, peer); err != nil {
		return nil, err
	}
	room, err := b.matrix.CreateDM(ctx, b.cfg.Identities.Ghost(peer), mxid)
	if err != nil {
		return nil, fmt.Errorf("create portal for %s and %s: %w", mxid, peer, err)
	}
	// Before the portal: a crash in between asks twice, which is harmless.
	if jobs := b.portalJobs(mxid, peer); jobs != nil {
		if err := b.store.AddJobs(ctx, jobs...); err != nil {
			return nil, fmt.Errorf("queue subscription request to %s: %w", peer, err)
		}
		b.queue(jobs...)
	}
	p = &Portal{RoomID: room, MXID: mxid, JID: peer, CreatedAt: b.now()}
	if err := b.store.PutPortal(ctx, p); err != nil {
		return nil, fmt.Errorf("store portal %s: %w", room, err)
	}
	b.log.Info().Str("room", string(room)).Str("mxid", string(mxid)).Str("jid", peer.String()).Msg("Created portal")
	return p, nil
}

// sendToXMPP sends a message from Matrix to its XMPP peer, asking for every
// kind of receipt the bridge can translate.
func (b *Bridge) sendToXMPP(ctx context.Context, row int64) error {
	msg, err := b.store.MessageByRow(ctx, row)
	if err != nil {
		return fmt.Errorf("load message %d: %w", row, err)
	}
	if err := b.unreachable(msg.MXID, msg.PeerJID); err != nil {
		return err
	}
	from, err := b.cfg.Identities.PuppetFrom(msg.MXID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	// XEP-0085 §5.1: a sender that wants chat states "MUST" put one in
	// the messages it sends before the contact answers; with <active/> in
	// each, clients that wait to be told (mcabber) send theirs, which
	// become the ghost's typing.
	out := &OutMessage{
		ID: msg.XMPPID, From: from, To: msg.PeerJID, Type: TypeChat,
		Body: msg.Body, OriginID: msg.XMPPID, Request: msg.Requests, ChatState: "active",
	}
	if msg.RelKind != RelNone {
		if err := b.relationToXMPP(ctx, msg, out); err != nil {
			return err
		}
	}
	if err := b.xmpp.Send(ctx, out); err != nil {
		return fmt.Errorf("send message %d to %s: %w", row, msg.PeerJID, err)
	}
	b.count("bridged", "to_xmpp")
	return nil
}
