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

// forgetMarked forgets the portals whose members' marks acks move, once
// the write that records them is done (deferred before it).
func (db *Database) forgetMarked(acks []mapping.Ack) {
	var rooms []id.RoomID
	for _, a := range acks {
		if a.UpTo != "" {
			rooms = append(rooms, a.UpTo)
		}
	}
	if len(rooms) > 0 {
		db.portals.forget(rooms...)
	}
}
