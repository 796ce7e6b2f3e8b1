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

// The sends of messages each way and of a ghost's joins, leaves and
// notices: their job kinds and handlers, and the rule of whom a send may
// still be for (mayReach).

// messages carries the messages each way: what a message from XMPP
// (fromxmpp.go) and a transaction from the homeserver (frommatrix.go)
// mean, stored with the sends they owe, those sends (this file), and
// what the homeserver sent that can never be processed (set aside). The
// rest of what comes in it hands to the concern it is for.
type messages struct {
	*core
	bot       *bot
	people    *people
	relations *relations
	receipts  *receipts
	groups    *groups
}

// The kinds of sends the outbox carries out.
const (
	JobSendToMatrix JobKind = "matrix.send"   // a FromXMPP message, by row
	JobSendToXMPP   JobKind = "xmpp.send"     // a FromMatrix message, by row
	JobJoin         JobKind = "matrix.join"   // a ghost accepts an invite
	JobLeave        JobKind = "matrix.leave"  // a ghost declines or leaves
	JobNotice       JobKind = "matrix.notice" // a ghost explains something
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

// A ghost's joins, leaves and notices keep the order of the room they are
// in: a ghost joins before it explains, and explains before it leaves.
var (
	_ = register(JobJoin, jobKind{side: SideMatrix, order: byRoom, payload: jobArgs{},
		run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args jobArgs) error {
			return b.matrix.Join(ctx, args.Room, args.User)
		})})
	_ = register(JobLeave, jobKind{side: SideMatrix, order: byRoom, payload: jobArgs{},
		run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args jobArgs) error {
			return b.matrix.Leave(ctx, args.Room, args.User, args.Reason)
		})})
	_ = register(JobNotice, jobKind{side: SideMatrix, order: byRoom, payload: jobArgs{},
		run: withPayload(func(b *Bridge, ctx context.Context, job *Job, args jobArgs) error {
			return b.matrix.SendNotice(ctx, args.Room, args.User, args.Body, args.HTML, "notice-"+strconv.FormatInt(job.ID, 10))
		})})
)

// mayReach is the one rule of whom a send may still be for: a Matrix user
// who may use the bridge (bridge.permissions) and an XMPP person of a
// domain not blocked (xmpp.blocked_domains), judged when the send runs,
// not when it was queued, so that a permission revoked or a domain
// blocked stops what existing portals owe as well as what comes in. It
// returns "" if they may, or why not; mxid "" (a job that does not say
// whose it is) is judged by peer alone.
func (b *core) mayReach(mxid id.UserID, peer jid.JID) Reason {
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
func (b *core) unreachable(mxid id.UserID, peer jid.JID) error {
	reason := b.mayReach(mxid, peer)
	if reason == "" {
		return nil
	}
	b.count("send_refused", reason)
	return fmt.Errorf("%w: no send between %s and %s: %s", ErrPermanent, mxid, peer, reason)
}

// Messages reach the portal in order, and the portal is created once.
var _ = register(JobSendToMatrix, jobKind{side: SideMatrix, order: byPair, payload: nil,
	run: func(b *Bridge, ctx context.Context, job *Job) error {
		return b.messages.sendToMatrix(ctx, job.MessageID, nil)
	}})

// sendToMatrix posts a message from XMPP into its portal, creating the
// portal first if this is the pair's first message. One that can never
// be posted is answered to its sender (undeliverable); one held because
// the homeserver is away or refuses the bridge's token is not: it goes
// once the homeserver takes it. A message with a file (media.go) is
// posted as file, in the media repository already.
func (b *messages) sendToMatrix(ctx context.Context, row int64, file *MediaFile) error {
	msg, err := b.store.MessageByRow(ctx, row)
	if err != nil {
		return fmt.Errorf("load message %d: %w", row, err)
	}
	if msg.EventID != "" {
		return nil // sent before a crash, noted, job not yet removed
	}
	if err := b.postToMatrix(ctx, row, msg, file); errors.Is(err, ErrPermanent) {
		return b.undeliverable(ctx, msg, err)
	} else if err != nil {
		return err
	}
	b.count("bridged", "to_matrix")
	return nil
}

// postToMatrix is sendToMatrix once the message, of row, is loaded.
func (b *messages) postToMatrix(ctx context.Context, row int64, msg *Message, file *MediaFile) error {
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
	switch {
	case file != nil && msg.RelKind == RelReplace:
		ev, err = b.relations.fileEditToMatrix(ctx, portal.RoomID, ghost, msg, file, relationTxn(row))
	case file != nil:
		ev, err = b.matrix.SendMessage(ctx, portal.RoomID, ghost, mediaOut(file), relationTxn(row))
	case msg.RelKind != RelNone:
		ev, err = b.relations.relationToMatrix(ctx, portal.RoomID, ghost, msg, relationTxn(row))
	default:
		ev, err = b.matrix.SendMessage(ctx, portal.RoomID, ghost, b.relations.matrixText(msg.Body), relationTxn(row))
	}
	if err != nil {
		return fmt.Errorf("send message %d to %s: %w", row, portal.RoomID, err)
	}
	if err := b.store.SetMessageEventID(ctx, row, portal.RoomID, ev); err != nil {
		return fmt.Errorf("note event %s of message %d: %w", ev, row, err)
	}
	if msg.Requests.Offline {
		b.receipts.offlineEvent(ctx, msg, portalBefore)
	}
	return nil
}

// ErrTooLarge marks a send the homeserver refused for its size (HTTP 413,
// M_TOO_LARGE); it comes wrapped with ErrPermanent.
var ErrTooLarge = errors.New("too large for the homeserver")

// undeliverable answers the sender of msg, which can never reach Matrix
// (err wraps ErrPermanent), with a stanza error, once (the send is dropped
// after), so that no message is lost with only the log knowing:
//   - too large for the homeserver (ErrTooLarge): RFC 6120 §8.3.3.9
//     <not-acceptable/> ("does not meet criteria defined by the recipient
//     or server"), of type modify since a shorter message would pass,
//     which XEP-0086 gives the legacy code 406 that clients older than the
//     RFC's conditions still show;
//   - anything else (the homeserver refuses it for the room, a rule of the
//     bridge no longer lets it through, what it answers or points at is
//     unknown): RFC 6120 §8.3.3.19 <service-unavailable/> ("the server or
//     recipient does not currently provide the requested service"), of
//     type cancel since sending it again would fail the same, with a text
//     saying so. It is what the bridge already answers a message for a
//     Matrix user it cannot reach, so a client shows both alike;
//     <undefined-condition/> (§8.3.3.21) is meant to come with an
//     application-specific condition, which a client would not know.
//
// The answer goes the way of receipts, a job of the XMPP side, without
// the body (RFC 6120 §8.2 leaves it out at will; one may be too large). A
// person of a blocked domain is never answered (the door drops them
// silently too), nor a message without an id to answer. It returns err,
// the send's own failure, unless the answer could not be stored, for the
// send to be tried again.
func (b *messages) undeliverable(ctx context.Context, msg *Message, err error) error {
	reason, answer := ReasonUndeliverable, &StanzaError{
		Type: "cancel", Condition: "service-unavailable",
		Text: "This message could not be delivered to Matrix and will not be tried again.",
	}
	if errors.Is(err, ErrTooLarge) {
		reason, answer = ReasonTooLarge, &StanzaError{
			Type: "modify", Condition: "not-acceptable",
			Text: "This message is too large for the Matrix homeserver and was not delivered; send it shorter or in parts.",
		}
	}
	b.count("xmpp_message", reason)
	if msg.XMPPID == "" || msg.Direction != FromXMPP || b.blocked(msg.PeerJID) {
		return err // nothing to answer: no id to answer, not from XMPP, or a blocked domain
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
	job := stanzasJob([]*OutMessage{{ID: msg.XMPPID, From: from, To: to, Type: TypeError, Error: answer}})
	if aerr := b.store.AddJobs(ctx, job); aerr != nil {
		return fmt.Errorf("answer the sender of an undeliverable message (%s): %w", reason, aerr)
	}
	b.queue(job)
	return err
}

// ReasonTooLarge: a message the homeserver refused for its size.
const ReasonTooLarge Reason = "too_large"

// ReasonUndeliverable: a message that can never reach Matrix for any other
// reason; its sender got <service-unavailable/>.
const ReasonUndeliverable Reason = "undeliverable"

// ensurePortal is the portal of mxid and peer, created now (the ghost
// creates the DM and invites mxid) if there is none; an error wrapping
// ErrPermanent if nothing may go between them any more (mayReach): every
// message to Matrix, and every chat a user starts, comes this way.
func (b *messages) ensurePortal(ctx context.Context, mxid id.UserID, peer jid.JID) (*Portal, error) {
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
	if err := b.people.noteGhost(ctx, peer); err != nil {
		return nil, err
	}
	room, err := b.matrix.CreateDM(ctx, b.cfg.Identities.Ghost(peer), mxid)
	if err != nil {
		return nil, fmt.Errorf("create portal for %s and %s: %w", mxid, peer, err)
	}
	// Before the portal: a crash in between asks twice, which is harmless.
	if jobs := b.people.portalJobs(mxid, peer); jobs != nil {
		if err := b.store.AddJobs(ctx, jobs...); err != nil {
			return nil, fmt.Errorf("queue subscription request to %s: %w", peer, err)
		}
		b.queue(jobs...)
	}
	p = DirectPortal(room, mxid, peer, b.now())
	if err := b.store.PutPortal(ctx, p); err != nil {
		return nil, fmt.Errorf("store portal %s: %w", room, err)
	}
	b.log.Info().Str("room", string(room)).Str("mxid", string(mxid)).Str("jid", peer.String()).Msg("Created portal")
	return p, nil
}

// Messages and the notifications about them keep one order toward XMPP
// (JobSendStanzas): a composing notification must not overtake the
// message that ends it.
var _ = register(JobSendToXMPP, jobKind{side: SideXMPP, order: bySide, payload: nil,
	run: func(b *Bridge, ctx context.Context, job *Job) error {
		return b.messages.sendToXMPP(ctx, job.MessageID, nil)
	}})

// sendToXMPP sends a message from Matrix to its XMPP peer, asking for every
// kind of receipt the bridge can translate. One that can never go (a rule
// of the bridge no longer lets it through, what it answers or edits is
// unknown) is marked failed for its sender (notCarried); the XMPP side
// itself fails only when its stream is gone, which holds the side. A
// message with a file (media.go) goes with file, on the XMPP upload
// service already.
func (b *messages) sendToXMPP(ctx context.Context, row int64, file *MediaFile) error {
	msg, err := b.store.MessageByRow(ctx, row)
	if err != nil {
		return fmt.Errorf("load message %d: %w", row, err)
	}
	if err := b.carryToXMPP(ctx, row, msg, file); errors.Is(err, ErrPermanent) {
		return b.notCarried(ctx, msg, err)
	} else if err != nil {
		return err
	}
	b.count("bridged", "to_xmpp")
	return nil
}

// carryToXMPP is sendToXMPP once the message, of row, is loaded.
func (b *messages) carryToXMPP(ctx context.Context, row int64, msg *Message, file *MediaFile) error {
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
	if group, err := b.groups.isGroup(ctx, msg.RoomID); err != nil {
		return err
	} else if group {
		// To the room, from the puppet it knows as an occupant (XEP-0045
		// §7.4), asking only for markers (messages from Matrix ask
		// nothing else in a group).
		out.Type, out.ChatState = TypeGroupchat, ""
	}
	if msg.RelKind != RelNone {
		if err := b.relations.relationToXMPP(ctx, msg, out); err != nil {
			return err
		}
	}
	if file != nil {
		mediaStanza(out, file)
	}
	if err := b.xmpp.Send(ctx, out); err != nil {
		return fmt.Errorf("send message %d to %s: %w", row, msg.PeerJID, err)
	}
	return nil
}

// notCarried marks msg, from Matrix, which can never reach XMPP (err wraps
// ErrPermanent), as failed for its sender in the portal (a failure status,
// as for an event set aside), once: the send is dropped after. The status
// names the event, not the row, so that the rule that refused the message
// does not refuse its status too. It returns err unless the status could
// not be stored, for the send to be tried again.
func (b *messages) notCarried(ctx context.Context, msg *Message, err error) error {
	b.count("matrix_message", ReasonUndeliverable)
	if msg.Direction != FromMatrix || msg.EventID == "" || msg.RoomID == "" {
		return err
	}
	payload, _ := json.Marshal(StatusArgs{Condition: string(ReasonUndeliverable), ByBridge: true, Room: msg.RoomID, Event: msg.EventID,
		Text: "the bridge cannot carry this to XMPP"}) // strings only
	job := newJob(JobMatrixStatus, about{room: msg.RoomID}, 0, payload)
	if serr := b.store.AddJobs(ctx, job); serr != nil {
		return fmt.Errorf("mark an undeliverable message failed: %w", serr)
	}
	b.queue(job)
	return err
}
