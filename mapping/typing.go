package mapping

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// Typing, both ways: the Matrix user's m.typing to XEP-0085 chat states and
// XEP-0022 composing events toward XMPP, and those from the XMPP person to
// the ghost's typing.

// typingFromMatrix tells the XMPP peer when the portal's user starts or
// stops typing: XEP-0085 <composing/> / <active/>, and XEP-0022
// <composing/> (and its cancellation) against the newest message that
// asked for composing events. Only changes are sent. The stanzas go with
// the transaction's others, in one job stored with it (and so in order
// with the messages and receipts before them); the new state is the
// bridge's once the transaction is (plan.typing, HandleMatrixTxns).
func (b *receipts) typingFromMatrix(ctx context.Context, room id.RoomID, users []id.UserID, plan *receiptPlan) error {
	portal, err := b.planPortal(ctx, plan, room)
	if err != nil {
		return err
	} else if portal == nil {
		b.count("matrix_typing", ReasonNotPortal)
		return nil
	}
	if portal.Kind == PortalGroup {
		b.groupTypingFromMatrix(portal, users, plan)
		return nil
	}
	on := slices.Contains(users, portal.User())
	st := b.typingOf(plan, room)
	was := st[portal.User()]
	st[portal.User()] = on
	if was == on || !b.bot.tellsXMPP(portal.User(), true) {
		return nil
	}
	from, err := b.cfg.Identities.PuppetFrom(portal.User())
	if err != nil {
		return nil
	}
	state := "active"
	if on {
		state = "composing"
	}
	plan.out = append(plan.out, &OutMessage{ID: NewXMPPID(), From: from, To: portal.JID, Type: TypeChat, ChatState: state})
	if m, err := b.store.NewestComposable(ctx, room); err == nil {
		// XEP-0022 §3.2.4: a composing event, or an <id/> alone to cancel.
		plan.out = append(plan.out, &OutMessage{ID: NewXMPPID(), From: from, To: b.to(m), Type: TypeChat, Event: &EventNotice{ID: m.XMPPID, Composing: on}})
	} else if !isNotFound(err) {
		return fmt.Errorf("look up the newest composable message: %w", err)
	}
	b.count("matrix_typing", Reason(fmt.Sprint(on)))
	return nil
}

// groupTypingFromMatrix tells the chat of a group portal when its Matrix
// members start or stop typing: each one whose typing changed and whose
// typing setting lets it, as a standalone groupchat chat state from their
// puppet (XEP-0085 "Use in Groupchat": chat states MAY be sent in a
// room; "Syntax of Notifications": a standalone one SHOULD NOT be
// <active/>, so a stop is <paused/>; no <gone/> in a room).
func (b *receipts) groupTypingFromMatrix(portal *Portal, users []id.UserID, plan *receiptPlan) {
	st := b.typingOf(plan, portal.RoomID)
	changed := map[id.UserID]bool{}
	for u, was := range st {
		if was && !slices.Contains(users, u) {
			changed[u] = false
		}
	}
	for _, u := range users {
		if !st[u] && portal.Member(MatrixMember(u)) != nil {
			changed[u] = true
		}
	}
	for _, u := range slices.Sorted(maps.Keys(changed)) {
		on := changed[u]
		st[u] = on
		from, err := b.cfg.Identities.PuppetFrom(u)
		if err != nil || !b.bot.tellsXMPP(u, true) {
			continue
		}
		state := "paused"
		if on {
			state = "composing"
		}
		plan.out = append(plan.out, &OutMessage{ID: NewXMPPID(), From: from, To: portal.JID, Type: TypeGroupchat, ChatState: state})
		b.count("matrix_typing", Reason("group_"+fmt.Sprint(on)))
	}
}

// typingOf is who types in room as plan sees it, taken from what is in
// force the first time plan asks.
func (b *receipts) typingOf(plan *receiptPlan, room id.RoomID) map[id.UserID]bool {
	if st, ok := plan.typing[room]; ok {
		return st
	}
	b.typingMu.Lock()
	st := maps.Clone(b.typing[room])
	b.typingMu.Unlock()
	if st == nil {
		st = map[id.UserID]bool{}
	}
	plan.typing[room] = st
	return st
}

// typingFromXMPP turns XEP-0022 composing notifications and XEP-0085 chat
// states into the ghost's typing. Typing is ephemeral: it is not queued.
func (b *receipts) typingFromXMPP(ctx context.Context, log zerolog.Logger, mxid id.UserID, peer jid.JID, m *XMPPMessage) error {
	e := m.Event
	isEvent := e != nil && e.ID != ""
	if !isEvent && m.ChatState == "" {
		return nil
	}
	// Before any lookup: a flood of chat states costs its sender's budget.
	if !b.in.allow(peer.String(), 1) {
		b.count("xmpp_typing", ReasonOverBudget)
		return nil
	}
	on, known := false, false
	if isEvent {
		// XEP-0022 §3.2.4: <composing/> with an id starts, an <id/> alone
		// cancels. Only for a message of ours that asked for composing.
		_, reason, err := b.ourMessage(ctx, peer, mxid, e.ID, func(r Requests) bool { return r.Composing })
		if err != nil {
			return err
		}
		if reason != "" {
			b.count("xmpp_typing", reason)
			return nil
		}
		on, known = e.Composing, true
	}
	if state, ok := chatStateTyping(m.ChatState, false); ok {
		on, known = state, true
	}
	if !known {
		return nil
	}
	portal, err := b.store.PortalByPair(ctx, mxid, peer)
	if isNotFound(err) {
		b.count("xmpp_typing", ReasonNoPortal)
		return nil
	} else if err != nil {
		return fmt.Errorf("look up portal for typing: %w", err)
	}
	b.showTyping(portal.RoomID, b.cfg.Identities.Ghost(peer), on)
	return nil
}

// chatStateTyping is whether an XEP-0085 chat state means typing, false
// if it says nothing of it: <composing/> is typing (§5.1), the others are
// not; in a room, <gone/> is ignored ("Use in Groupchat": a client SHOULD
// ignore it from other occupants).
func chatStateTyping(state string, group bool) (on, known bool) {
	switch state {
	case "composing":
		return true, true
	case "paused", "active", "inactive":
		return false, true
	case "gone":
		return false, !group
	}
	return false, false
}

// showTyping shows or clears ghost's typing in room. Typing is ephemeral:
// the side sends it off the read loop, the newest state winning, and
// queues nothing.
func (b *receipts) showTyping(room id.RoomID, ghost id.UserID, on bool) {
	b.count("xmpp_typing", Reason(fmt.Sprint(on)))
	b.matrix.ShowTyping(room, ghost, on)
}

// typingInGroup turns an occupant's chat state into their ghost's typing
// in the group portal room: the same states as from a person
// (chatStateTyping), within the occupant's budget (occupant: their
// occupant JID), since every chat state costs a Matrix call.
func (b *receipts) typingInGroup(room id.RoomID, occupant jid.JID, ghost id.UserID, state string) {
	on, known := chatStateTyping(state, true)
	if !known {
		return
	}
	if !b.in.allow(occupant.String(), 1) {
		b.count("xmpp_typing", ReasonOverBudget)
		return
	}
	b.showTyping(room, ghost, on)
}

// typed puts in force the typing that plan saw, once the transactions
// that brought it are stored: what typingFromMatrix compares the next
// typing with.
func (b *receipts) typed(plan *receiptPlan) {
	b.typingMu.Lock()
	defer b.typingMu.Unlock()
	for room, st := range plan.typing {
		// Only who types is kept: a room where no one does takes nothing.
		maps.DeleteFunc(st, func(_ id.UserID, on bool) bool { return !on })
		if len(st) == 0 {
			delete(b.typing, room)
		} else {
			b.typing[room] = st
		}
	}
}
