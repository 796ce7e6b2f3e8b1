package mapping

// A Matrix member's avatar in the chats their puppet is in (XEP-0153 §3.1
// in the puppet's presence to the room, XEP-0045 §7.7; the member's vCard
// to an occupant asking through the room): a part of chatState, on what
// groups knows of each chat.

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// A puppet's photo hash follows its join in the XMPP side's line, so
// that a chat hears it after the join; each reads the profile as it runs.
var _ = register(JobPuppetPhoto, jobKind{side: SideXMPP, order: bySide, payload: groupArgs{},
	run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args groupArgs) error {
		return b.groups.state.puppetPhoto(ctx, args)
	})})

// photoAfterJoin is the JobPuppetPhoto owed (owed) when the room r takes
// the join of mxid's puppet, which was not in, and whose presence gave
// no photo hash, or an old one (told cleared by photoJobs): the profile
// may have been stored meanwhile. The caller holds g.mu.
func (g *chatState) photoAfterJoin(r *mucRoom, mxid id.UserID, owed bool) *Job {
	if !owed {
		return nil
	}
	return groupJob(JobPuppetPhoto, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), MXID: mxid})
}

// photoJobs are the JobPuppetPhotos owed when mxid's avatar changed:
// one for each chat the puppet is in; a chat that has yet to take its
// join is told after it (photoAfterJoin).
func (g *chatState) photoJobs(mxid id.UserID) []*Job {
	g.mu.Lock()
	defer g.mu.Unlock()
	var jobs []*Job
	for _, r := range g.rooms {
		switch {
		case r.joined[mxid]:
			jobs = append(jobs, groupJob(JobPuppetPhoto, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), MXID: mxid}))
		case r.nicks[mxid] != "":
			delete(r.told, mxid)
		}
	}
	return jobs
}

// puppetPhoto runs a JobPuppetPhoto: the puppet's available presence to
// the chat, with the hash of its stored avatar (XEP-0153 §3.2: a client
// fetches the vCard again when the hash changes; XEP-0045 §7.7: an
// occupant's presence change is broadcast to the room), unless the room
// was told that hash already or the puppet is not in.
func (g *chatState) puppetPhoto(ctx context.Context, args groupArgs) error {
	muc, from, err := g.puppetTo(args.MXID, args.MUC)
	if err != nil {
		return err
	}
	out := &OutPresence{From: from, Caps: true}
	if err := g.people.withPhoto(ctx, args.MXID, out); err != nil {
		return err
	}
	g.mu.Lock()
	r := g.rooms[muc.Bare().String()]
	var nick string
	if r != nil && r.joined[args.MXID] {
		nick = r.nicks[args.MXID]
	}
	told, ok := "", false
	if r != nil {
		told, ok = r.told[args.MXID]
	}
	g.mu.Unlock()
	if nick == "" || out.Photo == nil || ok && told == *out.Photo {
		// Without the <x/> of a join, a presence to a chat the puppet is
		// not in would be a join (§7.2.1, the old protocol).
		return nil
	}
	if out.To, err = muc.WithResource(nick); err != nil {
		return nil
	}
	if err := g.xmpp.SendPresence(ctx, out); err != nil {
		return fmt.Errorf("tell %s the photo of %s: %w", muc, args.MXID, err)
	}
	g.mu.Lock()
	r.told[args.MXID] = *out.Photo
	g.mu.Unlock()
	g.count("muc_presence", "photo_sent")
	return nil
}

// occupantAsks tells whether asker is an occupant JID, room/nick, of a
// chat mxid's puppet is in (PuppetCard): what the chat's room, which
// sends a vCard query of its occupant on, makes the asker of one.
func (g *chatState) occupantAsks(mxid id.UserID, asker jid.JID) bool {
	if asker.Resourcepart() == "" {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.rooms[asker.Bare().String()]
	return r != nil && r.joined[mxid]
}
