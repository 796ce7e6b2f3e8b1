package main

// The crash drill (procbench -drill, scripts/drill.sh): receipts both ways
// at a steady rate while the bridge is killed with SIGKILL at random
// instants and started again on the same database. The stand-in
// homeserver pushes one transaction at a time and retries it, the same id
// and body, until it is answered 200, in order, as Synapse does; the
// stand-in XMPP server refuses what is written while the component is not
// connected, as Prosody bounces it. Each receipt is then counted: arrived
// once, more than once, or not at all, and an XMPP → Matrix receipt lost
// is told apart by where it was in its stream: XEP-0114 has no
// acknowledgement, so what the bridge had not recorded when it died (the
// tail of what its connection carried, unrecordedTails) is lost by the
// protocol, anything else by the bridge. When PostgreSQL crashes or the
// disk fills, the bridge stays connected, and no loss is excused.

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
	"xmppbridge/internal/standin"
	"xmppbridge/mapping"
)

// drillWindow is how long before the XMPP server cuts the stream what the
// bridge wrote toward XMPP counts as in the socket, unread, when it went
// (DRILL_WINDOW).
const drillWindow = 200 * time.Millisecond

type drill struct {
	// crash is what is crashed: "bridge" (SIGKILL, then started again),
	// "postgres" (the PostgreSQL server stopped at once, as by a crash,
	// and started again, the bridge left running on it) or "disk" (the
	// SQLite database on a small tmpfs that a file fills, removed after
	// diskFullFor) or "xmpp" (the XMPP server cuts the component's
	// connection, as Prosody does when it restarts) or "pgcut" (every
	// connection between the bridge and PostgreSQL cut, cutProxy).
	crash                         string
	window                        time.Duration
	down                          time.Duration // how long PostgreSQL stays down (DRILL_DOWN)
	logLevel                      string        // the bridge's (DRILL_LOG)
	keepDB                        bool          // keep the PostgreSQL schema after a failure
	seconds, rate, kills, portals int
	dbType, dbURI                 string
	bridgeBin, dir                string
}

func runDrill(args []string) error {
	d := &drill{}
	d.window = envDur("DRILL_WINDOW", drillWindow)
	d.crash = env("DRILL_CRASH", "bridge")
	d.down = envDur("DRILL_DOWN", 0)
	d.logLevel = env("DRILL_LOG", "info")
	if !slices.Contains([]string{"bridge", "postgres", "pgcut", "disk", "xmpp"}, d.crash) {
		return fmt.Errorf("DRILL_CRASH is bridge, postgres, pgcut, disk or xmpp, not %q", d.crash)
	}
	d.seconds = envInt("DRILL_SECONDS", 60)
	d.rate = envInt("DRILL_RATE", 500)
	d.kills = envInt("DRILL_KILLS", 5)
	d.portals = envInt("DRILL_PORTALS", 20)
	d.dbType = env("DRILL_DB", "sqlite")
	if d.dbType != "sqlite" && d.dbType != "postgres" {
		return fmt.Errorf("DRILL_DB is sqlite or postgres, not %q", d.dbType)
	}
	switch d.crash {
	case "postgres", "pgcut":
		d.dbType = "postgres"
	case "disk":
		d.dbType = "sqlite"
	}
	d.bridgeBin = env("BENCH_BRIDGE", "")
	d.dir = env("BENCH_DIR", "")
	if len(args) > 0 {
		return fmt.Errorf("the drill takes no arguments, only DRILL_* variables: %q", args)
	}
	ctx := context.Background()
	var err error
	if d.dir == "" {
		if d.dir, err = os.MkdirTemp("", "drill"); err != nil {
			return err
		}
	} else if d.dir, err = os.MkdirTemp(d.dir, "drill"); err != nil {
		return err
	}
	if d.bridgeBin == "" {
		fmt.Fprintln(os.Stderr, "building ./cmd/bridge")
		if d.bridgeBin, err = peers.BuildBridge(ctx, d.dir); err != nil {
			return err
		}
	}
	return d.run(ctx)
}

// drillCounts is what arrived, by message index.
type drillCounts struct {
	mu      sync.Mutex
	seen    map[int]int
	stanzas map[int][]string // the ids of the stanzas that carried it
}

func (c *drillCounts) add(i int, stanzaID string) {
	c.mu.Lock()
	c.seen[i]++
	c.stanzas[i] = append(c.stanzas[i], stanzaID)
	c.mu.Unlock()
}

func (c *drillCounts) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.seen {
		n += v
	}
	return n
}

func (d *drill) run(ctx context.Context) error {
	n := d.rate * d.seconds // receipts each way
	// Messages 0..n-1 went to XMPP (their <received/> comes back), n..2n-1
	// came from it (their m.delivery goes there).
	dbURI := filepath.Join(d.dir, "bridge.db")
	disk := ""
	if d.crash == "disk" {
		disk = filepath.Join(d.dir, "disk")
		if err := mountTmpfs(disk, diskSize); err != nil {
			return err
		}
		defer func() { _ = osexec.Command("umount", disk).Run() }()
		dbURI = filepath.Join(disk, "bridge.db")
	}
	settings := peers.BridgeSettings{LogLevel: d.logLevel, Ephemeral: "push"}
	var proxy *cutProxy
	if d.dbType == "postgres" {
		pg := env("XMPPBRIDGE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
		schema := fmt.Sprintf("drill_%d", time.Now().UnixNano())
		var err error
		if dbURI, err = peers.FreshPostgresSchema(ctx, pg, schema); err != nil {
			return err
		}
		defer func() {
			// A failed drill keeps its tables, to be looked at.
			if d.keepDB {
				fmt.Printf("the bridge's tables are kept in schema %s of %s\n", schema, pg)
				return
			}
			peers.DropPostgresSchema(pg, schema)
		}()
		settings.DatabaseType, settings.DatabaseURI = "postgres", dbURI
		if d.crash == "pgcut" {
			u, err := url.Parse(dbURI)
			if err != nil {
				return err
			}
			if proxy, err = newCutProxy(u.Host); err != nil {
				return err
			}
			defer proxy.Close()
			u.Host = proxy.Addr()
			settings.DatabaseURI = u.String()
		}
	} else {
		settings.DatabaseType, settings.DatabaseURI = "sqlite3-fk-wal", dbURI
	}
	if err := drillSeed(ctx, settings.DatabaseType, dbURI, d.portals, n); err != nil {
		return fmt.Errorf("seed: %w", err)
	}

	hs := standin.NewHomeserver()
	defer hs.Close()
	hs.Versions = `{"versions":["v1.11"],"unstable_features":{"org.matrix.msc4089":true}}`
	xs, err := standin.NewXMPPServer(secret)
	if err != nil {
		return err
	}
	defer xs.Close()
	toMatrix := &drillCounts{seen: map[int]int{}, stanzas: map[int][]string{}}
	toXMPP := &drillCounts{seen: map[int]int{}, stanzas: map[int][]string{}}
	hs.Seen = func(path string) {
		if i, ok := requestIndex(path); ok && strings.Contains(path, "/receipt/") {
			toMatrix.add(i, "")
		}
	}
	xs.Tap = func() io.WriteCloser {
		// Each connection's stream read on its own: the tail of one cut
		// by a kill, read after its successor began, must not land in
		// the middle of the successor's stanzas.
		pr, pw := io.Pipe()
		go readReceived(pr, toXMPP)
		return pw
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(d.dir, "bridge.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	settings.HomeserverURL, settings.HomeserverDomain, settings.ASPort = hs.URL, ids.HomeserverDomain, port
	settings.XMPPAddress, settings.XMPPDomain, settings.XMPPSecret = xs.Addr, ids.ComponentDomain, secret
	metricsPort, err := freePort()
	if err != nil {
		return err
	}
	settings.Extra = fmt.Sprintf("metrics:\n    enabled: true\n    listen: 127.0.0.1:%d\n", metricsPort)
	bp, err := peers.NewBridgeProcess(ctx, d.bridgeBin, d.dir, settings, logf)
	if err != nil {
		return err
	}
	reg, err := appservice.LoadRegistration(bp.Registr)
	if err != nil {
		return err
	}
	if err := bp.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = bp.Stop() }()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = xs.Ready(rctx)
	cancel()
	if err != nil {
		return fmt.Errorf("the bridge did not connect: %w", err)
	}

	// When each XMPP → Matrix receipt was written (zero: refused) and on
	// which component connection; when each connection was killed (or
	// cut); and the spans from d.window before a kill to the server's
	// seeing the new connection, during which what the bridge wrote toward
	// XMPP may have been in a socket that died.
	written := make([]time.Time, n)
	connOf := make([]int64, n)
	var downMu sync.Mutex
	var down [][2]time.Time
	cutAt := map[int64]time.Time{}
	start := time.Now()
	end := start.Add(time.Duration(d.seconds) * time.Second)
	killAt := make([]time.Duration, d.kills)
	for k := range killAt {
		killAt[k] = time.Duration(float64(d.seconds) * (0.1 + 0.8*rand.Float64()) * float64(time.Second))
	}
	slices.Sort(killAt)

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // XMPP → Matrix, one receipt a tick
		defer wg.Done()
		puppet := puppetOf(alice)
		paced(n, d.rate, func(i int) {
			var b strings.Builder
			fmt.Fprintf(&b, `<message from='%s/res' to='%s' id='r%d'><received xmlns='urn:xmpp:receipts' id='m%d'/></message>`, peer(i%d.portals), puppet, i, i)
			if c, err := xs.WriteConn(b.String()); err == nil {
				written[i], connOf[i] = time.Now(), c
			}
		})
	}()
	pushErrs := 0
	pushed := make([]time.Time, n) // when each was answered 200
	txnOf := make([]int, n)        // the transaction that carried each
	go func() {                    // Matrix → XMPP, one transaction at a time, retried
		defer wg.Done()
		client := &http.Client{Timeout: 30 * time.Second} // as Dendrite's appservice client (setup/config/config_appservice.go)
		next, txn := 0, 0
		for next < n {
			due := int(time.Since(start).Seconds() * float64(d.rate))
			if due <= next {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			batch := min(due, n, next+100)
			txn++
			var b strings.Builder
			b.WriteString(`{"events":[],"ephemeral":[`)
			for j := next; j < batch; j++ {
				if j > next {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"type":"m.receipt","room_id":"%s","content":{"%s":{"m.delivery":{"%s":{"ts":%d}}}}}`,
					room(j%d.portals), eventID(n+j), alice, time.Now().UnixMilli())
			}
			b.WriteString("]}")
			body := b.String()
			url := fmt.Sprintf("http://127.0.0.1:%d/_matrix/app/v1/transactions/drill%d", port, txn)
			for {
				req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+reg.ServerToken)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						for j := next; j < batch; j++ {
							pushed[j], txnOf[j] = time.Now(), txn
						}
						break
					}
				}
				pushErrs++
				time.Sleep(100 * time.Millisecond) // the homeserver backs off, then resends
			}
			next = batch
		}
	}()
	var killErr error
	// From each SIGKILL (or cut) to the XEP-0114 handshake of the
	// connection after it: how long the bridge was away from XMPP.
	var toHandshake []time.Duration
	go func() { // the kills
		defer wg.Done()
		for _, at := range killAt {
			time.Sleep(time.Until(start.Add(at)))
			conns := xs.Connections()
			downMu.Lock()
			cutAt[conns] = time.Now()
			down = append(down, [2]time.Time{time.Now().Add(-d.window), {}})
			downMu.Unlock()
			reconnected := func() {
				for xs.Connections() == conns && time.Now().Before(end.Add(time.Minute)) {
					time.Sleep(5 * time.Millisecond)
				}
			}
			var err error
			switch d.crash {
			case "xmpp":
				xs.Drop()
				reconnected()
				toHandshake = append(toHandshake, time.Since(cutAt[conns]))
			case "disk":
				err = fillFor(disk, diskFullFor)
			case "postgres":
				err = peers.CrashPostgresFor(d.down)
			case "pgcut":
				proxy.Cut()
			default:
				bp.Kill()
				if err = bp.Start(ctx); err == nil {
					reconnected()
					toHandshake = append(toHandshake, time.Since(cutAt[conns]))
				}
			}
			if err != nil {
				killErr = err
				return
			}
			downMu.Lock()
			down[len(down)-1][1] = time.Now()
			downMu.Unlock()
		}
	}()
	wg.Wait()
	if killErr != nil {
		return fmt.Errorf("restart after a kill: %w", killErr)
	}
	// Let what is owed arrive: until the bridge owes nothing (no
	// transaction left to process, no receipt from XMPP left to record, no
	// send left in its outbox) and nothing more arrives for 3 s. A receipt
	// counted lost is then one the bridge no longer knows it owes, not one
	// on its way late.
	last, quiet := toMatrix.total()+toXMPP.total(), time.Now()
	var owed string
	var silence time.Duration // the longest wait for an arrival that came
	for {
		time.Sleep(100 * time.Millisecond)
		if now := toMatrix.total() + toXMPP.total(); now != last {
			silence = max(silence, time.Since(quiet))
			last, quiet = now, time.Now()
		}
		if time.Since(quiet) < 3*time.Second {
			continue
		}
		if owed = bridgeOwes(metricsPort); owed == "" || time.Since(end) > 2*time.Minute {
			break
		}
	}
	// How long after the load ended and the last crash was over the last
	// receipt arrived: the catch-up.
	settled := max(quiet.Sub(lastCrash(down, end)), 0)

	inWindow := func(t time.Time) bool {
		for _, w := range down {
			if !t.Before(w[0]) && !t.After(w[1]) {
				return true
			}
		}
		return false
	}
	var x2m struct{ written, refused, once, dup, lostTail, lostOther int }
	// Only a bridge that dies or a stream that is cut loses what it had
	// not recorded; through a database crash or a full disk the bridge
	// stays connected and holds what it read until it can store it, so
	// nothing is excused.
	var tail []bool
	var longestTail time.Duration
	if d.crash == "bridge" || d.crash == "xmpp" {
		tail, longestTail = unrecordedTails(connOf, written, xs.Connections(), d.portals, func(i int) bool { return toMatrix.seen[i] > 0 }, cutAt)
	}
	for i := range n {
		if written[i].IsZero() {
			x2m.refused++
			continue
		}
		x2m.written++
		switch c := toMatrix.seen[i]; {
		case c == 1:
			x2m.once++
		case c > 1:
			x2m.dup++
		case tail != nil && tail[i]:
			x2m.lostTail++
		default:
			x2m.lostOther++
		}
	}
	var m2x struct{ once, dup, dupSameID, lost, lostWindow int }
	lostTxns := map[int]int{} // receipts lost toward XMPP, by transaction
	for j := range n {
		switch c := toXMPP.seen[n+j]; {
		case c == 1:
			m2x.once++
		case c > 1:
			m2x.dup++
			if ids := toXMPP.stanzas[n+j]; len(slices.Compact(slices.Sorted(slices.Values(ids)))) == 1 {
				m2x.dupSameID++
			}
		case d.crash == "xmpp" && inWindow(pushed[j]):
			// The stream was cut with it written and not read: XEP-0114
			// has no acknowledgement this way either.
			m2x.lostWindow++
		default:
			m2x.lost++
			lostTxns[txnOf[j]]++
		}
	}
	engine := map[string]string{"sqlite": "SQLite", "postgres": "PostgreSQL"}[d.dbType]
	what := "SIGKILLs of the bridge"
	if d.crash == "xmpp" {
		what = "cuts of the component's XMPP connection"
	}
	if d.crash == "disk" {
		what = fmt.Sprintf("spells of %v with the database's disk (a %d MiB tmpfs) full", diskFullFor, diskSize>>20)
	}
	if d.crash == "postgres" {
		what = "crashes of PostgreSQL (pg_ctlcluster restart -m immediate)"
	}
	if d.crash == "pgcut" {
		what = "cuts of every connection to PostgreSQL"
	}
	fmt.Printf("crash drill on %s: %d s, %d receipts/s each way over %d portals, %d %s at %v; logs in %s\n",
		engine, d.seconds, d.rate, d.portals, d.kills, what, roundAll(killAt), d.dir)
	if len(toHandshake) > 0 {
		slices.Sort(toHandshake)
		fmt.Printf("from a %s to the next XEP-0114 handshake: median %v, longest %v\n", map[bool]string{true: "SIGKILL", false: "cut"}[d.crash == "bridge"],
			toHandshake[len(toHandshake)/2].Round(time.Millisecond), toHandshake[len(toHandshake)-1].Round(time.Millisecond))
	}
	cutLoss := ""
	if d.crash == "xmpp" {
		cutLoss = fmt.Sprintf(", %d lost within %v before a cut", m2x.lostWindow, d.window)
	}
	fmt.Printf("Matrix → XMPP: %d pushed (%d pushes retried), %d arrived once, %d more than once (%d of them with the same stanza id each time)%s, %d lost otherwise\n",
		n, pushErrs, m2x.once, m2x.dup, m2x.dupSameID, cutLoss, m2x.lost)
	tailLoss := ""
	if tail != nil {
		tailLoss = fmt.Sprintf(", %d lost unrecorded when their connection died (the oldest written %v before its kill)", x2m.lostTail, longestTail.Round(time.Millisecond))
	}
	fmt.Printf("XMPP → Matrix: %d written (%d refused while the bridge was down), %d arrived once, %d more than once%s, %d lost otherwise\n",
		x2m.written, x2m.refused, x2m.once, x2m.dup, tailLoss, x2m.lostOther)
	if owed != "" {
		fmt.Printf("the bridge still owed, 2 min after the load ended: %s\n", owed)
	} else {
		fmt.Printf("caught up: the last receipt arrived %v after the load ended and the last %s was over (the longest silence before one arrived: %v), and the bridge owed nothing\n",
			settled.Round(100*time.Millisecond), map[bool]string{true: "kill", false: "crash"}[d.crash == "bridge"], silence.Round(100*time.Millisecond))
	}
	if m2x.lost > 0 {
		fmt.Printf("Matrix → XMPP receipts lost, by the transaction (drill<n>) that carried them: %v\n", lostTxns)
	}
	if m2x.lost > 0 || x2m.lostOther > 0 || owed != "" {
		d.keepDB = true
		return errors.New("FAIL: receipts lost that the bridge had accepted")
	}
	fmt.Println("PASS: nothing accepted was lost")
	return nil
}

// owedGauges are the bridge's metrics that count what it owes.
var owedGauges = []string{"xmppbridge_transaction_lag_seconds", "xmppbridge_owed_sends", "xmppbridge_unrecorded_receipts"}

// bridgeOwes reads the bridge's metrics and says what it still owes: the
// age of its oldest transaction to process, the receipts from XMPP it has
// not recorded, its sends owed to each side;
// "" if nothing (or, the bridge not answering, what went wrong).
func bridgeOwes(port int) string {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return "no metrics: " + err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "no metrics: " + err.Error()
	}
	var owes []string
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || !slices.ContainsFunc(owedGauges, func(g string) bool { return strings.HasPrefix(name, g) }) {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err != nil || v != 0 {
			owes = append(owes, line)
		}
	}
	return strings.Join(owes, ", ")
}

// lastCrash is when the last kill (crash, cut) was over, or the load's
// end if none was.
func lastCrash(down [][2]time.Time, end time.Time) time.Time {
	t := end
	for _, w := range down {
		if w[1].After(t) {
			t = w[1]
		}
	}
	return t
}

// readReceived reads one component connection's stream and counts each
// <received id='m<i>'/> with the id of the message that carried it.
func readReceived(r io.Reader, c *drillCounts) {
	dec := xml.NewDecoder(r)
	var msgID string
	for {
		tok, err := dec.Token()
		if err != nil {
			_, _ = io.Copy(io.Discard, r) // a cut stream: drain the pipe
			return
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch se.Name.Local {
		case "message":
			msgID = ""
			for _, a := range se.Attr {
				if a.Name.Local == "id" {
					msgID = a.Value
				}
			}
		case "received":
			for _, a := range se.Attr {
				if a.Name.Local == "id" && strings.HasPrefix(a.Value, "m") {
					if i, err := strconv.Atoi(a.Value[1:]); err == nil {
						c.add(i, msgID)
					}
				}
			}
		}
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Millisecond)
	}
	return out
}

// drillSeed writes messages 0..n-1 as sent to XMPP and n..2n-1 as come
// from it, both asking for delivery receipts, over portals rooms.
func drillSeed(ctx context.Context, dbType, uri string, portals, n int) error {
	ts := time.Now().Add(-time.Hour)
	msgs := make([]*mapping.Message, 2*n)
	for i := range msgs {
		dir := mapping.FromMatrix
		if i >= n {
			dir = mapping.FromXMPP
		}
		r := i % portals
		msgs[i] = &mapping.Message{RoomID: room(r), EventID: id.EventID(eventID(i)), XMPPID: xmppID(i), PeerJID: peer(r),
			Direction: dir, MXID: alice, TS: ts.Add(time.Duration(i) * time.Millisecond), Requests: mapping.Requests{Receipt: true}}
	}
	return seedMessages(ctx, dbType, uri, portals, msgs)
}

// The full-disk drill: a tmpfs of diskSize for the SQLite database, filled
// to the last byte for diskFullFor at each "kill".
const (
	diskSize    = 96 << 20
	diskFullFor = 3 * time.Second
)

func mountTmpfs(dir string, size int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	out, err := osexec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mount a tmpfs on %s (the full-disk drill needs root): %v: %s", dir, err, out)
	}
	return nil
}

// fillFor fills the file system of dir with a file until writing fails
// (ENOSPC), keeps it full for d, and removes the file.
func fillFor(dir string, d time.Duration) error {
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break // full
		}
	}
	for size := len(chunk) / 2; size > 0; size /= 2 {
		_, _ = f.Write(chunk[:size]) // the last bytes
	}
	f.Close()
	time.Sleep(d)
	return os.Remove(path)
}

// unrecordedTails tells which of the XMPP → Matrix receipts lost (never
// arrived) a dead connection took with it, and so XEP-0114 loses, not the
// bridge: the component protocol has no acknowledgement, so a bridge
// killed (or a stream cut) loses whatever it had read and not yet
// recorded, and whatever was still in the socket. How far back that goes
// is the bridge's recording lag at the instant, which a slow database
// stretches to seconds, so no fixed window before the kill is honest;
// order is. A stream is read in order and the bridge records each
// person's receipts in that order (its intake, FlushReceipts), so what a
// kill loses of one person is a tail: a receipt lost while a later one of
// the same person, written on the same connection, arrived was dropped by
// the bridge, whatever the timing.
//
// Receipt i came from peer i%peers and was written on component
// connection conn[i] (0: refused, none was up) at written[i]; last is the
// connection still up at the end, whose receipts had a live bridge to the
// end and are never excused. cutAt is when a connection was killed (or
// cut), where known; longest is the furthest back before its cut that an
// excused receipt was written: the recording lag at the kill.
func unrecordedTails(conn []int64, written []time.Time, last int64, peers int, arrived func(i int) bool, cutAt map[int64]time.Time) (excused []bool, longest time.Duration) {
	excused = make([]bool, len(conn))
	// Each person's receipts newest first, keeping whether one of theirs
	// written later on the same connection arrived.
	type stream struct {
		peer int
		conn int64
	}
	laterArrived := map[stream]bool{}
	for i := len(conn) - 1; i >= 0; i-- {
		if conn[i] == 0 {
			continue
		}
		key := stream{i % peers, conn[i]}
		switch {
		case arrived(i):
			laterArrived[key] = true
		case conn[i] != last && !laterArrived[key]:
			excused[i] = true
			if cut, ok := cutAt[conn[i]]; ok && written[i].Before(cut) {
				longest = max(longest, cut.Sub(written[i]))
			}
		}
	}
	return excused, longest
}
