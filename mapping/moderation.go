package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// Moderation in group portals: a message retracted by someone other than
// its sender, a room's moderator (XEP-0425 0.2, urn:xmpp:message-moderate:0,
// which Prosody's mod_muc_moderation speaks; the room's broadcast of 0.3
// is read too). Both ways the message is named by the room's XEP-0359
// stanza-id, as a retraction in a room is (relations_groups.go).
//
//   - Matrix → XMPP: a member's redaction of a message someone else sent
//     in the portal (an occupant's, or another member's) is their
//     puppet's request to the room to retract it (§3), with the
//     redaction's reason. The room decides whether the puppet may (its
//     role must be moderator): an error answer (§3.2) is said in the
//     portal by the bot and as a failure status on the redaction, counted
//     and logged; the message stays in the chat.
//   - XMPP → Matrix: the room's broadcast that a moderator retracted a
//     message (§3.1) is a redaction of its event, with the reason, by the
//     moderator's ghost where the bridge knows it and the portal lets it
//     redact others' events, else by the bot. Only the room itself says
//     so (§5, Business Rules: "only moderation messages ... received from
//     the MUC service itself are legitimate, all other such messages MUST
//     be discarded"; §6): from an occupant, or outside a chat, it is
//     refused and counted. The broadcast of a puppet's own moderation is
//     the redaction that asked for it, already on Matrix.
//
// Each is a row of the id map (RelRedact, Body the reason), so it is done
// once however many copies or replays (a rejoin's history) come.
//
// A member may redact others' events in the portal only with the power
// to (client-server API, m.room.power_levels "redact"), which the room's
// creator, the bot, gives no one by itself: it gives it to a member
// whose puppet the chat makes a moderator (the role of XEP-0045 §5.1,
// which mod_muc_moderation asks for), and takes it back when the chat
// does, as their puppet's own presence says (status 110). Only what it
// gave in this run is taken back: a role lost while the bridge was away
// leaves the power as it was.

// moderation is the group portals' concern of moderation, on the chats'
// state and the sends of groups (which it embeds: a moderation is about a
// chat's room, its occupants and its puppets as the rest of groups sees
// them).
type moderation struct {
	*groups
}

// Kinds of sends of moderation.
const (
	JobModerateMUC       JobKind = "xmpp.muc_moderate"      // a member's redaction of another's message, by row, asked of the room (§3)
	JobModeratedToMatrix JobKind = "matrix.moderated"       // a room's moderation, by row, as a redaction (§3.1)
	JobGroupModerator    JobKind = "matrix.group_moderator" // a member's power to redact, as their puppet's role gives it
)

// ReasonNotRoom: a moderation said by someone other than the room itself
// (XEP-0425 §5).
const ReasonNotRoom Reason = "not_room"

// maxReasonBytes bounds a moderation's reason carried either way, as a
// subject is bounded: a line, not a place to store text.
const maxReasonBytes = maxSubjectBytes

var (
	// A request asks the chat's server and waits for its answer: in the
	// pool of such jobs. Each stands alone (its message was sent, and
	// named by the room, before).
	_ = register(JobModerateMUC, jobKind{side: SideXMPP, order: noOrder, payload: nil, asks: true,
		run: func(b *Bridge, ctx context.Context, job *Job) error { return b.groups.moderation.moderateMUC(ctx, job) }})
	_ = register(JobGroupModerator, jobKind{side: SideMatrix, order: byRoom, payload: groupArgs{},
		run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args groupArgs) error {
			return b.matrix.SetModerator(ctx, args.Room, args.MXID, args.Moderator)
		})})
	_ = register(JobModeratedToMatrix, jobKind{side: SideMatrix, order: byRoom, payload: groupArgs{},
		run: withPayload(func(b *Bridge, ctx context.Context, job *Job, args groupArgs) error {
			return b.groups.moderation.moderatedToMatrix(ctx, job, args)
		})})
)

// moderatorJob is the job that gives mxid the power to moderate in the
// portal of the chat r, or takes it back, as the role in x, their
// puppet's own presence, says: nil if it is as the bridge last made it.
// The caller holds g.mu.
func (g *moderation) moderatorJob(r *mucRoom, mxid id.UserID, x *MUCPresence) *Job {
	on := x != nil && x.Role == "moderator"
	if on == r.moderators[mxid] {
		return nil
	}
	r.moderators[mxid] = on
	g.count("muc_presence", Reason(fmt.Sprintf("moderator_%v", on)))
	return groupJob(JobGroupModerator, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), MXID: mxid, Moderator: on})
}

// moderationFromMatrix takes evt, a member's redaction in the group
// portal, if it is of a message someone else sent there: their puppet's
// request to the room to retract it. It returns false for anything else
// (the member's own message: a retraction; an event the bridge never
// carried), which relationFromMatrix judges.
func (g *moderation) moderationFromMatrix(ctx context.Context, log zerolog.Logger, portal *Portal, evt MatrixEvent) (bool, error) {
	const what = "matrix_moderate"
	target, err := g.store.MessageByEventID(ctx, evt.Redacts)
	if isNotFound(err) || err == nil && target.RoomID != portal.RoomID {
		return false, nil
	} else if err != nil {
		return true, fmt.Errorf("look up event %s: %w", evt.Redacts, err)
	}
	if target.Direction == FromMatrix && target.MXID == evt.Sender {
		return false, nil
	}
	if target.RelKind != RelNone && target.RelKind != RelReply {
		// Redacting another's edit or reaction undoes it on Matrix; a
		// moderation retracts a message (§5: never a non-messaging
		// payload), which would take the whole message.
		g.count(what, ReasonNotMessage)
		return true, nil
	}
	row := &Message{
		RoomID: evt.Room, EventID: evt.ID, XMPPID: NewXMPPID(),
		PeerJID: portal.JID, Direction: FromMatrix, MXID: evt.Sender,
		Body: clip(evt.Body, maxReasonBytes), TS: g.tsOf(evt), RelKind: RelRedact, RelTo: target.RowID,
	}
	job := newJob(JobModerateMUC, about{room: evt.Room, mxid: evt.Sender, peer: portal.JID}, 0, nil)
	added, err := g.store.AddMessage(ctx, row, job)
	if g.stored(err) != nil {
		return true, fmt.Errorf("store the moderation %s: %w", evt.ID, err)
	}
	if !added {
		g.count(what, ReasonDuplicate)
		return true, nil
	}
	log.Debug().Int64("target", target.RowID).Msg("A member's redaction of another's message: a moderation")
	g.count(what, "accepted")
	g.queue(job)
	return true, nil
}

// moderateMUC runs a JobModerateMUC: the member's puppet asks the chat to
// retract the message by the room's stanza-id (§3). A refusal (§3.2) is
// told, not retried.
func (g *moderation) moderateMUC(ctx context.Context, job *Job) error {
	row, err := g.store.MessageByRow(ctx, job.MessageID)
	if err != nil {
		return fmt.Errorf("load moderation %d: %w", job.MessageID, err)
	}
	target, err := g.relations.relationTarget(ctx, row)
	if err != nil {
		return err
	}
	muc, from, err := g.puppetTo(row.MXID, row.PeerJID.String())
	if err != nil {
		return err
	}
	if target.StanzaID == "" {
		// The room gave it no id of its own (no archive), or has not
		// reflected it: nothing names it to the room.
		return g.moderationRefused(ctx, row, "no_stanza_id")
	}
	err = g.xmpp.Moderate(ctx, from, muc, target.StanzaID, row.Body)
	var answer *StanzaError
	switch {
	case err == nil:
		g.count("matrix_moderate", "sent")
		return nil
	case errors.As(err, &answer):
		return g.moderationRefused(ctx, row, conditionOf(answer))
	}
	return fmt.Errorf("ask %s to moderate %s: %w", muc, target.StanzaID, err)
}

// moderationRefused tells the member whose redaction the chat of row did
// not carry out, in the portal by the bot and as a failure status on the
// redaction, that the message stays in the chat: cond is the room's
// error condition (§3.2), or why the bridge could not ask.
func (g *moderation) moderationRefused(ctx context.Context, row *Message, cond string) error {
	why, cond := refusal(cond, map[string]string{
		"forbidden":               "their puppet is not one of its moderators",
		"not-allowed":             "their puppet is not one of its moderators",
		"item-not-found":          "it does not have that message (any more)",
		"not-acceptable":          "their puppet is not in it",
		"service-unavailable":     "it does not moderate messages (XEP-0425)",
		"feature-not-implemented": "it does not moderate messages (XEP-0425)",
		"no_stanza_id":            "it never gave that message an id to name it by",
	})
	g.count("matrix_moderate", Reason("refused_"+cond))
	g.log.Info().Str("room", string(row.RoomID)).Str("event_id", string(row.EventID)).Str("mxid", string(row.MXID)).
		Str("muc", row.PeerJID.String()).Str("condition", cond).Msg("The chat did not retract a message a member redacted")
	text := fmt.Sprintf("The chat `%s` did not retract the message %s redacted: %s. It stays in the chat.", row.PeerJID, row.MXID, why)
	payload, _ := json.Marshal(StatusArgs{Condition: cond, Room: row.RoomID, Event: row.EventID, Text: "the chat did not retract the message: " + why}) // strings only
	return g.queueStored(ctx, g.bot.reply(row.RoomID, text), newJob(JobMatrixStatus, about{room: row.RoomID}, 0, payload))
}

// moderationFromMUC takes m, the listener's copy of a moderation said in
// the chat r by nick ("": the room itself): a redaction of the message it
// names, by the moderator (moderatedToMatrix).
func (g *moderation) moderationFromMUC(ctx context.Context, log zerolog.Logger, r *mucRoom, nick string, m *XMPPMessage) error {
	const what = "xmpp_moderate"
	if nick != "" {
		log.Debug().Str("nick", nick).Msg("Refused a moderation from an occupant, not the room")
		g.count(what, ReasonNotRoom)
		return nil
	}
	mod := m.Moderation
	target, err := g.relations.mucTarget(ctx, r.portal, r.jid, RelRedact, mod.ID)
	if err != nil {
		return err
	}
	if target == nil {
		g.count(what, ReasonUnknownID)
		return nil
	}
	if target.RelKind == RelRedact {
		g.count(what, ReasonNotMessage)
		return nil
	}
	// 0.2 §3.1 names the moderator by their occupant JID (room/nick).
	var byNick string
	if by, err := jid.Parse(mod.By); err == nil && by.Bare().Equal(r.jid) {
		byNick = by.Resourcepart()
	}
	g.mu.Lock()
	own := byNick != "" && r.ownNick(byNick)
	moderator := r.occupants[byNick]
	g.mu.Unlock()
	if own {
		// A puppet's: the member's redaction made it, and is on Matrix.
		g.count(what, ReasonOwnReflection)
		return nil
	}
	xid := m.StanzaID // the room archives its moderations: its own id
	if xid == "" {
		xid = m.ID
	}
	row := &Message{
		RoomID: r.portal, XMPPID: xid, StanzaID: m.StanzaID,
		PeerJID: r.jid, PeerResource: byNick, Direction: FromXMPP, Sender: moderator,
		Body: clip(mod.Reason, maxReasonBytes), TS: g.now(), RelKind: RelRedact, RelTo: target.RowID,
	}
	log.Debug().Str("by", mod.By).Int64("target", target.RowID).Msg("The room moderated a message")
	return g.addMessage(ctx, row, groupJob(JobModeratedToMatrix, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), Member: moderator}), what)
}

// moderatedToMatrix runs a JobModeratedToMatrix: the message's event
// redacted with the room's reason, by the moderator's ghost if the bridge
// knows who it is (args.Member) and the portal lets it, else by the bot.
func (g *moderation) moderatedToMatrix(ctx context.Context, job *Job, args groupArgs) error {
	row, err := g.store.MessageByRow(ctx, job.MessageID)
	if err != nil {
		return fmt.Errorf("load moderation %d: %w", job.MessageID, err)
	}
	if row.EventID != "" {
		return nil
	}
	target, err := g.relations.relationTarget(ctx, row)
	if err != nil {
		return err
	}
	sender := g.cfg.Identities.Bot()
	if args.Member != "" {
		if sender, err = g.ghostOf(args.Member); err != nil {
			return err
		}
	}
	ev, err := g.matrix.Moderate(ctx, row.RoomID, sender, target.EventID, row.Body, relationTxn(job.MessageID))
	if err != nil {
		return fmt.Errorf("redact %s moderated in %s: %w", target.EventID, row.PeerJID, err)
	}
	if err := g.store.SetMessageEventID(ctx, job.MessageID, row.RoomID, ev); err != nil {
		return fmt.Errorf("note event %s of moderation %d: %w", ev, job.MessageID, err)
	}
	g.count("bridged", "moderation_to_matrix")
	return nil
}
