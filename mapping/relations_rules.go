package mapping

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// The rules of what points at a message (docs/protocols.md), both ways, in 1:1
// portals:
//
//	what        XMPP                                   Matrix
//	edit        XEP-0308 <replace id=ORIGINAL/>        m.replace + m.new_content
//	reply       XEP-0461 <reply/>, XEP-0428 fallback   m.in_reply_to
//	reaction    XEP-0444 <reactions/>: the whole set   one m.reaction per key
//	retraction  XEP-0424 <retract/>                    m.room.redaction
//
// Who may: only a message's sender edits or retracts it; either person
// of the portal replies to or reacts to any of its messages. Anything
// else, and anything pointing at a message the bridge never carried, is
// counted and ignored, never bridged as a new message; the one exception
// is a reply to an unknown message, which is a message in its own right
// and crosses as a plain one (with XMPP's quote fallback kept).
//
// Each crosses as a row of the id map (Message.RelKind), stored with its
// send job and translated when the job runs, against the target's ids
// then: the target's own send runs before it in the same lane.

// relations carries what points at a message, both ways, by these rules.
// It keeps no state of its own: what it needs is in the id map.
type relations struct {
	*core
	// nickIn is the nick a user's puppet has in a chat, "" if none
	// (groups.nickOf).
	nickIn func(muc jid.JID, mxid id.UserID) string
}

// DefaultEditMaxAge is how old a Matrix message may be for its edit to reach
// XMPP as a XEP-0308 correction. XEP-0308 is "Last Message Correction":
// it is meant for the message just sent, and a correction of an old one
// is shown by few clients, so past this the edit goes as a new message,
// "* " and the new text (Matrix's own fallback), which every client shows.
const DefaultEditMaxAge = 24 * time.Hour

// relationFromXMPP handles a message that points at an earlier one. It
// returns false when m is not such a message (or a reply to an unknown
// one), to be bridged as a plain message.
func (b *relations) relationFromXMPP(ctx context.Context, log zerolog.Logger, mxid id.UserID, m *XMPPMessage) (bool, error) {
	peer := m.From.Bare()
	kind, ref := xmppRelation(m)
	if kind == RelNone {
		return false, nil
	}
	what := "xmpp_" + string(kind)
	target, err := b.xmppTarget(ctx, peer, mxid, ref)
	if err != nil {
		return true, err
	}
	target, ok, err := b.checkXMPPTarget(ctx, log, what, kind, m, target)
	if target == nil {
		return ok, err
	}
	if (kind == RelReplace || kind == RelRedact) && target.Direction != FromXMPP {
		// Only the sender corrects or retracts (XEP-0308 and XEP-0424,
		// Security Considerations: a receiver checks that the correction
		// comes from the original's sender); the lookup by peer already
		// kept out third JIDs.
		b.drop(log, what, ReasonNotAuthor)
		return true, nil
	}
	if kind == RelReaction {
		have, err := b.store.Reactions(ctx, target.RowID, FromXMPP)
		if err != nil {
			return true, err
		}
		for _, r := range reactionRows(have, target, m.Reactions.Keys) {
			r.PeerJID, r.MXID, r.TS = peer, mxid, b.now()
			if err := b.addRelation(ctx, log, "xmpp_reaction", r, nil); err != nil {
				return true, err
			}
		}
		return true, nil
	}
	msg := b.relationRow(mxid, peer, target, kind, m)
	var job *Job
	if kind == RelReplace {
		// A correction that carries a file (XEP-0066 <x/>, XEP-0447):
		// the file fetched, then an m.replace whose m.new_content is it.
		if jobs := b.mediaJobs(log, m, mxid, peer); jobs != nil {
			job = jobs[0]
		}
	}
	return true, b.addRelation(ctx, log, what, msg, job)
}

// xmppRelation is what m points at: how, and the id it names, RelNone if
// it points at nothing.
func xmppRelation(m *XMPPMessage) (RelKind, string) {
	switch {
	case m.Retract != "":
		return RelRedact, m.Retract
	case m.Reactions != nil:
		return RelReaction, m.Reactions.ID
	case m.Replace != "":
		return RelReplace, m.Replace
	case m.Reply != nil:
		return RelReply, m.Reply.ID
	}
	return RelNone, ""
}

// checkXMPPTarget judges target, the message m points at as kind, found
// by its id (nil if none): an edit's target becomes its original. It
// returns false with no error when m crosses as a plain message instead
// (a reply to a message unknown, its quote kept), and true with a nil
// target when m is dropped (counted as what).
func (b *relations) checkXMPPTarget(ctx context.Context, log zerolog.Logger, what string, kind RelKind, m *XMPPMessage, target *Message) (*Message, bool, error) {
	if target == nil {
		if kind == RelReply {
			// A message in its own right: crosses as one, the quote it
			// carried for clients without XEP-0461 kept.
			m.Body = m.Reply.Fallback + m.Body
			return nil, false, nil
		}
		b.drop(log, what, ReasonUnknownID)
		return nil, true, nil
	}
	if target.RelKind != RelNone && target.RelKind != RelReply {
		if target.RelKind != RelReplace || kind == RelReaction || kind == RelReply {
			b.drop(log, what, ReasonNotMessage)
			return nil, true, nil
		}
		// XEP-0308 Business Rules: a correction names the original, but
		// clients that name the correction before it exist; the original
		// it is.
		original, err := b.store.MessageByRow(ctx, target.RelTo)
		if err != nil {
			return nil, true, fmt.Errorf("look up the original of message %d: %w", target.RowID, err)
		}
		target = original
	}
	if kind == RelReplace && !m.HasBody {
		b.drop(log, what, ReasonNoBody)
		return nil, true, nil
	}
	return target, true, nil
}

// xmppTarget is the message of the pair (mxid, peer) that peer names by
// ref: one peer sent, or one the Matrix user sent to peer (its id is the
// bridge's). nil if there is none: a third JID names none of the pair's.
func (b *relations) xmppTarget(ctx context.Context, peer jid.JID, mxid id.UserID, ref string) (*Message, error) {
	return b.byXMPPID(ctx, peer, ref, func(msg *Message) bool { return msg.MXID == mxid })
}

// byXMPPID is the message exchanged with peer (a person, or a chat) that
// ref names, either way, if ours says it is; nil if none.
func (b *relations) byXMPPID(ctx context.Context, peer jid.JID, ref string, ours func(*Message) bool) (*Message, error) {
	for _, dir := range []Direction{FromXMPP, FromMatrix} {
		msg, err := b.store.MessageByXMPPID(ctx, peer, ref, dir)
		if isNotFound(err) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("look up message %s of %s: %w", ref, peer, err)
		}
		if ours(msg) {
			return msg, nil
		}
	}
	return nil, nil
}

// relationRow is the row of a message from XMPP that points at target.
func (b *relations) relationRow(mxid id.UserID, peer jid.JID, target *Message, kind RelKind, m *XMPPMessage) *Message {
	msg := &Message{
		RoomID: target.RoomID, XMPPID: m.ID, OriginID: m.OriginID, StanzaID: m.StanzaID,
		PeerJID: peer, PeerResource: m.From.Resourcepart(), Direction: FromXMPP, MXID: mxid,
		Body: m.Body, TS: b.now(), RelKind: kind, RelTo: target.RowID,
	}
	if kind == RelReplace || kind == RelReply {
		// A message shown to the person: its receipts are asked for as
		// any message's (a receipt for a correction is one for the edit).
		msg.Requests = m.Requests
	}
	return msg
}

// addRelation stores msg with job, the one that sends it (nil: the send
// of its text).
func (b *relations) addRelation(ctx context.Context, log zerolog.Logger, what string, msg *Message, job *Job) error {
	switch {
	case job != nil:
	case msg.Direction == FromXMPP:
		job = newJob(JobSendToMatrix, about{room: msg.RoomID, mxid: msg.MXID, peer: msg.PeerJID}, 0, nil)
	default:
		job = newJob(JobSendToXMPP, about{room: msg.RoomID, mxid: msg.MXID, peer: msg.PeerJID}, 0, nil)
	}
	added, err := b.store.AddMessage(ctx, msg, job)
	if b.stored(err) != nil {
		return fmt.Errorf("store %s of message %d: %w", msg.RelKind, msg.RelTo, err)
	}
	if !added {
		b.drop(log, what, ReasonDuplicate)
		return nil
	}
	b.count(what, "accepted")
	b.queue(job)
	return nil
}

// reactionRows are the rows that make a sender's reactions to target
// the set keys (XEP-0444 §4: each <reactions/> carries the sender's whole
// set), given have, the sender's reactions to it now: a reaction for each
// new key, a redaction of each one gone. The caller fills in the sender.
func reactionRows(have []*Message, target *Message, keys []string) []*Message {
	var rows []*Message
	had := map[string]bool{}
	for _, r := range have {
		had[r.RelKey] = true
		if !slices.Contains(keys, r.RelKey) {
			rows = append(rows, &Message{RoomID: target.RoomID, Direction: FromXMPP, RelKind: RelRedact, RelTo: r.RowID})
		}
	}
	for _, k := range keys {
		if had[k] {
			continue
		}
		had[k] = true
		rows = append(rows, &Message{RoomID: target.RoomID, Direction: FromXMPP, RelKind: RelReaction, RelTo: target.RowID, RelKey: k})
	}
	return rows
}

// relationFromMatrix handles an event that points at an earlier one: an
// edit, a reply, a reaction or a redaction. It returns false when evt is
// not one (or a reply to an unknown event), to be bridged as a message.
func (b *relations) relationFromMatrix(ctx context.Context, log zerolog.Logger, portal *Portal, evt MatrixEvent) (bool, error) {
	var kind RelKind
	var ref id.EventID
	switch {
	case evt.Kind == EventRedaction:
		kind, ref = RelRedact, evt.Redacts
	case evt.Kind == EventReaction:
		if evt.Rel.Type != RelTypeAnnotation || evt.Rel.Key == "" {
			b.count("matrix_reaction", ReasonMalformed)
			return true, nil
		}
		kind, ref = RelReaction, evt.Rel.Event
	case evt.Rel.Type == RelTypeReplace:
		kind, ref = RelReplace, evt.Rel.Event
	case evt.Rel.ReplyTo != "" && evt.File != nil:
		// A file in reply: the file crosses (media.go), without the
		// quote a reply's text would carry.
		b.count("matrix_reply", "file")
		return false, nil
	case evt.Rel.ReplyTo != "":
		kind, ref = RelReply, evt.Rel.ReplyTo
	default:
		return false, nil
	}
	what := "matrix_" + string(kind)
	target, err := b.store.MessageByEventID(ctx, ref)
	if isNotFound(err) || (err == nil && target.RoomID != portal.RoomID) {
		if kind == RelReply {
			return false, nil // a message in its own right
		}
		b.count(what, ReasonUnknownEvent)
		return true, nil
	} else if err != nil {
		return true, fmt.Errorf("look up event %s: %w", ref, err)
	}
	mine := target.Direction == FromMatrix && target.MXID == evt.Sender
	switch kind {
	case RelRedact:
		// Client-server API, redactions: a user may redact others' events
		// with the power to, but XEP-0424 lets only the sender retract.
		if !mine {
			b.count(what, ReasonNotAuthor)
			return true, nil
		}
		if target.RelKind == RelReplace || target.RelKind == RelRedact {
			// Redacting an edit undoes it on Matrix; XMPP has no way to
			// say so.
			b.count(what, ReasonNotMessage)
			return true, nil
		}
	case RelReplace:
		if !mine {
			b.count(what, ReasonNotAuthor)
			return true, nil
		}
		if target.RelKind == RelReplace {
			// The spec's m.replace names the original; an edit of an edit
			// is not one (client-server API, "Event replacements").
			if target, err = b.store.MessageByRow(ctx, target.RelTo); err != nil {
				return true, fmt.Errorf("look up the original of %s: %w", ref, err)
			}
		}
		if target.RelKind != RelNone && target.RelKind != RelReply {
			b.count(what, ReasonNotMessage)
			return true, nil
		}
	default:
		if target.RelKind != RelNone && target.RelKind != RelReply && target.RelKind != RelReplace {
			b.count(what, ReasonNotMessage)
			return true, nil
		}
	}
	body, _ := textOf(evt)
	var job *Job
	if kind == RelReplace {
		body, _ = textOf(MatrixEvent{MsgType: evt.Rel.NewMsgType, Body: evt.Rel.NewBody})
	}
	if kind == RelReplace && isMediaMsgType(evt.Rel.NewMsgType) {
		var refused []*Job
		var ok bool
		if body, job, refused, ok = b.fileEdit(evt, portal.JID); !ok {
			return true, b.addJobs(ctx, refused)
		}
	}
	xid := NewXMPPID()
	msg := &Message{
		RoomID: evt.Room, EventID: evt.ID, XMPPID: xid, OriginID: xid,
		PeerJID: portal.JID, Direction: FromMatrix, MXID: evt.Sender,
		Body: body, TS: b.tsOf(evt), RelKind: kind, RelTo: target.RowID, RelKey: evt.Rel.Key,
	}
	if kind == RelReplace || kind == RelReply {
		msg.Requests = Requests{Receipt: true, Delivered: true, Displayed: true, Composing: true, Markable: true}
		if portal.Kind == PortalGroup {
			msg.Requests = Requests{Markable: true} // as any message to a chat
		}
		if kind == RelReplace && b.tsOf(evt).Sub(target.TS) > b.editMaxAge() {
			// Past edit_max_age: a new message, as Matrix's own fallback.
			msg.RelKind, msg.RelTo, msg.Body = RelNone, 0, "* "+body
		}
	}
	return true, b.addRelation(ctx, log, what, msg, job)
}

// relationToMatrix posts msg, which points at another message, as ghost.
func (b *relations) relationToMatrix(ctx context.Context, room id.RoomID, ghost id.UserID, msg *Message, txnID string) (id.EventID, error) {
	target, err := b.relationTarget(ctx, msg)
	if err != nil {
		return "", err
	}
	switch msg.RelKind {
	case RelReplace:
		out := b.matrixText("* " + msg.Body)
		newText := b.matrixText(msg.Body)
		out.Replace, out.NewBody, out.NewHTML = target.EventID, newText.Body, newText.HTML
		return b.matrix.SendMessage(ctx, room, ghost, out, txnID)
	case RelReply:
		out := b.matrixText(msg.Body)
		out.ReplyTo = target.EventID
		return b.matrix.SendMessage(ctx, room, ghost, out, txnID)
	case RelReaction:
		return b.matrix.React(ctx, room, ghost, target.EventID, msg.RelKey, txnID)
	case RelRedact:
		return b.matrix.Redact(ctx, room, ghost, target.EventID, txnID)
	}
	return "", fmt.Errorf("%w: message %d has relation %q", ErrPermanent, msg.RowID, msg.RelKind)
}

// fileEditToMatrix posts msg, a XEP-0308 correction that carried file,
// as ghost: an m.replace of the original whose m.new_content is the file
// with its caption (client-server API, "Event replacements"), its
// content "* " and the caption as a fallback.
func (b *relations) fileEditToMatrix(ctx context.Context, room id.RoomID, ghost id.UserID, msg *Message, file *MediaFile, txnID string) (id.EventID, error) {
	target, err := b.relationTarget(ctx, msg)
	if err != nil {
		return "", err
	}
	out := mediaOut(file)
	out.Replace, out.NewBody, out.Body = target.EventID, out.Body, "* "+out.Body
	return b.matrix.SendMessage(ctx, room, ghost, out, txnID)
}

// relationTarget is the message msg points at, which its side must know.
func (b *relations) relationTarget(ctx context.Context, msg *Message) (*Message, error) {
	target, err := b.store.MessageByRow(ctx, msg.RelTo)
	if isNotFound(err) {
		return nil, fmt.Errorf("%w: message %d points at no message", ErrPermanent, msg.RowID)
	} else if err != nil {
		return nil, fmt.Errorf("load message %d: %w", msg.RelTo, err)
	}
	if (msg.Direction == FromXMPP && target.EventID == "") || (msg.Direction == FromMatrix && target.XMPPID == "") {
		// Its own send failed for good, or it has no id to name it by.
		return nil, fmt.Errorf("%w: message %d points at message %d, which the other side cannot name", ErrPermanent, msg.RowID, target.RowID)
	}
	return target, nil
}

// matrixText is the content of a text from XMPP: the body, and its
// XEP-0393 styling as HTML when it has some.
func (b *relations) matrixText(body string) *OutMatrix {
	out := &OutMatrix{Body: body}
	if html, ok := StylingToHTML(body); ok {
		out.HTML = html
	}
	return out
}

// relationToXMPP fills out, the stanza of msg, with what msg points at.
func (b *relations) relationToXMPP(ctx context.Context, msg *Message, out *OutMessage) error {
	target, err := b.relationTarget(ctx, msg)
	if err != nil {
		return err
	}
	group := out.Type == TypeGroupchat
	switch msg.RelKind {
	case RelReplace:
		// XEP-0308 names the original by its id, which a chat's
		// reflection did not change (SetRoomStanzaID keeps OriginID).
		out.Replace = target.XMPPID
		if group && target.OriginID != "" {
			out.Replace = target.OriginID
		}
	case RelReply:
		author, err := b.replyAuthor(target, group)
		if err != nil {
			return err
		}
		out.Reply = &OutReply{To: author, ID: target.XMPPID, Quote: quote(target.Body)}
	case RelReaction, RelRedact:
		if msg.RelKind == RelRedact && target.RelKind != RelReaction {
			out.Retract = target.XMPPID
			out.Body, out.Request, out.ChatState = "", Requests{}, ""
			return nil
		}
		// A reaction added or taken back: XMPP is told the whole set,
		// as it stands when the job runs (the newest wins).
		of := target
		if target.RelKind == RelReaction {
			if of, err = b.relationTarget(ctx, target); err != nil {
				return err
			}
		}
		rs, err := b.store.Reactions(ctx, of.RowID, FromMatrix)
		if err != nil {
			return err
		}
		keys := make([]string, 0, len(rs))
		for _, r := range rs {
			// The sender's own set (XEP-0444): in a group, other
			// members' reactions are their puppets' to send.
			if r.MXID == msg.MXID && !slices.Contains(keys, r.RelKey) {
				keys = append(keys, r.RelKey)
			}
		}
		out.Reactions = &XMPPReactions{ID: of.XMPPID, Keys: keys}
		out.Body, out.Request, out.ChatState = "", Requests{}, ""
	}
	return nil
}

// replyAuthor is who wrote target, as a XEP-0461 reply names them: a
// person's JID, or a puppet's; in a chat, the occupant's JID (room/nick),
// a puppet's nick being the one it has in the chat now.
func (b *relations) replyAuthor(target *Message, group bool) (jid.JID, error) {
	switch {
	case group && target.Direction == FromXMPP:
		if occupant, err := target.PeerJID.WithResource(target.PeerResource); err == nil {
			return occupant, nil
		}
		return target.PeerJID, nil
	case group:
		if nick := b.nickIn(target.PeerJID, target.MXID); nick != "" {
			if occupant, err := target.PeerJID.WithResource(nick); err == nil {
				return occupant, nil
			}
		}
		return target.PeerJID, nil
	case target.Direction == FromMatrix:
		author, err := b.cfg.Identities.Puppet(target.MXID)
		if err != nil {
			return jid.JID{}, fmt.Errorf("%w: %w", ErrPermanent, err)
		}
		return author, nil
	}
	return target.PeerJID, nil
}

// quote is the XEP-0428 fallback of a reply to body: its lines, each
// after "> " (XEP-0393 §5.2.2 block quotes), as XEP-0461 §5 shows.
func quote(body string) string {
	var q strings.Builder
	for _, line := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		q.WriteString("> " + line + "\n")
	}
	return q.String()
}

// relationTxn is the Matrix transaction id of a row's send.
func relationTxn(row int64) string { return "xmpp-" + strconv.FormatInt(row, 10) }

// editMaxAge is the configured bound of Matrix edits sent as corrections.
func (b *relations) editMaxAge() time.Duration {
	if b.cfg.EditMaxAge > 0 {
		return b.cfg.EditMaxAge
	}
	return DefaultEditMaxAge
}
