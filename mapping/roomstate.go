package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// The state of a chat as its portal shows it: the room's subject as the
// portal's topic and back (XEP-0045 §7.2.16, §8.1), occupants who change
// their nick (§7.6), leave, or are kicked or banned (§9.1, §9.2), and a
// puppet the room removed.

// chatState keeps the state of each chat in its portal: the subject and
// the topic, the occupants who come, go and change nicks, a puppet the
// room removed or lost (selfping.go), the chat's name (roomname.go), the
// chat states. It works on what groups knows of each chat (mucRoom,
// under groups.mu) and with groups' helpers.
type chatState struct {
	*groups
}

// Kinds of sends of a chat's state.
const (
	JobGroupTopic  JobKind = "matrix.group_topic"  // the room's subject as the portal's topic
	JobMUCSubject  JobKind = "xmpp.muc_subject"    // a member's topic as the room's subject (§8.1)
	JobGroupRename JobKind = "matrix.group_rename" // an occupant's new nick as their ghost's name (§7.6)
	JobGroupKick   JobKind = "matrix.group_kick"   // a member the room removed, out of the portal
)

// Reasons of a chat's state, as counted.
const (
	ReasonSameSubject Reason = "same_subject" // the subject the portal already has
	ReasonNotInChat   Reason = "not_in_chat"  // the member's puppet is not in the chat
)

// maxSubjectBytes bounds a subject or topic carried either way: a line to
// show above a conversation, not a place to store text (Matrix bounds a
// whole event at 65,536 bytes, XMPP servers none).
const maxSubjectBytes = 1024

// roomChurn bounds what a chat's occupants leaving and changing nicks
// cost on Matrix (a leave, a rename), per chat: a real room's churn stays
// far below it, and a broken or hostile one that makes its occupants
// come and go without end makes no more than one a second after the
// first 200 (counted over_budget; the ghosts stay as they were).
var roomChurn = rate{perSecond: 1, burst: 200}

// maxPendingSubjects bounds the subjects sent by puppets whose answer
// from the room is awaited, per chat: a member who changes the topic on
// and on makes the oldest forgotten, not the bridge's memory grow.
const maxPendingSubjects = 16

// subjectArgs is the payload of a topic or subject send.
type subjectArgs struct {
	Room    id.RoomID `json:"room"`
	MUC     string    `json:"muc"`
	Subject string    `json:"subject"`
	// Member is the occupant whose ghost sets a topic ("": the bot);
	// MXID and ID the Matrix member whose puppet sets a subject, and the
	// id of its message.
	Member MemberID  `json:"member,omitempty"`
	MXID   id.UserID `json:"mxid,omitempty"`
	ID     string    `json:"id,omitempty"`
}

// subjectFromMUC takes the room's subject (a message with a <subject/> and
// no body: §7.2.16, sent last on joining, and §8.1, when changed) as the
// portal's topic, set by the ghost of the occupant who set it if they
// are in, else by the bot. The reflection of a subject a puppet set is
// the portal's topic already (the member set it there); a subject the
// portal has is not set again. Topics reach Matrix one at a time per
// room, the newest waiting: a room that changes its subject on and on
// costs a Matrix call at a time, not one per change.
func (g *chatState) subjectFromMUC(ctx context.Context, log zerolog.Logger, r *mucRoom, m *XMPPMessage, own bool) error {
	subject := clip(m.Subject, maxSubjectBytes)
	nick := m.From.Resourcepart()
	g.mu.Lock()
	_, mine := r.subjectIDs[m.ID]
	delete(r.subjectIDs, m.ID)
	same := r.hasSubject && r.subject == subject
	r.subject, r.hasSubject = subject, true
	if own || mine || same {
		g.mu.Unlock()
		g.count("muc_subject", ReasonSameSubject)
		return nil
	}
	args := subjectArgs{Room: r.portal, MUC: r.jid.String(), Subject: subject, Member: r.occupants[nick]}
	if r.topicBusy {
		r.topicNext = &args
		g.mu.Unlock()
		g.count("muc_subject", "coalesced")
		return nil
	}
	r.topicBusy = true
	g.mu.Unlock()
	log.Debug().Str("nick", nick).Msg("The room's subject becomes the topic")
	g.count("muc_subject", "topic")
	return g.queueTopic(ctx, args)
}

func (g *chatState) queueTopic(ctx context.Context, args subjectArgs) error {
	return g.queueStored(ctx, subjectJob(JobGroupTopic, args))
}

func subjectJob(kind JobKind, args subjectArgs) *Job {
	payload, _ := json.Marshal(args) // strings only
	return newJob(kind, about{room: args.Room}, 0, payload)
}

var _ = register(JobGroupTopic, jobKind{side: SideMatrix, order: byRoom, payload: subjectArgs{},
	run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args subjectArgs) error {
		return b.groups.state.topicToMatrix(ctx, args)
	})})

// topicToMatrix sets the portal's topic: the newest subject of the room,
// and again while newer ones came meanwhile. A send the outbox retries
// keeps the room busy (its retry takes the newest), so that subjects
// that come while the homeserver is away make no jobs of their own.
func (g *chatState) topicToMatrix(ctx context.Context, args subjectArgs) error {
	muc, err := payloadJID(args.MUC)
	if err != nil {
		return err
	}
	r := g.known(muc)
	newest := func() *subjectArgs {
		next := r.topicNext
		r.topicNext = nil
		return next
	}
	if r != nil {
		g.mu.Lock()
		if next := newest(); next != nil {
			args = *next
		}
		g.mu.Unlock()
	}
	for {
		var sender id.UserID
		if args.Member != "" {
			if sender, err = g.ghostOf(args.Member); err != nil {
				return err
			}
		}
		err := g.matrix.SetTopic(ctx, args.Room, sender, args.Subject)
		if r == nil {
			return err
		}
		retried := err != nil && !errors.Is(err, ErrPermanent)
		var next *subjectArgs
		g.mu.Lock()
		if !retried {
			next = newest()
		}
		r.topicBusy = retried || next != nil
		g.mu.Unlock()
		switch {
		case next == nil:
			return err
		case err != nil:
			// Dropped for good: the newest goes in a job of its own.
			return errors.Join(err, g.queueTopic(ctx, *next))
		}
		args = *next
	}
}

// topicFromMatrix takes a Matrix member's m.room.topic in a group portal:
// their puppet asks the room to make it its subject (§8.1). The room may
// refuse (subjectRefused); its reflection of the subject is not set as
// the topic again (subjectFromMUC).
func (g *chatState) topicFromMatrix(ctx context.Context, portal *Portal, evt MatrixEvent) ([]*Job, error) {
	r := g.known(portal.JID)
	topic := clip(evt.Body, maxSubjectBytes)
	if r == nil {
		g.count("matrix_topic", ReasonNotInChat)
		return nil, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case !r.joined[evt.Sender]:
		g.count("matrix_topic", ReasonNotInChat)
		return nil, nil
	case r.hasSubject && r.subject == topic:
		// The room's own subject, as set by the bridge.
		g.count("matrix_topic", ReasonSameSubject)
		return nil, nil
	}
	xid := NewXMPPID()
	if len(r.subjectIDs) >= maxPendingSubjects {
		clear(r.subjectIDs)
	}
	r.subjectIDs[xid] = evt.Sender
	g.count("matrix_topic", "subject")
	return []*Job{subjectJob(JobMUCSubject, subjectArgs{Room: portal.RoomID, MUC: portal.JID.String(), Subject: topic, MXID: evt.Sender, ID: xid})}, nil
}

// A subject goes in the XMPP side's one line, with the member's messages.
var _ = register(JobMUCSubject, jobKind{side: SideXMPP, order: bySide, payload: subjectArgs{},
	run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args subjectArgs) error {
		return b.groups.state.subjectToMUC(ctx, args)
	})})

// subjectToMUC sends a member's subject to the chat from their puppet: a
// groupchat message with a <subject/> and no body (§8.1).
func (g *chatState) subjectToMUC(ctx context.Context, args subjectArgs) error {
	muc, from, err := g.puppetTo(args.MXID, args.MUC)
	if err != nil {
		return err
	}
	subject := args.Subject
	return g.xmpp.Send(ctx, &OutMessage{ID: args.ID, From: from, To: muc, Type: TypeGroupchat, Subject: &subject})
}

// subjectRefused takes an error from a chat answering a puppet's subject
// (§8.1: an occupant who may not change it gets <forbidden/>): the member
// is told in the portal, and the topic is put back to the room's subject
// (by the bot, whose events the bridge does not carry: no loop). It tells
// whether m was such an answer.
func (g *chatState) subjectRefused(ctx context.Context, m *XMPPMessage) (bool, error) {
	r := g.known(m.From)
	if r == nil || m.ID == "" {
		return false, nil
	}
	g.mu.Lock()
	who, ok := r.subjectIDs[m.ID]
	if !ok {
		g.mu.Unlock()
		return false, nil
	}
	delete(r.subjectIDs, m.ID)
	back := subjectArgs{Room: r.portal, MUC: r.jid.String(), Subject: r.subject}
	// Put back unless a topic is on its way, which is the newest.
	restore := r.hasSubject && !r.topicBusy
	r.topicBusy = r.topicBusy || restore
	g.mu.Unlock()
	why, cond := refusal(conditionOf(m.Error), map[string]string{
		"forbidden":        "only its moderators may change it",
		"not-allowed":      "only its moderators may change it",
		"not-authorized":   "only its moderators may change it",
		"not-acceptable":   "the puppet is not in it",
		"bad-request":      "it refused the text",
		"policy-violation": "it refused the text",
	})
	g.count("matrix_topic", Reason("refused_"+cond))
	text := fmt.Sprintf("The chat `%s` did not take the topic %s set: %s.", r.jid, who, why)
	jobs := []*Job{g.bot.reply(r.portal, text)}
	if restore {
		text += " The topic is back to the chat's subject."
		jobs = []*Job{g.bot.reply(r.portal, text), subjectJob(JobGroupTopic, back)}
	}
	return true, g.queueStored(ctx, jobs...)
}

// refusal is why a chat refused, in words, given its error condition
// cond and the words of the conditions known, and the condition to count
// it as: another is named as the room gave it, bounded, and counted as
// "other", since a room names what it likes.
func refusal(cond string, words map[string]string) (why, counted string) {
	if why, ok := words[cond]; ok {
		return why, cond
	}
	return "it answered " + clip(cond, 64), "other"
}

// conditionOf is e's condition, "error" if there is none.
func conditionOf(e *StanzaError) string {
	if e == nil || e.Condition == "" {
		return "error"
	}
	return e.Condition
}

// occupantLeft takes an occupant's unavailable presence (the listener's
// copy; only of an occupant seen in this run, so that a room cannot make
// the bridge leave ghosts it never brought). A nick change (§7.6, 303)
// of an occupant known by more than their nick (an occupant-id, a real
// JID: occupantKey) keeps the ghost, renamed; one known by nick only
// leaves the old ghost, and the new nick comes as a new ghost (a new Matrix account, without the old one's read
// marks). Otherwise the occupant is gone: the ghost leaves the portal and
// is no member of it any longer, and a kick (§9.1, 307) or ban (§9.2,
// 301) is said in the portal with its reason.
func (g *chatState) occupantLeft(ctx context.Context, r *mucRoom, nick string, p *XMPPPresence) error {
	g.mu.Lock()
	member, seen := r.occupants[nick]
	newNick := p.MUC.NewNick
	renamed := p.MUC.Has(303) && newNick != "" && newNick != nick
	allowed := seen && roomChurn.take(&r.churn, g.now(), 1)
	_, stable := r.occupantKey(nick, p.MUC.OccupantID)
	keyed := renamed && stable
	// Over budget, an occupant who left stays in (their ghost as it
	// was), and one who changed nick, known by more than it, is followed
	// all the same: their ghost is renamed when they next speak.
	if allowed || seen && keyed {
		delete(r.occupants, nick)
	}
	if seen && keyed {
		r.occupants[newNick] = member
	}
	if real := r.realJIDs[nick]; real != "" {
		delete(r.realJIDs, nick)
		if renamed {
			r.realJIDs[newNick] = real
		}
	}
	g.mu.Unlock()
	if seen && !allowed {
		g.count("muc_presence", ReasonOverBudget)
		return nil
	}
	if !seen {
		g.count("muc_presence", "unknown_left")
		return nil
	}
	if keyed {
		g.count("muc_presence", "renamed")
		return g.queueStored(ctx, groupJob(JobGroupRename, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), Nick: newNick, Member: member}))
	}
	ghost, err := g.ghostOf(member)
	if err != nil {
		return err
	}
	if err := g.store.RemoveMember(ctx, r.portal, member); err != nil {
		return fmt.Errorf("remove occupant %s from the portal of %s: %w", nick, r.jid, err)
	}
	reason, said := departure(nick, p.MUC)
	if renamed {
		reason = "now known as " + newNick
	}
	jobs := []*Job{}
	if said {
		jobs = append(jobs, g.bot.reply(r.portal, reason))
	}
	jobs = append(jobs, argsJob(JobLeave, jobArgs{Room: r.portal, User: ghost, Reason: reason}))
	g.count("muc_presence", "left")
	return g.queueStored(ctx, jobs...)
}

// departure is what to say of an occupant who left: a kick or a ban with
// its actor and reason, said in the portal (true), or nothing.
func departure(nick string, x *MUCPresence) (string, bool) {
	var what string
	switch {
	case x.Has(301):
		what = "was banned from the chat"
	case x.Has(307):
		what = "was kicked from the chat"
	default:
		return "", false
	}
	text := nick + " " + what
	if x.Actor != "" {
		text += " by " + x.Actor
	}
	if reason := clip(x.Reason, maxSubjectBytes); reason != "" {
		text += ": " + reason
	}
	return strings.ReplaceAll(text, "`", "'"), true
}

// puppetRemoved takes a puppet kicked (§9.1: 110 and 307) or banned (§9.2:
// 110 and 301) from the chat: that Matrix member is out of it. As
// mautrix's bridges do with a member the remote chat removed, they are
// told in the portal and removed from it (kicked by the bot, with the
// room's reason), and their puppet does not rejoin at the next
// connection; the bot's `join` invites them again.
func (g *chatState) puppetRemoved(ctx context.Context, r *mucRoom, mxid id.UserID, x *MUCPresence) error {
	if err := g.store.RemoveMember(ctx, r.portal, MatrixMember(mxid)); err != nil {
		return fmt.Errorf("remove %s from the portal of %s: %w", mxid, r.jid, err)
	}
	said, _ := departure(string(mxid)+"'s puppet", x)
	reason := said
	if last, _ := utf8.DecodeLastRuneInString(said); !strings.ContainsRune(".!?…", last) {
		said += "."
	}
	text := fmt.Sprintf("%s The bridge takes them out of this room; `join %s` with the bot brings them back.", said, r.jid)
	g.count("muc_presence", "puppet_removed")
	return g.queueStored(ctx, g.bot.reply(r.portal, text),
		groupJob(JobGroupKick, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), MXID: mxid, Reason: reason}))
}

var (
	_ = register(JobGroupRename, jobKind{side: SideMatrix, order: byRoom, payload: groupArgs{},
		run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args groupArgs) error {
			ghost, err := b.groups.ghostOf(args.Member)
			if err != nil {
				return err
			}
			return b.groups.nameGhost(ctx, ghost, args.Nick)
		})})
	_ = register(JobGroupKick, jobKind{side: SideMatrix, order: byRoom, payload: groupArgs{},
		run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args groupArgs) error {
			return b.matrix.Kick(ctx, args.Room, args.MXID, args.Reason)
		})})
)

// typingInMUC takes an occupant's chat state (XEP-0085 "Use in
// Groupchat") as their ghost's typing in the portal.
func (g *chatState) typingInMUC(r *mucRoom, from jid.JID, member MemberID, state string) {
	ghost, err := g.ghostOf(member)
	if err != nil {
		return
	}
	g.receipts.typingInGroup(r.portal, from, ghost, state)
}
