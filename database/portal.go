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
	getPortalBaseQuery   = `SELECT room_id, mxid, jid, created_at, read_upto, delivered_upto, peer_read_upto FROM portal `
	getPortalByRoomQuery = getPortalBaseQuery + `WHERE room_id=$1`
	getPortalByPairQuery = getPortalBaseQuery + `WHERE mxid=$1 AND jid=$2`
	// By the pair's unique index, whose first column is mxid.
	getPortalsOfQuery = getPortalBaseQuery + `WHERE mxid=$1 ORDER BY jid`
	// Re-putting the same room keeps its creation time; pointing the pair at
	// a new room takes the new room's.
	putPortalQuery = `
		INSERT INTO portal (room_id, mxid, jid, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (mxid, jid) DO UPDATE SET
			room_id=excluded.room_id,
			created_at=CASE WHEN portal.room_id=excluded.room_id THEN portal.created_at ELSE excluded.created_at END
		RETURNING created_at
	`
)

func scanPortal(row dbutil.Scannable) (*mapping.Portal, error) {
	var p mapping.Portal
	var peer string
	var createdAt int64
	if err := row.Scan(&p.RoomID, &p.MXID, &peer, &createdAt, &p.ReadUpTo, &p.DeliveredUpTo, &p.PeerReadUpTo); err != nil {
		return nil, err
	}
	var err error
	if p.JID, err = parseJID(peer); err != nil {
		return nil, err
	}
	p.CreatedAt = fromMilli(createdAt)
	return &p, nil
}

// PortalByRoom returns the portal whose room is room.
func (db *Database) PortalByRoom(ctx context.Context, room id.RoomID) (*mapping.Portal, error) {
	p, err := queryOne(ctx, db.db, scanPortal, getPortalByRoomQuery, room)
	if err != nil {
		return nil, fmt.Errorf("get portal for room %s: %w", room, err)
	}
	return p, nil
}

// PortalsByRooms looks up the portals of many rooms in one query per
// inBatch; rooms that are not portals are missing from the map.
func (db *Database) PortalsByRooms(ctx context.Context, rooms []id.RoomID) (map[id.RoomID]*mapping.Portal, error) {
	ps, err := queryIn(ctx, db.db, scanPortal, getPortalBaseQuery+"WHERE room_id IN (", rooms,
		func(p *mapping.Portal) id.RoomID { return p.RoomID })
	if err != nil {
		return nil, fmt.Errorf("get portals of %d rooms: %w", len(rooms), err)
	}
	return ps, nil
}

// PortalByPair returns the portal of mxid and the bare JID of peer.
func (db *Database) PortalByPair(ctx context.Context, mxid id.UserID, peer jid.JID) (*mapping.Portal, error) {
	p, err := queryOne(ctx, db.db, scanPortal, getPortalByPairQuery, mxid, bareJID(peer))
	if err != nil {
		return nil, fmt.Errorf("get portal of %s with %s: %w", mxid, peer.Bare(), err)
	}
	return p, nil
}

// PortalsOf implements mapping.Store.
func (db *Database) PortalsOf(ctx context.Context, mxid id.UserID) ([]*mapping.Portal, error) {
	ps, err := queryMany(ctx, db.db, scanPortal, getPortalsOfQuery, mxid)
	if err != nil {
		return nil, fmt.Errorf("list the portals of %s: %w", mxid, err)
	}
	return ps, nil
}

// PutPortal inserts p or, if its pair already has a portal, points that one
// at p.RoomID. A zero p.CreatedAt means now. p.CreatedAt is set to what is
// stored. It fails if p.RoomID already belongs to another pair.
func (db *Database) PutPortal(ctx context.Context, p *mapping.Portal) error {
	defer db.writing()()
	createdAt := p.CreatedAt
	if createdAt.IsZero() {
		createdAt = time.Now()
	}
	var stored int64
	err := db.db.QueryRow(ctx, putPortalQuery, p.RoomID, p.MXID, bareJID(p.JID), toMilli(createdAt)).Scan(&stored)
	if err != nil {
		return fmt.Errorf("store portal %s of %s with %s: %w", p.RoomID, p.MXID, p.JID.Bare(), err)
	}
	p.CreatedAt = fromMilli(stored)
	return nil
}
