package database

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

const (
	// A portal with its members: one row per member, folded by foldPortals
	// (in Go, not by an ORDER BY: no receipt-path statement sorts). Every
	// portal has a member (PutPortal stores none without), so the inner
	// join loses none.
	getPortalBaseQuery = `
		SELECT p.room_id, p.kind, p.jid, p.created_at, m.member, m.delivered_upto, m.read_upto, m.nick, m.muc_password
		FROM portal p JOIN portal_member m ON m.room_id=p.room_id `
	getPortalByRoomQuery = getPortalBaseQuery + `WHERE p.room_id=CAST($1 AS TEXT)`
	// By portal_member_direct_unique, whose first column is member.
	getPortalByPairQuery = getPortalBaseQuery + `
		WHERE p.room_id=(SELECT room_id FROM portal_member WHERE member=$1 AND direct_jid=$2)`
	getPortalsOfQuery = getPortalBaseQuery + `
		WHERE p.room_id IN (SELECT room_id FROM portal_member WHERE member=$1)`

	getGroupPortalQuery  = getPortalBaseQuery + `WHERE p.kind='group' AND p.jid=$1`
	getGroupPortalsQuery = getPortalBaseQuery + `WHERE p.kind='group'`
	removeMemberQuery    = `DELETE FROM portal_member WHERE room_id=$1 AND member=$2`
	// By portal_member_direct_unique, whose first column is member.
	countGroupsOfQuery = `
		SELECT COUNT(*) FROM portal_member m JOIN portal p ON p.room_id=m.room_id
		WHERE m.member=$1 AND p.kind='group'`
	setJoinQuery = `
		INSERT INTO portal_member (room_id, member, nick, muc_password) VALUES ($1, $2, $3, $4)
		ON CONFLICT (room_id, member) DO UPDATE SET nick=excluded.nick, muc_password=excluded.muc_password`

	getPortalRowQuery = `SELECT kind, jid, created_at FROM portal WHERE room_id=$1`
	insertPortalQuery = `INSERT INTO portal (room_id, kind, jid, created_at) VALUES ($1, $2, $3, $4)`
	// Moving a direct portal to a new room: the new row first, then its
	// members, then the old row (no member is ever without a portal).
	movePortalMembersQuery = `UPDATE portal_member SET room_id=$1 WHERE room_id=$2`
	deletePortalQuery      = `DELETE FROM portal WHERE room_id=$1`
	// A member put again keeps its watermarks.
	putMemberQuery = `
		INSERT INTO portal_member (room_id, member, direct_jid) VALUES ($1, $2, $3)
		ON CONFLICT (room_id, member) DO NOTHING`
)

// portalRow is one row of getPortalBaseQuery: a portal and one member.
type portalRow struct {
	portal mapping.Portal
	member mapping.Member
}

func scanPortalRow(row dbutil.Scannable) (*portalRow, error) {
	var r portalRow
	var kind, peer, member string
	var createdAt int64
	if err := row.Scan(&r.portal.RoomID, &kind, &peer, &createdAt, &member, &r.member.DeliveredUpTo, &r.member.ReadUpTo, &r.member.Nick, &r.member.Password); err != nil {
		return nil, err
	}
	var err error
	if r.portal.JID, err = parseJID(peer); err != nil {
		return nil, err
	}
	r.portal.Kind = mapping.PortalKind(kind)
	r.portal.CreatedAt = fromMilli(createdAt)
	r.member.ID = mapping.MemberID(member)
	return &r, nil
}

// foldPortals turns the rows of getPortalBaseQuery, in any order, into
// portals with their members by ID, the portals by JID then room.
func foldPortals(rows []*portalRow) []*mapping.Portal {
	var out []*mapping.Portal
	byRoom := map[id.RoomID]*mapping.Portal{}
	for _, r := range rows {
		p := byRoom[r.portal.RoomID]
		if p == nil {
			c := r.portal
			p = &c
			byRoom[p.RoomID], out = p, append(out, p)
		}
		p.Members = append(p.Members, r.member)
	}
	for _, p := range out {
		slices.SortFunc(p.Members, func(a, b mapping.Member) int { return cmp.Compare(a.ID, b.ID) })
	}
	slices.SortFunc(out, func(a, b *mapping.Portal) int {
		return cmp.Or(cmp.Compare(a.JID.String(), b.JID.String()), cmp.Compare(a.RoomID, b.RoomID))
	})
	return out
}

// queryPortals runs a query of getPortalBaseQuery's form.
func (db *Database) queryPortals(ctx context.Context, query string, args ...any) ([]*mapping.Portal, error) {
	rows, err := queryMany(ctx, db.db, scanPortalRow, query, args...)
	if err != nil {
		return nil, err
	}
	return foldPortals(rows), nil
}

// queryPortal is queryPortals for one portal, or mapping.ErrNotFound.
func (db *Database) queryPortal(ctx context.Context, query string, args ...any) (*mapping.Portal, error) {
	ps, err := db.queryPortals(ctx, query, args...)
	if err != nil {
		return nil, err
	} else if len(ps) == 0 {
		return nil, mapping.ErrNotFound
	}
	return ps[0], nil
}

// PortalByRoom returns the portal whose room is room.
func (db *Database) PortalByRoom(ctx context.Context, room id.RoomID) (*mapping.Portal, error) {
	cached, gen := db.portals.getOne(room)
	if cached != nil {
		return cached, nil
	}
	p, err := db.queryPortal(ctx, getPortalByRoomQuery, room)
	if err != nil {
		return nil, fmt.Errorf("get portal for room %s: %w", room, err)
	}
	db.portals.put(gen, p)
	return p, nil
}

// PortalsByRooms looks up the portals of many rooms in one query per
// inBatch; rooms that are not portals are missing from the map.
func (db *Database) PortalsByRooms(ctx context.Context, rooms []id.RoomID) (map[id.RoomID]*mapping.Portal, error) {
	out, rooms, gen := db.portals.get(rooms)
	for len(rooms) > 0 {
		n := min(len(rooms), inBatch)
		query, args := inList(getPortalBaseQuery+"WHERE p.room_id IN (", rooms[:n])
		ps, err := db.queryPortals(ctx, query+")", args...)
		if err != nil {
			return nil, fmt.Errorf("get portals of %d rooms: %w", len(rooms), err)
		}
		for _, p := range ps {
			out[p.RoomID] = p
		}
		db.portals.put(gen, ps...)
		rooms = rooms[n:]
	}
	return out, nil
}

// PortalByPair returns the direct portal of mxid with the bare JID of peer.
func (db *Database) PortalByPair(ctx context.Context, mxid id.UserID, peer jid.JID) (*mapping.Portal, error) {
	p, err := db.queryPortal(ctx, getPortalByPairQuery, mxid, bareJID(peer))
	if err != nil {
		return nil, fmt.Errorf("get portal of %s with %s: %w", mxid, peer.Bare(), err)
	}
	return p, nil
}

// GroupPortal implements mapping.Store.
func (db *Database) GroupPortal(ctx context.Context, room jid.JID) (*mapping.Portal, error) {
	p, err := db.queryPortal(ctx, getGroupPortalQuery, bareJID(room))
	if err != nil {
		return nil, fmt.Errorf("get the portal of %s: %w", room.Bare(), err)
	}
	return p, nil
}

// GroupPortals implements mapping.Store.
func (db *Database) GroupPortals(ctx context.Context) ([]*mapping.Portal, error) {
	ps, err := db.queryPortals(ctx, getGroupPortalsQuery)
	if err != nil {
		return nil, fmt.Errorf("list the group portals: %w", err)
	}
	return ps, nil
}

// GroupsOf implements mapping.Store.
func (db *Database) GroupsOf(ctx context.Context, user id.UserID) (int, error) {
	var n int
	if err := db.db.QueryRow(ctx, countGroupsOfQuery, mapping.MatrixMember(user)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count the group portals of %s: %w", user, err)
	}
	return n, nil
}

// RemoveMember implements mapping.Store.
func (db *Database) RemoveMember(ctx context.Context, room id.RoomID, member mapping.MemberID) error {
	defer db.writing()()
	defer db.portals.forget(room)
	if _, err := db.db.Exec(ctx, removeMemberQuery, room, member); err != nil {
		return fmt.Errorf("remove %s from portal %s: %w", member, room, err)
	}
	return nil
}

// SetJoin implements mapping.Store.
func (db *Database) SetJoin(ctx context.Context, room id.RoomID, m mapping.Member) error {
	defer db.writing()()
	defer db.portals.forget(room)
	if _, err := db.db.Exec(ctx, setJoinQuery, room, m.ID, m.Nick, m.Password); err != nil {
		return fmt.Errorf("set how %s joins the chat of %s: %w", m.ID, room, err)
	}
	return nil
}

// PortalsOf implements mapping.Store.
func (db *Database) PortalsOf(ctx context.Context, mxid id.UserID) ([]*mapping.Portal, error) {
	ps, err := db.queryPortals(ctx, getPortalsOfQuery, mxid)
	if err != nil {
		return nil, fmt.Errorf("list the portals of %s: %w", mxid, err)
	}
	return ps, nil
}

// errOtherPortal refuses to make a room the portal of something it is not.
var errOtherPortal = errors.New("the room is another portal")

// PutPortal inserts p with its members or, if p is direct and its pair
// already has a portal, moves that one (members and watermarks) to
// p.RoomID; members already there keep their watermarks. A zero
// p.CreatedAt means now; p.CreatedAt is set to what is stored (the room's
// creation, kept when the same room is put again). It fails, storing
// nothing, if p.RoomID is already another portal.
func (db *Database) PutPortal(ctx context.Context, p *mapping.Portal) error {
	defer db.writing()()
	createdAt := p.CreatedAt
	if createdAt.IsZero() {
		createdAt = time.Now()
	}
	peer := bareJID(p.JID)
	var moved id.RoomID // the pair's room before, if it moves
	defer func() { db.portals.forget(p.RoomID, moved) }()
	err := db.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		var kind, storedJID string
		var stored int64
		err := db.db.QueryRow(ctx, getPortalRowQuery, p.RoomID).Scan(&kind, &storedJID, &stored)
		exists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if exists && (kind != string(p.Kind) || storedJID != peer) {
			return errOtherPortal
		}
		if p.Kind == mapping.PortalDirect {
			var old id.RoomID
			err := db.db.QueryRow(ctx, `SELECT room_id FROM portal_member WHERE member=$1 AND direct_jid=$2`, p.User(), peer).Scan(&old)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return err
			case old != p.RoomID && exists:
				return errOtherPortal
			case old != p.RoomID:
				if _, err := db.db.Exec(ctx, insertPortalQuery, p.RoomID, p.Kind, peer, toMilli(createdAt)); err != nil {
					return err
				}
				if _, err := db.db.Exec(ctx, movePortalMembersQuery, p.RoomID, old); err != nil {
					return err
				}
				if _, err := db.db.Exec(ctx, deletePortalQuery, old); err != nil {
					return err
				}
				moved = old
				exists, stored = true, toMilli(createdAt)
			}
		}
		if !exists {
			if _, err := db.db.Exec(ctx, insertPortalQuery, p.RoomID, p.Kind, peer, toMilli(createdAt)); err != nil {
				return err
			}
			stored = toMilli(createdAt)
		}
		for _, m := range p.Members {
			var direct any // NULL but for the Matrix member of a direct portal
			if _, ok := m.ID.MXID(); ok && p.Kind == mapping.PortalDirect {
				direct = peer
			}
			if _, err := db.db.Exec(ctx, putMemberQuery, p.RoomID, m.ID, direct); err != nil {
				return err
			}
		}
		p.CreatedAt = fromMilli(stored)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %s portal %s with %s: %w", p.Kind, p.RoomID, peer, err)
	}
	return nil
}
