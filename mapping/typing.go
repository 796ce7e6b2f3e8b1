package mapping

import (
	"context"
	"fmt"
	"maps"

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
	on := false
	for _, u := range users {
		on = on || u == portal.User()
	}
	was, ok := plan.typing[room]
	if !ok {
		b.typingMu.Lock()
		was = b.typing[room]
		b.typingMu.Unlock()
	}
	plan.typing[room] = on
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
	switch m.ChatState {
	case "composing": // XEP-0085 §5.1
		on, known = true, true
	case "paused", "active", "inactive", "gone":
		on, known = false, true
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
	b.count("xmpp_typing", Reason(fmt.Sprint(on)))
	// Typing is ephemeral: the side sends it off the read loop, the
	// newest state winning, and queues nothing.
	b.matrix.ShowTyping(portal.RoomID, b.cfg.Identities.Ghost(peer), on)
	return nil
}

// typed puts in force the typing that plan saw, once the transactions
// that brought it are stored: what typingFromMatrix compares the next
// typing with.
func (b *receipts) typed(plan *receiptPlan) {
	b.typingMu.Lock()
	maps.Copy(b.typing, plan.typing)
	b.typingMu.Unlock()
}
