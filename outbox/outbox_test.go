package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"xmppbridge/mapping"
)

// The kinds these tests use, for what the core declares of them: a lane
// of its own for each pair toward Matrix, one lane for the XMPP side's
// messages, and no order at all.
const (
	toMatrix  = mapping.JobSendToMatrix // side matrix, ordered by Lane
	toXMPP    = mapping.JobSendToXMPP   // side xmpp, one lane
	unordered = mapping.JobSubscribe    // side xmpp, no order
	asking    = mapping.JobGhostVCard   // side xmpp, ordered by Lane, asks a remote entity
)

func TestKindsAsDeclared(t *testing.T) {
	for _, tc := range []struct {
		job         *mapping.Job
		side, order string
	}{
		{&mapping.Job{Kind: toMatrix, Lane: "a"}, "matrix", "a"},
		{&mapping.Job{Kind: toXMPP}, "xmpp", "xmpp"},
		{&mapping.Job{Kind: unordered, Lane: "a"}, "xmpp", ""},
		{&mapping.Job{Kind: asking, Lane: "a"}, "xmpp", "a"},
	} {
		if side, order := tc.job.Kind.Side(), tc.job.Order(); side != tc.side || order != tc.order {
			t.Fatalf("%s: side %q order %q, want %q %q: the tests below need other kinds", tc.job.Kind, side, order, tc.side, tc.order)
		}
	}
}

// memStore keeps jobs as the database does: ids in order, never reused.
type memStore struct {
	mu      sync.Mutex
	jobs    []*mapping.Job // by id
	lastID  int64
	deletes int   // calls of DeleteJobs
	scans   int   // calls of DueJobsAfter
	down    error // if set, every call fails with it
}

func (s *memStore) add(jobs ...*mapping.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range jobs {
		s.lastID++
		j.ID = s.lastID
		c := *j
		s.jobs = append(s.jobs, &c)
	}
}

func (s *memStore) DueJobsAfter(_ context.Context, now time.Time, after int64, limit int) ([]*mapping.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scans++
	if s.down != nil {
		return nil, s.down
	}
	var out []*mapping.Job
	for _, j := range s.jobs {
		if j.ID > after && !j.NotBefore.After(now) && len(out) < limit {
			c := *j
			out = append(out, &c)
		}
	}
	return out, nil
}

func (s *memStore) DeleteJobs(_ context.Context, ids ...int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletes++
	if s.down != nil {
		return s.down
	}
	s.jobs = slices.DeleteFunc(s.jobs, func(j *mapping.Job) bool { return slices.Contains(ids, j.ID) })
	return nil
}

func (s *memStore) RetryJob(_ context.Context, id int64, notBefore time.Time, lastErr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.ID == id {
			j.Attempts++
			j.NotBefore, j.LastError = notBefore, lastErr
		}
	}
	return nil
}

func (s *memStore) left() []*mapping.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*mapping.Job
	for _, j := range s.jobs {
		c := *j
		out = append(out, &c)
	}
	return out
}

// runner records the jobs it ran, by their Payload, and fails or blocks
// as a test says.
type runner struct {
	mu      sync.Mutex
	ran     []string
	running int              // at this moment
	most    int              // at once, ever
	fail    map[string]error // by side
	// failJob fails, blockJob holds and panicJob panics the jobs of a
	// payload (one peer's trouble).
	failJob  map[string]error
	blockJob map[string]chan struct{}
	panicJob string
	// gate, if set, is waited on by every job: one receive each.
	gate    chan struct{}
	entered chan string // if set, told the payload of each job started
}

func (r *runner) RunJob(ctx context.Context, job *mapping.Job) error {
	r.mu.Lock()
	r.running++
	r.most = max(r.most, r.running)
	gate, entered := r.gate, r.entered
	r.mu.Unlock()
	if entered != nil {
		entered <- string(job.Payload)
	}
	if gate != nil {
		<-gate
	}
	r.mu.Lock()
	block := r.blockJob[string(job.Payload)]
	r.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	if string(job.Payload) == r.panicJob {
		panic("a stranger's odd answer")
	}
	if err := r.fail[job.Kind.Side()]; err != nil {
		return err
	}
	if err := r.failJob[string(job.Payload)]; err != nil {
		return err
	}
	r.ran = append(r.ran, string(job.Payload))
	return nil
}

func (r *runner) done() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ran)
}

func (r *runner) setFail(side string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail == nil {
		r.fail = map[string]error{}
	}
	r.fail[side] = err
}

type rig struct {
	store  *memStore
	run    *runner
	o      *Outbox
	mu     sync.Mutex
	counts map[string]int
}

func newRig() *rig {
	r := &rig{store: &memStore{}, run: &runner{}, counts: map[string]int{}}
	r.o = New(r.store, r.run, func(what, reason string) {
		r.mu.Lock()
		r.counts[what+"/"+reason]++
		r.mu.Unlock()
	}, zerolog.Nop())
	return r
}

func (r *rig) count(what string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[what]
}

// job makes a job of kind in lane whose payload names it.
func job(kind mapping.JobKind, lane, name string) *mapping.Job {
	return &mapping.Job{Kind: kind, Lane: lane, Payload: []byte(name)}
}

// add stores jobs and queues them, as the core does.
func (r *rig) add(jobs ...*mapping.Job) {
	r.store.add(jobs...)
	r.o.Queue(jobs...)
}

// start runs the outbox until the returned stop, which waits for Run to
// return.
func (r *rig) start(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { r.o.Run(ctx); close(stopped) }()
	stop = func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
	}
	t.Cleanup(func() { cancel(); <-stopped })
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func names(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

// Jobs of one lane run one after the other in the order they were stored,
// whatever order they are queued in; the store is emptied behind them.
func TestLaneKeepsOrder(t *testing.T) {
	r := newRig()
	want := names("m", 20)
	var jobs []*mapping.Job
	for _, n := range want {
		jobs = append(jobs, job(toXMPP, "", n))
	}
	r.store.add(jobs...)
	slices.Reverse(jobs)
	r.o.Queue(jobs...)
	r.start(t)
	waitFor(t, "every job", func() bool { return len(r.run.done()) == len(want) })
	if got := r.run.done(); !slices.Equal(got, want) {
		t.Errorf("ran %q,\nwant %q", got, want)
	}
	if r.run.most != 1 {
		t.Errorf("%d jobs of one lane ran at once", r.run.most)
	}
	waitFor(t, "the store emptied", func() bool { return len(r.store.left()) == 0 })
}

// Lanes run side by side: one that waits on its server holds up no other.
func TestLanesRunSideBySide(t *testing.T) {
	r := newRig()
	r.run.gate, r.run.entered = make(chan struct{}), make(chan string, 10)
	r.start(t)
	r.add(job(toMatrix, "pair-a", "a1"), job(toMatrix, "pair-a", "a2"), job(toMatrix, "pair-b", "b1"))
	started := []string{<-r.run.entered, <-r.run.entered}
	slices.Sort(started)
	if !slices.Equal(started, []string{"a1", "b1"}) {
		t.Fatalf("started %q, want a1 and b1 at once", started)
	}
	close(r.run.gate)
	waitFor(t, "every job", func() bool { return len(r.run.done()) == 3 })
	if got := r.run.done(); slices.Index(got, "a1") > slices.Index(got, "a2") {
		t.Errorf("ran %q: a2 before a1", got)
	}
}

// A job that needs no order is a lane of its own: such jobs run side by
// side, as many at once as the limit on lanes allows and no more.
func TestUnorderedJobsRunSideBySideWithinTheLimit(t *testing.T) {
	r := newRig()
	r.run.gate, r.run.entered = make(chan struct{}), make(chan string, 100)
	r.start(t)
	n := maxLanes + 8
	for _, name := range names("u", n) {
		r.add(job(unordered, "", name))
	}
	for range maxLanes {
		<-r.run.entered
	}
	time.Sleep(20 * time.Millisecond) // room for a lane too many
	r.run.mu.Lock()
	running := r.run.running
	r.run.mu.Unlock()
	if running != maxLanes {
		t.Errorf("%d unordered jobs running at once, want %d", running, maxLanes)
	}
	close(r.run.gate)
	waitFor(t, "every job", func() bool { return len(r.run.done()) == n })
	if r.run.most != maxLanes {
		t.Errorf("at most %d at once, want %d", r.run.most, maxLanes)
	}
}

// While the XMPP side is down its jobs wait in the store, in order, and
// its pause grows with each failure, up to a cap; Matrix's jobs are not
// held up meanwhile. After the reconnect (Wake) they go out in order.
func TestFailedSidePausesWithBackoffOthersGoOn(t *testing.T) {
	r := newRig()
	r.run.setFail("xmpp", mapping.ErrNotConnected)
	r.start(t)
	r.add(job(toXMPP, "", "one"), job(toXMPP, "", "two"), job(toMatrix, "pair", "from juliet"))
	waitFor(t, "the Matrix job", func() bool { return slices.Equal(r.run.done(), []string{"from juliet"}) })
	waitFor(t, "a second failure", func() bool { left := r.store.left(); return len(left) > 0 && left[0].Attempts >= 2 })
	r.o.mu.Lock()
	backoff := r.o.backoff["xmpp"]
	r.o.mu.Unlock()
	if backoff < 2*minBackoff || backoff > maxBackoff {
		t.Errorf("after two failures: backoff %v, want twice %v or more", backoff, minBackoff)
	}
	left := r.store.left()
	if len(left) != 2 || string(left[0].Payload) != "one" || left[1].Attempts != 0 {
		t.Fatalf("left %+v, want both XMPP jobs, only the first tried", left)
	}
	r.run.setFail("xmpp", nil)
	r.o.Wake()
	waitFor(t, "the XMPP jobs", func() bool { return len(r.run.done()) == 3 })
	if got := r.run.done(); !slices.Equal(got[1:], []string{"one", "two"}) {
		t.Errorf("ran %q, want one then two after the Matrix job", got)
	}
	waitFor(t, "the store emptied", func() bool { return len(r.store.left()) == 0 })
	r.o.mu.Lock()
	defer r.o.mu.Unlock()
	if _, ok := r.o.backoff["xmpp"]; ok {
		t.Error("the backoff outlived a success")
	}
}

// The pause is capped: a side down for long is tried every maxBackoff.
func TestBackoffCapped(t *testing.T) {
	r := newRig()
	r.run.setFail("matrix", fmt.Errorf("%w: 502", mapping.ErrNotConnected))
	r.o.ctx = context.Background()
	now := time.Now()
	r.o.now = func() time.Time { return now }
	for range 12 {
		r.add(job(toMatrix, "pair", "x"))
		r.o.mu.Lock()
		for r.o.running() > 0 || len(r.o.main.waiting)+len(r.o.asking.waiting) > 0 {
			r.o.start()
			r.o.idle.Wait()
		}
		clear(r.o.pauseUntil)
		r.o.mu.Unlock()
		r.store.DeleteJobs(context.Background(), r.store.lastID)
	}
	if got := r.o.backoff["matrix"]; got != maxBackoff {
		t.Errorf("backoff after 12 failures = %v, want %v", got, maxBackoff)
	}
}

// A permanent failure is dropped, not retried for ever.
func TestPermanentFailureDropped(t *testing.T) {
	r := newRig()
	r.run.setFail("matrix", fmt.Errorf("%w: M_FORBIDDEN", mapping.ErrPermanent))
	r.start(t)
	r.add(job(toMatrix, "pair", "doomed"), job(toMatrix, "pair", "doomed too"))
	waitFor(t, "the store emptied", func() bool { return len(r.store.left()) == 0 })
	if r.count("job_failed/"+string(toMatrix)) != 2 || r.count("job_retry/"+string(toMatrix)) != 0 {
		t.Errorf("counts %v", r.counts)
	}
}

// What a previous run left in the store runs at start.
func TestScanAtStart(t *testing.T) {
	r := newRig()
	r.store.add(job(toMatrix, "pair", "left"), job(unordered, "", "also left"))
	r.start(t)
	waitFor(t, "the jobs left", func() bool { return len(r.run.done()) == 2 })
}

// A job the outbox finished stays known until it has left the store: a
// scan of the table in between does not run it again (a delivery receipt
// would go twice).
func TestFinishedJobNotRerun(t *testing.T) {
	r := newRig()
	ctx := context.Background()
	r.o.ctx = ctx
	wait := func() {
		r.o.mu.Lock()
		for r.o.running() > 0 || len(r.o.main.waiting)+len(r.o.asking.waiting) > 0 {
			r.o.idle.Wait()
		}
		r.o.mu.Unlock()
	}
	r.add(job(toMatrix, "room", "delivery"))
	wait()
	r.o.scan(ctx)
	wait()
	if got := r.run.done(); len(got) != 1 {
		t.Fatalf("ran %q before the delete, want once", got)
	}
	r.o.deleteDone(ctx)
	if left := r.store.left(); len(left) != 0 {
		t.Errorf("jobs left after the delete: %+v", left)
	}
	r.o.scan(ctx)
	wait()
	if got := r.run.done(); len(got) != 1 {
		t.Errorf("ran %q, want once", got)
	}
}

// Finished jobs leave the store many in one write.
func TestDeletesBatched(t *testing.T) {
	r := newRig()
	r.run.gate = make(chan struct{})
	r.start(t)
	var jobs []*mapping.Job
	for _, n := range names("d", 100) {
		jobs = append(jobs, job(toMatrix, n, n))
	}
	r.add(jobs...)
	close(r.run.gate)
	waitFor(t, "the store emptied", func() bool { return len(r.store.left()) == 0 })
	r.store.mu.Lock()
	defer r.store.mu.Unlock()
	if r.store.deletes > 10 {
		t.Errorf("%d writes to delete 100 jobs", r.store.deletes)
	}
}

// Past the jobs it may hold in memory, the outbox leaves new ones in the
// store and reads them back in order as lanes work the others off.
func TestOverflowKeepsOrder(t *testing.T) {
	r := newRig()
	r.o.maxKnown = 3
	want := names("line ", 10)
	var jobs []*mapping.Job
	for _, n := range want {
		jobs = append(jobs, job(toXMPP, "", n))
	}
	r.add(jobs...)
	r.o.mu.Lock()
	known, overflow := len(r.o.known), r.o.overflow
	r.o.mu.Unlock()
	if known != 3 || !overflow {
		t.Fatalf("%d jobs held, overflow %t; want 3 and true", known, overflow)
	}
	r.start(t)
	waitFor(t, "every job", func() bool { return len(r.run.done()) == len(want) })
	if got := r.run.done(); !slices.Equal(got, want) {
		t.Errorf("ran %q,\nwant %q", got, want)
	}
	waitFor(t, "the store emptied", func() bool { return len(r.store.left()) == 0 })
	r.o.mu.Lock()
	defer r.o.mu.Unlock()
	if r.o.overflow {
		t.Error("still overflowing with the store empty")
	}
}

// Stopping the outbox stops its lanes, jobs left or not: none starts again
// after the context ends (they would spin, starting and stopping). What
// they finished leaves the store; the rest stays for the next run.
func TestStopsWithJobsLeft(t *testing.T) {
	r := newRig()
	r.run.gate, r.run.entered = make(chan struct{}), make(chan string, 10)
	stop := r.start(t)
	r.add(job(toXMPP, "", "one"), job(toXMPP, "", "two"))
	<-r.run.entered // the first job is under way
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	time.Sleep(20 * time.Millisecond)
	close(r.run.gate)
	<-stopped
	r.add(job(toXMPP, "", "three"), job(unordered, "", "four"))
	time.Sleep(50 * time.Millisecond)
	if got := r.run.done(); !slices.Equal(got, []string{"one"}) {
		t.Errorf("ran %q, want only the job under way", got)
	}
	r.o.mu.Lock()
	running, waiting := r.o.running(), len(r.o.main.waiting)
	r.o.mu.Unlock()
	if running != 0 || waiting != 2 {
		t.Errorf("after the stop: %d lanes running, %d waiting; want none running, the XMPP lane and four's waiting", running, waiting)
	}
	var left []string
	for _, j := range r.store.left() {
		left = append(left, string(j.Payload))
	}
	if !slices.Equal(left, []string{"two", "three", "four"}) {
		t.Errorf("left in the store %q, want two, three, four", left)
	}
}

// A lane with a long queue lets a waiting lane have its place after
// yieldAfter jobs when every place is taken: a lane that comes later starts
// long before the first ones are through (which, each holding its place,
// took a hundred jobs of one lane at the least).
func TestLongLanesYield(t *testing.T) {
	r := newRig()
	r.run.gate, r.run.entered = make(chan struct{}), make(chan string, 10)
	const per = 100
	var jobs []*mapping.Job
	for l := range maxLanes {
		for _, name := range names(fmt.Sprintf("l%d-", l), per) {
			jobs = append(jobs, job(toMatrix, fmt.Sprintf("pair-%d", l), name))
		}
	}
	r.add(jobs...)
	r.add(job(toMatrix, "late", "late"))
	r.start(t)
	for range maxLanes {
		if <-r.run.entered == "late" {
			t.Fatal("the late lane started before the others")
		}
	}
	// One job finishes at a time; each lets one start.
	released := 0
	for started := ""; started != "late"; started = <-r.run.entered {
		r.run.gate <- struct{}{}
		released++
		if released > maxLanes*per {
			t.Fatal("the late lane never started")
		}
	}
	if released > maxLanes*yieldAfter {
		t.Errorf("the late lane started after %d jobs of the others, want at most %d", released, maxLanes*yieldAfter)
	}
	close(r.run.gate)
	go func() {
		for range r.run.entered {
		}
	}()
	waitFor(t, "every job", func() bool { return len(r.run.done()) == maxLanes*per+1 })
}

// Receipts about events of one room need no order (mapping.JobMatrixDelivery)
// but share the room's mapping.RoomSpread lanes: a room's burst runs that
// many at once, and leaves the other places to other rooms.
func TestRoomSpread(t *testing.T) {
	r := newRig()
	r.run.gate, r.run.entered = make(chan struct{}), make(chan string, 200)
	r.start(t)
	for _, name := range names("d", 100) {
		r.add(job(mapping.JobMatrixDelivery, "!flood", name))
	}
	r.add(job(mapping.JobMatrixDelivery, "!calm", "calm"))
	seen := map[string]bool{}
	for range mapping.RoomSpread + 1 {
		seen[<-r.run.entered] = true
	}
	time.Sleep(20 * time.Millisecond) // room for a lane too many
	r.run.mu.Lock()
	running := r.run.running
	r.run.mu.Unlock()
	if !seen["calm"] || running != mapping.RoomSpread+1 {
		t.Errorf("%d running, the other room's started: %v; want %d and true", running, seen["calm"], mapping.RoomSpread+1)
	}
	close(r.run.gate)
	waitFor(t, "every job", func() bool { return len(r.run.done()) == 101 })
}

// A side that fails is logged once when its sends begin to fail and once
// when they go through again, however many jobs and tries lie between:
// an operator reads what happened, not a line per job.
func TestSideDownLoggedOnce(t *testing.T) {
	var logs syncBuffer
	r := newRig()
	r.o.log = zerolog.New(&logs).Level(zerolog.InfoLevel)
	r.run.setFail("matrix", fmt.Errorf("%w: 502 Bad Gateway", mapping.ErrNotConnected))
	r.start(t)
	for i := range 20 {
		r.add(job(toMatrix, fmt.Sprintf("pair%d", i), "m"))
	}
	waitFor(t, "three failures", func() bool { return r.count("job_retry/"+string(mapping.JobSendToMatrix)) >= 3 })
	r.run.setFail("matrix", nil)
	r.o.Wake()
	waitFor(t, "every job", func() bool { return len(r.run.done()) == 20 })
	out := logs.String()
	if n := strings.Count(out, "Sends fail"); n != 1 {
		t.Errorf("%d lines saying the side fails, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "Sends go through again"); n != 1 {
		t.Errorf("%d lines saying it is back, want 1:\n%s", n, out)
	}
}

// While the database is down the outbox asks it once every
// scanRetryEvery, not in a loop, says so once, and once when it answers
// again; the jobs it holds are done and removed then.
func TestStoreDownAskedOnceASecond(t *testing.T) {
	var logs syncBuffer
	r := newRig()
	r.o.log = zerolog.New(&logs).Level(zerolog.InfoLevel)
	r.store.mu.Lock()
	r.store.down = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	r.store.mu.Unlock()
	r.start(t)
	r.add(job(toMatrix, "p", "held"))
	time.Sleep(1500 * time.Millisecond)
	r.store.mu.Lock()
	scans, deletes := r.store.scans, r.store.deletes
	r.store.down = nil
	r.store.mu.Unlock()
	if scans > 3 || deletes > 3 {
		t.Errorf("asked a database that is down %d times for jobs and %d times to remove them in 1.5 s, want one a second", scans, deletes)
	}
	waitFor(t, "the held job done and removed", func() bool { return len(r.run.done()) == 1 && len(r.store.left()) == 0 })
	out := logs.String()
	for _, line := range []string{"Failed to read the outbox", "The outbox reads the database again"} {
		if n := strings.Count(out, line); n > 1 {
			t.Errorf("%d lines %q, want at most one:\n%s", n, line, out)
		}
	}
	if n := strings.Count(out, "Failed to remove finished jobs"); n != 1 {
		t.Errorf("%d lines saying removals fail, want 1:\n%s", n, out)
	}
}

// syncBuffer is a bytes.Buffer that lanes may write side by side.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A job the core stored but could not queue (its commit's answer was lost)
// runs as soon as the core asks for a Rescan, not at the next look: with
// the clock stopped, the look every scanEvery never comes, so only the
// Rescan can find it.
func TestRescanFindsAJobNeverQueued(t *testing.T) {
	r := newRig()
	now := time.Now()
	r.o.now = func() time.Time { return now }
	r.start(t)
	waitFor(t, "the first look", func() bool {
		r.store.mu.Lock()
		defer r.store.mu.Unlock()
		return r.store.scans > 0
	})
	r.store.add(job(toMatrix, "pair", "stored, never queued"))
	r.o.Rescan()
	waitFor(t, "the job found by the rescan", func() bool { return len(r.run.done()) == 1 })
}

func (r *runner) setFailJob(payload string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failJob == nil {
		r.failJob = map[string]error{}
	}
	r.failJob[payload] = err
}

// A send that fails on its own (one room, one person's server) holds its
// lane only: the jobs behind it in that lane wait, in order, with backoff,
// while every other lane of the same side goes on; the side is not paused.
func TestOneLanesTroubleStaysInItsLane(t *testing.T) {
	r := newRig()
	r.run.setFailJob("to the broken room", errors.New("500 M_UNKNOWN"))
	r.start(t)
	r.add(job(toMatrix, "broken", "to the broken room"), job(toMatrix, "broken", "behind it"))
	for i := range 20 {
		r.add(job(toMatrix, fmt.Sprintf("pair%d", i), fmt.Sprint("fine", i)))
	}
	waitFor(t, "the other lanes", func() bool { return len(r.run.done()) == 20 })
	waitFor(t, "a second try", func() bool { return r.count("job_retry/"+string(toMatrix)) >= 2 })
	r.o.mu.Lock()
	paused := !r.o.pauseUntil["matrix"].IsZero()
	r.o.mu.Unlock()
	if paused {
		t.Error("one lane's failure paused the whole side")
	}
	if slices.Contains(r.run.done(), "behind it") {
		t.Error("a job overtook the failing one in its lane")
	}
	// New work of other lanes still goes straight through.
	r.add(job(toMatrix, "late", "late"))
	waitFor(t, "a job queued while the lane waits", func() bool { return slices.Contains(r.run.done(), "late") })
	r.run.setFailJob("to the broken room", nil)
	waitFor(t, "the lane after its backoff", func() bool { return len(r.run.done()) == 23 })
	if got := r.run.done(); !slices.Equal(got[21:], []string{"to the broken room", "behind it"}) {
		t.Errorf("the lane ran %q, want its jobs in order", got[21:])
	}
	if r.count("job_failed/"+string(toMatrix)) != 0 {
		t.Error("a send toward Matrix was given up: only jobs that ask a remote entity are")
	}
}

// A job that asks a remote entity (a vCard of a person on a server that
// never answers) is tried mapping.AskTries times, then dropped and
// counted: it is that job's failure, not a reason to wait for ever.
func TestAskingJobGivenUpAfterItsTries(t *testing.T) {
	r := newRig()
	r.run.setFailJob("vcard of someone@dead.example", fmt.Errorf("vCard of someone@dead.example: %w", context.DeadlineExceeded))
	r.start(t)
	r.add(job(asking, "alice|someone@dead.example", "vcard of someone@dead.example"))
	waitFor(t, "the job given up", func() bool { return r.count("job_failed/"+string(asking)) == 1 })
	if got := r.count("job_retry/" + string(asking)); got != mapping.AskTries-1 {
		t.Errorf("retried %d times, want %d", got, mapping.AskTries-1)
	}
	waitFor(t, "the store emptied", func() bool { return len(r.store.left()) == 0 })
}

// Jobs that ask remote entities run in a pool of their own: thirty of
// them waiting on a dead server take maxAskLanes places at most, and
// messages and receipts of every other portal go on at once.
func TestAskingJobsHoldNoPlaceOfTheSends(t *testing.T) {
	r := newRig()
	dead := make(chan struct{})
	r.run.blockJob = map[string]chan struct{}{}
	for i := range 30 {
		r.run.blockJob[fmt.Sprint("ask", i)] = dead
	}
	r.start(t)
	for i := range 30 {
		r.add(job(asking, fmt.Sprintf("alice|s%d@dead.example", i), fmt.Sprint("ask", i)))
	}
	waitFor(t, "the ask pool full", func() bool { r.run.mu.Lock(); defer r.run.mu.Unlock(); return r.run.running == maxAskLanes })
	var want []string
	for i := range 2 * maxLanes {
		name := fmt.Sprint("receipt", i)
		want = append(want, name)
		r.add(job(toMatrix, fmt.Sprint("pair", i), name))
	}
	waitFor(t, "every send", func() bool { return len(r.run.done()) == len(want) })
	r.run.mu.Lock()
	most, waiting := r.run.most, r.run.running
	r.run.mu.Unlock()
	if waiting != maxAskLanes {
		t.Errorf("%d jobs wait on the dead server at once, want %d", waiting, maxAskLanes)
	}
	if most > maxLanes+maxAskLanes {
		t.Errorf("%d jobs at once, want at most %d", most, maxLanes+maxAskLanes)
	}
	close(dead)
	waitFor(t, "the asking jobs", func() bool { return len(r.run.done()) == len(want)+30 })
}

// A job that panics is dropped as failed and counted; the process, its
// lane and every other lane go on (a stranger's odd answer must not
// crash-loop the bridge: the job would panic again at every start).
func TestPanickingJobDropped(t *testing.T) {
	r := newRig()
	r.run.panicJob = "boom"
	r.start(t)
	r.add(job(toMatrix, "pair", "boom"), job(toMatrix, "pair", "after"))
	waitFor(t, "the next job", func() bool { return slices.Equal(r.run.done(), []string{"after"}) })
	if r.count("panic/job") != 1 || r.count("job_failed/"+string(toMatrix)) != 1 {
		t.Errorf("counts %v, want one panic and one failed job", r.counts)
	}
	waitFor(t, "the store emptied", func() bool { return len(r.store.left()) == 0 })
}

// Lanes that fail together (a database away fails every send) are said
// once when the first begins to fail and once when the last goes on.
func TestFailingLanesLoggedOnce(t *testing.T) {
	var logs syncBuffer
	r := newRig()
	r.o.log = zerolog.New(&logs).Level(zerolog.InfoLevel)
	for i := range 20 {
		r.run.setFailJob(fmt.Sprint("m", i), errors.New("load message: connection refused"))
	}
	r.start(t)
	for i := range 20 {
		r.add(job(toMatrix, fmt.Sprintf("pair%d", i), fmt.Sprint("m", i)))
	}
	waitFor(t, "every lane failed", func() bool { return r.count("job_retry/"+string(toMatrix)) >= 20 })
	for i := range 20 {
		r.run.setFailJob(fmt.Sprint("m", i), nil)
	}
	waitFor(t, "every job", func() bool { return len(r.run.done()) == 20 })
	out := logs.String()
	if n := strings.Count(out, "A send failed"); n != 1 {
		t.Errorf("%d lines saying sends fail, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "go on again"); n != 1 {
		t.Errorf("%d lines saying they go on, want 1:\n%s", n, out)
	}
}
