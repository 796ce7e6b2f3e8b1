package database

import (
	"context"
	"strconv"
	"sync"

	"maunium.net/go/mautrix/id"

	"xmppbridge/mapping"
)

// maxCachedMessages is how many messages messageCache keeps: past it, the
// one put longest ago goes. A receipt names a message of the last minutes
// or hours, and these are the newest rows of a busy bridge; their lookup
// was a fifth of the CPU of a pushed m.delivery and a tenth of an XEP-0184
// receipt's. At about 600 bytes a message it is some 12 MiB at most.
const maxCachedMessages = 20000

// maxCachedBody is the longest body of a message kept: a longer one is
// read from its row each time, so that a few long messages do not make
// the cache the bridge's largest use of memory.
const maxCachedBody = 1024

// messageCache keeps the newest messages of the id map in memory: those
// stored by this process (AddMessage) and those read since, with the
// newest rows read when the database opens. The receipt paths look up by
// event id (from Matrix) and by stanza id (from XMPP) and find the message
// here without a query.
//
// It is kept true by the writes: each of the four statements that change
// a message (insert, markRows, the event id, the room's stanza-id) updates
// the cached copy once it is committed, and marks the row touched at a new
// generation. A read stores the rows it read only if none of them was
// touched since it began: it may have read the row before that write.
// What it hands out are copies, which callers may change.
type messageCache struct {
	mu  sync.Mutex
	gen uint64
	// touched is the generation of the last write to each row written
	// since floor; a read begun before floor stores nothing (touched was
	// emptied then, so it cannot tell).
	touched map[int64]uint64
	floor   uint64
	byRow   map[int64]*mapping.Message
	byEvent map[id.EventID]int64
	byXMPP  map[messageKey]int64
	// ring holds the cached rows in the order they were put, next the
	// slot of the oldest: the one to go when a new row comes.
	ring []int64
	next int
	// hits and misses count lookups, for tests and measurements.
	hits, misses int64
}

// messageKey is how MessagesByXMPPIDs finds a message: the unique index
// message_xmpp_id_idx on (peer_jid, xmpp_id, direction), of the rows
// with a stanza id.
type messageKey struct {
	dir  mapping.Direction
	peer string
	id   string
}

func newMessageCache() *messageCache {
	return &messageCache{
		touched: map[int64]uint64{},
		byRow:   make(map[int64]*mapping.Message, maxCachedMessages),
		byEvent: make(map[id.EventID]int64, maxCachedMessages),
		byXMPP:  make(map[messageKey]int64, maxCachedMessages),
		ring:    make([]int64, 0, maxCachedMessages),
	}
}

func xmppKeyOf(m *mapping.Message) (messageKey, bool) {
	return messageKey{m.Direction, m.PeerJID.String(), m.XMPPID}, m.XMPPID != ""
}

// begin is the generation a read begins at, for put.
func (c *messageCache) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// row returns a copy of the cached message of row, or nil.
func (c *messageCache) row(row int64) (*mapping.Message, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hit(c.byRow[row]), c.gen
}

func (c *messageCache) hit(m *mapping.Message) *mapping.Message {
	if m == nil {
		c.misses++
		return nil
	}
	c.hits++
	cp := *m
	return &cp
}

// events returns copies of the cached messages of evs and the events not
// cached, with the generation to hand to put for what is read of them.
func (c *messageCache) events(evs []id.EventID) (map[id.EventID]*mapping.Message, []id.EventID, uint64) {
	found := make(map[id.EventID]*mapping.Message, len(evs))
	var missing []id.EventID
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range evs {
		if row, ok := c.byEvent[ev]; ok {
			found[ev] = c.hit(c.byRow[row])
		} else {
			c.misses++
			missing = append(missing, ev)
		}
	}
	return found, missing, c.gen
}

// stanzas is events for (peer, stanza id) keys of direction dir.
func (c *messageCache) stanzas(dir mapping.Direction, keys []mapping.XMPPKey) (map[mapping.XMPPKey]*mapping.Message, []mapping.XMPPKey, uint64) {
	found := make(map[mapping.XMPPKey]*mapping.Message, len(keys))
	var missing []mapping.XMPPKey
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if row, ok := c.byXMPP[messageKey{dir, k.Peer, k.ID}]; ok && k.ID != "" {
			found[k] = c.hit(c.byRow[row])
		} else {
			c.misses++
			missing = append(missing, k)
		}
	}
	return found, missing, c.gen
}

// put keeps copies of ms, as read or written by an operation that began
// at generation gen, but none that a write touched since.
func (c *messageCache) put(gen uint64, ms ...*mapping.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen < c.floor {
		return
	}
	for _, m := range ms {
		if m == nil || m.RowID == 0 || len(m.Body) > maxCachedBody || c.touched[m.RowID] > gen {
			continue
		}
		cp := *m
		if old := c.byRow[m.RowID]; old != nil {
			c.unindex(old)
		} else {
			c.evictFor(m.RowID)
		}
		c.byRow[m.RowID] = &cp
		c.index(&cp)
	}
}

// evictFor makes room for row in the ring, dropping the oldest row.
func (c *messageCache) evictFor(row int64) {
	if len(c.ring) < maxCachedMessages {
		c.ring = append(c.ring, row)
		return
	}
	if old := c.byRow[c.ring[c.next]]; old != nil {
		c.unindex(old)
		delete(c.byRow, old.RowID)
	}
	c.ring[c.next] = row
	c.next = (c.next + 1) % maxCachedMessages
}

func (c *messageCache) index(m *mapping.Message) {
	if m.EventID != "" {
		c.byEvent[m.EventID] = m.RowID
	}
	if k, ok := xmppKeyOf(m); ok {
		c.byXMPP[k] = m.RowID
	}
}

func (c *messageCache) unindex(m *mapping.Message) {
	if c.byEvent[m.EventID] == m.RowID {
		delete(c.byEvent, m.EventID)
	}
	if k, ok := xmppKeyOf(m); ok && c.byXMPP[k] == m.RowID {
		delete(c.byXMPP, k)
	}
}

// maxTouched bounds touched: past it, it is emptied and reads begun
// before store nothing (floor).
const maxTouched = 4 * maxCachedMessages

// wrote is called once a write to rows is committed: each cached one is
// changed by change as the write changed its row, and every one is marked
// touched, so that a read begun before stores none of them. rekey says
// that the write changes what the message is found by (its event or
// stanza id): an ack changes neither, and finding the keys (a JID made
// a string) was most of the cost of keeping the cache.
func (c *messageCache) wrote(rows []int64, rekey bool, change func(*mapping.Message)) {
	if len(rows) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if len(c.touched)+len(rows) > maxTouched {
		clear(c.touched)
		c.floor = c.gen
	}
	for _, row := range rows {
		c.touched[row] = c.gen
		if m := c.byRow[row]; m != nil && rekey {
			c.unindex(m)
			change(m)
			c.index(m)
		} else if m != nil {
			change(m)
		}
	}
}

// stats says how many lookups found their message here, and how many did
// not (tests, measurements).
func (c *messageCache) stats() (hits, misses int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses
}

// warmUp reads the newest maxCachedMessages rows into the cache, oldest
// first (so that they go first), as a read that began when it did: the
// receipts that come after a restart are about the newest messages.
func (db *Database) warmUp(ctx context.Context) {
	gen := db.messages.begin()
	ms, err := queryMany(ctx, db.db, scanMessage, getMessageBaseQuery+`ORDER BY rowid DESC LIMIT `+strconv.Itoa(maxCachedMessages))
	if err != nil {
		if ctx.Err() == nil {
			db.log.Warn().Err(err).Msg("Failed to read the newest messages into memory; they are read when asked for")
		}
		return
	}
	for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
		ms[i], ms[j] = ms[j], ms[i]
	}
	db.messages.put(gen, ms...)
}

// storedForm is msg as a read of its row returns it (scanMessage): the
// peer bare, the sender named, times to the millisecond. AddMessage
// caches it instead of reading the row it has just written.
func storedForm(msg *mapping.Message, row int64) (*mapping.Message, error) {
	m := *msg
	m.RowID = row
	peer, err := parseJID(bareJID(msg.PeerJID))
	if err != nil {
		return nil, err
	}
	m.PeerJID = peer
	m.Sender = msg.SentBy()
	m.TS = fromMilli(toMilli(msg.TS))
	m.DeliveredAt = fromMilli(toMilli(msg.DeliveredAt))
	m.DisplayedAt = fromMilli(toMilli(msg.DisplayedAt))
	return &m, nil
}
