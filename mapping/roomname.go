package mapping

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// A chat's name as its portal's: the name the chat room gives itself
// (XEP-0045 §6.4, its conference identity in disco#info) is the room's
// m.room.name, asked by the first puppet in at each run of the bridge
// (a join, or a rejoin after a restart or a reconnection). A name set on
// Matrix does not cross: only a room's owner may change its name
// (§10.2), which a puppet is not.

// Kinds of sends of a chat's name.
const (
	JobRoomInfo  JobKind = "xmpp.room_info"    // the chat's name, asked of the room (§6.4)
	JobGroupName JobKind = "matrix.group_name" // the chat's name as the portal's
)

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
)

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
	g.count("muc_name", "named")
	if err := g.queueStored(ctx, groupJob(JobGroupName, args.Room, 0, groupArgs{Room: args.Room, MUC: args.MUC, Nick: name})); err != nil {
		return fmt.Errorf("queue the name of %s: %w", muc, err)
	}
	return nil
}
