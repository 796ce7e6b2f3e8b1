package mapping

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// The profiles of the puppets: what XMPP sees of a Matrix user is their
// display name (XEP-0172 <nick/> in the puppet's subscription requests and
// presence, FN and NICKNAME in its vCard, XEP-0054) and their avatar (its
// vCard's PHOTO, and the PHOTO's SHA-1 in its presence, XEP-0153), kept
// current from the user's m.room.member events in their portals.

// Profile is what a puppet shows of its Matrix user, as last seen.
type Profile struct {
	MXID      id.UserID
	Name      string // the display name; "" if none
	AvatarURL string // the mxc:// URI of the avatar; "" if none
	// Photo is the avatar as the vCard gives it (a thumbnail the
	// homeserver made), PhotoType its MIME type and PhotoHash the hex
	// SHA-1 of Photo (XEP-0153 §3.1); all empty without an avatar or when
	// the homeserver could not give one.
	Photo     []byte
	PhotoType string
	PhotoHash string
}

// ProfileStore keeps the puppets' Profiles. Store embeds it.
type ProfileStore interface {
	// PuppetProfile returns mxid's stored profile, or ErrNotFound.
	PuppetProfile(ctx context.Context, mxid id.UserID) (*Profile, error)
	// SetPuppetProfile stores p, replacing what was stored for p.MXID.
	SetPuppetProfile(ctx context.Context, p *Profile) error
}

// JobPuppetProfile looks up a Matrix user's avatar (and, asked to, their
// whole profile) on the homeserver, stores it as their puppet's profile
// and, if it changed, has the puppet tell its subscribers (JobPresence).
const JobPuppetProfile JobKind = "matrix.profile"

// JobPresence sends a puppet's available presence, with its profile as it
// is when the job runs, to one person subscribed to it.
const JobPresence JobKind = "xmpp.presence"

// profileArgs is the payload of a JobPuppetProfile: the name and avatar a
// member event gave, or Lookup to ask the homeserver for them.
type profileArgs struct {
	MXID      id.UserID `json:"mxid"`
	Name      string    `json:"name,omitempty"`
	AvatarURL string    `json:"avatar_url,omitempty"`
	Lookup    bool      `json:"lookup,omitempty"`
}

// profileJob is the job that brings mxid's puppet profile up to date.
func profileJob(args profileArgs) *Job {
	payload, _ := json.Marshal(args) // strings only
	return newJob(JobPuppetProfile, about{mxid: args.MXID}, 0, payload)
}

// profileFromMember is what a member event of the portal's user says of
// their profile: a job if it differs from the stored one. Matrix sends a
// profile change as the user's m.room.member "join" again, with the new
// displayname and avatar_url, into every room they are in.
func (b *people) profileFromMember(ctx context.Context, evt MatrixEvent) ([]*Job, error) {
	if evt.Membership != MembershipJoin || evt.Sender != evt.Target {
		return nil, nil
	}
	portal, err := b.store.PortalByRoom(ctx, evt.Room)
	if isNotFound(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("look up portal: %w", err)
	}
	if portal.Member(MatrixMember(evt.Target)) == nil {
		return nil, nil
	}
	return b.profileChanged(ctx, evt)
}

// profileChanged is the job that stores the profile the join evt of its
// sender gives, if it differs from the stored one: in a direct portal
// (profileFromMember) or a group one (groups.memberFromMatrix), whose
// member's puppet shows the avatar in the chat.
func (b *people) profileChanged(ctx context.Context, evt MatrixEvent) ([]*Job, error) {
	stored, err := b.store.PuppetProfile(ctx, evt.Target)
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("look up the profile of %s: %w", evt.Target, err)
	}
	if err == nil && stored.Name == evt.DisplayName && stored.AvatarURL == evt.AvatarURL {
		return nil, nil
	}
	b.count("matrix_profile", "changed")
	return []*Job{profileJob(profileArgs{MXID: evt.Target, Name: evt.DisplayName, AvatarURL: evt.AvatarURL})}, nil
}

// maxPhotoBytes bounds the avatar a vCard carries: the homeserver's
// thumbnail (photoSize pixels a side) is far smaller, and a stanza of
// more is refused by XMPP servers (Prosody's default limit is 256 KiB).
const maxPhotoBytes = 64 << 10

// photoSize is the side of the thumbnail asked for: XEP-0153 §3.1 asks for
// images of 32 to 96 pixels a side.
const photoSize = 96

// A user's profile changes reach each of their portals: looked up once,
// in the order the changes came.
var _ = register(JobPuppetProfile, jobKind{side: SideMatrix, order: byUser, payload: profileArgs{}, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.people.updateProfile(ctx, job) }})

// updateProfile runs a JobPuppetProfile.
func (b *people) updateProfile(ctx context.Context, job *Job) error {
	args, err := payloadOf[profileArgs](job)
	if err != nil {
		return err
	}
	if args.Lookup {
		name, avatar, err := b.matrix.Profile(ctx, args.MXID)
		if err != nil {
			return fmt.Errorf("look up the profile of %s: %w", args.MXID, err)
		}
		args.Name, args.AvatarURL = name, avatar
	}
	stored, err := b.store.PuppetProfile(ctx, args.MXID)
	if isNotFound(err) {
		stored = nil
	} else if err != nil {
		return fmt.Errorf("look up the profile of %s: %w", args.MXID, err)
	}
	if stored != nil && stored.Name == args.Name && stored.AvatarURL == args.AvatarURL {
		return nil // another portal's member event told the same
	}
	p := &Profile{MXID: args.MXID, Name: args.Name, AvatarURL: args.AvatarURL}
	switch {
	case stored != nil && stored.AvatarURL == args.AvatarURL:
		p.Photo, p.PhotoType, p.PhotoHash = stored.Photo, stored.PhotoType, stored.PhotoHash
	case args.AvatarURL != "":
		photo, mime, err := b.matrix.Avatar(ctx, args.AvatarURL, photoSize, maxPhotoBytes)
		if errors.Is(err, ErrPermanent) {
			// Too large, gone, or not an image: the puppet shows none.
			b.log.Info().Err(err).Str("mxid", string(args.MXID)).Msg("The avatar of a Matrix user cannot go to XMPP")
			b.count("matrix_profile", "avatar_refused")
		} else if err != nil {
			return fmt.Errorf("fetch the avatar of %s: %w", args.MXID, err)
		} else {
			sum := sha1.Sum(photo)
			p.Photo, p.PhotoType, p.PhotoHash = photo, mime, hex.EncodeToString(sum[:])
		}
	}
	subs, err := b.store.Subscribers(ctx)
	if err != nil {
		return fmt.Errorf("list the subscribers of %s: %w", args.MXID, err)
	}
	var jobs []*Job
	for _, s := range subs {
		if s.MXID == args.MXID && !b.blocked(s.JID) {
			jobs = append(jobs, pairJob(JobPresence, s.MXID, s.JID))
		}
	}
	if stored == nil || stored.PhotoHash != p.PhotoHash {
		// XEP-0153 §3.2: the chats the puppet is in learn the new hash
		// from its presence there, as its subscribers do.
		jobs = append(jobs, b.groups.state.photoJobs(args.MXID)...)
	}
	if stored != nil && stored.Name != p.Name {
		// The name in the rosters the server lets the puppets into (a
		// first profile comes with a portal, whose jobs write it).
		rj, err := b.rosterJobs(ctx, args.MXID)
		if err != nil {
			return fmt.Errorf("list the portals of %s: %w", args.MXID, err)
		}
		jobs = append(jobs, rj...)
	}
	// Stored before the presence jobs, which read it: a crash between the
	// two leaves the subscribers with the old presence until the next
	// connection announces the new (SubscriberPresence).
	if err := b.store.SetPuppetProfile(ctx, p); err != nil {
		return fmt.Errorf("store the profile of %s: %w", args.MXID, err)
	}
	if len(jobs) > 0 {
		if err := b.store.AddJobs(ctx, jobs...); err != nil {
			return fmt.Errorf("queue the presence of %s: %w", args.MXID, err)
		}
		b.queue(jobs...)
	}
	b.count("matrix_profile", "stored")
	return nil
}

// Each reads the profile when it runs: an older one that runs late still
// sends the newest, so no order.
var _ = register(JobPresence, jobKind{side: SideXMPP, order: noOrder, payload: pairArgs{}, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.people.sendPresence(ctx, job) }})

// sendPresence runs a JobPresence.
func (b *people) sendPresence(ctx context.Context, job *Job) error {
	mxid, peer, from, err := b.pairOf(job)
	if err != nil {
		return err
	}
	if _, reason := b.resolvePuppet(from); reason != "" {
		return nil // no longer allowed: says nothing
	}
	if err := b.unreachable(mxid, peer); err != nil {
		return err
	}
	sub, err := b.store.Subscription(ctx, mxid, peer)
	if isNotFound(err) || (err == nil && !sub.FromThem) {
		return nil // unsubscribed since: RFC 6121 §4.2.2, subscribers only
	} else if err != nil {
		return fmt.Errorf("look up subscription of %s and %s: %w", mxid, peer, err)
	}
	out := &OutPresence{From: from, To: peer, Caps: true}
	if err := b.withProfile(ctx, mxid, out); err != nil {
		return err
	}
	if err := b.xmpp.SendPresence(ctx, out); err != nil {
		return fmt.Errorf("send the presence of %s to %s: %w", mxid, peer, err)
	}
	b.count("xmpp_presence", "profile_sent")
	return nil
}

// withProfile puts mxid's stored profile into an available presence of its
// puppet: the display name as XEP-0172 <nick/>, the photo's hash as
// XEP-0153's update (empty for no avatar). Without a stored profile the
// presence says nothing of either (XEP-0153 §3.2: not ready to advertise).
func (b *people) withProfile(ctx context.Context, mxid id.UserID, out *OutPresence) error {
	p, err := b.storedProfile(ctx, mxid)
	if p != nil {
		out.Nick = p.Name
		out.Photo = &p.PhotoHash
	}
	return err
}

// withPhoto puts the hash of mxid's stored avatar into a presence of its
// puppet to a chat (XEP-0153 §3.1, as withProfile): the chat knows the
// puppet by its nick there, so no XEP-0172 nick goes with it.
func (b *people) withPhoto(ctx context.Context, mxid id.UserID, out *OutPresence) error {
	p, err := b.storedProfile(ctx, mxid)
	if p != nil {
		out.Photo = &p.PhotoHash
	}
	return err
}

// storedProfile is mxid's stored profile, nil if none.
func (b *people) storedProfile(ctx context.Context, mxid id.UserID) (*Profile, error) {
	p, err := b.store.PuppetProfile(ctx, mxid)
	if isNotFound(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("look up the profile of %s: %w", mxid, err)
	}
	return p, nil
}

// PuppetCard is the vCard (XEP-0054) of mxid's puppet as asker may see
// it: its Matrix user's display name (the user ID without one) and
// avatar, as stored, and only for a person with a portal with mxid, or
// an occupant of a chat mxid's puppet is in: a vCard asked of the
// puppet's occupant JID, room/nick, which the room (Prosody 0.12's)
// sends on to the puppet's bare JID from the asker's occupant JID
// (XEP-0054 §3.1 through XEP-0045's rooms, as clients fetch the avatar
// an occupant's XEP-0153 hash announces). Anyone else gets ErrNotFound,
// the answer for a user who does not exist.
// It never asks the homeserver: it answers on the XMPP read loop, which a
// lookup would hold up, and a live lookup would tell a stranger which
// Matrix users exist and what they are called.
func (b *Bridge) PuppetCard(ctx context.Context, mxid id.UserID, asker jid.JID) (Profile, error) {
	return b.people.puppetCard(ctx, mxid, asker)
}

func (b *people) puppetCard(ctx context.Context, mxid id.UserID, asker jid.JID) (Profile, error) {
	if b.blocked(asker) {
		return Profile{}, ErrNotFound
	}
	if !b.groups.state.occupantAsks(mxid, asker) {
		if _, err := b.store.PortalByPair(ctx, mxid, asker.Bare()); err != nil {
			if isNotFound(err) {
				return Profile{}, ErrNotFound
			}
			return Profile{}, fmt.Errorf("look up the portal of %s and %s: %w", mxid, asker.Bare(), err)
		}
	}
	card := Profile{MXID: mxid}
	if p, err := b.store.PuppetProfile(ctx, mxid); err == nil {
		card = *p
	} else if !isNotFound(err) {
		return Profile{}, fmt.Errorf("look up the profile of %s: %w", mxid, err)
	}
	if card.Name == "" {
		card.Name = string(mxid)
	}
	return card, nil
}
