package database

import (
	"context"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

const (
	getProfileQuery = `SELECT mxid, name, avatar_url, photo, photo_type, photo_sha1 FROM puppet_profile WHERE mxid=$1`
	setProfileQuery = `
		INSERT INTO puppet_profile (mxid, name, avatar_url, photo, photo_type, photo_sha1, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (mxid) DO UPDATE SET name=excluded.name, avatar_url=excluded.avatar_url, photo=excluded.photo,
			photo_type=excluded.photo_type, photo_sha1=excluded.photo_sha1, updated_at=excluded.updated_at
	`
)

func scanProfile(row dbutil.Scannable) (*mapping.Profile, error) {
	var p mapping.Profile
	if err := row.Scan(&p.MXID, &p.Name, &p.AvatarURL, &p.Photo, &p.PhotoType, &p.PhotoHash); err != nil {
		return nil, err
	}
	return &p, nil
}

// PuppetProfile returns the stored profile of mxid's puppet, or
// mapping.ErrNotFound.
func (db *Database) PuppetProfile(ctx context.Context, mxid id.UserID) (*mapping.Profile, error) {
	p, err := queryOne(ctx, db.db, scanProfile, getProfileQuery, mxid)
	if err != nil {
		return nil, fmt.Errorf("get profile of %s: %w", mxid, err)
	}
	return p, nil
}

// SetPuppetProfile stores p, replacing what was stored for its user.
func (db *Database) SetPuppetProfile(ctx context.Context, p *mapping.Profile) error {
	defer db.writing()()
	photo := p.Photo
	if len(photo) == 0 {
		photo = nil // NULL: no photo
	}
	if _, err := db.db.Exec(ctx, setProfileQuery, p.MXID, p.Name, p.AvatarURL, photo, p.PhotoType, p.PhotoHash, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("set profile of %s: %w", p.MXID, err)
	}
	return nil
}

const (
	getGhostProfileQuery = `SELECT jid, name, named_by_nick, photo_sha1, avatar_url FROM ghost_profile WHERE jid=$1`
	setGhostProfileQuery = `
		INSERT INTO ghost_profile (jid, name, named_by_nick, photo_sha1, avatar_url, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (jid) DO UPDATE SET name=excluded.name, named_by_nick=excluded.named_by_nick,
			photo_sha1=excluded.photo_sha1, avatar_url=excluded.avatar_url, updated_at=excluded.updated_at
	`
)

func scanGhostProfile(row dbutil.Scannable) (*mapping.GhostProfile, error) {
	var p mapping.GhostProfile
	var peer string
	if err := row.Scan(&peer, &p.Name, &p.NamedByNick, &p.PhotoHash, &p.AvatarURL); err != nil {
		return nil, err
	}
	var err error
	p.JID, err = parseJID(peer)
	return &p, err
}

// GhostProfile returns what the ghost of peer was given, or
// mapping.ErrNotFound. peer is kept as given: a person's bare JID, or an
// occupant's room/key (mapping.GhostProfile).
func (db *Database) GhostProfile(ctx context.Context, peer jid.JID) (*mapping.GhostProfile, error) {
	p, err := queryOne(ctx, db.db, scanGhostProfile, getGhostProfileQuery, peer.String())
	if err != nil {
		return nil, fmt.Errorf("get ghost profile of %s: %w", peer, err)
	}
	return p, nil
}

// SetGhostProfile stores p, replacing what was stored for its JID.
func (db *Database) SetGhostProfile(ctx context.Context, p *mapping.GhostProfile) error {
	defer db.writing()()
	if _, err := db.db.Exec(ctx, setGhostProfileQuery, p.JID.String(), p.Name, p.NamedByNick, p.PhotoHash, p.AvatarURL, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("set ghost profile of %s: %w", p.JID, err)
	}
	return nil
}
