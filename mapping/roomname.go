package mapping

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
)

// A chat's name as its portal's, both ways: the name the chat room gives
// itself (XEP-0045 §6.4, its conference identity in disco#info) is the
// room's m.room.name, asked by the first puppet in at each run of the
// bridge (a join, or a rejoin after a restart or a reconnection) and
// again whenever the room says its configuration changed (§10.2.1,
// status 104). A member's m.room.name is their puppet's change of the
// room's configuration (§10.2), which only the room's owner may make:
// the room decides, and a refusal is told in the portal.

// Kinds of sends of a chat's name.
const (
	JobRoomInfo    JobKind = "xmpp.room_info"    // the chat's name, asked of the room (§6.4)
	JobGroupName   JobKind = "matrix.group_name" // the chat's name as the portal's
	JobRenameRoom  JobKind = "xmpp.room_rename"  // a member's name for the portal as the chat's (§10.2)
	JobInstantRoom JobKind = "xmpp.room_instant" // a chat a puppet's join made, unlocked (§10.1.2)
)

// ReasonSameName: a member's name for the portal that is the chat's.
const ReasonSameName Reason = "same_name"

// maxRoomName bounds a chat's name carried: a title, not a text.
const maxRoomName = 255

var (
	_ = register(JobRoomInfo, jobKind{side: SideXMPP, order: noOrder, payload: groupArgs{}, asks: true,
		run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args groupArgs) error {
			return b.groups.state.askRoomName(ctx, args)
		})})
	_ = register(JobGroupName, jobKind{side: SideMatrix, order: byRoom, payload: groupArgs{},
		run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args groupArgs) error {
			return b.matrix.SetRoomName(ctx, args.Room, args.Nick)
		})})
	// One after the other in a room: the newest name a member gave is
	// the one the chat keeps.
	_ = register(JobRenameRoom, jobKind{side: SideXMPP, order: byRoom, payload: groupArgs{}, asks: true,
		run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args groupArgs) error {
			return b.groups.state.renameRoom(ctx, args)
		})})
)

// Asked once the room took the join (its own presence says 201).
var _ = register(JobInstantRoom, jobKind{side: SideXMPP, order: byRoom, payload: groupArgs{}, asks: true,
	run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args groupArgs) error {
		return b.groups.state.instantRoom(ctx, args)
	})})

// instantJob is the JobInstantRoom owed when the own presence x of
// mxid's join says that the join made the chat r (status 201, XEP-0045
// §10.1.1): the room is locked, and no one else may join it (Prosody
// 0.12 answers their joins <item-not-found/>, §7.2.13), until its owner,
// the puppet, configures it. The bridge configures no chat (its owners
// do), so the puppet accepts the default configuration: an instant room
// (§10.1.2), as clients make one when their user joins a chat that is
// not there. Called with g.mu held.
func (g *chatState) instantJob(r *mucRoom, mxid id.UserID, x *MUCPresence) *Job {
	if !x.Has(201) {
		return nil
	}
	return groupJob(JobInstantRoom, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), MXID: mxid})
}

// instantRoom runs a JobInstantRoom. A refusal leaves the chat locked,
// which the bot says in the portal, logged and counted.
func (g *chatState) instantRoom(ctx context.Context, args groupArgs) error {
	muc, from, err := g.puppetTo(args.MXID, args.MUC)
	if err != nil {
		return err
	}
	err = g.xmpp.InstantRoom(ctx, from, muc)
	var answer *StanzaError
	switch {
	case err == nil:
		g.count("muc_instant", "unlocked")
		return nil
	case !errors.As(err, &answer):
		return fmt.Errorf("make %s an instant room as %s: %w", muc, args.MXID, err)
	}
	why, cond := refusal(conditionOf(answer), map[string]string{
		"forbidden":               "the puppet is not its owner",
		"not-allowed":             "the puppet is not its owner",
		"not-acceptable":          "the puppet is not in it",
		"bad-request":             "it refused its default configuration",
		"feature-not-implemented": "it cannot be configured",
		"service-unavailable":     "it cannot be configured",
	})
	g.count("muc_instant", Reason("refused_"+cond))
	g.log.Info().Str("room", string(args.Room)).Str("mxid", string(args.MXID)).Str("muc", muc.String()).
		Str("condition", cond).Msg("The chat a puppet's join made did not take its default configuration")
	return g.queueStored(ctx, g.bot.reply(args.Room, fmt.Sprintf(
		"%s's join made the chat `%s`, which stays locked until its owner configures it: %s. No one else can join it until then.",
		args.MXID, muc, why)))
}

// nameOnce queues, the first time a puppet is in the chat r in this
// run, the question of its name. Called with g.mu held.
func (g *chatState) nameOnce(r *mucRoom, args groupArgs) *Job {
	if r.nameAsked {
		return nil
	}
	r.nameAsked = true
	return groupJob(JobRoomInfo, r.portal, 0, args)
}

// askRoomName runs a JobRoomInfo: the chat's name, asked as the puppet
// of args.MXID, which is in it (a members-only room answers its
// occupants only), becomes the portal's name (JobGroupName; the name is
// in Nick).
func (g *chatState) askRoomName(ctx context.Context, args groupArgs) error {
	muc, from, err := g.puppetTo(args.MXID, args.MUC)
	if err != nil {
		return err
	}
	if r := g.known(muc); r != nil {
		// Asked from now on: a change noticed after this asks again.
		g.mu.Lock()
		r.infoPending = false
		g.mu.Unlock()
	}
	name, err := g.xmpp.RoomName(ctx, from, muc)
	if errors.Is(err, ErrPermanent) {
		g.count("muc_name", "refused")
		return nil
	} else if err != nil {
		return err
	}
	if name = clip(strings.TrimSpace(name), maxRoomName); name == "" {
		g.count("muc_name", "none")
		return nil
	}
	if r := g.known(muc); r != nil {
		g.mu.Lock()
		same := r.name == name
		r.name = name
		g.mu.Unlock()
		if same {
			// A configuration change that left the name as it was.
			g.count("muc_name", "unchanged")
			return nil
		}
	}
	g.count("muc_name", "named")
	if err := g.queueStored(ctx, groupJob(JobGroupName, args.Room, 0, groupArgs{Room: args.Room, MUC: args.MUC, Nick: name})); err != nil {
		return fmt.Errorf("queue the name of %s: %w", muc, err)
	}
	return nil
}

// configChanged takes the room's word that its configuration changed
// (§10.2.1: a message from the room itself with status 104), the
// listener's copy: its name is asked again, and becomes the portal's if
// it changed (SetRoomName sets nothing when it is the same, as after a
// member's own change came back).
func (g *chatState) configChanged(ctx context.Context, log zerolog.Logger, r *mucRoom, mxid id.UserID) error {
	// One question queued at a time, however many notices the room sends
	// (a broken or hostile service may send them in a stream): the one
	// queued asks after all of them.
	g.mu.Lock()
	pending := r.infoPending
	r.infoPending = true
	g.mu.Unlock()
	if pending {
		g.count("muc_config", "coalesced")
		return nil
	}
	log.Debug().Msg("The chat's configuration changed: its name is asked again")
	g.count("muc_config", "changed")
	err := g.queueStored(ctx, groupJob(JobRoomInfo, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), MXID: mxid}))
	if err != nil {
		g.mu.Lock()
		r.infoPending = false
		g.mu.Unlock()
	}
	return err
}

// nameFromMatrix takes a Matrix member's m.room.name in a group portal:
// their puppet changes the chat's name (§10.2, renameRoom). The bot's
// own (the chat's name, set from XMPP) never comes here (the bridge does
// not carry the bot's events); a name the chat has already is not sent
// back to it.
func (g *chatState) nameFromMatrix(ctx context.Context, log zerolog.Logger, portal *Portal, evt MatrixEvent) ([]*Job, error) {
	r := g.known(portal.JID)
	name := clip(strings.TrimSpace(evt.Body), maxRoomName)
	if r == nil {
		g.count("matrix_room_name", ReasonNotInChat)
		return nil, nil
	}
	g.mu.Lock()
	in, same := r.joined[evt.Sender], r.name != "" && r.name == name
	g.mu.Unlock()
	switch {
	case !in:
		g.count("matrix_room_name", ReasonNotInChat)
		return nil, nil
	case same:
		g.count("matrix_room_name", ReasonSameName)
		return nil, nil
	}
	log.Debug().Msg("A member renames the chat")
	g.count("matrix_room_name", "rename")
	return []*Job{groupJob(JobRenameRoom, portal.RoomID, 0, groupArgs{Room: portal.RoomID, MUC: portal.JID.String(), MXID: evt.Sender, Nick: name})}, nil
}

// renameRoom runs a JobRenameRoom: the member's puppet asks the chat for
// its configuration form and submits it with the new name (§10.2). The
// chat answers with status 104 to its occupants (configChanged). A
// refusal (not the owner: Prosody answers <forbidden/>) is told in the
// portal by the bot, logged and counted, and the portal's name put back
// to the chat's.
func (g *chatState) renameRoom(ctx context.Context, args groupArgs) error {
	muc, from, err := g.puppetTo(args.MXID, args.MUC)
	if err != nil {
		return err
	}
	err = g.xmpp.RenameRoom(ctx, from, muc, args.Nick)
	var answer *StanzaError
	switch {
	case err == nil:
		g.count("matrix_room_name", "renamed")
		return nil
	case !errors.As(err, &answer):
		return fmt.Errorf("rename %s as %s: %w", muc, args.MXID, err)
	}
	why, cond := refusal(conditionOf(answer), map[string]string{
		"forbidden":               "only its owners may change it",
		"not-allowed":             "only its owners may change it",
		"not-authorized":          "only its owners may change it",
		"not-acceptable":          "the puppet is not in it, or it refused the name",
		"bad-request":             "it refused the name",
		"feature-not-implemented": "its configuration has no name to change",
		"service-unavailable":     "it cannot be configured",
	})
	g.count("matrix_room_name", Reason("refused_"+cond))
	g.log.Info().Str("room", string(args.Room)).Str("mxid", string(args.MXID)).Str("muc", muc.String()).
		Str("condition", cond).Msg("The chat did not take the name a member gave the portal")
	text := fmt.Sprintf("The chat `%s` did not take the name %s gave this room: %s.", muc, args.MXID, why)
	back := groupJob(JobRoomInfo, args.Room, 0, groupArgs{Room: args.Room, MUC: muc.String(), MXID: args.MXID})
	if r := g.known(muc); r != nil {
		g.mu.Lock()
		if r.name != "" {
			back = groupJob(JobGroupName, args.Room, 0, groupArgs{Room: args.Room, MUC: muc.String(), Nick: r.name})
		}
		g.mu.Unlock()
	}
	return g.queueStored(ctx, g.bot.reply(args.Room, text+" The room's name is back to the chat's."), back)
}
