package matrixside

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/mapping"
)

// CreateGroup implements mapping.MatrixSide: the bot creates the room of a
// multi-user chat as room says: private (members come by the bot's
// invite), or, with an alias, public (anyone who has the alias may join)
// and not in the room directory. The bot is its creator, so that it can
// invite the occupants' ghosts as they come (their intents join through
// its invite: appservice.IntentAPI.EnsureJoined).
//
// Any member may set the topic and the name (m.room.topic and
// m.room.name at power 0, where the preset gives state events 50): the
// chat's room decides who may change its subject (XEP-0045 §8.1) and its
// name (its owners, §10.2), and the bridge says so when it refuses. The
// other events keep the power the client-server API's presets give them,
// since an override of "events" replaces the whole map.
func (h *Homeserver) CreateGroup(ctx context.Context, room mapping.GroupRoom) (id.RoomID, error) {
	bot := h.AS.BotIntent()
	req := &mautrix.ReqCreateRoom{Preset: "private_chat", Name: room.Name, Topic: room.Topic, Visibility: "private",
		PowerLevelOverride: &event.PowerLevelsEventContent{Events: map[string]int{
			event.StateTopic.Type:             0,
			event.StateRoomName.Type:          0,
			event.StateRoomAvatar.Type:        50,
			event.StateCanonicalAlias.Type:    50,
			event.StatePowerLevels.Type:       100,
			event.StateHistoryVisibility.Type: 100,
			event.StateTombstone.Type:         100,
			event.StateServerACL.Type:         100,
			event.StateEncryption.Type:        100,
		}},
	}
	if room.Invite != "" {
		req.Invite = []id.UserID{room.Invite}
	}
	if room.Alias != "" {
		req.Preset = "public_chat"
		// createRoom takes the alias's localpart, on the homeserver's
		// own server name (client-server API, "POST /createRoom").
		local, _, _ := strings.Cut(strings.TrimPrefix(string(room.Alias), "#"), ":")
		req.RoomAliasName = local
	}
	resp, err := bot.CreateRoom(ctx, req)
	if err != nil {
		return "", h.classify(ctx, fmt.Errorf("create the room of %s: %w", room.Name, err))
	}
	_ = h.AS.StateStore.SetMembership(ctx, resp.RoomID, bot.UserID, event.MembershipJoin)
	h.botIn.Store(resp.RoomID, true)
	return resp.RoomID, nil
}

// AddAlias implements mapping.MatrixSide: the bot gives room the alias,
// which the registration's exclusive namespace lets it make.
// An alias that names room already (two queries of it, one behind the
// other) is not an error.
func (h *Homeserver) AddAlias(ctx context.Context, alias id.RoomAlias, room id.RoomID) error {
	bot := h.AS.BotIntent()
	_, err := bot.CreateAlias(ctx, alias, room)
	if err != nil {
		if has, rerr := bot.ResolveAlias(ctx, alias); rerr == nil && has.RoomID == room {
			return nil
		}
	}
	return h.classify(ctx, err)
}

// Invite implements mapping.MatrixSide: the bot invites user into room.
// An invite of someone already invited or in the room is not an error.
// The state store may not know it: a bridge killed after the homeserver
// took the invite, or the ghost's join, never heard of it, and Dendrite
// answers the invite asked again 403 "user is already joined to room";
// so the homeserver is asked.
func (h *Homeserver) Invite(ctx context.Context, room id.RoomID, user id.UserID) error {
	bot := h.AS.BotIntent()
	_, err := bot.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: user})
	if err != nil {
		if h.AS.StateStore.IsInRoom(ctx, room, user) {
			return nil
		}
		var m event.MemberEventContent
		if rerr := bot.StateEvent(ctx, room, event.StateMember, string(user), &m); rerr == nil &&
			(m.Membership == event.MembershipJoin || m.Membership == event.MembershipInvite) {
			return nil
		}
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

// SetTopic implements mapping.MatrixSide: room's m.room.topic becomes
// topic, set by sender where it may (a ghost in the room, at the power
// the room asks), else by the bot; nothing if the topic already is that
// (a subject the room sends again at each join, or the reflection of a
// member's own).
func (h *Homeserver) SetTopic(ctx context.Context, room id.RoomID, sender id.UserID, topic string) error {
	bot := h.AS.BotIntent()
	var now event.TopicEventContent
	if err := bot.StateEvent(ctx, room, event.StateTopic, "", &now); err == nil && now.Topic == topic {
		return nil
	}
	content := &event.TopicEventContent{Topic: topic}
	if sender != "" && sender != bot.UserID {
		intent, err := h.intent(ctx, sender)
		if err != nil {
			return err
		}
		_, err = intent.SendStateEvent(ctx, room, event.StateTopic, "", content)
		if err == nil {
			return nil
		}
		if !forbidden(err) {
			return h.classify(ctx, err)
		}
		// The ghost may not: a room made before topics were open to all.
	}
	_, err := bot.SendStateEvent(ctx, room, event.StateTopic, "", content)
	return h.classify(ctx, err)
}

// forbidden tells whether the homeserver refused err's request with
// M_FORBIDDEN: the user may not do that in the room.
func forbidden(err error) bool {
	var httpErr mautrix.HTTPError
	return errors.As(err, &httpErr) && httpErr.RespError != nil && httpErr.RespError.ErrCode == mautrix.MForbidden.ErrCode
}

// SetModerator implements mapping.MatrixSide: the bot gives user the
// power room asks to redact others' events (on), or takes it back to the
// room's default (off) unless someone gave user more than that.
func (h *Homeserver) SetModerator(ctx context.Context, room id.RoomID, user id.UserID, on bool) error {
	bot := h.AS.BotIntent()
	var pl event.PowerLevelsEventContent
	if err := bot.StateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		return h.classify(ctx, err)
	}
	now, want := pl.GetUserLevel(user), pl.UsersDefault
	switch {
	case on && now < pl.Redact():
		want = pl.Redact()
	case !on && now == pl.Redact() && now > pl.UsersDefault:
	default:
		return nil
	}
	pl.SetUserLevel(user, want)
	_, err := bot.SendStateEvent(ctx, room, event.StatePowerLevels, "", &pl)
	return h.classify(ctx, err)
}

// Moderate implements mapping.MatrixSide: target redacted with reason by
// sender (an occupant's ghost) where the room's power levels let it
// redact others' events, else by the bot, which made the room. A ghost
// has no more power than any member unless someone gave it some.
func (h *Homeserver) Moderate(ctx context.Context, room id.RoomID, sender id.UserID, target id.EventID, reason, txnID string) (id.EventID, error) {
	req := mautrix.ReqRedact{Reason: reason, TxnID: txnID}
	bot := h.AS.BotIntent()
	if sender != "" && sender != bot.UserID {
		intent, err := h.intent(ctx, sender)
		if err != nil {
			return "", err
		}
		resp, err := intent.RedactEvent(ctx, room, target, req)
		if err == nil {
			return resp.EventID, nil
		}
		if !forbidden(err) {
			return "", h.classify(ctx, err)
		}
	}
	resp, err := bot.RedactEvent(ctx, room, target, req)
	if err != nil {
		return "", h.classify(ctx, err)
	}
	return resp.EventID, nil
}

// SetRoomName implements mapping.MatrixSide: the bot names room, unless
// it has that name already.
func (h *Homeserver) SetRoomName(ctx context.Context, room id.RoomID, name string) error {
	bot := h.AS.BotIntent()
	var now event.RoomNameEventContent
	if err := bot.StateEvent(ctx, room, event.StateRoomName, "", &now); err == nil && now.Name == name {
		return nil
	}
	_, err := bot.SendStateEvent(ctx, room, event.StateRoomName, "", &event.RoomNameEventContent{Name: name})
	return h.classify(ctx, err)
}

// Kick implements mapping.MatrixSide: the bot removes user from room with
// reason.
func (h *Homeserver) Kick(ctx context.Context, room id.RoomID, user id.UserID, reason string) error {
	_, err := h.AS.BotIntent().KickUser(ctx, room, &mautrix.ReqKickUser{UserID: user, Reason: reason})
	return h.classify(ctx, err)
}
