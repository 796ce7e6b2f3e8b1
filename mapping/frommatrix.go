package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/internal/safely"
)

// EncryptedNotice is what a ghost says in a portal when an encrypted event
// arrives: silence would leave the sender believing it was delivered.
const EncryptedNotice = "Encrypted messages cannot reach XMPP yet: this bridge does not take part in end-to-end encryption. Please send unencrypted messages in this room."

// DeclineReason is given when someone who may not use the bridge invites a ghost.
const DeclineReason = "You are not permitted to use this XMPP bridge."

// HandleMatrixTxn applies one stored transaction and marks it done; the
// jobs it produces are stored in the same step, so a crash at any point
// leads to a replay that repeats nothing already stored.
func (b *Bridge) HandleMatrixTxn(ctx context.Context, txn MatrixTxn) error {
	return b.HandleMatrixTxns(ctx, []MatrixTxn{txn})
}

// HandleMatrixTxns applies several stored transactions, in order, as one:
// their receipts are looked up and recorded together, which is most of the
// cost of a transaction when a homeserver pushes many. If the group cannot
// be finished as one (a transaction of it was finished meanwhile), each is
// handled on its own; handling an event twice repeats nothing stored.
func (b *Bridge) HandleMatrixTxns(ctx context.Context, txns []MatrixTxn) error {
	return b.messages.handleMatrixTxns(ctx, txns)
}

func (b *messages) handleMatrixTxns(ctx context.Context, txns []MatrixTxn) error {
	var jobs []*Job
	var receipts []Receipt
	var typing []Typing
	ids := make([]string, len(txns))
	for i, txn := range txns {
		ids[i] = txn.ID
		for _, evt := range txn.Events {
			j, err := b.handleMatrixEventSafely(ctx, evt)
			if reason, ok := b.cannotSucceed(err); ok {
				// Nothing behind it may wait for what can never be done.
				if err := b.setAside(ctx, SetAside{TxnID: txn.ID, EventID: evt.ID, Room: evt.Room, Sender: evt.Sender, Type: evt.Type}, reason, err); err != nil {
					return err
				}
				jobs = append(jobs, b.setAsideFailure(ctx, evt, reason)...)
				continue
			} else if err != nil {
				return fmt.Errorf("handle event %s of transaction %s: %w", evt.ID, txn.ID, err)
			}
			jobs = append(jobs, j...)
		}
		receipts = append(receipts, txn.Receipts...)
		typing = append(typing, txn.Typing...)
	}
	plan := newReceiptPlan()
	if err := b.receipts.prefetch(ctx, receipts, plan); err != nil {
		return fmt.Errorf("look up the events of transactions %v: %w", ids, err)
	}
	for _, rc := range receipts {
		if err := b.receipts.handleReceipt(ctx, rc, plan); err != nil {
			return fmt.Errorf("handle %s of %s in %s of transactions %v: %w", rc.Type, rc.User, rc.Room, ids, err)
		}
	}
	for _, tp := range typing {
		if err := b.receipts.typingFromMatrix(ctx, tp.Room, tp.Users, plan); err != nil {
			return fmt.Errorf("handle typing in %s of transactions %v: %w", tp.Room, ids, err)
		}
	}
	if err := b.receipts.readsToXMPP(ctx, plan); err != nil {
		return fmt.Errorf("handle the reads of transactions %v: %w", ids, err)
	}
	if len(plan.out) > 0 {
		jobs = append(jobs, stanzasJob(plan.out))
	}
	jobs = append(jobs, plan.jobs...)
	var err error
	if len(txns) == 1 {
		err = b.store.FinishTxn(ctx, ids[0], plan.acks, jobs)
	} else if err = b.store.FinishTxns(ctx, ids, plan.acks, jobs); errors.Is(err, ErrNotPending) {
		for _, txn := range txns {
			if err := b.handleMatrixTxns(ctx, []MatrixTxn{txn}); err != nil {
				return err
			}
		}
		return nil
	}
	if b.stored(err) != nil {
		return fmt.Errorf("finish transactions %v: %w", ids, err)
	}
	b.receipts.typed(plan)
	b.queue(jobs...)
	return nil
}

// CannotSucceed tells whether err is a failure of the data, which no retry
// can mend (the store refuses it, it cannot be decoded, its handling
// panicked), and which reason that is. A failure of the store itself is
// not: it is retried, and nothing is lost.
func (b *Bridge) CannotSucceed(err error) (Reason, bool) {
	return b.messages.cannotSucceed(err)
}

func (b *messages) cannotSucceed(err error) (Reason, bool) {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case err == nil:
		return "", false
	case errors.Is(err, safely.ErrPanic):
		return SetAsidePanic, true
	case b.store.Refuses(err):
		return SetAsideRefused, true
	case errors.As(err, &syntax), errors.As(err, &typ):
		return SetAsideDecode, true
	}
	return "", false
}

// setAside records an item that can never be processed, logs it and counts
// it; an item met again is neither logged nor counted again. (A panic's
// stack was logged where it was recovered.)
func (b *messages) setAside(ctx context.Context, s SetAside, reason Reason, cause error) error {
	s.Reason, s.Error, s.At = reason, cause.Error(), b.now()
	// The row must be one the store takes, whatever the item held: ids as
	// long as the spec allows (255 bytes), the error's text (which may
	// quote the item) bounded.
	s.TxnID, s.Type, s.Error = clip(s.TxnID, maxIDBytes), clip(s.Type, maxIDBytes), clipMiddle(s.Error, maxSetAsideError)
	s.EventID, s.Room, s.Sender = id.EventID(clip(string(s.EventID), maxIDBytes)), id.RoomID(clip(string(s.Room), maxIDBytes)), id.UserID(clip(string(s.Sender), maxIDBytes))
	isNew, err := b.store.PutSetAside(ctx, &s)
	if b.stored(err) != nil {
		return fmt.Errorf("set aside %s of transaction %s: %w", s.EventID, s.TxnID, err)
	}
	if !isNew {
		return nil
	}
	b.count("set_aside", reason)
	b.log.Error().Err(cause).Str("txn_id", s.TxnID).Str("event_id", string(s.EventID)).Str("room", string(s.Room)).
		Str("sender", string(s.Sender)).Str("type", s.Type).Str("reason", string(reason)).
		Msg("Set aside what can never be processed; the rest goes on")
	return nil
}

// setAsideFailure is the failure status that tells the sender of an event
// set aside that it did not cross, so that it is not lost silently: for a
// message, reaction or redaction of the user of a portal (the bot is in
// the room to say it). Nothing if the portal cannot be looked up: the row
// set aside still tells the operator.
func (b *messages) setAsideFailure(ctx context.Context, evt MatrixEvent, reason Reason) []*Job {
	switch evt.Kind {
	case EventMessage, EventReaction, EventRedaction:
	default:
		return nil
	}
	// The lookup may meet what made the event fail (a panic in the store
	// for this room): it is then the lookup's failure alone.
	var portal *Portal
	err := b.guard.Run(&b.log, b.counter, "set_aside_status", func() (err error) {
		portal, err = b.store.PortalByRoom(ctx, evt.Room)
		return err
	})
	if err != nil || portal.Member(MatrixMember(evt.Sender)) == nil {
		return nil
	}
	payload, _ := json.Marshal(StatusArgs{Condition: string(reason), ByBridge: true, Room: evt.Room, Event: evt.ID,
		Text: "the bridge could not carry this to XMPP and has set it aside"}) // strings only
	return []*Job{newJob(JobMatrixStatus, about{room: evt.Room}, 0, payload)}
}

// maxIDBytes is the longest a Matrix id may be (client-server API,
// identifiers: 255 bytes); maxSetAsideError bounds the error kept with an
// item set aside.
const (
	maxIDBytes       = 255
	maxSetAsideError = 2000
)

// clip is s storable and cut to at most n bytes, at a character boundary.
func clip(s string, n int) string {
	s = StorableText(s)
	if len(s) <= n {
		return s
	}
	n -= len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// clipMiddle is clip keeping both ends of s: an error says what was being
// done first and the cause last.
func clipMiddle(s string, n int) string {
	s = StorableText(s)
	if len(s) <= n {
		return s
	}
	head := clip(s, n/4)
	tail := len(s) - (n - len(head))
	for tail < len(s) && !utf8.RuneStart(s[tail]) {
		tail++
	}
	return head + s[tail:]
}

// SetAsideTxn sets a whole transaction aside and marks it done: one whose
// failure for its data no event of it explains (its receipts, say), so
// that the transactions behind it go on.
func (b *Bridge) SetAsideTxn(ctx context.Context, txnID string, reason Reason, cause error) error {
	return b.messages.setAsideTxn(ctx, txnID, reason, cause)
}

func (b *messages) setAsideTxn(ctx context.Context, txnID string, reason Reason, cause error) error {
	if err := b.setAside(ctx, SetAside{TxnID: txnID, Type: "transaction"}, reason, cause); err != nil {
		return err
	}
	if err := b.store.FinishTxn(ctx, txnID, nil, nil); b.stored(err) != nil {
		return fmt.Errorf("finish transaction %s set aside: %w", txnID, err)
	}
	return nil
}

// setAsideStatus is the line of the bot's `status` on what was set aside.
func (b *messages) setAsideStatus(ctx context.Context) string {
	n, newest, err := b.store.SetAsideCount(ctx)
	switch {
	case err != nil:
		return "Set aside: the database does not answer (" + err.Error() + ")"
	case n == 0:
		return "Set aside (could never be processed): none"
	}
	what := "a transaction"
	if newest.EventID != "" {
		what = fmt.Sprintf("a %s event from %s", newest.Type, newest.Sender)
	}
	return fmt.Sprintf("Set aside (could never be processed): %d; the newest, %s at %s UTC: %s (%s)",
		n, what, newest.At.UTC().Format("2006-01-02 15:04"), newest.Reason, clipMiddle(newest.Error, 300))
}

// handleMatrixEventSafely is handleMatrixEvent with a panic of it turned
// into the event's failure.
func (b *messages) handleMatrixEventSafely(ctx context.Context, evt MatrixEvent) (jobs []*Job, err error) {
	err = b.guard.Run(&b.log, b.counter, "matrix_event", func() error {
		jobs, err = b.handleMatrixEvent(ctx, evt)
		return err
	})
	return jobs, err
}

func (b *messages) handleMatrixEvent(ctx context.Context, evt MatrixEvent) ([]*Job, error) {
	ids := b.cfg.Identities
	log := b.log.With().Str("event_id", string(evt.ID)).Str("room", string(evt.Room)).Str("sender", string(evt.Sender)).Logger()
	if evt.Sender == ids.Bot() || ids.IsGhost(evt.Sender) {
		b.count("matrix_event", ReasonOwn)
		return nil, nil
	}
	switch evt.Kind {
	case EventMember:
		return b.handleMember(ctx, evt)
	case EventMessage, EventEncrypted, EventReaction, EventRedaction, EventTopic, EventRoomName:
	default:
		b.count("matrix_event", ReasonEventType)
		return nil, nil
	}
	portal, err := b.store.PortalByRoom(ctx, evt.Room)
	if isNotFound(err) {
		portal = nil
	} else if err != nil {
		return nil, fmt.Errorf("look up portal: %w", err)
	}
	if portal == nil || portal.Member(MatrixMember(evt.Sender)) != nil {
		// The bot's (commands.go): not bridged.
		if text, ok, err := b.bot.commandOf(ctx, evt, portal); err != nil || ok {
			if err != nil {
				return nil, err
			}
			return b.bot.command(ctx, evt.Room, evt.Sender, evt.TS, text)
		}
	}
	if portal == nil {
		b.count("matrix_event", ReasonNotPortal)
		return nil, nil
	}
	if portal.Member(MatrixMember(evt.Sender)) == nil {
		log.Debug().Msg("Ignoring a message from someone who is not a member of the portal")
		b.count("matrix_event", ReasonWrongSender)
		return nil, nil
	}
	switch {
	case evt.Kind == EventTopic && portal.Kind == PortalGroup:
		return b.groups.state.topicFromMatrix(ctx, portal, evt)
	case evt.Kind == EventRoomName && portal.Kind == PortalGroup:
		return b.groups.state.nameFromMatrix(ctx, log, portal, evt)
	case evt.Kind == EventTopic, evt.Kind == EventRoomName:
		b.count("matrix_event", ReasonEventType) // a DM's topic and name are its own
		return nil, nil
	case portal.Kind == PortalGroup:
		return b.groups.messageFromMatrix(ctx, log, portal, evt)
	}
	ghost := ids.Ghost(portal.JID)
	if done, err := b.relations.relationFromMatrix(ctx, log, portal, evt); done || err != nil {
		return nil, err
	}
	if evt.Kind == EventEncrypted {
		b.count("matrix_event", "encrypted")
		return []*Job{argsJob(JobNotice, jobArgs{Room: evt.Room, User: ghost, Body: EncryptedNotice})}, nil
	}
	body, job, refused, ok := b.outgoing(evt, portal.JID)
	if !ok {
		log.Debug().Msg("Ignoring a message the bridge does not carry")
		return refused, nil
	}
	xid := NewXMPPID()
	msg := &Message{
		RoomID: evt.Room, EventID: evt.ID,
		// The id is chosen and stored before the stanza leaves, so no
		// receipt can come back before the bridge knows what it is for.
		XMPPID: xid, OriginID: xid,
		PeerJID: portal.JID, Direction: FromMatrix, MXID: evt.Sender,
		Body: body, TS: b.tsOf(evt),
		Requests: Requests{Receipt: true, Delivered: true, Displayed: true, Composing: true, Markable: true},
	}
	added, err := b.store.AddMessage(ctx, msg, job)
	if b.stored(err) != nil {
		return nil, fmt.Errorf("store message: %w", err)
	}
	if !added {
		b.count("matrix_event", ReasonDuplicate)
		return nil, nil
	}
	b.queue(job)
	log.Debug().Str("xmpp_id", xid).Msg("Message queued for XMPP")
	return nil, nil
}

// handleMember turns an invite of a ghost into a portal: a permitted user's
// invite is accepted, anybody else's declined with a reason.
func (b *messages) handleMember(ctx context.Context, evt MatrixEvent) ([]*Job, error) {
	ids := b.cfg.Identities
	if evt.Target == "" {
		return nil, nil
	}
	target := evt.Target
	if target == ids.Bot() {
		return b.bot.botInvited(ctx, evt)
	}
	if _, _, err := ids.OccupantOf(target); err == nil {
		return nil, nil // an occupant's ghost: the bridge's own doing
	}
	peer, err := ids.GhostJID(target)
	if err != nil {
		// Not a ghost: a person's membership, which may change their
		// profile (profiles.go), or their puppet's place in a chat.
		if evt.Membership != MembershipInvite {
			portal, err := b.store.PortalByRoom(ctx, evt.Room)
			if err != nil && !isNotFound(err) {
				return nil, fmt.Errorf("look up portal: %w", err)
			} else if err == nil && portal.Kind == PortalGroup {
				return b.groups.memberFromMatrix(ctx, portal, evt)
			}
		}
		return b.people.profileFromMember(ctx, evt)
	}
	if evt.Membership != MembershipInvite {
		return nil, nil
	}
	if !b.cfg.Permissions.Allowed(evt.Sender) || b.blocked(peer) {
		b.count("matrix_invite", ReasonNotPermitted)
		return []*Job{argsJob(JobLeave, jobArgs{Room: evt.Room, User: target, Reason: DeclineReason})}, nil
	}
	if evt.JoinRule == JoinRulePublic {
		// A portal is a private 1:1 room: receipts in a public room would
		// tell anyone who joins who read what (MSC4089, privacy).
		b.count("matrix_invite", "public_room")
		return []*Job{argsJob(JobLeave, jobArgs{Room: evt.Room, User: target, Reason: PublicRoomReason})}, nil
	}
	if first, err := b.store.PortalByRoom(ctx, evt.Room); err == nil && (first.User() != evt.Sender || !first.JID.Equal(peer)) {
		// A portal is one pair's room: a second ghost there would take the
		// room from the first, so it declines, and the first goes on.
		b.count("matrix_invite", ReasonSecondGhost)
		b.log.Info().Str("room", string(evt.Room)).Str("mxid", string(evt.Sender)).Str("jid", peer.String()).
			Str("portal_jid", first.JID.String()).Msg("Declined a second ghost in a portal")
		if first.JID.Equal(peer) {
			// The same ghost, invited by someone else: it is in the room
			// already, for the first pair, and stays.
			return nil, nil
		}
		// It joins to say why before it leaves: a homeserver may drop the
		// reason of a declined invite (Dendrite 0.15.2 does), and the user
		// would see the invite refused without a word.
		reason := SecondGhostReason(first.JID)
		return []*Job{
			argsJob(JobJoin, jobArgs{Room: evt.Room, User: target}),
			argsJob(JobNotice, jobArgs{Room: evt.Room, User: target, Body: reason}),
			argsJob(JobLeave, jobArgs{Room: evt.Room, User: target, Reason: reason}),
		}, nil
	} else if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("look up portal: %w", err)
	}
	p := DirectPortal(evt.Room, evt.Sender, peer, b.tsOf(evt))
	if err := b.store.PutPortal(ctx, p); err != nil {
		return nil, fmt.Errorf("store portal: %w", err)
	}
	b.log.Info().Str("room", string(evt.Room)).Str("mxid", string(evt.Sender)).Str("jid", peer.String()).Msg("Portal opened by invite")
	b.count("matrix_invite", "accepted")
	return append([]*Job{argsJob(JobJoin, jobArgs{Room: evt.Room, User: target})}, b.people.portalJobs(evt.Sender, peer)...), nil
}

// ReasonSecondGhost: a ghost invited into a room that is already another
// pair's portal.
const ReasonSecondGhost Reason = "second_ghost"

// SecondGhostReason is given when a ghost is invited into a room that is
// already the portal of another XMPP contact (or another Matrix user).
func SecondGhostReason(first jid.JID) string {
	return "This bridge carries one XMPP contact per room for now: this room already talks to " + first.Bare().String() +
		". Start a direct chat with each contact."
}

// PublicRoomReason is given when a ghost is invited into a public room.
const PublicRoomReason = "This XMPP bridge only takes part in private direct chats, not in public rooms."

// textOf is the text a message carries to XMPP: the body of a text or a
// notice, "/me " and the body of an emote (XEP-0245); nothing else.
//
// A formatted body (org.matrix.custom.html) becomes XEP-0393 styling,
// which XMPP clients show; a reply's fallback quote, which clients made
// before the spec dropped it, is cut (the reply crosses as XEP-0461).
func textOf(evt MatrixEvent) (string, bool) {
	body := evt.Body
	if evt.HTML != "" {
		body = HTMLToStyling(evt.HTML)
	} else if evt.Rel.ReplyTo != "" {
		body = cutReplyFallback(body)
	}
	switch evt.MsgType {
	case MsgText, MsgNotice:
		return body, true
	case MsgEmote:
		return "/me " + body, true
	}
	return "", false
}

// cutReplyFallback removes the quote an older Matrix client put before a
// reply's body: lines starting "> " up to the first empty line (the
// client-server API's reply fallback, removed in v1.13).
func cutReplyFallback(body string) string {
	if !strings.HasPrefix(body, "> <") {
		return body
	}
	if i := strings.Index(body, "\n\n"); i >= 0 {
		return body[i+2:]
	}
	return body
}
