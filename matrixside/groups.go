package matrixside

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// CreateGroup implements mapping.MatrixSide: the bot creates the room of a
// multi-user chat, private (members come by the bot's invite), named
// name, and invites invitee. The bot is its creator, so that it can
// invite the occupants' ghosts as they come (their intents join through
// its invite: appservice.IntentAPI.EnsureJoined).
func (h *Homeserver) CreateGroup(ctx context.Context, name, topic string, invitee id.UserID) (id.RoomID, error) {
	bot := h.AS.BotIntent()
	resp, err := bot.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		Name:   name,
		Topic:  topic,
		Invite: []id.UserID{invitee},
	})
	if err != nil {
		return "", h.classify(ctx, fmt.Errorf("create the room of %s for %s: %w", name, invitee, err))
	}
	_ = h.AS.StateStore.SetMembership(ctx, resp.RoomID, bot.UserID, event.MembershipJoin)
	h.botIn.Store(resp.RoomID, true)
	return resp.RoomID, nil
}

// Invite implements mapping.MatrixSide: the bot invites user into room.
// An invite of someone already in the room is not an error.
func (h *Homeserver) Invite(ctx context.Context, room id.RoomID, user id.UserID) error {
	_, err := h.AS.BotIntent().InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: user})
	if err != nil && h.AS.StateStore.IsInRoom(ctx, room, user) {
		return nil
	}
	return h.classify(ctx, err)
}

// SendSent implements mapping.MatrixSide: the bot marks ev as sent (the
// room took it, no one is known to have received it), as a
// com.beeper.message_send_status of success naming no one delivered to.
func (h *Homeserver) SendSent(ctx context.Context, room id.RoomID, ev id.EventID) error {
	none := []id.UserID{}
	return h.sendStatus(ctx, room, ev, &event.BeeperMessageStatusEventContent{
		Status: event.MessageStatusSuccess, DeliveredToUsers: &none,
	}, "sent")
}
