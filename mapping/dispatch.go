package mapping

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// The outbox dispatcher. Jobs live in the store until done; this is the
// in-memory side that runs them: lanes of jobs that must keep their order
// (a room, a pair), run side by side, each by a goroutine of its own that
// takes the next job as soon as the last is done, without waiting for
// the other lanes.
//
// Jobs reach the lanes two ways. Those this process stores are handed over
// as soon as the store has them (queue), so a receipt does not wait for a
// poll of the table. A scan of the table picks up the rest: at start (what
// a previous run left), after a failure (the jobs a paused side set aside),
// and now and then as a safety net.

// maxLanes is how many lanes run at once. Sends to the homeserver are
// round trips: one at a time they would cap the bridge far below what the
// servers can take.
const maxLanes = 32

const (
	scanEvery    = 5 * time.Second        // the safety net
	scanBatch    = 1000                   // jobs read by one scan
	deleteEvery  = 20 * time.Millisecond  // finished jobs leave the store at most this late
	deleteBatch  = 500                    // or as soon as this many are finished
	minBackoff   = 500 * time.Millisecond // first wait after a failed send
	maxBackoff   = time.Minute
	retryLogEach = 10 // attempts between warnings while a side is unreachable
)

// lane names the order a job must keep: jobs of one lane run one after the
// other, in the order they were stored; lanes run side by side.
func (j *Job) lane() string {
	if o := j.Order(); o != "" {
		return j.Kind.Side() + ":" + o
	}
	return j.Kind.Side()
}

type lane struct {
	name    string
	jobs    []*Job // in id order; the first is running if running is set
	running bool
}

type dispatcher struct {
	mu      sync.Mutex
	ctx     context.Context // set by RunOutbox; lanes start only then
	known   map[int64]bool  // jobs queued, running, or done and not yet deleted
	lanes   map[string]*lane
	waiting []*lane // lanes with jobs and no goroutine, in arrival order
	running int
	idle    *sync.Cond // signalled when a lane stops
	done    []int64    // finished jobs still in the store
	// Per side: a side that failed waits until pauseUntil, its jobs set
	// aside in the store until a scan after that.
	pauseUntil map[string]time.Time
	backoff    map[string]time.Duration
	// scanFrom is the id after which the next scan reads; 0 reads all.
	// needScan asks for a scan at the next round.
	scanFrom int64
	needScan bool
	lastScan time.Time
	// maxKnown bounds the jobs held in memory. Past it (a homeserver
	// slower than what arrives), new jobs stay in the store only, and
	// overflow is set until scans have read them all, in order.
	maxKnown int
	overflow bool
}

func newDispatcher() *dispatcher {
	d := &dispatcher{known: map[int64]bool{}, lanes: map[string]*lane{},
		pauseUntil: map[string]time.Time{}, backoff: map[string]time.Duration{}, needScan: true,
		maxKnown: 10000}
	d.idle = sync.NewCond(&d.mu)
	return d
}

// queue hands jobs the store has just stored (their IDs set) to their
// lanes. Jobs of a paused side stay in the store for the scan that ends
// the pause, which keeps them in order behind the ones set aside.
func (b *Bridge) queue(jobs ...*Job) {
	d := b.out
	d.mu.Lock()
	for _, j := range jobs {
		if j.ID == 0 || d.known[j.ID] {
			continue
		}
		if d.overflow || len(d.known) >= d.maxKnown {
			// Behind the ones already left in the store, in order.
			d.overflow = true
			continue
		}
		if b.now().Before(d.pauseUntil[j.Kind.Side()]) {
			d.needScan = true
			continue
		}
		d.add(j)
	}
	d.start(b)
	d.mu.Unlock()
	b.poke()
}

// add puts j in its lane, in id order. d.mu is held.
func (d *dispatcher) add(j *Job) {
	d.known[j.ID] = true
	name := j.lane()
	l := d.lanes[name]
	if l == nil {
		l = &lane{name: name}
		d.lanes[name] = l
	}
	i := len(l.jobs)
	for i > 0 && l.jobs[i-1].ID > j.ID && !(i == 1 && l.running) {
		i--
	}
	l.jobs = slices.Insert(l.jobs, i, j)
	if !l.running && len(l.jobs) == 1 {
		d.waiting = append(d.waiting, l)
	}
}

// start runs waiting lanes while fewer than maxLanes run. d.mu is held.
func (d *dispatcher) start(b *Bridge) {
	// Not once stopping: a lane that stops with jobs left comes back here.
	for d.ctx != nil && d.ctx.Err() == nil && d.running < maxLanes && len(d.waiting) > 0 {
		l := d.waiting[0]
		d.waiting = d.waiting[1:]
		if len(l.jobs) == 0 || l.running {
			continue
		}
		l.running = true
		d.running++
		go b.runLane(d.ctx, l)
	}
}

// runLane runs l's jobs one after the other until it has none.
func (b *Bridge) runLane(ctx context.Context, l *lane) {
	d := b.out
	d.mu.Lock()
	defer func() {
		l.running = false
		if len(l.jobs) == 0 {
			delete(d.lanes, l.name)
		} else {
			d.waiting = append(d.waiting, l)
		}
		d.running--
		d.start(b)
		d.idle.Broadcast()
		d.mu.Unlock()
	}()
	for len(l.jobs) > 0 && ctx.Err() == nil {
		job := l.jobs[0]
		side := job.Kind.Side()
		if b.now().Before(d.pauseUntil[side]) {
			d.setAside(l)
			return
		}
		d.mu.Unlock()
		err := b.runJob(ctx, job)
		d.mu.Lock()
		l.jobs = l.jobs[1:]
		// A finished job stays known until it has left the store, so that
		// a scan meanwhile does not run it again.
		switch {
		case err == nil:
			delete(d.backoff, side)
			d.done = append(d.done, job.ID)
			if len(d.done) == 1 {
				b.poke() // for the loop to remove it from the store soon
			}
			b.count("job_done", string(job.Kind))
		case errors.Is(err, ErrPermanent):
			b.jobLog(job).Err(err).Msg("Send failed permanently; dropping it")
			b.count("job_failed", string(job.Kind))
			d.done = append(d.done, job.ID)
		case ctx.Err() != nil:
			delete(d.known, job.ID)
			return // stopping: the job stays in the store for the next run
		default:
			delete(d.known, job.ID)
			wait := min(max(d.backoff[side]*2, minBackoff), maxBackoff)
			d.backoff[side] = wait
			d.pauseUntil[side] = b.now().Add(wait)
			if !errors.Is(err, ErrNotConnected) || job.Attempts%retryLogEach == 0 {
				b.jobLog(job).Warn().Err(err).Dur("retry_in", wait).Msg("Send failed; will retry")
			}
			b.count("job_retry", string(job.Kind))
			d.setAside(l)
			d.mu.Unlock()
			// Due at once in the store: the pause is the side's, in memory,
			// and a reconnect ends it early; a job due later than those
			// behind it would let them overtake it.
			if err := b.store.RetryJob(ctx, job.ID, b.now(), err.Error()); err != nil {
				b.jobLog(job).Err(err).Msg("Failed to note a failed job")
			}
			d.mu.Lock()
			b.poke()
			return
		}
	}
}

// setAside drops l's queued jobs from memory: they stay in the store, and
// the scan that ends their side's pause reads them again, in order. d.mu
// is held.
func (d *dispatcher) setAside(l *lane) {
	for _, j := range l.jobs {
		delete(d.known, j.ID)
	}
	l.jobs = nil
	d.needScan = true
	d.scanFrom = 0
}

func (b *Bridge) jobLog(job *Job) *zerolog.Logger {
	l := b.log.With().Int64("job", job.ID).Str("kind", string(job.Kind)).Int64("message_row", job.MessageID).Logger()
	return &l
}

// scan reads due jobs from the store and queues those not known yet.
func (b *Bridge) scan(ctx context.Context) {
	d := b.out
	d.mu.Lock()
	from := d.scanFrom
	d.needScan, d.lastScan = false, b.now()
	d.mu.Unlock()
	jobs, err := b.store.DueJobsAfter(ctx, b.now(), from, scanBatch)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Err(err).Msg("Failed to read the outbox")
		}
		d.mu.Lock()
		d.needScan = true
		d.mu.Unlock()
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.start(b)
	for i, j := range jobs {
		if len(d.known) >= d.maxKnown {
			// Full: read on after the last one taken once lanes have
			// worked some off (refill).
			d.overflow = true
			if i > 0 {
				d.scanFrom = jobs[i-1].ID
			}
			return
		}
		if !d.known[j.ID] && !b.now().Before(d.pauseUntil[j.Kind.Side()]) {
			d.add(j)
		}
	}
	if len(jobs) == scanBatch {
		// More may be due: read on from here next round.
		d.scanFrom, d.needScan = jobs[len(jobs)-1].ID, true
	} else {
		d.scanFrom, d.overflow = 0, false
	}
}

// refill asks for a scan once an overflow has been worked off by half.
// d.mu is held.
func (d *dispatcher) refill(b *Bridge) {
	if d.overflow && len(d.known) <= d.maxKnown/2 && !d.needScan {
		d.needScan = true
		b.poke()
	}
}

// deleteDone removes finished jobs from the store, many in one write. A
// job done but not yet removed when the bridge stops runs again, which
// every handler tolerates.
func (b *Bridge) deleteDone(ctx context.Context) {
	d := b.out
	d.mu.Lock()
	done := d.done
	d.done = nil
	d.mu.Unlock()
	if len(done) == 0 {
		return
	}
	err := b.store.DeleteJobs(ctx, done...)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			b.log.Err(err).Msg("Failed to remove finished jobs; will retry")
		}
		d.done = append(d.done, done...)
		return
	}
	for _, id := range done {
		delete(d.known, id)
	}
	d.refill(b)
}

// poke makes the outbox loop look for work now.
func (b *Bridge) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Wake makes the outbox try every side again now, paused or not: a side
// reconnected.
func (b *Bridge) Wake() {
	d := b.out
	d.mu.Lock()
	clear(d.pauseUntil)
	d.needScan, d.scanFrom = true, 0
	d.mu.Unlock()
	b.poke()
}

// RunOutbox carries out the owed sends until ctx ends. Jobs of one lane run
// in the order they were stored; when a side fails, its jobs wait (so
// order is kept) with a capped backoff, while the other side goes on.
func (b *Bridge) RunOutbox(ctx context.Context) {
	d := b.out
	d.mu.Lock()
	d.ctx = ctx
	d.start(b)
	d.mu.Unlock()
	lastDelete := b.now()
	for ctx.Err() == nil {
		b.flushReceipts(ctx)
		d.mu.Lock()
		now := b.now()
		deleteNow := len(d.done) >= deleteBatch || len(d.done) > 0 && now.Sub(lastDelete) >= deleteEvery
		scanNow := d.needScan || now.Sub(d.lastScan) >= scanEvery
		var next time.Time // when a paused side may go on
		for side, t := range d.pauseUntil {
			if !now.Before(t) {
				delete(d.pauseUntil, side)
				scanNow, d.scanFrom = true, 0
			} else if next.IsZero() || t.Before(next) {
				next = t
			}
		}
		pendingDone := len(d.done) > 0
		d.mu.Unlock()
		if deleteNow {
			b.deleteDone(ctx)
			lastDelete, pendingDone = b.now(), false
		}
		if scanNow {
			b.scan(ctx)
		}
		wait := scanEvery
		if pendingDone {
			wait = deleteEvery
		}
		if !next.IsZero() {
			wait = min(wait, max(time.Until(next), time.Millisecond))
		}
		d.mu.Lock()
		if d.needScan {
			wait = 0
		}
		d.mu.Unlock()
		if wait == 0 {
			continue
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-b.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
	// Lanes stop at their next job; wait for them, then record what they
	// finished.
	d.mu.Lock()
	for d.running > 0 {
		d.idle.Wait()
	}
	d.mu.Unlock()
	b.deleteDone(context.WithoutCancel(ctx))
}
