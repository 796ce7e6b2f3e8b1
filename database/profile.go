package database

import (
	"context"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"

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
