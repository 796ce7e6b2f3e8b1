// Package outbox carries out the sends the core owes either server. Jobs
// live in the store until done; this is the in-memory side that runs
// them: lanes of jobs that must keep their order (a room, a pair), run
// side by side, each by a goroutine of its own that takes the next job as
// soon as the last is done, without waiting for the other lanes. A job
// that needs no order is a lane of its own.
//
// Jobs reach the lanes two ways. Those this process stores are handed over
// as soon as the store has them (Queue), so a receipt does not wait for a
// poll of the table. A scan of the table picks up the rest: at start (what
// a previous run left), after a failure (the jobs a paused side set aside),
// and now and then as a safety net.
//
// What a job does, which side it sends to and what orders it are the
// core's (mapping: RunJob, JobKind.Side, Job.Order); when and how many at
// once are decided here.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"xmppbridge/internal/retry"
	"xmppbridge/internal/safely"
	"xmppbridge/mapping"
)

// maxLanes is how many lanes run at once. Sends to the homeserver are
// round trips: one at a time they would cap the bridge far below what the
// servers can take.
const maxLanes = 32

// maxAskLanes is how many lanes of jobs that ask a remote entity
// (JobKind.Asks: a person's vCard, avatar, roster) run at once, in a pool
// of their own: each may wait many seconds for a server that never
// answers, and thirty strangers on one dead server must not hold the
// places the messages and receipts of everyone else need.
const maxAskLanes = 4

// yieldAfter is how many jobs a lane runs in a row before it lets a
// waiting lane have its place, when all places are taken.
const yieldAfter = 16

const (
	scanEvery = 5 * time.Second // the safety net
	// scanRetryEvery is how often a scan is tried while the store fails.
	scanRetryEvery = time.Second
	scanBatch      = 1000                   // jobs read by one scan
	deleteEvery    = 20 * time.Millisecond  // finished jobs leave the store at most this late
	deleteBatch    = 500                    // or as soon as this many are finished
	minBackoff     = 500 * time.Millisecond // first wait after a failed send
	maxBackoff     = time.Minute
	maxKnown       = 10000 // jobs held in memory at most
)

// Store is where the jobs are kept; the core stores them, the outbox reads
// and removes them. database.Database implements it.
type Store interface {
	// DueJobsAfter returns up to limit jobs with an ID above after whose
	// NotBefore has passed, oldest first.
	DueJobsAfter(ctx context.Context, now time.Time, after int64, limit int) ([]*mapping.Job, error)
	// DeleteJobs removes finished jobs in one write.
	DeleteJobs(ctx context.Context, jobIDs ...int64) error
	RetryJob(ctx context.Context, jobID int64, notBefore time.Time, lastErr string) error
}

// Runner carries out one job: the core (mapping.Bridge). An error wrapping
// mapping.ErrPermanent drops the job. mapping.ErrNotConnected says the
// job's side is down: every job of that side waits, with backoff, until it
// answers again. Any other error is the job's own trouble (one room, one
// person's server): its lane waits and tries it again with backoff while
// the other lanes go on; a job that asks a remote entity is given up
// after mapping.AskTries. A panic drops the job as permanently failed.
type Runner interface {
	RunJob(ctx context.Context, job *mapping.Job) error
}

// laneKey names the order a job must keep: jobs of one lane run one after
// the other, in the order they were stored; lanes run side by side. A job
// that needs no order has a lane of its own, by its id.
type laneKey struct {
	side, order string
	job         int64
	asks        bool // its jobs ask a remote entity: the ask pool's
}

func keyOf(j *mapping.Job) laneKey {
	k := laneKey{side: j.Kind.Side(), asks: j.Kind.Asks()}
	if o := j.Order(); o != "" {
		k.order = o
	} else {
		k.job = j.ID
	}
	return k
}

type lane struct {
	key     laneKey
	jobs    []*mapping.Job // in id order; the first is running if running is set
	running bool
	// paused: the lane's first job failed on its own and the lane waits
	// until resume, backoff later; failingSince is when its failures
	// began, for one log line per outage of the lane rather than one per
	// try.
	paused       bool
	backoff      time.Duration
	failingSince time.Time
}

// pool is a set of lanes that share a bound on how many run at once.
type pool struct {
	size    int
	running int
	waiting []*lane // lanes with jobs and no goroutine, in arrival order
}

// Outbox runs the jobs of a Store with a Runner. Make it with New; it
// starts running lanes once Run is called.
type Outbox struct {
	store Store
	run   Runner
	count mapping.Counter
	log   zerolog.Logger
	now   func() time.Time
	wake  chan struct{}

	mu    sync.Mutex
	ctx   context.Context // set by Run; lanes start only then
	known map[int64]bool  // jobs queued, running, or done and not yet deleted
	lanes map[laneKey]*lane
	// main runs the lanes of sends; asking runs the lanes of jobs that
	// ask a remote entity (maxAskLanes).
	main, asking pool
	// failingLanes is how many lanes wait after a failure of their own:
	// the log says when the first begins to fail and when the last goes
	// on again, not once per lane (a database away fails them all).
	failingLanes int
	guard        safely.Guard // a job that panics fails alone
	idle         *sync.Cond   // signalled when a lane stops
	done         []int64      // finished jobs still in the store
	// Per side: a side that is down waits until pauseUntil, its jobs set
	// aside in the store until a scan after that.
	pauseUntil map[string]time.Time
	backoff    map[string]time.Duration
	// down is each side whose sends fail, for as long as they do: the
	// log says a side went away once and came back once, not once per
	// job tried meanwhile.
	down map[string]*retry.Outage
	// upAt is when each side's sends last went through again after an
	// outage: a send begun before that which then fails is older news
	// than the success, and starts no new outage.
	upAt map[string]time.Time
	// scanFrom is the id after which the next scan reads; 0 reads all.
	// needScan asks for a scan at the next round.
	scanFrom int64
	needScan bool
	lastScan time.Time
	// scanFailing: scans cannot read the store; none is tried again
	// before scanRetry (a store that is down is not asked in a loop).
	scanFailing retry.Outage
	scanRetry   time.Time
	// deleteFailing and deleteRetry are the same for removing finished
	// jobs.
	deleteFailing retry.Outage
	deleteRetry   time.Time
	// maxKnown bounds the jobs held in memory. Past it (a homeserver
	// slower than what arrives), new jobs stay in the store only, and
	// overflow is set until scans have read them all, in order.
	maxKnown int
	overflow bool
}

// New makes an outbox that runs store's jobs with run, counting what
// becomes of them (job_done, job_failed, job_retry, by kind) with count,
// which may be nil.
func New(store Store, run Runner, count mapping.Counter, log zerolog.Logger) *Outbox {
	if count == nil {
		count = func(string, string) {}
	}
	o := &Outbox{store: store, run: run, count: count, log: log, now: time.Now, wake: make(chan struct{}, 1),
		known: map[int64]bool{}, lanes: map[laneKey]*lane{},
		pauseUntil: map[string]time.Time{}, backoff: map[string]time.Duration{}, down: map[string]*retry.Outage{}, upAt: map[string]time.Time{}, needScan: true,
		maxKnown: maxKnown, main: pool{size: maxLanes}, asking: pool{size: maxAskLanes}}
	o.idle = sync.NewCond(&o.mu)
	return o
}

// Queue hands jobs the store has just stored (their IDs set) to their
// lanes. Jobs of a paused side stay in the store for the scan that ends
// the pause, which keeps them in order behind the ones set aside.
func (o *Outbox) Queue(jobs ...*mapping.Job) {
	o.mu.Lock()
	for _, j := range jobs {
		if j.ID == 0 || o.known[j.ID] {
			continue
		}
		if o.overflow || len(o.known) >= o.maxKnown {
			// Behind the ones already left in the store, in order.
			o.overflow = true
			continue
		}
		if o.now().Before(o.pauseUntil[j.Kind.Side()]) {
			o.needScan = true
			continue
		}
		o.add(j)
	}
	o.start()
	o.mu.Unlock()
	o.poke()
}

// add puts j in its lane, in id order. o.mu is held.
func (o *Outbox) add(j *mapping.Job) {
	o.known[j.ID] = true
	key := keyOf(j)
	l := o.lanes[key]
	if l == nil {
		l = &lane{key: key}
		o.lanes[key] = l
	}
	i := len(l.jobs)
	for i > 0 && l.jobs[i-1].ID > j.ID && !(i == 1 && l.running) {
		i--
	}
	l.jobs = slices.Insert(l.jobs, i, j)
	if !l.running && !l.paused && len(l.jobs) == 1 {
		o.wait(l)
	}
}

// poolOf is the pool l runs in.
func (o *Outbox) poolOf(l *lane) *pool {
	if l.key.asks {
		return &o.asking
	}
	return &o.main
}

// wait puts l in line for a place in its pool. o.mu is held.
func (o *Outbox) wait(l *lane) {
	p := o.poolOf(l)
	p.waiting = append(p.waiting, l)
}

// start runs waiting lanes while their pools have places. o.mu is held.
func (o *Outbox) start() {
	o.startIn(&o.main)
	o.startIn(&o.asking)
}

func (o *Outbox) startIn(p *pool) {
	// Not once stopping: a lane that stops with jobs left comes back here.
	for o.ctx != nil && o.ctx.Err() == nil && p.running < p.size && len(p.waiting) > 0 {
		l := p.waiting[0]
		p.waiting = p.waiting[1:]
		if len(l.jobs) == 0 || l.running || l.paused {
			continue
		}
		l.running = true
		p.running++
		go o.runLane(o.ctx, l)
	}
}

// running is how many lanes run, in both pools. o.mu is held.
func (o *Outbox) running() int { return o.main.running + o.asking.running }

// runLane runs l's jobs one after the other until it has none.
func (o *Outbox) runLane(ctx context.Context, l *lane) {
	p := o.poolOf(l)
	o.mu.Lock()
	defer func() {
		l.running = false
		if len(l.jobs) == 0 {
			delete(o.lanes, l.key)
		} else if !l.paused {
			o.wait(l)
		}
		p.running--
		o.start()
		o.idle.Broadcast()
		o.mu.Unlock()
	}()
	for ran := 0; len(l.jobs) > 0 && ctx.Err() == nil; ran++ {
		if ran >= yieldAfter && len(p.waiting) > 0 && p.running >= p.size {
			// Others wait for a place: this lane goes to the back of the
			// line (the deferred function), so that a lane with a long
			// queue does not keep its place while others have none.
			return
		}
		job := l.jobs[0]
		side := job.Kind.Side()
		if o.now().Before(o.pauseUntil[side]) {
			o.setAside(l)
			return
		}
		began := o.now()
		o.mu.Unlock()
		err := o.runJob(ctx, job)
		o.mu.Lock()
		if err != nil && ctx.Err() == nil && !errors.Is(err, mapping.ErrPermanent) && !errors.Is(err, mapping.ErrNotConnected) {
			job.Attempts++
			if !job.Kind.Asks() || job.Attempts < mapping.AskTries {
				o.laneFailed(ctx, l, job, err)
				return
			}
			err = fmt.Errorf("%w: given up after %d tries: %w", mapping.ErrPermanent, job.Attempts, err)
		}
		l.jobs = l.jobs[1:]
		// A finished job stays known until it has left the store, so that
		// a scan meanwhile does not run it again.
		switch {
		case err == nil:
			delete(o.backoff, side)
			if down, ok := o.down[side]; ok {
				delete(o.down, side)
				_, _, since := down.End()
				o.log.Info().Str("side", side).Dur("after", o.now().Sub(since)).Msg("Sends go through again")
				o.upAt[side] = o.now()
			}
			o.laneRecovered(l)
			o.finished(job)
			o.count("job_done", string(job.Kind))
		case errors.Is(err, mapping.ErrPermanent):
			o.jobLog(job).Err(err).Msg("Send failed permanently; dropping it")
			o.count("job_failed", string(job.Kind))
			o.laneRecovered(l)
			o.finished(job)
		case ctx.Err() != nil:
			delete(o.known, job.ID)
			return // stopping: the job stays in the store for the next run
		case began.Before(o.upAt[side]):
			// The side is down (ErrNotConnected), says a send begun before
			// others went through again: older news than theirs. It runs
			// again, and only a failure begun after says the side is down.
			delete(o.known, job.ID)
			o.jobLog(job).Debug().Err(err).Msg("A send begun before its side came back failed; it will run again")
			o.count("job_retry", string(job.Kind))
			o.setAside(l)
			return
		default: // the side is down (ErrNotConnected)
			delete(o.known, job.ID)
			wait := min(max(o.backoff[side]*2, minBackoff), maxBackoff)
			o.backoff[side] = wait
			o.pauseUntil[side] = o.now().Add(wait)
			down := o.down[side]
			if down == nil {
				down = &retry.Outage{}
				o.down[side] = down
			}
			if down.Fail(o.now()) == retry.First {
				o.jobLog(job).Warn().Err(err).Str("side", side).Msg("Sends fail; holding them and trying again with backoff until they go through")
			} else {
				o.jobLog(job).Debug().Err(err).Dur("retry_in", wait).Msg("Send failed again; will retry")
			}
			o.count("job_retry", string(job.Kind))
			o.setAside(l)
			o.mu.Unlock()
			// Due at once in the store: the pause is the side's, in memory,
			// and a reconnect ends it early; a job due later than those
			// behind it would let them overtake it.
			if err := o.store.RetryJob(ctx, job.ID, o.now(), err.Error()); err != nil {
				o.jobLog(job).Err(err).Msg("Failed to note a failed job")
			}
			o.mu.Lock()
			o.poke()
			return
		}
	}
}

// laneFailed holds l, whose first job failed on its own, for its backoff,
// and notes the try in the store; the lane keeps its jobs in memory and
// the other lanes go on. o.mu is held.
func (o *Outbox) laneFailed(ctx context.Context, l *lane, job *mapping.Job, err error) {
	wait := min(max(l.backoff*2, minBackoff), maxBackoff)
	l.backoff, l.paused = wait, true
	if l.failingSince.IsZero() {
		l.failingSince = o.now()
		o.failingLanes++
		if o.failingLanes == 1 {
			o.jobLog(job).Warn().Err(err).Str("lane", l.key.order).Msg("A send failed; its lane waits and tries it again with backoff, the others go on")
		} else {
			o.jobLog(job).Debug().Err(err).Str("lane", l.key.order).Int("lanes_failing", o.failingLanes).Msg("Another lane's send failed")
		}
	} else {
		o.jobLog(job).Debug().Err(err).Dur("retry_in", wait).Msg("Send failed again; will retry")
	}
	o.count("job_retry", string(job.Kind))
	time.AfterFunc(wait, func() { o.resume(l) })
	o.mu.Unlock()
	if err := o.store.RetryJob(ctx, job.ID, o.now(), err.Error()); err != nil {
		o.jobLog(job).Err(err).Msg("Failed to note a failed job")
	}
	o.mu.Lock()
}

// laneRecovered notes that l's first job is done with, after failures
// perhaps. o.mu is held.
func (o *Outbox) laneRecovered(l *lane) {
	if !l.failingSince.IsZero() {
		o.failingLanes--
		if o.failingLanes == 0 {
			o.log.Info().Str("lane", l.key.order).Dur("after", o.now().Sub(l.failingSince)).Msg("Every lane's sends go on again")
		}
	}
	l.backoff, l.failingSince = 0, time.Time{}
}

// resume ends l's backoff: it takes its place in line again.
func (o *Outbox) resume(l *lane) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l.paused = false
	if len(l.jobs) > 0 && !l.running {
		o.wait(l)
		o.start()
	}
}

// stopGrace is how long a job under way may go on once the bridge stops.
const stopGrace = 5 * time.Second

// runJob runs job, letting it finish for stopGrace after ctx ends: a send
// cut off may be done on the server with its answer lost, and a homeserver
// forgets the transaction id of a request it saw cancelled (Dendrite
// does), so the retry after the restart would post a second event.
func (o *Outbox) runJob(ctx context.Context, job *mapping.Job) error {
	jctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(stopGrace, cancel)
		context.AfterFunc(jctx, func() { t.Stop() })
	})
	defer stop()
	// A job that panics would panic again on every start: it is dropped,
	// and the process goes on for everyone else.
	err := o.guard.Run(o.jobLog(job), o.count, "job", func() error { return o.run.RunJob(jctx, job) })
	if errors.Is(err, safely.ErrPanic) {
		return fmt.Errorf("%w: %w", mapping.ErrPermanent, err)
	}
	return err
}

// finished notes that job is done with, to be removed from the store.
// o.mu is held.
func (o *Outbox) finished(job *mapping.Job) {
	o.done = append(o.done, job.ID)
	if len(o.done) == 1 {
		o.poke() // for the loop to remove it from the store soon
	}
}

// setAside drops l's queued jobs from memory: they stay in the store, and
// the scan that ends their side's pause reads them again, in order. o.mu
// is held.
func (o *Outbox) setAside(l *lane) {
	if !l.failingSince.IsZero() {
		// Its jobs come back from the store into a new lane.
		o.failingLanes--
		l.backoff, l.failingSince = 0, time.Time{}
	}
	for _, j := range l.jobs {
		delete(o.known, j.ID)
	}
	l.jobs = nil
	o.needScan = true
	o.scanFrom = 0
}

func (o *Outbox) jobLog(job *mapping.Job) *zerolog.Logger {
	l := o.log.With().Int64("job", job.ID).Str("kind", string(job.Kind)).Int64("message_row", job.MessageID).Logger()
	return &l
}

// scan reads due jobs from the store and queues those not known yet.
func (o *Outbox) scan(ctx context.Context) {
	o.mu.Lock()
	from := o.scanFrom
	o.needScan, o.lastScan = false, o.now()
	o.mu.Unlock()
	jobs, err := o.store.DueJobsAfter(ctx, o.now(), from, scanBatch)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		// Said once per outage; tried again every scanRetryEvery.
		if o.scanFailing.Fail(o.now()) == retry.First && ctx.Err() == nil {
			o.log.Err(err).Dur("retry_every", scanRetryEvery).Msg("Failed to read the outbox; trying again until the database answers")
		}
		o.needScan, o.scanRetry = true, o.now().Add(scanRetryEvery)
		return
	}
	if said, _, _ := o.scanFailing.End(); said {
		o.log.Info().Msg("The outbox reads the database again")
	}
	defer o.start()
	for i, j := range jobs {
		if len(o.known) >= o.maxKnown {
			// Full: read on after the last one taken once lanes have
			// worked some off (refill).
			o.overflow = true
			if i > 0 {
				o.scanFrom = jobs[i-1].ID
			}
			return
		}
		if !o.known[j.ID] && !o.now().Before(o.pauseUntil[j.Kind.Side()]) {
			o.add(j)
		}
	}
	if len(jobs) == scanBatch {
		// More may be due: read on from here next round.
		o.scanFrom, o.needScan = jobs[len(jobs)-1].ID, true
	} else {
		o.scanFrom, o.overflow = 0, false
	}
}

// refill asks for a scan once an overflow has been worked off by half.
// o.mu is held.
func (o *Outbox) refill() {
	if o.overflow && len(o.known) <= o.maxKnown/2 && !o.needScan {
		o.needScan = true
		o.poke()
	}
}

// deleteDone removes finished jobs from the store, many in one write. A
// job done but not yet removed when the bridge stops runs again, which
// every handler tolerates.
func (o *Outbox) deleteDone(ctx context.Context) {
	o.mu.Lock()
	done := o.done
	o.done = nil
	o.mu.Unlock()
	if len(done) == 0 {
		return
	}
	err := o.store.DeleteJobs(ctx, done...)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		if o.deleteFailing.Fail(o.now()) == retry.First && ctx.Err() == nil {
			o.log.Err(err).Dur("retry_every", scanRetryEvery).Msg("Failed to remove finished jobs; trying again until the database answers")
		}
		o.deleteRetry = o.now().Add(scanRetryEvery)
		o.done = append(o.done, done...)
		return
	}
	if said, _, _ := o.deleteFailing.End(); said {
		o.log.Info().Msg("Finished jobs leave the database again")
	}
	for _, id := range done {
		delete(o.known, id)
	}
	o.refill()
}

// poke makes the loop look for work now.
func (o *Outbox) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Wake makes the outbox try every side again now, paused or not: a side
// reconnected.
func (o *Outbox) Wake() {
	o.mu.Lock()
	clear(o.pauseUntil)
	o.mu.Unlock()
	o.Rescan()
}

// Rescan makes the outbox read the store for due jobs now, from the
// first: the core wrote some it could not hand over (mapping's core.stored).
func (o *Outbox) Rescan() {
	o.mu.Lock()
	o.needScan, o.scanFrom = true, 0
	o.mu.Unlock()
	o.poke()
}

// Run carries out the owed sends until ctx ends. Jobs of one lane run in
// the order they were stored; when a side fails, its jobs wait (so order
// is kept) with a capped backoff, while the other side goes on.
func (o *Outbox) Run(ctx context.Context) {
	o.mu.Lock()
	o.ctx = ctx
	o.start()
	o.mu.Unlock()
	lastDelete := o.now()
	for ctx.Err() == nil {
		o.mu.Lock()
		now := o.now()
		deleteNow := (len(o.done) >= deleteBatch || len(o.done) > 0 && now.Sub(lastDelete) >= deleteEvery) && !now.Before(o.deleteRetry)
		deleteRetry := o.deleteRetry
		scanNow := (o.needScan || now.Sub(o.lastScan) >= scanEvery) && !now.Before(o.scanRetry)
		var next time.Time // when a paused side may go on
		for side, t := range o.pauseUntil {
			if !now.Before(t) {
				delete(o.pauseUntil, side)
				scanNow, o.scanFrom = true, 0
			} else if next.IsZero() || t.Before(next) {
				next = t
			}
		}
		pendingDone := len(o.done) > 0
		o.mu.Unlock()
		if deleteNow {
			o.deleteDone(ctx)
			lastDelete, pendingDone = o.now(), false
		}
		if scanNow {
			o.scan(ctx)
		}
		wait := scanEvery
		if pendingDone {
			wait = max(deleteEvery, time.Until(deleteRetry))
		}
		if !next.IsZero() {
			wait = min(wait, max(time.Until(next), time.Millisecond))
		}
		o.mu.Lock()
		if o.needScan {
			wait = 0
			if until := o.scanRetry.Sub(o.now()); until > 0 {
				wait = until // the store failed: not before its retry
			}
		}
		o.mu.Unlock()
		if wait == 0 {
			continue
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-o.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
	// Lanes stop at their next job; wait for them, then record what they
	// finished.
	o.mu.Lock()
	for o.running() > 0 {
		o.idle.Wait()
	}
	o.mu.Unlock()
	o.deleteDone(context.WithoutCancel(ctx))
}
