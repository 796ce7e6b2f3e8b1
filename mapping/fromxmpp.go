package mapping

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// HandleXMPPMessage takes a message addressed to one of the component's
// JIDs. It returns a bounce to send back to the sender when the message is
// refused with an error (RFC 6121 §8.5.2.2.1: a message to an account that
// does not exist gets <service-unavailable/>), or nil.
func (b *Bridge) HandleXMPPMessage(ctx context.Context, m *XMPPMessage) (*OutMessage, error) {
	return b.messages.handleXMPPMessage(ctx, m)
}

func (b *messages) handleXMPPMessage(ctx context.Context, m *XMPPMessage) (*OutMessage, error) {
	// This logger only ever writes at debug level: its context is built
	// only when that is on, as it costs more than the rest of a receipt.
	log := b.log
	if log.GetLevel() <= zerolog.DebugLevel {
		log = b.log.With().Str("from", m.From.String()).Str("to", m.To.String()).Str("id", m.ID).Logger()
	}
	if m.PEP != nil {
		// Sent as headlines (XEP-0060 §12.5), read before those are
		// dropped.
		return nil, b.people.pepFromXMPP(ctx, log, m)
	}
	if m.Type == TypeHeadline {
		return b.drop(log, "xmpp_message", ReasonHeadline), nil
	}
	if b.blocked(m.From) {
		return b.drop(log, "xmpp_message", ReasonBlockedDomain), nil
	}
	if !m.HasBody && m.OOB != nil {
		// XEP-0066 §3 makes the <x/> the message: its link is its text.
		m.Body, m.HasBody = m.OOB.URL, true
	}
	if m.Shared != nil && m.Shared.Ignored > 0 {
		// XEP-0447 §3.2 leaves sources other than an http(s) url-data
		// to their own protocols (jingle), which the bridge speaks none of.
		b.count("media_fetch", "sfs_source_ignored")
	}
	if !m.HasBody && m.Shared != nil && m.Shared.URL != "" {
		// XEP-0447 §3.1 makes the <file-sharing/> the message, its body
		// only a fallback that may be left out: the link is its text.
		m.Body, m.HasBody = m.Shared.URL, true
	}
	mxid, reason := b.resolvePuppet(m.To)
	if m.Type == TypeGroupchat {
		if reason != "" {
			return b.drop(log, "xmpp_message", reason), nil
		}
		return nil, b.groups.messageFromMUC(ctx, log, mxid, m)
	}
	if reason != "" {
		b.drop(log, "xmpp_message", reason)
		if !m.HasBody {
			// A receipt or notification for nobody: XEP-0184 §5 wants no
			// error for an unwanted receipt, so it is dropped quietly.
			return nil, nil
		}
		return bounce(m, "cancel", "service-unavailable"), nil
	}
	if m.Type == TypeError {
		if done, err := b.groups.state.subjectRefused(ctx, m); done || err != nil {
			return nil, err
		}
		// Never answered with an error (RFC 6120 §8.3.1); one that answers
		// a message of ours becomes its failure status on Matrix.
		return nil, b.receipts.errorFromXMPP(ctx, log, mxid, m)
	}
	if m.HasBody && m.IMNG && m.To.Resourcepart() != "" && m.To.Resourcepart() != PuppetResource {
		// XEP-0409 §4: a full-JID message with <im-ng/> is for that one
		// client only. A puppet has one resource, the one it speaks from
		// (PuppetResource), which stands for all of the Matrix user's
		// devices; to any other there is no client to deliver it to.
		b.drop(log, "xmpp_message", ReasonIMNGFullJID)
		return bounce(m, "cancel", "service-unavailable"), nil
	}
	if err := b.receipts.receiptsFromXMPP(ctx, log, mxid, m); err != nil {
		return nil, err
	}
	if m.Moderation != nil {
		// XEP-0425 §5: only a room moderates, in its groupchat.
		return b.drop(log, "xmpp_moderate", ReasonNotRoom), nil
	}
	if done, err := b.relations.relationFromXMPP(ctx, log, mxid, m); done || err != nil {
		return nil, err
	}
	if !m.HasBody {
		if !carriesReceipt(m) && m.Event == nil && m.ChatState == "" {
			b.drop(log, "xmpp_message", ReasonNoBody)
		}
		return nil, nil
	}
	peer := m.From.Bare()
	portal, err := b.store.PortalByPair(ctx, mxid, peer)
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("look up portal of %s and %s: %w", mxid, peer, err)
	}
	msg := &Message{
		XMPPID:       m.ID,
		OriginID:     m.OriginID,
		StanzaID:     m.StanzaID,
		PeerJID:      peer,
		PeerResource: m.From.Resourcepart(),
		Direction:    FromXMPP,
		MXID:         mxid,
		Body:         m.Body,
		TS:           b.now(),
		Requests:     m.Requests,
	}
	if portal != nil {
		msg.RoomID = portal.RoomID
	} else if out, err := b.admitNewPortal(ctx, log, m, mxid, peer); out != nil || err != nil {
		return out, err
	}
	if m.ID == "" {
		// Nothing can refer to it later, so nothing can acknowledge it.
		log.Debug().Msg("Message without id: bridged, but it can never be acknowledged")
		msg.Requests = Requests{}
	}
	jobs := b.mediaJobs(log, m, mxid, peer) // a file fetched first, then posted
	if jobs == nil {
		jobs = []*Job{newJob(JobSendToMatrix, about{room: msg.RoomID, mxid: mxid, peer: peer}, 0, nil)}
	}
	if name := b.people.ghostName(mxid, peer, m.Nick); name != nil {
		jobs = append(jobs, name)
	}
	added, err := b.store.AddMessage(ctx, msg, jobs...)
	if b.stored(err) != nil {
		return nil, fmt.Errorf("store message %s from %s: %w", m.ID, peer, err)
	}
	if !added {
		return b.drop(log, "xmpp_message", ReasonDuplicate), nil
	}
	if len(jobs) > 1 {
		b.people.namedAfter(peer, m.Nick)
	}
	b.count("xmpp_message", "accepted")
	b.queue(jobs...)
	return nil, nil
}

// admitNewPortal decides whether the message m from peer, who has no
// portal with mxid, may open one, spending the budgets of strangers: new
// portals of the person and of their domain, and a new ghost of their
// domain if they have none yet. It returns the error to answer m with if
// not; then nothing is stored or created. RFC 6120 §8.3.3.18
// <resource-constraint/> of type wait: the budget fills again with time,
// so the sender may try later, and no one sender did anything against a
// policy (one person past their own budget looks the same as one whose
// server's other accounts spent the domain's), which
// <policy-violation/> would claim.
func (b *messages) admitNewPortal(ctx context.Context, log zerolog.Logger, m *XMPPMessage, mxid id.UserID, peer jid.JID) (*OutMessage, error) {
	// A message while the pair's first is on its way opens nothing more.
	if pending, err := b.store.HasUnsentToMatrix(ctx, mxid, peer); err != nil {
		return nil, fmt.Errorf("look for messages of %s on their way to %s: %w", peer, mxid, err)
	} else if pending {
		return nil, nil
	}
	reason, err := b.people.admitStranger(ctx, peer, true, ask{portalsOfJID, peer.String()}, ask{portalsOfDomain, peer.Domainpart()})
	if err != nil {
		return nil, err
	}
	if reason != "" {
		b.drop(log, "xmpp_message", reason)
		out := bounce(m, "wait", "resource-constraint")
		if out != nil {
			who := "you"
			if reason != ReasonJIDBudget {
				who = "people of " + peer.Domainpart()
			}
			out.Error.Text = "This bridge takes no more new chats from " + who + " for now; try again later."
		}
		return out, nil
	}
	return nil, nil
}

// ResolvePuppet tells which Matrix user the puppet JID to stands for, or
// why it stands for nobody. A user who may not use the bridge is treated
// exactly like one who does not exist, so that no XMPP entity learns from
// the bridge whether a Matrix user is there.
func (b *Bridge) ResolvePuppet(to jid.JID) (id.UserID, Reason) { return b.resolvePuppet(to) }

func (b *core) resolvePuppet(to jid.JID) (id.UserID, Reason) {
	mxid, err := b.cfg.Identities.PuppetUser(to)
	if err != nil {
		return "", ReasonUnknownPuppet
	}
	if !b.cfg.Permissions.Allowed(mxid) {
		return "", ReasonNotPermitted
	}
	return mxid, ""
}

func (b *core) drop(log zerolog.Logger, what string, reason Reason) *OutMessage {
	log.Debug().Str("reason", string(reason)).Msg("Dropped incoming stanza")
	b.count(what, reason)
	return nil
}

// bounce answers m with a stanza error (RFC 6120 §8.2-8.3): the same id,
// from and to swapped.
func bounce(m *XMPPMessage, typ, condition string) *OutMessage {
	if m.Type == TypeError {
		return nil // never answer an error with an error
	}
	return &OutMessage{
		ID: m.ID, From: m.To, To: m.From, Type: TypeError,
		Body:  m.Body,
		Error: &StanzaError{Type: typ, Condition: condition},
	}
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
