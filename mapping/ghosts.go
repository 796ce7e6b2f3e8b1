package mapping

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// The profiles of the ghosts: what Matrix sees of an XMPP person is a name
// (their XEP-0172 nick when a message carries one, fromxmpp.go; else their
// vCard's NICKNAME or FN; else their JID) and their vCard's PHOTO as the
// ghost's avatar (XEP-0054, XEP-0153), uploaded to the media repository
// once per image. The vCard is fetched when their portal is made and when
// their presence to a puppet announces another photo (XEP-0153 §3.2:
// "the receiving client ... SHOULD retrieve the vCard").

// VCard is what the bridge reads of a person's vcard-temp (XEP-0054).
type VCard struct {
	Nickname, FN string
	Photo        []byte
	PhotoType    string
}

// GhostProfile is what the bridge last gave a person's ghost, or an
// occupant's of a chat (occupantPhoto).
type GhostProfile struct {
	// JID is the person's bare JID, or the occupant's room/key (the JID
	// their ghost stands for, OccupantGhost).
	JID jid.JID
	// Name is the name from their vCard the ghost was given, "" if none;
	// NamedByNick, that a XEP-0172 nick named it since, which a vCard
	// does not override.
	Name        string
	NamedByNick bool
	// PhotoHash is the hex SHA-1 of the vCard PHOTO the ghost's avatar
	// (AvatarURL) was made from; "" for none.
	PhotoHash string
	AvatarURL string
}

// GhostProfileStore keeps the GhostProfiles. Store embeds it.
type GhostProfileStore interface {
	// GhostProfile returns peer's, or ErrNotFound.
	GhostProfile(ctx context.Context, peer jid.JID) (*GhostProfile, error)
	SetGhostProfile(ctx context.Context, p *GhostProfile) error
}

// JobGhostVCard fetches an XMPP person's vCard, as the puppet of a Matrix
// user they have a portal with, and hands what changed to JobGhostProfile.
const JobGhostVCard JobKind = "xmpp.vcard"

// JobGhostProfile gives a ghost the name and avatar of its person's vCard.
const JobGhostProfile JobKind = "matrix.ghost_profile"

// maxGhostPhotoBytes bounds the vCard PHOTO the bridge uploads: avatars
// are small (XEP-0153 §3.1 recommends under 8 KiB); a larger one is left
// out rather than put in the media repository.
const maxGhostPhotoBytes = 256 << 10

// avatarTypes are the image types a ghost's avatar may have, what every
// Matrix client shows.
var avatarTypes = []string{"image/png", "image/jpeg", "image/gif", "image/webp"}

// imageType is the MIME type of data as its bytes tell it, if it is one of
// avatarTypes and within maxGhostPhotoBytes; "" if not. The type a remote
// claims is never used: it goes to the media repository with the upload,
// which serves the bytes to every client as that type.
func imageType(data []byte) string {
	if len(data) == 0 || len(data) > maxGhostPhotoBytes {
		return ""
	}
	if t := http.DetectContentType(data); slices.Contains(avatarTypes, t) {
		return t
	}
	return ""
}

// ghostProfileArgs is the payload of a JobGhostProfile: the name to give
// (if SetName) and the photo (if SetPhoto; none if Photo is empty).
type ghostProfileArgs struct {
	JID       string `json:"jid"`
	SetName   bool   `json:"set_name,omitempty"`
	Name      string `json:"name,omitempty"`
	SetPhoto  bool   `json:"set_photo,omitempty"`
	Photo     []byte `json:"photo,omitempty"`
	PhotoType string `json:"photo_type,omitempty"`
	PhotoHash string `json:"photo_hash,omitempty"`
	// KeepAvatar records PhotoHash only: the ghost keeps the avatar it
	// has (a vCard that could not be had says nothing of the photo).
	KeepAvatar bool `json:"keep_avatar,omitempty"`
}

// vcardJob is the job that fetches peer's vCard as mxid's puppet.
func vcardJob(mxid id.UserID, peer jid.JID) *Job { return pairJob(JobGhostVCard, mxid, peer) }

// photoChanged is what a person's presence to a puppet (XEP-0153 §3.2)
// or their avatar metadata (XEP-0084 §4.2) says of their avatar, the hex
// SHA-1 of its image: a vCard to fetch if it is not the one the ghost has. Only people with a portal with the
// puppet's user make the bridge fetch anything.
func (b *people) photoChanged(ctx context.Context, mxid id.UserID, peer jid.JID, hash string) (*Job, error) {
	gp, err := b.store.GhostProfile(ctx, peer)
	if err == nil && gp.PhotoHash == hash {
		return nil, nil
	} else if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("look up the ghost profile of %s: %w", peer, err)
	}
	if _, err := b.store.PortalByPair(ctx, mxid, peer); isNotFound(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("look up portal of %s and %s: %w", mxid, peer, err)
	}
	b.count("xmpp_presence", "photo_changed")
	return vcardJob(mxid, peer), nil
}

// A person's vCard, fetched as the puppet of a user of theirs, then given
// to their ghost, one change after the other.
var _ = register(JobGhostVCard, jobKind{side: SideXMPP, order: byPair, payload: pairArgs{}, asks: true, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.people.fetchVCard(ctx, job) }})

// fetchVCard runs a JobGhostVCard.
func (b *people) fetchVCard(ctx context.Context, job *Job) error {
	mxid, peer, from, err := b.pairOf(job)
	if err != nil {
		return err
	}
	if err := b.unreachable(mxid, peer); err != nil {
		return err
	}
	card, err := b.xmpp.FetchVCard(ctx, from, peer)
	if errors.Is(err, ErrPermanent) {
		// No vCard, or none for us (item-not-found, forbidden, …): the
		// ghost keeps its JID for a name, and no avatar.
		b.log.Debug().Err(err).Str("jid", peer.String()).Msg("No vCard of an XMPP person")
		card = &VCard{}
	} else if err != nil {
		return fmt.Errorf("fetch the vCard of %s: %w", peer, err)
	}
	gp, err := b.store.GhostProfile(ctx, peer)
	if isNotFound(err) {
		gp = &GhostProfile{JID: peer}
	} else if err != nil {
		return fmt.Errorf("look up the ghost profile of %s: %w", peer, err)
	}
	args2 := ghostProfileArgs{JID: peer.String()}
	name := card.Nickname
	if name == "" {
		name = card.FN
	}
	if !gp.NamedByNick && name != gp.Name {
		args2.SetName, args2.Name = true, name
	}
	photo, photoType := b.cardPhoto(peer, card)
	hash := ""
	if len(photo) > 0 {
		sum := sha1.Sum(photo)
		hash = hex.EncodeToString(sum[:])
	}
	if hash != gp.PhotoHash {
		args2.SetPhoto, args2.Photo, args2.PhotoType, args2.PhotoHash = true, photo, photoType, hash
	}
	if !args2.SetName && !args2.SetPhoto {
		return nil
	}
	next, err := b.ghostProfileJob(args2)
	if err != nil {
		return err
	}
	if err := b.store.AddJobs(ctx, next); err != nil {
		return fmt.Errorf("queue the ghost profile of %s: %w", peer, err)
	}
	b.queue(next)
	b.count("xmpp_vcard", "fetched")
	return nil
}

// cardPhoto is the photo of peer's vCard that may become their ghost's
// avatar, and its type as its bytes tell it; none, logged and counted, if
// it is too large or not an image.
func (b *people) cardPhoto(peer jid.JID, card *VCard) ([]byte, string) {
	photo := card.Photo
	if len(photo) > maxGhostPhotoBytes {
		b.log.Info().Str("jid", peer.String()).Int("bytes", len(photo)).Msg("An XMPP person's vCard photo is too large to become the ghost's avatar")
		b.count("xmpp_vcard", "photo_too_large")
		return nil, ""
	}
	photoType := imageType(photo)
	if len(photo) > 0 && photoType == "" {
		b.log.Info().Str("jid", peer.String()).Str("claimed", card.PhotoType).Msg("An XMPP person's vCard photo is not an image the bridge uploads")
		b.count("xmpp_vcard", "photo_not_image")
		return nil, ""
	}
	return photo, photoType
}

var _ = register(JobGhostProfile, jobKind{side: SideMatrix, order: byUser, payload: ghostProfileArgs{}, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.people.setGhostProfile(ctx, job) }})

// setGhostProfile runs a JobGhostProfile.
func (b *people) setGhostProfile(ctx context.Context, job *Job) error {
	args, err := payloadOf[ghostProfileArgs](job)
	if err != nil {
		return err
	}
	peer, err := payloadJID(args.JID)
	if err != nil {
		return err
	}
	// Nobody's job in particular: a blocked domain's ghost changes no more.
	if err := b.unreachable("", peer); err != nil {
		return err
	}
	ghost, err := b.profileGhost(peer)
	if err != nil {
		return err
	}
	gp, err := b.store.GhostProfile(ctx, peer)
	if isNotFound(err) {
		gp = &GhostProfile{JID: peer}
	} else if err != nil {
		return fmt.Errorf("look up the ghost profile of %s: %w", peer, err)
	}
	if args.SetPhoto && args.PhotoHash != gp.PhotoHash && args.KeepAvatar {
		gp.PhotoHash = args.PhotoHash
		if err := b.store.SetGhostProfile(ctx, gp); err != nil {
			return fmt.Errorf("store the ghost profile of %s: %w", peer, err)
		}
	} else if args.SetPhoto && args.PhotoHash != gp.PhotoHash {
		url := ""
		// Sniffed again: a job queued by an older version carries the
		// type the remote claimed.
		if mime := imageType(args.Photo); mime != "" {
			if url, err = b.matrix.UploadAvatar(ctx, ghost, args.Photo, mime); err != nil {
				return fmt.Errorf("upload the avatar of %s: %w", peer, err)
			}
		} else if len(args.Photo) > 0 {
			b.count("ghost_profile", "avatar_not_image")
		}
		if err := b.matrix.SetGhostAvatar(ctx, ghost, url); err != nil {
			return fmt.Errorf("set the avatar of %s: %w", ghost, err)
		}
		// Recorded at once: a retry of the name below uploads nothing
		// again.
		gp.PhotoHash, gp.AvatarURL = args.PhotoHash, url
		if err := b.store.SetGhostProfile(ctx, gp); err != nil {
			return fmt.Errorf("store the ghost profile of %s: %w", peer, err)
		}
		b.count("ghost_profile", "avatar")
	}
	if args.SetName && !gp.NamedByNick && args.Name != gp.Name {
		name := args.Name
		if name == "" {
			name = JIDName(peer) // the vCard's name is gone
		}
		if err := b.matrix.SetGhostName(ctx, ghost, name); err != nil {
			return fmt.Errorf("name %s: %w", ghost, err)
		}
		gp.Name = args.Name
		if err := b.store.SetGhostProfile(ctx, gp); err != nil {
			return fmt.Errorf("store the ghost profile of %s: %w", peer, err)
		}
		b.count("ghost_profile", "name")
	}
	return nil
}

// ghostKnown tells whether peer has a ghost already (or one is on its
// way): a stored profile, which noteGhost leaves as soon as one is
// promised.
func (b *people) ghostKnown(ctx context.Context, peer jid.JID) (bool, error) {
	_, err := b.store.GhostProfile(ctx, peer.Bare())
	if isNotFound(err) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("look up the ghost profile of %s: %w", peer, err)
	}
	return true, nil
}

// noteGhost records that peer has a ghost, so that the budget of new
// ghosts (limits.domain_new_ghosts_per_hour) is spent on it once. An
// empty profile is what a ghost has before its vCard is read: named after
// the JID, no avatar.
func (b *people) noteGhost(ctx context.Context, peer jid.JID) error {
	known, err := b.ghostKnown(ctx, peer)
	if err != nil || known {
		return err
	}
	if err := b.store.SetGhostProfile(ctx, &GhostProfile{JID: peer.Bare()}); err != nil {
		return fmt.Errorf("note the ghost of %s: %w", peer, err)
	}
	return nil
}

// JIDName is the name of a person who gives none (no nick, no vCard): the
// local part of their JID, or the domain of a JID without one (a service).
func JIDName(j jid.JID) string {
	if l := j.Localpart(); l != "" {
		return l
	}
	return j.Domainpart()
}

// JobGhostName names a ghost after the XEP-0172 nick its person gave.
const JobGhostName JobKind = "matrix.ghost_name"

// After the pair's send that made the ghost (and named it after the JID),
// so that the person's own name is the one that stays.
var _ = register(JobGhostName, jobKind{side: SideMatrix, order: byPair, payload: jobArgs{}, run: withPayload(func(b *Bridge, ctx context.Context, job *Job, args jobArgs) error {
	return b.people.setGhostName(ctx, job, args)
})})

// setGhostName runs a JobGhostName, unless the person may no longer be
// reached: the ghost, args.User, takes the nick args.Body.
func (b *people) setGhostName(ctx context.Context, _ *Job, args jobArgs) error {
	peer, err := b.cfg.Identities.GhostJID(args.User)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	if err := b.unreachable("", peer); err != nil {
		return err
	}
	if err := b.matrix.SetGhostName(ctx, args.User, args.Body); err != nil {
		return err
	}
	return b.namedByNick(ctx, peer)
}

// namedByNick records that a XEP-0172 nick named peer's ghost, which its
// vCard's name then leaves as it is (JobGhostName).
func (b *people) namedByNick(ctx context.Context, peer jid.JID) error {
	peer = peer.Bare()
	gp, err := b.store.GhostProfile(ctx, peer)
	if isNotFound(err) {
		gp = &GhostProfile{JID: peer.Bare()}
	} else if err != nil {
		return fmt.Errorf("look up the ghost profile of %s: %w", peer, err)
	}
	if gp.NamedByNick {
		return nil
	}
	gp.NamedByNick = true
	if err := b.store.SetGhostProfile(ctx, gp); err != nil {
		return fmt.Errorf("store the ghost profile of %s: %w", peer, err)
	}
	return nil
}

// pepFromXMPP takes a notification of a person's PEP service (XEP-0163) to
// a puppet: a new nickname names their ghost (XEP-0172 §4.5), new avatar
// metadata (XEP-0084 §4.2) has their vCard fetched, as XEP-0153's hash
// does (servers such as Prosody keep the two as one). Only people with a
// portal with the puppet's user change anything.
func (b *people) pepFromXMPP(ctx context.Context, log zerolog.Logger, m *XMPPMessage) error {
	if b.blocked(m.From) {
		b.drop(log, "xmpp_pep", ReasonBlockedDomain)
		return nil
	}
	mxid, reason := b.resolvePuppet(m.To)
	if reason != "" {
		b.drop(log, "xmpp_pep", reason)
		return nil
	}
	peer := m.From.Bare()
	if _, err := b.store.PortalByPair(ctx, mxid, peer); isNotFound(err) {
		b.drop(log, "xmpp_pep", ReasonNoPortal)
		return nil
	} else if err != nil {
		return fmt.Errorf("look up portal of %s and %s: %w", mxid, peer, err)
	}
	var jobs []*Job
	nick := ""
	if m.PEP.Nick != nil && *m.PEP.Nick != "" {
		nick = *m.PEP.Nick
		if job := b.ghostName(mxid, peer, nick); job != nil {
			jobs = append(jobs, job)
		}
	}
	if m.PEP.Avatar != nil {
		job, err := b.photoChanged(ctx, mxid, peer, *m.PEP.Avatar)
		if job != nil && *m.PEP.Avatar != "" {
			// XEP-0084 §4.4: the data itself, where the puppet may read
			// it; the vCard if it may not.
			job = avatarJob(avatarArgs{MXID: mxid, JID: peer.String(), ID: *m.PEP.Avatar, Type: m.PEP.AvatarType})
		}
		if err != nil {
			return err
		}
		if job != nil {
			jobs = append(jobs, job)
		}
	}
	if len(jobs) == 0 {
		b.count("xmpp_pep", "unchanged")
		return nil
	}
	if err := b.store.AddJobs(ctx, jobs...); err != nil {
		return fmt.Errorf("queue what the PEP of %s changed: %w", peer, err)
	}
	if nick != "" {
		b.namedAfter(peer, nick)
	}
	b.count("xmpp_pep", "accepted")
	b.queue(jobs...)
	return nil
}

// JobGhostAvatar fetches an XMPP person's XEP-0084 avatar data for their
// ghost.
const JobGhostAvatar JobKind = "xmpp.avatar"

// avatarArgs is the payload of a JobGhostAvatar: whose puppet asks, whose
// avatar, its id (the hex SHA-1 of the image) and MIME type.
type avatarArgs struct {
	MXID id.UserID `json:"mxid"`
	JID  string    `json:"jid"`
	ID   string    `json:"id"`
	Type string    `json:"type"`
}

func avatarJob(args avatarArgs) *Job {
	payload, _ := json.Marshal(args) // strings only
	peer, _ := jid.Parse(args.JID)
	return newJob(JobGhostAvatar, about{mxid: args.MXID, peer: peer}, 0, payload)
}

var _ = register(JobGhostAvatar, jobKind{side: SideXMPP, order: byPair, payload: avatarArgs{}, asks: true, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.people.fetchAvatar(ctx, job) }})

// fetchAvatar runs a JobGhostAvatar: the data item is the image whose
// SHA-1 is its id (XEP-0084 §4.2.1), which becomes the ghost's avatar. An
// avatar the puppet may not read, too large, or not matching its id falls
// back to the vCard's photo (Prosody and ejabberd give the same image
// there).
func (b *people) fetchAvatar(ctx context.Context, job *Job) error {
	args, err := payloadOf[avatarArgs](job)
	if err != nil {
		return err
	}
	peer, err := payloadJID(args.JID)
	if err != nil {
		return err
	}
	if err := b.unreachable(args.MXID, peer); err != nil {
		return err
	}
	from, err := b.cfg.Identities.PuppetFrom(args.MXID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	data, err := b.xmpp.FetchAvatar(ctx, from, peer, args.ID)
	if err != nil && !errors.Is(err, ErrPermanent) {
		return fmt.Errorf("fetch the avatar of %s: %w", peer, err)
	}
	sum := sha1.Sum(data)
	next := vcardJob(args.MXID, peer)
	switch {
	case err != nil:
		b.count("xmpp_avatar", "data_refused")
	case len(data) > maxGhostPhotoBytes:
		b.count("xmpp_avatar", "photo_too_large")
	case hex.EncodeToString(sum[:]) != args.ID:
		b.count("xmpp_avatar", "not_its_id")
	case imageType(data) == "":
		b.count("xmpp_avatar", "not_image")
	default:
		if next, err = b.ghostProfileJob(ghostProfileArgs{JID: peer.String(), SetPhoto: true, Photo: data, PhotoType: imageType(data), PhotoHash: args.ID}); err != nil {
			return err
		}
		b.count("xmpp_avatar", "from_pep")
	}
	if err := b.store.AddJobs(ctx, next); err != nil {
		return fmt.Errorf("queue the avatar of %s: %w", peer, err)
	}
	b.queue(next)
	return nil
}

// profileGhost is the ghost whose GhostProfile is kept under j: a
// person's (a bare JID) or an occupant's (room/key).
func (b *people) profileGhost(j jid.JID) (id.UserID, error) {
	if j.Resourcepart() == "" {
		return b.cfg.Identities.Ghost(j), nil
	}
	ghost, err := b.cfg.Identities.OccupantGhost(j.Bare(), j.Resourcepart())
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	return ghost, nil
}

// Occupants' avatars. An occupant's presence in a chat carries the hash
// of their vCard photo (XEP-0153 §3.1) as their client sent it (slixmpp,
// Gajim, Conversations) or their server put it in (Prosody 0.12's
// mod_vcard_legacy does, from their XEP-0084 avatar: XEP-0398), and the
// room passes it on. Their vCard is asked of their occupant JID,
// room/nick, by a puppet in the room: Prosody 0.12's room sends a
// vcard-temp query to an occupant on to their bare real JID, whose server
// answers. Its photo is their ghost's avatar, kept in the ghost profile
// of room/key, with the hash the presence announced: a presence with the
// same hash asks nothing, across restarts too.

// JobOccupantVCard fetches an occupant's vCard, through the room, for
// their ghost's avatar.
const JobOccupantVCard JobKind = "xmpp.occupant_vcard"

// occupantPhotoArgs is the payload of a JobOccupantVCard: the puppet that
// asks (one in the room), the room and the occupant's nick there, their
// member, and the hash their presence announced.
type occupantPhotoArgs struct {
	MXID   id.UserID `json:"mxid"`
	MUC    string    `json:"muc"`
	Nick   string    `json:"nick"`
	Member MemberID  `json:"member"`
	Hash   string    `json:"hash"`
}

// occupantPhoto is what the presence of member, nick in the chat muc, to
// the puppet of asker says of their avatar, the hex SHA-1 hash: the job
// that fetches their vCard (or, for an empty hash, takes the ghost's
// avatar away) if the ghost's is another. Occupants are strangers: each
// change spends one of the chat service's new ghosts
// (limits.domain_new_ghosts_per_hour), since each costs an upload; past
// it, nothing is recorded, and a later presence asks again.
func (b *people) occupantPhoto(ctx context.Context, log zerolog.Logger, asker id.UserID, muc jid.JID, nick string, member MemberID, hash string) (*Job, error) {
	room, key, ok := member.Occupant()
	if !ok {
		return nil, nil
	}
	who, err := room.WithResource(key)
	if err != nil {
		return nil, nil
	}
	if sum, err := hex.DecodeString(hash); err != nil || len(sum) != sha1.Size && hash != "" {
		// §3.1: the hex SHA-1 of the photo; anything else (of any
		// length) is not kept.
		log.Debug().Str("nick", nick).Int("bytes", len(hash)).Msg("An occupant's avatar hash is not a SHA-1")
		b.count("occupant_avatar", "bad_hash")
		return nil, nil
	}
	gp, err := b.store.GhostProfile(ctx, who)
	switch {
	case err == nil && gp.PhotoHash == hash, isNotFound(err) && hash == "":
		return nil, nil
	case err != nil && !isNotFound(err):
		return nil, fmt.Errorf("look up the ghost profile of %s: %w", who, err)
	}
	if reason := b.in.strangers.admit(ask{ghostsOfDomain, muc.Domainpart()}); reason != "" {
		log.Debug().Str("nick", nick).Str("reason", string(reason)).Msg("An occupant's avatar is past the chat service's budget")
		b.count("occupant_avatar", reason)
		return nil, nil
	}
	b.count("occupant_avatar", "photo_changed")
	if hash == "" {
		// XEP-0153 §3.1: an empty <photo/> is no avatar; nothing to ask.
		return b.ghostProfileJob(ghostProfileArgs{JID: who.String(), SetPhoto: true})
	}
	payload, err := json.Marshal(occupantPhotoArgs{MXID: asker, MUC: muc.Bare().String(), Nick: nick, Member: member, Hash: hash})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	// In the lane of the asker and the occupant: one change after the
	// other.
	return newJob(JobOccupantVCard, about{mxid: asker, peer: who}, 0, payload), nil
}

// ghostProfileJob is the JobGhostProfile that gives args to its ghost.
func (b *people) ghostProfileJob(args ghostProfileArgs) (*Job, error) {
	peer, err := payloadJID(args.JID)
	if err != nil {
		return nil, err
	}
	ghost, err := b.profileGhost(peer)
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	return newJob(JobGhostProfile, about{mxid: ghost}, 0, payload), nil
}

var _ = register(JobOccupantVCard, jobKind{side: SideXMPP, order: byPair, payload: occupantPhotoArgs{}, asks: true,
	run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args occupantPhotoArgs) error {
		return b.people.fetchOccupantVCard(ctx, args)
	})})

// fetchOccupantVCard runs a JobOccupantVCard: the occupant's vCard, asked
// of room/nick as the puppet, whose photo becomes their ghost's avatar.
// An error answer (the occupant left, or their server keeps no vCard or
// will not give it) and a photo too large or not an image are refusals,
// logged and counted: after an error the ghost keeps the avatar it has,
// after a photo refused it has none (as a person's ghost). Each is
// recorded under the hash announced, so that the same hash asks nothing
// again.
func (b *people) fetchOccupantVCard(ctx context.Context, args occupantPhotoArgs) error {
	muc, err := payloadJID(args.MUC)
	if err != nil {
		return err
	}
	room, key, ok := args.Member.Occupant()
	if !ok {
		return fmt.Errorf("%w: %q is no occupant", ErrPermanent, args.Member)
	}
	who, err := room.WithResource(key)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	to, err := muc.WithResource(args.Nick)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	if err := b.unreachable(args.MXID, muc); err != nil {
		return err
	}
	from, err := b.cfg.Identities.PuppetFrom(args.MXID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	card, err := b.xmpp.FetchVCard(ctx, from, to)
	keep := false
	switch {
	case errors.Is(err, ErrPermanent):
		b.log.Info().Err(err).Str("occupant", to.String()).Msg("An occupant's vCard cannot be had: their ghost keeps the avatar it has")
		b.count("occupant_avatar", "no_vcard")
		card, keep = &VCard{}, true
	case err != nil:
		return fmt.Errorf("fetch the vCard of %s: %w", to, err)
	case len(card.Photo) == 0:
		b.log.Info().Str("occupant", to.String()).Msg("An occupant announced an avatar their vCard does not have")
		b.count("occupant_avatar", "no_photo")
	}
	photo, photoType := b.cardPhoto(to, card)
	next, err := b.ghostProfileJob(ghostProfileArgs{JID: who.String(), SetPhoto: true, Photo: photo, PhotoType: photoType, PhotoHash: args.Hash, KeepAvatar: keep})
	if err != nil {
		return err
	}
	if err := b.store.AddJobs(ctx, next); err != nil {
		return fmt.Errorf("queue the avatar of %s: %w", to, err)
	}
	b.queue(next)
	b.count("occupant_avatar", "fetched")
	return nil
}
