package database

import (
	"sync"

	"maunium.net/go/mautrix/id"

	"xmppbridge/mapping"
)

// maxCachedPortals bounds portalCache: past it, it starts over.
const maxCachedPortals = 20000

// portalCache keeps the portals read, by room, so that the receipts of a
// transaction, which look up a hundred portals at once, and the read jobs,
// which look one up each, read no row for a portal already read: a
// portal's row and its members' rows cost more to read than the rest of
// such a receipt's lookups.
//
// It is kept true by forgetting: every write that changes a portal or a
// member's marks forgets the rooms it touched once it is done (committed
// or not), and a read stores what it read only if nothing was forgotten
// since it began (it may have read a row older than that write).
type portalCache struct {
	mu     sync.Mutex
	gen    uint64 // moves at every forget
	byRoom map[id.RoomID]*mapping.Portal
}

// get returns the cached portals of rooms (copies) and the rooms that are
// not cached, with the generation to hand to put for what is read of them.
func (c *portalCache) get(rooms []id.RoomID) (found map[id.RoomID]*mapping.Portal, missing []id.RoomID, gen uint64) {
	found = make(map[id.RoomID]*mapping.Portal, len(rooms))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rooms {
		if p, ok := c.byRoom[r]; ok {
			found[r] = p.Clone()
		} else {
			missing = append(missing, r)
		}
	}
	return found, missing, c.gen
}

// getOne is get for one room, without the allocations of a batch: a
// read job looks up one portal each.
func (c *portalCache) getOne(room id.RoomID) (p *mapping.Portal, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cached, ok := c.byRoom[room]; ok {
		return cached.Clone(), c.gen
	}
	return nil, c.gen
}

// readUpTo is the read mark of member by in the cached portal of room,
// and whether that portal is cached; a member it does not have is at 0.
func (c *portalCache) readUpTo(room id.RoomID, by mapping.MemberID) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.byRoom[room]
	if !ok {
		return 0, false
	}
	if m := p.Member(by); m != nil {
		return m.ReadUpTo, true
	}
	return 0, true
}

// put stores copies of ps, read from the store by a read that began at
// generation gen, unless something was forgotten since.
func (c *portalCache) put(gen uint64, ps ...*mapping.Portal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.byRoom == nil || len(c.byRoom)+len(ps) > maxCachedPortals {
		c.byRoom = make(map[id.RoomID]*mapping.Portal, len(ps))
	}
	for _, p := range ps {
		c.byRoom[p.RoomID] = p.Clone()
	}
}

// forget drops rooms, after a write that changed their portals.
func (c *portalCache) forget(rooms ...id.RoomID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, r := range rooms {
		delete(c.byRoom, r)
	}
}

// marked keeps the cache true after a write of acks: applied, the
// members' marks they moved move in the cache too (advance); not (the
// write failed, or found its transaction finished before), the rooms
// whose marks they would have moved are forgotten.
func (db *Database) marked(acks []mapping.Ack, applied bool) {
	var rooms []id.RoomID
	for _, a := range acks {
		if a.UpTo != "" {
			rooms = append(rooms, a.UpTo)
		}
	}
	switch {
	case len(rooms) == 0:
	case applied:
		db.portals.advance(acks)
	default:
		db.portals.forget(rooms...)
	}
}

// advance moves, in the cached portals, the marks committed "up to" acks
// moved, as their SQL does (ackUpTo: forward only, of a member the portal
// has), instead of forgetting the portals: in a group of a hundred
// members whose marks move at every receipt, reading its member rows
// again after each would cost more than the receipt. The generation moves
// as at a forget: a read that began before the write may have read the
// older marks, and must not store them.
func (c *portalCache) advance(acks []mapping.Ack) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, a := range acks {
		p := c.byRoom[a.UpTo]
		if a.UpTo == "" || p == nil {
			continue
		}
		m := p.Member(a.By)
		if m == nil {
			continue
		}
		if a.Kind == mapping.AckDisplayed {
			m.ReadUpTo = max(m.ReadUpTo, a.Row)
		} else {
			m.DeliveredUpTo = max(m.DeliveredUpTo, a.Row)
		}
	}
}
