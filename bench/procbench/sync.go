package main

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// How Matrix receipts reach the bridge in a run (-matrix).
const (
	// matrixPush: the stand-in pushes them in application service
	// transactions, as Synapse and Tuwunel do.
	matrixPush = "push"
	// matrixSync: the stand-in answers the bot's /sync with them, as
	// Dendrite and continuwuity make a bridge read them (they push none).
	matrixSync = "sync"
)

// matrixFeed is the stand-in homeserver's way of handing Matrix receipts
// to the process measured: pushed (pusher) or synced (syncFeed).
type matrixFeed interface {
	// track names the tracker of the receipts enqueued from now on.
	track(t *tracker)
	enqueue(rs ...receipt)
	// run hands receipts over until done is closed and none is queued.
	run(done <-chan struct{})
	// drop forgets what is queued (a stalled run).
	drop()
	// failed says how many hand-overs failed, and the last error.
	failed() (int64, any)
}

func (p *pusher) track(t *tracker) { p.t.Store(t) }

func (p *pusher) drop() {
	p.mu.Lock()
	p.queue = nil
	p.mu.Unlock()
}

func (p *pusher) failed() (int64, any) { return p.errs.Load(), p.lastErr.Load() }

// syncMax is the most receipts one /sync response of the stand-in holds;
// the rest wait for the next.
const syncMax = 1000

// syncFeed answers /sync as a homeserver does for the bot's rooms: a
// request waits (up to its timeout) until receipts are queued, then gets
// everything queued since its token, up to syncMax, in each room's
// ephemeral m.receipt event. Like a homeserver's, a room's receipt holds
// only the newest m.read of each user (receipts are a user's position in
// the room, not a log), so the reads a burst queues between two syncs
// come as one a user and room; delivery receipts are each their own.
// A receipt counts as sent (the start of its latency) when it is queued:
// from then on the homeserver has it for the bot.
type syncFeed struct {
	t     atomic.Pointer[tracker]
	mu    sync.Mutex
	queue []receipt
	batch int
	wake  chan struct{}
}

func newSyncFeed() *syncFeed { return &syncFeed{wake: make(chan struct{}, 1)} }

func (f *syncFeed) track(t *tracker) { f.t.Store(t) }

func (f *syncFeed) enqueue(rs ...receipt) {
	var idx []int
	for _, r := range rs {
		if r.kind != matrixUnknown {
			idx = append(idx, r.i)
		}
	}
	f.mu.Lock()
	f.queue = append(f.queue, rs...)
	f.t.Load().markSent(idx, time.Now())
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run waits: the process measured comes for the receipts itself.
func (f *syncFeed) run(done <-chan struct{}) {
	<-done
	for {
		f.mu.Lock()
		empty := len(f.queue) == 0
		f.mu.Unlock()
		if empty {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *syncFeed) drop() {
	f.mu.Lock()
	f.queue = nil
	f.mu.Unlock()
}

func (f *syncFeed) failed() (int64, any) { return 0, nil }

// serve answers GET /sync: at once if receipts are queued, else when some
// are or the request's timeout passes (an empty batch).
func (f *syncFeed) serve(w http.ResponseWriter, r *http.Request) {
	timeout, _ := strconv.Atoi(r.URL.Query().Get("timeout"))
	timer := time.NewTimer(time.Duration(min(timeout, 30000)) * time.Millisecond)
	defer timer.Stop()
	var batch []receipt
	for {
		f.mu.Lock()
		n := min(len(f.queue), syncMax)
		if n > 0 {
			batch = slices.Clone(f.queue[:n])
			f.queue = f.queue[n:]
		}
		f.batch++
		next := f.batch
		f.mu.Unlock()
		if n > 0 || timeout == 0 {
			_, _ = w.Write(syncBody(next, batch))
			return
		}
		select {
		case <-f.wake:
		case <-timer.C:
			timeout = 0
		case <-r.Context().Done():
			return
		}
	}
}

// syncBody is a /sync response holding batch: per room one m.receipt
// event, its content by event, then receipt type, then user.
func syncBody(next int, batch []receipt) []byte {
	type read struct{ room, user string }
	type entry struct{ ev, typ, user string }
	rooms := map[string][]entry{}
	var order []string
	newest := map[read]int{} // index into rooms[room] of the user's m.read
	for _, r := range batch {
		typ, ev, rm, user := "m.delivery", eventID(r.i), string(room(r.room)), string(alice)
		switch r.kind {
		case matrixRead:
			typ = "m.read"
		case matrixUnknown:
			ev = fmt.Sprintf("$u%d", r.i)
		case groupRead:
			typ, rm, user = "m.read", string(groupRoom), string(groupMember(r.reader()))
		}
		if _, ok := rooms[rm]; !ok {
			order = append(order, rm)
		}
		if typ == "m.read" {
			k := read{rm, user}
			if j, ok := newest[k]; ok {
				rooms[rm][j].ev = ev // the later read replaces it
				continue
			}
			newest[k] = len(rooms[rm])
		}
		rooms[rm] = append(rooms[rm], entry{ev, typ, user})
	}
	var b strings.Builder
	fmt.Fprintf(&b, `{"next_batch":"s%d","rooms":{"join":{`, next)
	ts := time.Now().UnixMilli()
	for n, rm := range order {
		if n > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `%q:{"ephemeral":{"events":[{"type":"m.receipt","content":{`, rm)
		// One key an event: the entries of one event merged.
		byEvent := map[string][]entry{}
		var evs []string
		for _, e := range rooms[rm] {
			if _, ok := byEvent[e.ev]; !ok {
				evs = append(evs, e.ev)
			}
			byEvent[e.ev] = append(byEvent[e.ev], e)
		}
		for k, ev := range evs {
			if k > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `%q:{`, ev)
			byType := map[string][]string{}
			var types []string
			for _, e := range byEvent[ev] {
				if _, ok := byType[e.typ]; !ok {
					types = append(types, e.typ)
				}
				byType[e.typ] = append(byType[e.typ], e.user)
			}
			for t, typ := range types {
				if t > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `%q:{`, typ)
				for u, user := range byType[typ] {
					if u > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, `%q:{"ts":%d}`, user, ts)
				}
				b.WriteByte('}')
			}
			b.WriteByte('}')
		}
		b.WriteString(`}}]}}`)
	}
	b.WriteString(`}}}`)
	return []byte(b.String())
}
