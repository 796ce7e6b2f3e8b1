// Command procbench is the project's load bench (scripts/bench.sh runs it).
// It runs the bridge binary as a process of its own, with a config as a
// person writes it and a database seeded before it starts, between
// do-nothing stand-ins for both servers that live in this process; and, in
// the same run and over the same path, a do-nothing relay, this binary
// started with -relay, a process of its own too. Every figure is given next
// to the relay's and as a ratio to it: the relay is the physical limit of
// the path on this machine at this moment.
//
// Knobs (flags, or the environment): BENCH_SHAPES (comma-separated shape
// or shape/direction names; empty for all; group runs group10 too),
// BENCH_N (receipts in a burst), BENCH_HISTORY (messages in the hot
// portal and in the group portal), BENCH_PACED_SECONDS,
// BENCH_REPEAT (runs of each shape by each process, the median shown),
// BENCH_DEAD and BENCH_DEAD_SECONDS (the dead shape's strangers and the
// length of its paced run),
// BENCH_MEDIA_FILES and BENCH_MEDIA_KIB (the media shape's files at once
// and their size),
// BENCH_TIMEOUT and BENCH_STALL (a shape that has not finished by then, or
// that sees nothing for that long, is reported as stalled), BENCH_BRIDGE
// (a built bridge binary), BENCH_DIR (where the databases and logs go).
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"maunium.net/go/mautrix/appservice"

	"xmppbridge/internal/peers"
	"xmppbridge/internal/standin"
	"xmppbridge/mapping"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-drill" {
		if err := runDrill(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "drill:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "-relay" {
		if err := runRelay(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			os.Exit(1)
		}
		return
	}
	d := &driver{}
	flag.StringVar(&d.shapes, "shapes", env("BENCH_SHAPES", ""), "shapes to run, comma-separated (hot, p100, p1000, flood, paced1, paced100, dead, group, media, or shape/direction); empty for all")
	flag.IntVar(&d.n, "n", envInt("BENCH_N", 20000), "receipts in a burst")
	flag.IntVar(&d.history, "history", envInt("BENCH_HISTORY", 20000), "messages of history in the hot portal and the group portal")
	flag.IntVar(&d.pacedSeconds, "paced-seconds", envInt("BENCH_PACED_SECONDS", 3), "seconds of each paced run")
	flag.IntVar(&d.dead, "dead", envInt("BENCH_DEAD", 30), "the dead shape's strangers on servers that never answer")
	flag.IntVar(&d.deadSeconds, "dead-seconds", envInt("BENCH_DEAD_SECONDS", 30), "seconds of the dead shape's paced run")
	flag.IntVar(&d.mediaFiles, "media-files", envInt("BENCH_MEDIA_FILES", 200), "the media shape's files, all sent at once")
	flag.IntVar(&d.mediaKiB, "media-kib", envInt("BENCH_MEDIA_KIB", 1024), "the size of the media shape's files, in KiB")
	flag.DurationVar(&d.timeout, "timeout", envDur("BENCH_TIMEOUT", 60*time.Second), "longest a shape may take")
	flag.DurationVar(&d.stall, "stall", envDur("BENCH_STALL", 20*time.Second), "a shape that sees nothing for this long has stalled")
	flag.IntVar(&d.repeat, "repeat", envInt("BENCH_REPEAT", 1), "runs of each shape by each process; the median is shown")
	flag.StringVar(&d.bridgeBin, "bridge", env("BENCH_BRIDGE", ""), "the bridge binary (built from ./cmd/bridge if empty)")
	flag.StringVar(&d.base, "dir", env("BENCH_DIR", ""), "where the databases and logs go (a new temporary directory if empty)")
	flag.StringVar(&d.delivery, "delivery", env("BENCH_DELIVERY", deliveryFallback), "how delivery receipts reach Matrix: "+deliveryFallback+" (the bot's status events, as on every homeserver today) or "+deliveryMSC4089+" (the stand-in advertises MSC4089)")
	flag.StringVar(&d.matrix, "matrix", env("BENCH_MATRIX", matrixPush), "how Matrix receipts reach the bridge: "+matrixPush+" (pushed in transactions: Synapse, Tuwunel) or "+matrixSync+" (the bot's /sync: Dendrite, continuwuity)")
	flag.Parse()
	if err := d.main(); err != nil {
		fmt.Fprintln(os.Stderr, "procbench:", err)
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return n
	}
	return def
}

func envDur(k string, def time.Duration) time.Duration {
	v := os.Getenv(k)
	if d, err := time.ParseDuration(v); err == nil {
		return d
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second
	}
	return def
}

type driver struct {
	shapes                   string
	n, history, pacedSeconds int
	dead, deadSeconds        int
	mediaFiles, mediaKiB     int
	timeout, stall           time.Duration
	bridgeBin, base, self    string
	delivery                 string // deliveryFallback or deliveryMSC4089
	matrix                   string // matrixPush or matrixSync
	rows                     []row
	repeat                   int
	tookLongAll              int
	gone                     int // processes that died during a shape
}

// A scenario is one shape in one direction.
type scenario struct {
	shape, dir string
	family     string // a name that picks it with others (group, group10)
	portals    int
	roomOf     []int // message i is in room roomOf[i]
	seedDir    mapping.Direction
	seedReq    mapping.Requests
	upTo       bool // the results are "up to" markers
	// burst: sent at once. paced: sent one at a time at 1,000/s. For a
	// flood, paced runs alone, then again beside flood.
	burst, paced, flood []receipt
	// The dead shape (dead.go): a paced run then a burst, by a bridge
	// alone and by one beside dead strangers.
	dead *deadShape
	// The group shape (group.go): its group portal.
	group *groupShape
	// The media shape (media.go): files sent at once.
	media *mediaShape
}

func (s *scenario) name() string { return s.shape + "/" + s.dir }

func (s *scenario) toMatrix() bool { return strings.HasPrefix(s.dir, "x2m") }

const rate = 1000

var directions = []string{"x2m-0184", "x2m-0333", "m2x-delivery", "m2x-read"}

func (d *driver) scenarios() []*scenario {
	var out []*scenario
	burst := func(shape string, portals, messages int) {
		for _, dir := range directions {
			s := &scenario{shape: shape, dir: dir, portals: portals}
			s.roomOf = make([]int, messages)
			for i := range s.roomOf {
				s.roomOf[i] = i % portals
			}
			kind := map[string]receiptKind{"x2m-0184": xmppReceived, "x2m-0333": xmppDisplayed, "m2x-delivery": matrixDelivery, "m2x-read": matrixRead}[dir]
			// The receipts are about the newest n messages, oldest first.
			for i := max(0, messages-d.n); i < messages; i++ {
				s.burst = append(s.burst, receipt{i: i, room: s.roomOf[i], kind: kind})
			}
			s.setSeed()
			out = append(out, s)
		}
	}
	burst("hot", 1, max(d.history, d.n))
	burst("p100", 100, d.n)
	burst("p1000", 1000, d.n)

	k := rate * d.pacedSeconds
	for _, dir := range []string{"x2m", "m2x"} {
		// Room 1 is paced, room 0 is flooded by its peer: a quarter of the
		// flood about ids nobody knows, a quarter markers, half receipts.
		s := &scenario{shape: "flood", dir: dir, portals: 2}
		known, marker, unknown := xmppReceived, xmppDisplayed, xmppUnknown
		paceKind := xmppReceived
		if dir == "m2x" {
			known, marker, unknown, paceKind = matrixDelivery, matrixRead, matrixUnknown, matrixDelivery
		}
		for i := range 2 * k {
			s.roomOf = append(s.roomOf, 1)
			s.paced = append(s.paced, receipt{i: i, room: 1, kind: paceKind})
		}
		for j := range d.n {
			i := len(s.roomOf)
			s.roomOf = append(s.roomOf, 0)
			s.flood = append(s.flood, receipt{i: i, room: 0, kind: [4]receiptKind{unknown, known, known, marker}[j%4]})
		}
		s.setSeed()
		out = append(out, s)
	}
	for _, portals := range []int{1, 100} {
		for _, dir := range []string{"x2m-0184", "m2x-delivery"} {
			s := &scenario{shape: fmt.Sprintf("paced%d", portals), dir: dir, portals: portals}
			kind := xmppReceived
			if dir == "m2x-delivery" {
				kind = matrixDelivery
			}
			for i := range k {
				s.roomOf = append(s.roomOf, i%portals)
				s.paced = append(s.paced, receipt{i: i, room: i % portals, kind: kind})
			}
			s.setSeed()
			out = append(out, s)
		}
	}
	out = append(out, d.deadScenarios()...)
	out = append(out, d.groupScenarios()...)
	out = append(out, d.mediaScenarios()...)
	var picked []*scenario
	for _, s := range out {
		if d.shapes == "" || slicesContains(strings.Split(d.shapes, ","), s.shape, s.name(), s.family) {
			picked = append(picked, s)
		}
	}
	return picked
}

func slicesContains(list []string, names ...string) bool {
	for _, l := range list {
		for _, n := range names {
			if strings.TrimSpace(l) == n {
				return true
			}
		}
	}
	return false
}

// setSeed chooses what the seeded messages asked for: receipts and markers
// from XMPP are about messages the bridge sent to XMPP, Matrix receipts
// about messages that came from XMPP.
func (s *scenario) setSeed() {
	switch s.dir {
	case "x2m-0184", "x2m-0333", "x2m":
		s.seedDir, s.seedReq = mapping.FromMatrix, mapping.Requests{Receipt: true, Markable: true}
	case "m2x-delivery":
		s.seedDir, s.seedReq = mapping.FromXMPP, mapping.Requests{Receipt: true}
	case "m2x-read":
		s.seedDir, s.seedReq = mapping.FromXMPP, mapping.Requests{Markable: true}
	default:
		s.seedDir, s.seedReq = mapping.FromXMPP, mapping.Requests{Receipt: true, Markable: true}
	}
	s.upTo = s.dir == "x2m-0333" || s.dir == "m2x-read"
}

func (d *driver) main() error {
	ctx := context.Background()
	var err error
	if d.self, err = os.Executable(); err != nil {
		return err
	}
	if d.base == "" {
		if d.base, err = os.MkdirTemp("", "procbench"); err != nil {
			return err
		}
	} else if err = os.MkdirAll(d.base, 0o755); err != nil {
		return fmt.Errorf("BENCH_DIR %s: %w", d.base, err)
	} else if d.base, err = os.MkdirTemp(d.base, "procbench"); err != nil {
		return err
	}
	if d.bridgeBin == "" {
		fmt.Fprintln(os.Stderr, "building ./cmd/bridge")
		if d.bridgeBin, err = peers.BuildBridge(ctx, d.base); err != nil {
			return err
		}
	}
	scs := d.scenarios()
	if len(scs) == 0 {
		return fmt.Errorf("no shape matches %q", d.shapes)
	}
	fmt.Fprintf(os.Stderr, "%d shapes; delivery receipts to Matrix by %s (-delivery), Matrix receipts by %s (-matrix); databases and logs in %s\n", len(scs), d.delivery, d.matrix, d.base)
	began := time.Now()
	for _, s := range scs {
		if err := d.runScenario(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s.name(), err)
		}
	}
	d.print(os.Stdout)
	fmt.Println("\nreceipts/s: results seen by the stand-in over the time from the first write to the last result; p50/p99: from the")
	fmt.Println("write of a receipt's stanza or transaction to the stand-in seeing its result (an m.read or XEP-0333 marker settles the")
	fmt.Println("receipts of its room up to it); CPU: utime+stime over the shape (idle: over the second before it); RSS: VmHWM; load: the 1-minute load average at the end.")
	fmt.Printf("\n\"Query took long\" lines in the bridge's logs: %d\n", d.tookLongAll)
	if d.gone > 0 {
		fmt.Printf("processes that died during a shape: %d (see the notes and the logs)\n", d.gone)
	}
	fmt.Printf("whole run: %s; logs and databases in %s\n", time.Since(began).Round(time.Second), d.base)
	return nil
}

// A run is one process (bridge or relay) through one scenario.
type run struct {
	sent, want, got int
	others          int64 // results about the flood's messages
	results         int64 // requests or stanzas the stand-ins saw, tracked or not
	dur             time.Duration
	p50, p99        time.Duration
	alone           []time.Duration // flood: the paced portal's latencies without the flood
	cpu, idle       time.Duration
	rss, wal        int64
	stalled         bool
	errs            string
	tookLong        int
	load            string // the machine's load average when it ended
	paced           bool   // its receipts were paced: p99 is its figure
	// The dead shape: the runs of its paced run and burst (dead.go); the
	// strangers' portals the bridge opened and the requests it sent them
	// meanwhile.
	phases []*run
	opened int64
	asked  [2]int64 // vCard, avatar
	// The share of its time when some of those requests were
	// outstanding, how many on average and at most.
	covered, meanOut float64
	mostOut          int
}

func (r *run) rate() float64 {
	if r.dur <= 0 {
		return 0
	}
	return float64(r.got) / r.dur.Seconds()
}

type row struct {
	s               *scenario
	bridge, relay   *run
	bridges, relays string // every repeat's figure, when there are repeats
	dead            *run   // the dead shape: the bridge beside the strangers
	deads           string
}

// median picks the run of median speed (of median p99 when paced) and
// lists every run's figure when there are several.
func median(runs []*run) (*run, string) {
	paced := runs[0].paced
	figure := func(r *run) float64 {
		if paced {
			return float64(r.p99)
		}
		return r.rate()
	}
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b *run) int { return cmp.Compare(figure(a), figure(b)) })
	if len(runs) == 1 {
		return runs[0], ""
	}
	var list []string
	for _, r := range runs {
		if paced {
			list = append(list, "p99 "+ms(r.p99))
		} else {
			list = append(list, fmt.Sprintf("%.0f/s", r.rate()))
		}
	}
	return sorted[len(sorted)/2], strings.Join(list, ", ")
}

func (d *driver) runScenario(ctx context.Context, s *scenario) error {
	dir := filepath.Join(d.base, strings.ReplaceAll(s.name(), "/", "-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	seedDB := filepath.Join(dir, "seed.db")
	t0 := time.Now()
	if s.group != nil {
		if err := seedGroup(ctx, seedDB, s); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	} else if err := seed(ctx, seedDB, s.portals, s.roomOf, s.seedDir, s.seedReq); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	fmt.Fprintf(os.Stderr, "%-18s seeded %d messages in %d portals (%s)\n", s.name(), len(s.roomOf), s.portals, time.Since(t0).Round(time.Millisecond))
	r := row{s: s}
	// Relay and bridge take turns, so that a change in the machine's load
	// falls on both; with repeats, the run of median speed (or p99, when
	// paced) of each is the one shown. The dead shape has a third turn,
	// a bridge beside the dead strangers.
	targets := []string{"relay", "bridge"}
	if s.dead != nil {
		targets = append(targets, deadTarget)
	}
	runs := map[string][]*run{}
	for k := range max(1, d.repeat) {
		for _, target := range targets {
			res, err := d.runOne(ctx, s, dir, target, fmt.Sprintf("%s-%d", target, k), seedDB)
			if err != nil {
				return err
			}
			runs[target] = append(runs[target], res)
			d.tookLongAll += res.tookLong
		}
	}
	if s.dead != nil {
		r.relay, r.relays = medianParts(runs["relay"])
		r.bridge, r.bridges = medianParts(runs["bridge"])
		r.dead, r.deads = medianParts(runs[deadTarget])
	} else {
		r.relay, r.relays = median(runs["relay"])
		r.bridge, r.bridges = median(runs["bridge"])
	}
	d.rows = append(d.rows, r)
	for _, x := range []struct {
		n string
		r *run
	}{{"relay", r.relay}, {"bridge", r.bridge}, {deadTarget, r.dead}} {
		if x.r == nil {
			continue
		}
		parts, names := []*run{x.r}, []string{s.name()}
		if s.dead != nil {
			parts, names = x.r.phases, []string{s.name() + " paced", s.name() + " burst"}
		}
		for k, r := range parts {
			status := "ok"
			if r.stalled {
				status = fmt.Sprintf("STALLED: %d of %d arrived", r.got, r.want)
			}
			fmt.Fprintf(os.Stderr, "%-18s %-11s %8.0f receipts/s p50 %s p99 %s cpu %s %s\n", names[k], x.n, r.rate(), ms(r.p50), ms(r.p99), r.cpu, status)
		}
	}
	return nil
}

// process is the bridge or the relay while it runs.
type process struct {
	pid     int
	stop    func()
	asURL   string
	hsToken string
}

func (d *driver) runOne(ctx context.Context, s *scenario, dir, target, name, seedDB string) (*run, error) {
	tdir := filepath.Join(dir, name)
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		return nil, err
	}
	dbPath := filepath.Join(tdir, "bridge.db")
	if err := copyFile(seedDB, dbPath); err != nil {
		return nil, err
	}
	hs := standin.NewHomeserver()
	defer hs.Close()
	hs.Versions = versionsFor(d.delivery)
	xs, err := standin.NewXMPPServer(secret)
	if err != nil {
		return nil, err
	}
	defer xs.Close()
	var cur atomic.Pointer[tracker]
	track := func(rs []receipt) *tracker {
		var idx []int
		for _, r := range rs {
			if r.kind != xmppUnknown && r.kind != matrixUnknown {
				idx = append(idx, r.i)
			}
		}
		return newTracker(s.roomOf, idx, s.upTo)
	}
	// The hooks are set before either process connects; cur is swapped
	// only between phases, when nothing tracked is in flight.
	seen := func(i int) {
		if t := cur.Load(); t != nil {
			t.seen(i)
		}
	}
	hs.Seen = func(path string) {
		if i, ok := requestIndex(path); ok {
			seen(i)
		}
	}
	var mc *mediaCount
	var files *mediaServer
	if s.media != nil {
		mc = &mediaCount{}
		hs.Seen = mc.seen
		files = newMediaServer(mediaFile(s.media.kib))
		defer files.Close()
	}
	tap := &xmppTap{seen: seen}
	asks := newPatternCount(askPatterns...)
	var muc *mucRoomStandin
	if s.group != nil {
		muc = newMUCRoomStandin(xs, s.group.members)
	}
	xs.Tap = func() io.WriteCloser { // one connection: nothing is killed
		if muc != nil {
			return tee{tap, asks, muc}
		}
		return tee{tap, asks}
	}

	// Receipts through /sync: the feed answers whichever process syncs.
	var feed *syncFeed
	if d.matrix == matrixSync {
		feed = newSyncFeed()
		hs.Sync = feed.serve
	}
	var p *process
	if target != "relay" {
		p, err = d.startBridge(ctx, tdir, hs, xs, s.bridgeExtra(tdir))
	} else {
		p, err = d.startRelay(tdir, dbPath, hs, xs)
	}
	if err != nil {
		return nil, err
	}
	if muc != nil && target != "relay" {
		// The puppets' joins at connection (the bridge's rejoin), answered
		// before anything is measured: the room's stanzas are taken from
		// the listener only once it is in.
		if err := muc.wait(hs, 30*time.Second); err != nil {
			p.stop()
			return nil, err
		}
	}
	var wal *filePeak
	if target != "relay" {
		wal = watchSize(dbPath + "-wal")
	}
	res := &run{}
	var sendErr atomic.Value
	// What the process burns doing nothing, over a second, before the load.
	idle0, _ := cpuTime(p.pid)
	time.Sleep(time.Second)
	cpu0, _ := cpuTime(p.pid)
	res.idle = cpu0 - idle0
	sender := &xmppSender{xs: xs, puppet: puppetOf(alice)}
	var push matrixFeed = newPusher(p.asURL, p.hsToken)
	if feed != nil {
		push = feed
	}
	pushDone := make(chan struct{})
	pushEnded := make(chan struct{})
	go func() { push.run(pushDone); close(pushEnded) }()

	// send starts rs on their way; paced ones at 1,000/s, each by itself.
	send := func(t *tracker, rs []receipt, pace bool) (wait func()) {
		sender.t = t
		push.track(t)
		done := make(chan struct{})
		go func() {
			defer close(done)
			one := func(r []receipt) {
				if s.toMatrix() {
					if err := sender.send(r); err != nil {
						sendErr.Store(err.Error())
					}
				} else {
					push.enqueue(r...)
				}
			}
			if pace {
				paced(len(rs), rate, func(i int) { one(rs[i : i+1]) })
			} else {
				one(rs)
			}
		}()
		return func() { <-done }
	}
	measureInto := func(res *run, t *tracker, started time.Time) {
		res.stalled = t.wait(d.timeout, d.stall) || res.stalled
		res.got, res.want = int(t.got.Load()), t.want
		res.results = t.results.Load()
		if last := time.Unix(0, t.last.Load()); res.got > 0 && last.After(started) {
			res.dur = last.Sub(started)
		}
		if res.stalled {
			res.dur = time.Since(started)
		}
		lat := t.latencies()
		res.p50, res.p99 = percentile(lat, 50), percentile(lat, 99)
	}
	measure := func(t *tracker, started time.Time) { measureInto(res, t, started) }
	started := time.Now()
	res.paced = s.paced != nil
	switch {
	case s.media != nil:
		runMedia(s, xs, mc, files, res, d.timeout, d.stall)
	case s.dead != nil:
		env := &partEnv{xs: xs, hs: hs, pid: p.pid, puppet: sender.puppet, asks: asks,
			track: track, send: send, measure: measureInto, cur: &cur}
		if target == deadTarget {
			env.strangers = s.dead.strangers
		}
		runDead(s, env, res)
	case s.flood != nil:
		half := len(s.paced) / 2
		t := track(s.paced[:half])
		cur.Store(t)
		send(t, s.paced[:half], true)()
		measure(t, started)
		res.alone = t.latencies()
		// The flood and the paced portal share the stream (XMPP) or the
		// transactions (Matrix), as they would in life.
		t = track(s.paced[half:])
		cur.Store(t)
		started = time.Now()
		if s.toMatrix() {
			fs := &xmppSender{xs: xs, puppet: sender.puppet, t: t}
			go func() { _ = fs.send(s.flood) }()
		} else {
			push.track(t)
			push.enqueue(s.flood...)
		}
		send(t, s.paced[half:], true)()
		measure(t, started)
		res.others = t.others.Load()
		res.sent = len(s.paced) + len(s.flood)
	case s.paced != nil:
		t := track(s.paced)
		cur.Store(t)
		send(t, s.paced, true)()
		measure(t, started)
		res.sent = len(s.paced)
	default:
		t := track(s.burst)
		cur.Store(t)
		send(t, s.burst, false)
		measure(t, started)
		res.sent = len(s.burst)
	}
	cpu1, err := cpuTime(p.pid)
	if err != nil {
		res.errs = fmt.Sprintf("the %s process is gone: %v", target, err)
		d.gone++
	}
	res.cpu = cpu1 - cpu0
	res.rss, _ = peakRSS(p.pid)
	res.load = loadAverage()
	close(pushDone)
	if res.stalled {
		// Do not wait for a stalled process to drain its queue.
		push.drop()
	}
	select {
	case <-pushEnded:
	case <-time.After(35 * time.Second):
	}
	if e, ok := sendErr.Load().(string); ok {
		res.errs = "writing to the component: " + e
	}
	if n, last := push.failed(); n > 0 {
		res.errs = fmt.Sprintf("%d transactions failed: %v", n, last)
	}
	p.stop()
	if wal != nil {
		res.wal = wal.Stop()
		res.tookLong = countLines(filepath.Join(tdir, "bridge.log"), "Query took long")
	}
	return res, nil
}

// requestIndex reads the message index from a receipt request to the
// stand-in homeserver: .../receipt/<type>/$e<i>.
func requestIndex(path string) (int, bool) {
	k := strings.Index(path, "/receipt/")
	if k < 0 {
		k = strings.Index(path, "/send/"+statusEventType+"/")
	}
	j := strings.LastIndex(path, "$e")
	if k < 0 || j < k {
		return 0, false
	}
	i, err := strconv.Atoi(path[j+2:])
	return i, err == nil
}

// How delivery receipts reach Matrix in a run (-delivery).
const (
	// deliveryFallback: the stand-in has no MSC4089, as no homeserver has
	// today (Synapse, Dendrite, continuwuity, Tuwunel), so a delivery is
	// the bot's status event on the message, a PUT of an event.
	deliveryFallback = "fallback"
	// deliveryMSC4089: the stand-in advertises MSC4089, so a delivery is
	// the ghost's receipt, a POST.
	deliveryMSC4089 = "msc4089"
)

// statusEventType is the event the delivery fallback sends.
const statusEventType = "com.beeper.message_send_status"

// versionsFor is the stand-in's /versions for a way of delivery.
func versionsFor(delivery string) string {
	if delivery == deliveryMSC4089 {
		return `{"versions":["v1.11"],"unstable_features":{"org.matrix.msc4089":true}}`
	}
	return `{"versions":["v1.11"]}`
}

func (d *driver) startBridge(ctx context.Context, dir string, hs *standin.Homeserver, xs *standin.XMPPServer, extra string) (*process, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "bridge.log"))
	if err != nil {
		return nil, err
	}
	bp, err := peers.NewBridgeProcess(ctx, d.bridgeBin, dir, peers.BridgeSettings{
		HomeserverURL: hs.URL, HomeserverDomain: ids.HomeserverDomain, ASPort: port,
		XMPPAddress: xs.Addr, XMPPDomain: ids.ComponentDomain, XMPPSecret: secret,
		LogLevel: "info", Ephemeral: d.matrix, Extra: extra,
	}, logf)
	if err != nil {
		logf.Close()
		return nil, err
	}
	reg, err := appservice.LoadRegistration(bp.Registr)
	if err != nil {
		logf.Close()
		return nil, err
	}
	stop := func() { _ = bp.Stop(); logf.Close() }
	if err := bp.Start(ctx); err != nil {
		stop()
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := xs.Ready(rctx); err != nil {
		stop()
		return nil, fmt.Errorf("the bridge did not connect to the stand-in XMPP server: %w", err)
	}
	// Started: it has read /versions and chosen the MSC4089 receipt.
	for hs.Count("versions") == 0 && rctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	return &process{pid: bp.Pid(), stop: stop, asURL: fmt.Sprintf("http://127.0.0.1:%d", port), hsToken: reg.ServerToken}, nil
}

func (d *driver) startRelay(dir, dbPath string, hs *standin.Homeserver, xs *standin.XMPPServer) (*process, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "relay.log"))
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(d.self, "-relay", "-db", dbPath, "-hs", hs.URL, "-xmpp", xs.Addr, "-listen", addr, "-delivery", d.delivery, "-matrix", d.matrix)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("relay said %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case err = <-ready:
	case <-time.After(30 * time.Second):
		err = errors.New("the relay was not ready within 30 s")
	}
	if err != nil {
		stop()
		return nil, fmt.Errorf("relay: %w (see %s)", err, logf.Name())
	}
	return &process{pid: cmd.Process.Pid, stop: stop, asURL: "http://" + addr, hsToken: "relay"}, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 2, 64) + "ms"
}

func (d *driver) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "shape/direction\tportals\treceipts\tbridge r/s\trelay r/s\tratio\tp50\tp99\trelay p50\trelay p99\tCPU ms/1k\trelay CPU ms/1k\tpeak RSS MB\trelay RSS MB\tmax WAL MB\tidle CPU ms/s\trelay idle\tload\t")
	var notes []string
	for _, r := range d.rows {
		b, l := r.bridge, r.relay
		type part struct {
			name     string
			b, l, bw *run // bw: the bridge's whole run
		}
		parts := []part{{r.s.name(), b, l, b}}
		if r.s.dead != nil {
			parts = nil
			for k, kind := range []string{"paced", "burst"} {
				parts = append(parts, part{r.s.name() + " " + kind, b.phases[k], l.phases[k], b})
			}
			for k, kind := range []string{"paced", "burst"} {
				parts = append(parts, part{fmt.Sprintf("%s %s +%d dead", r.s.name(), kind, r.s.dead.strangers), r.dead.phases[k], l.phases[k], r.dead})
			}
			notes = append(notes, deadNotes(r)...)
		}
		for _, p := range parts {
			printRow(tw, p.name, r.s.portals, p.b, p.l, p.bw, l)
			for _, x := range []struct {
				n string
				r *run
			}{{"bridge", p.b}, {"relay", p.l}} {
				if x.r.stalled {
					notes = append(notes, fmt.Sprintf("%s: the %s STALLED: %d of %d results in %s", p.name, x.n, x.r.got, x.r.want, x.r.dur.Round(time.Second)))
				}
			}
		}
		if r.s.paced != nil {
			notes = append(notes, fmt.Sprintf("%s: p99 added over the relay's at %d/s: %s", r.s.name(), rate, ms(b.p99-l.p99)))
		}
		if r.s.flood != nil {
			notes = append(notes, fmt.Sprintf("%s: the paced portal's p99 without the flood %s (relay %s), with it %s (relay %s); requests or stanzas about the flood's messages: bridge %d, relay %d, for %d sent",
				r.s.name(), ms(percentile(b.alone, 99)), ms(percentile(l.alone, 99)), ms(b.p99), ms(l.p99), b.others, l.others, len(r.s.flood)))
		}
		for _, x := range []struct {
			n string
			r *run
		}{{"bridge", b}, {"relay", l}, {deadTarget, r.dead}} {
			if x.r != nil && x.r.errs != "" {
				notes = append(notes, fmt.Sprintf("%s: %s: %s", r.s.name(), x.n, x.r.errs))
			}
		}
		if r.s.group != nil && r.s.burst != nil {
			notes = append(notes, groupNote(r))
		}
		if r.s.media != nil {
			notes = append(notes, mediaNote(r))
		}
		if r.bridges != "" {
			notes = append(notes, fmt.Sprintf("%s: runs of the bridge %s; of the relay %s", r.s.name(), r.bridges, r.relays))
		}
		if r.deads != "" {
			notes = append(notes, fmt.Sprintf("%s: runs of the bridge beside the dead contacts %s", r.s.name(), r.deads))
		}
		if b.tookLong > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d \"Query took long\" in the bridge's log", r.s.name(), b.tookLong))
		}
		if r.dead != nil && r.dead.tookLong > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d \"Query took long\" in the log of the bridge beside the dead contacts", r.s.name(), r.dead.tookLong))
		}
	}
	notes = append(notes, groupSizes(d.rows)...)
	tw.Flush()
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
}

// printRow prints one row of the table: b and l are the bridge's and
// the relay's runs, bw and lw their whole runs (RSS, WAL, idle, load).
func printRow(tw io.Writer, name string, portals int, b, l, bw, lw *run) {
	ratio := "-"
	if l.rate() > 0 && !b.paced {
		ratio = fmt.Sprintf("%.2f×", b.rate()/l.rate()) // paced: the rate is the pace
	}
	rs := fmt.Sprintf("%.0f", b.rate())
	if b.stalled {
		rs = fmt.Sprintf("STALLED %d/%d", b.got, b.want)
	}
	fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.1f\t%d\t%d\t%s\t\n",
		name, portals, b.sent, rs, l.rate(), ratio, ms(b.p50), ms(b.p99), ms(l.p50), ms(l.p99),
		perK(b.cpu, b.sent), perK(l.cpu, l.sent), float64(bw.rss)/1024, float64(lw.rss)/1024, float64(bw.wal)/(1<<20), bw.idle.Milliseconds(), lw.idle.Milliseconds(), bw.load)
}

func perK(cpu time.Duration, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(cpu.Milliseconds())*1000/float64(n))
}
