package matrixside

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// Homeserver carries out the core's sends through mautrix intents. It
// implements mapping.MatrixSide.
type Homeserver struct {
	AS       *appservice.AppService
	IDs      mapping.Identities
	Delivery Delivery

	// RegistrationPath is the registration file the bridge uses, named
	// when the homeserver refuses the bridge's token (token.go).
	RegistrationPath string

	delivery   deliveryState
	registered sync.Map // id.UserID → true: users known to exist
	// botIn: rooms the bot is known to have joined (botJoin), so that a
	// status event on the delivery fallback asks the state store nothing.
	// A send the homeserver forbids forgets the room: the bot left or was
	// removed, and the retry joins again.
	botIn   sync.Map // id.RoomID → true
	typists *typists // typing.go
	token   tokenState
}

// NewHomeserver prepares the homeserver side. Its HTTP client keeps as
// many connections open as the outbox has lanes: Go's default of two idle
// connections per host would make most sends dial anew.
func NewHomeserver(as *appservice.AppService, ids mapping.Identities, d Delivery) *Homeserver {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 128
	transport.MaxIdleConnsPerHost = 64
	as.HTTPClient.Transport = transport
	h := &Homeserver{AS: as, IDs: ids, Delivery: d}
	h.token.changed = make(chan struct{}, 1)
	h.typists = newTypists(h.setTyping, as.Log)
	return h
}

var _ mapping.MatrixSide = (*Homeserver)(nil)

// intent returns the intent of user, registered, and for a ghost named
// after its JID on its first use in this run if it still has the name the
// homeserver gave it (nameGhost).
func (h *Homeserver) intent(ctx context.Context, user id.UserID) (*appservice.IntentAPI, error) {
	return h.intentNamed(ctx, user, true)
}

// intentNamed is intent; name false leaves a new ghost's name to the
// caller, which is about to set one.
func (h *Homeserver) intentNamed(ctx context.Context, user id.UserID, name bool) (*appservice.IntentAPI, error) {
	intent := h.AS.Intent(user)
	if _, ok := h.registered.Load(user); ok {
		return intent, nil // spares a state store query per send
	}
	if err := intent.EnsureRegistered(ctx); err != nil {
		return nil, h.classify(ctx, fmt.Errorf("register %s: %w", user, err))
	}
	if j, err := h.IDs.GhostJID(user); err == nil && name && !h.nameGhost(ctx, intent, j) {
		return intent, nil // asked again on its next use
	}
	h.registered.Store(user, true)
	return intent, nil
}

// CreateDM creates the portal room as the ghost and invites the Matrix user.
func (h *Homeserver) CreateDM(ctx context.Context, ghost, invitee id.UserID) (id.RoomID, error) {
	intent, err := h.intent(ctx, ghost)
	if err != nil {
		return "", err
	}
	// The bot is invited too: it reads the portal's receipts by /sync where
	// the homeserver pushes none, and sends the delivery status events.
	resp, err := intent.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset:   "trusted_private_chat",
		IsDirect: true,
		Invite:   []id.UserID{invitee, h.AS.BotMXID()},
	})
	if err != nil {
		return "", h.classify(ctx, fmt.Errorf("create room for %s: %w", invitee, err))
	}
	if err := h.botJoin(ctx, resp.RoomID); err != nil {
		return "", err
	}
	return resp.RoomID, nil
}

// nameGhost gives a ghost the name its JID gives (mapping.JIDName) while it
// has none of its own: no name, or the one the homeserver gave the account
// when it was registered (Dendrite and Synapse give it its localpart,
// "_xmpp_juliet=40capulet.lit"). A name the bridge set (its person's
// XEP-0172 nick or vCard name, SetGhostName) is never either, so it stays.
// It tells whether the ghost has a name of its own now.
func (h *Homeserver) nameGhost(ctx context.Context, intent *appservice.IntentAPI, j jid.JID) bool {
	cur, err := intent.GetDisplayName(ctx, intent.UserID)
	switch {
	case errors.Is(err, mautrix.MNotFound): // no profile at all: no name
	case err != nil:
		// Not known to be a default: a name of its own is kept.
		zerolog.Ctx(ctx).Debug().Err(err).Stringer("ghost", intent.UserID).Msg("Failed to read a ghost's display name")
		return false
	case !homeserverDefaultName(intent.UserID, cur.DisplayName):
		return true
	}
	if err := intent.Client.SetDisplayName(ctx, ghostName(mapping.JIDName(j))); err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Stringer("ghost", intent.UserID).Msg("Failed to set a ghost's display name")
		return false
	}
	return true
}

// homeserverDefaultName tells whether name is what a homeserver names a new
// account by itself: nothing, or the account's localpart.
func homeserverDefaultName(user id.UserID, name string) bool {
	return name == "" || name == user.Localpart()
}

// ghostName is how a ghost's display name says it is someone on XMPP.
func ghostName(name string) string { return name + " (XMPP)" }

// SetGhostName names ghost after its person's name on XMPP. A ghost made
// here is not named after its JID first: that name would only flash by.
func (h *Homeserver) SetGhostName(ctx context.Context, ghost id.UserID, name string) error {
	intent, err := h.intentNamed(ctx, ghost, false)
	if err != nil {
		return err
	}
	return h.classify(ctx, intent.SetDisplayName(ctx, ghostName(name)))
}

// SendMessage posts an m.text as sender, idempotently by txnID: an edit
// (m.replace with m.new_content, client-server API "Event replacements")
// or a reply (m.in_reply_to, without the reply fallback the spec dropped)
// when msg says so.
func (h *Homeserver) SendMessage(ctx context.Context, room id.RoomID, sender id.UserID, msg *mapping.OutMatrix, txnID string) (id.EventID, error) {
	intent, err := h.intent(ctx, sender)
	if err != nil {
		return "", err
	}
	content := textContent(msg.Body, msg.HTML)
	if msg.Media != nil {
		content = mediaContent(msg.Body, msg.Media)
	}
	if msg.Replace != "" {
		content.NewContent = textContent(msg.NewBody, msg.NewHTML)
		if msg.Media != nil {
			// A file's edit: the new content is the file, captioned.
			content.NewContent = mediaContent(msg.NewBody, msg.Media)
		}
		content.RelatesTo = &event.RelatesTo{Type: event.RelReplace, EventID: msg.Replace}
	} else if msg.ReplyTo != "" {
		content.RelatesTo = &event.RelatesTo{InReplyTo: &event.InReplyTo{EventID: msg.ReplyTo}}
	}
	req := mautrix.ReqSendEvent{TransactionID: txnID}
	if !msg.TS.IsZero() {
		// The application service API's timestamp massaging: the ts
		// query parameter is the event's origin_server_ts (Dendrite 0.15
		// and Synapse take it from an application service).
		req.Timestamp = msg.TS.UnixMilli()
	}
	return h.sendReq(ctx, intent, room, event.EventMessage, content, req)
}

func textContent(body, html string) *event.MessageEventContent {
	c := &event.MessageEventContent{MsgType: event.MsgText, Body: body}
	if html != "" {
		c.Format, c.FormattedBody = event.FormatHTML, html
	}
	return c
}

// React implements mapping.MatrixSide: an m.reaction (m.annotation).
func (h *Homeserver) React(ctx context.Context, room id.RoomID, sender id.UserID, target id.EventID, key, txnID string) (id.EventID, error) {
	intent, err := h.intent(ctx, sender)
	if err != nil {
		return "", err
	}
	content := &event.ReactionEventContent{RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: target, Key: key}}
	return h.send(ctx, intent, room, event.EventReaction, content, txnID)
}

// Redact implements mapping.MatrixSide.
func (h *Homeserver) Redact(ctx context.Context, room id.RoomID, sender id.UserID, target id.EventID, txnID string) (id.EventID, error) {
	intent, err := h.intent(ctx, sender)
	if err != nil {
		return "", err
	}
	resp, err := intent.RedactEvent(ctx, room, target, mautrix.ReqRedact{TxnID: txnID})
	if err != nil {
		return "", h.classify(ctx, err)
	}
	return resp.EventID, nil
}

func (h *Homeserver) send(ctx context.Context, intent *appservice.IntentAPI, room id.RoomID, typ event.Type, content any, txnID string) (id.EventID, error) {
	return h.sendReq(ctx, intent, room, typ, content, mautrix.ReqSendEvent{TransactionID: txnID})
}

func (h *Homeserver) sendReq(ctx context.Context, intent *appservice.IntentAPI, room id.RoomID, typ event.Type, content any, req mautrix.ReqSendEvent) (id.EventID, error) {
	resp, err := intent.SendMessageEvent(ctx, room, typ, content, req)
	if err = h.classify(ctx, err); err != nil {
		return "", err
	}
	return resp.EventID, nil
}

// SendNotice sends an m.notice as sender, with an HTML body if html is
// not "".
func (h *Homeserver) SendNotice(ctx context.Context, room id.RoomID, sender id.UserID, body, html, txnID string) error {
	intent, err := h.intent(ctx, sender)
	if err != nil {
		return err
	}
	content := textContent(body, html)
	content.MsgType = event.MsgNotice
	_, err = h.send(ctx, intent, room, event.EventMessage, content, txnID)
	return err
}

// Join makes user join room (accepting an invite).
func (h *Homeserver) Join(ctx context.Context, room id.RoomID, user id.UserID) error {
	intent, err := h.intent(ctx, user)
	if err != nil {
		return err
	}
	if _, err = intent.JoinRoomByID(ctx, room); err != nil {
		return h.classify(ctx, err)
	}
	_ = intent.StateStore.SetMembership(ctx, room, user, event.MembershipJoin)
	if h.IDs.IsGhost(user) {
		// The bot follows the ghost into a portal opened from Matrix.
		return h.botJoinVia(ctx, room, intent.Client)
	}
	return nil
}

// Leave makes user leave room, or decline its invite, with a reason.
func (h *Homeserver) Leave(ctx context.Context, room id.RoomID, user id.UserID, reason string) error {
	intent, err := h.intent(ctx, user)
	if err != nil {
		return err
	}
	_, err = intent.LeaveRoom(ctx, room, &mautrix.ReqLeave{Reason: reason})
	return h.classify(ctx, err)
}
