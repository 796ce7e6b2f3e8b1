package mapping

import (
	"context"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// What points at a message in a group portal. The rules are the 1:1
// ones (relations_rules.go) with the chat's names and senders:
//
//   - A reply, a reaction or a retraction names its message by the room's
//     XEP-0359 <stanza-id/>, never by the stanza's id attribute (XEP-0461
//     and XEP-0444, Business Rules: "the ID assigned to the stanza by the
//     group chat itself"; XEP-0424 on groupchat likewise), which is what
//     the id map names a chat's messages by.
//   - A correction names it by the id its sender gave it (XEP-0308, the
//     original's id attribute, which clients make its origin-id), looked
//     up among the room's newest messages (Store.RecentByOriginID), and
//     by the stanza-id for clients that use it instead.
//   - Only its sender corrects or retracts a message (XEP-0308 and
//     XEP-0424, Security Considerations): the same occupant, by XEP-0421
//     occupant-id where the room gives one (what it is for), else by
//     nick, which another can take once the first has left; a Matrix
//     member, by their MXID.
//   - A reaction set is the sender's own (XEP-0444: each <reactions/> is
//     its sender's whole set): each occupant's and each puppet's apart.
//
// A redaction of another's message (a moderator's) is not a retraction:
// it crosses as a XEP-0425 moderation (moderation.go).

// relationFromMUC takes the message m of the occupant by in the chat muc
// (portal room) that points at an earlier one of the chat: the rows to
// store, each sent to Matrix by the occupant's ghost. It returns false
// when m is to cross as a plain message instead (a reply to a message
// unknown, its quote kept), and true with no rows when m is dropped.
func (b *relations) relationFromMUC(ctx context.Context, log zerolog.Logger, room id.RoomID, muc jid.JID, by MemberID, m *XMPPMessage) ([]*Message, bool, error) {
	kind, ref := xmppRelation(m)
	if kind == RelNone {
		return nil, false, nil
	}
	what := "xmpp_" + string(kind)
	target, err := b.mucTarget(ctx, room, muc, kind, ref)
	if err != nil {
		return nil, true, err
	}
	target, ok, err := b.checkXMPPTarget(ctx, log, what, kind, m, target)
	if target == nil {
		return nil, ok, err
	}
	if (kind == RelReplace || kind == RelRedact) && (target.Direction != FromXMPP || target.SentBy() != by) {
		b.drop(log, what, ReasonNotAuthor)
		return nil, true, nil
	}
	if kind == RelReaction {
		all, err := b.store.Reactions(ctx, target.RowID, FromXMPP)
		if err != nil {
			return nil, true, err
		}
		var have []*Message
		for _, r := range all {
			if r.SentBy() == by {
				have = append(have, r)
			}
		}
		rows := reactionRows(have, target, m.Reactions.Keys)
		for _, r := range rows {
			r.PeerJID, r.PeerResource, r.Sender, r.TS = muc, m.From.Resourcepart(), by, b.now()
		}
		return rows, true, nil
	}
	xid := m.StanzaID // XEP-0359 §3: what the room names it by
	if xid == "" {
		xid = m.ID
	}
	row := &Message{
		RoomID: room, XMPPID: xid, OriginID: m.OriginID, StanzaID: m.StanzaID,
		PeerJID: muc, PeerResource: m.From.Resourcepart(), Direction: FromXMPP, Sender: by,
		Body: m.Body, TS: b.now(), RelKind: kind, RelTo: target.RowID,
	}
	if kind == RelReplace || kind == RelReply {
		row.Requests = Requests{Markable: m.Requests.Markable} // as any message of a chat
	}
	return []*Message{row}, true, nil
}

// mucTarget is the message of the chat muc (portal room) that ref names
// for a relation of kind, nil if none.
func (b *relations) mucTarget(ctx context.Context, room id.RoomID, muc jid.JID, kind RelKind, ref string) (*Message, error) {
	if kind == RelReplace {
		msg, err := b.store.RecentByOriginID(ctx, room, ref)
		if err == nil {
			return msg, nil
		} else if !isNotFound(err) {
			return nil, err
		}
	}
	return b.byXMPPID(ctx, muc, ref, func(msg *Message) bool { return msg.RoomID == room })
}
