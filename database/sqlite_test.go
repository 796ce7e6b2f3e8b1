package database

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"xmppbridge/mapping"
)

// TestSQLiteCheckpoints: commits never checkpoint the WAL themselves (that
// would put two fsyncs inside a receipt's commit); the bridge's own
// checkpointer copies it back into the database file, and Close leaves no
// WAL behind.
func TestSQLiteCheckpoints(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "bridge.db")
	// Without the bound on the WAL's size, which would empty it before the
	// check below that commits leave it to grow (TestSQLiteWALBounded).
	opts := defaultOptions()
	opts.walLimit = 0
	db, err := openWith(ctx, "sqlite3-fk-wal", path, testLogger(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			db.Close()
		}
	}()

	// Every connection of the pool, not just the first, is set up so.
	conns := make([]int, 4)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := db.DB().RawDB.Conn(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			var v int
			if err := conn.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&v); err != nil {
				t.Error(err)
			}
			mu.Lock()
			conns[i] = v
			mu.Unlock()
			time.Sleep(50 * time.Millisecond) // hold it, so that the others open their own
		}()
	}
	wg.Wait()
	for i, v := range conns {
		if v != 0 {
			t.Errorf("connection %d: wal_autocheckpoint = %d, want 0", i, v)
		}
	}

	// Far past SQLite's default threshold of 1,000 pages, which would keep
	// the WAL at about that size: here it only grows (about 7 pages a
	// message), until the checkpointer's turn.
	for i := 0; i < 1500; i++ {
		m := newMessage(bob, fmt.Sprintf("m%d-%0200d", i, i), mapping.FromXMPP)
		if _, err := db.AddMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	wal := path + "-wal"
	if st, err := os.Stat(wal); err != nil || st.Size() < 2000*4096 {
		t.Fatalf("WAL after 1,500 commits: %v, %v; want more than 2,000 pages", st, err)
	}

	// The checkpointer runs by itself.
	before := db.checkpoints.Load()
	deadline := time.Now().Add(10 * checkpointEvery)
	for db.checkpoints.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint ran")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if behind, err := db.Checkpoint(ctx, checkpointPassive); err != nil || behind != 0 {
		t.Errorf("frames not yet in the database file = %d, %v; want 0", behind, err)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if st, err := os.Stat(wal); err == nil && st.Size() != 0 {
		t.Errorf("WAL after Close: %d bytes, want none", st.Size())
	}
	// Nothing lost: the rows are in the database file.
	db, err = Open(context.Background(), "sqlite3-fk-wal", path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.MessageByXMPPID(ctx, bob, fmt.Sprintf("m1499-%0200d", 1499), mapping.FromXMPP); err != nil {
		t.Errorf("last message after reopening: %v", err)
	}
}

// walLoad is a steady load on a SQLite store: writers committing small
// transactions from a few goroutines, one reader that keeps a read
// transaction open most of the time, another that runs short queries
// without pause, and a sampler of the WAL file's size.
type walLoad struct {
	writers, txnsEach int
	// every is how often each writer starts its next transaction: a
	// steady rate, not as fast as they can.
	every time.Duration
	// readHold is how long the reader keeps its read transaction open,
	// readGap how long it then stays out.
	readHold, readGap time.Duration
}

type walLoadResult struct {
	maxWAL     int64         // the largest size of the WAL file seen
	maxCommit  time.Duration // the slowest commit of a writer
	p99Commit  time.Duration
	commits    int
	took       time.Duration
	walResets  int64 // times the checkpointer had the WAL start over
	resetsBusy int64
	resetMax   time.Duration
	tryMax     time.Duration // the longest RESTART try: writers wait at most that
}

// run runs the load on a new database opened with opts, or on db if given.
func (l walLoad) run(t *testing.T, opts options, dbs ...*Database) walLoadResult {
	t.Helper()
	ctx := t.Context()
	var db *Database
	if len(dbs) > 0 {
		db = dbs[0]
	} else {
		var err error
		db, err = openWith(ctx, "sqlite3-fk-wal", filepath.Join(t.TempDir(), "bridge.db"), testLogger(t), opts)
		if err != nil {
			t.Fatal(err)
		}
	}
	defer db.Close()
	wal := db.walPath

	stop := make(chan struct{})
	var bg sync.WaitGroup
	var maxWAL atomic.Int64
	bg.Go(func() {
		for {
			if st, err := os.Stat(wal); err == nil && st.Size() > maxWAL.Load() {
				maxWAL.Store(st.Size())
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	bg.Go(func() {
		conn, err := db.DB().RawDB.Conn(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		for {
			var n int
			_, err := conn.ExecContext(ctx, "BEGIN DEFERRED")
			if err == nil {
				err = conn.QueryRowContext(ctx, "SELECT count(*) FROM txn_inbox WHERE done=true").Scan(&n)
			}
			if err != nil {
				t.Error(err)
				return
			}
			select {
			case <-stop:
			case <-time.After(l.readHold):
			}
			if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
				t.Error(err)
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(l.readGap):
			}
		}
	})
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := db.PendingTxns(ctx, 0, 0); err != nil {
				t.Error(err)
				return
			}
		}
	})

	start := time.Now()
	var writers sync.WaitGroup
	lat := make([][]time.Duration, l.writers)
	body := []byte(fmt.Sprintf(`{"events":[],"pad":"%01000d"}`, 0))
	for w := range l.writers {
		writers.Go(func() {
			tick := time.NewTicker(l.every)
			defer tick.Stop()
			for i := range l.txnsEach {
				<-tick.C
				id := fmt.Sprintf("w%d-%d", w, i)
				t0 := time.Now()
				if _, err := db.PutTxn(ctx, &mapping.Txn{ID: id, Body: body}); err != nil {
					t.Error(err)
					return
				}
				t1 := time.Now()
				if err := db.FinishTxn(ctx, id, nil, nil); err != nil {
					t.Error(err)
					return
				}
				lat[w] = append(lat[w], t1.Sub(t0), time.Since(t1))
			}
		})
	}
	writers.Wait()
	took := time.Since(start)
	close(stop)
	bg.Wait()

	all := slices.Concat(lat...)
	slices.Sort(all)
	r := walLoadResult{
		maxWAL: maxWAL.Load(), commits: len(all), took: took,
		walResets: db.walResets.Load(), resetsBusy: db.walResetsBusy.Load(),
		resetMax: time.Duration(db.walResetMax.Load()), tryMax: time.Duration(db.walTryMax.Load()),
	}
	if len(all) > 0 {
		r.maxCommit, r.p99Commit = all[len(all)-1], all[len(all)*99/100]
	}
	return r
}

// TestSQLiteWALBounded: under steady writes, with a reader in the WAL
// nearly all the time, the WAL file stays within a few times the
// checkpointer's limit: what is written between two checks and while the
// reset waits for the write lock and for readers. PASSIVE checkpoints alone
// never let it start over here: with opts.walLimit = 0 the file holds
// every commit of the run (9-27 MiB in runs here, against the 4 MiB
// checked).
func TestSQLiteWALBounded(t *testing.T) {
	const limit = 1 << 20
	opts := defaultOptions()
	opts.walLimit = limit
	opts.walCheckEvery = 5 * time.Millisecond
	opts.walResetWait = 50 * time.Millisecond
	opts.checkpointEvery = 50 * time.Millisecond
	load := walLoad{
		writers: 4, txnsEach: 300, every: 5 * time.Millisecond,
		readHold: 20 * time.Millisecond, readGap: 2 * time.Millisecond,
	}
	r := load.run(t, opts)
	t.Logf("%d commits in %v: WAL at most %d KiB, started over %d times (%d resets held up, longest %v, longest try %v); commits p99 %v, max %v",
		r.commits, r.took, r.maxWAL>>10, r.walResets, r.resetsBusy, r.resetMax, r.tryMax, r.p99Commit, r.maxCommit)
	if r.maxWAL > 4*limit {
		t.Errorf("WAL file reached %d KiB, want at most %d KiB", r.maxWAL>>10, 4*limit>>10)
	}
	if r.walResets == 0 {
		t.Error("the checkpointer never had the WAL start over")
	}
}

const (
	restartMeasureEnv = "XMPPBRIDGE_MEASURE_RESTART" // seconds of load before the kill
	restartChildEnv   = "XMPPBRIDGE_RESTART_CHILD"   // the database the child loads
	restartNoBoundEnv = "XMPPBRIDGE_RESTART_NO_BOUND"
)

// TestSQLiteRestartAfterKill measures, when XMPPBRIDGE_MEASURE_RESTART is
// a number of seconds, what a start costs after kill -9 under load: a
// child process (this test binary again) fills a database with 100,000
// messages, then writes steadily with readers in the WAL until it is
// killed; then Open and the first queries run on what it left. With
// XMPPBRIDGE_RESTART_NO_BOUND=1 the child runs without the WAL's bound.
// It only reports figures: a machine's speed is no test's business.
func TestSQLiteRestartAfterKill(t *testing.T) {
	if path := os.Getenv(restartChildEnv); path != "" {
		restartChild(t, path)
		return
	}
	secs, err := strconv.Atoi(os.Getenv(restartMeasureEnv))
	if err != nil {
		t.Skipf("set %s to a number of seconds to measure a restart after kill -9", restartMeasureEnv)
	}
	path := filepath.Join(t.TempDir(), "bridge.db")
	child := exec.Command(os.Args[0], "-test.run=^TestSQLiteRestartAfterKill$", "-test.v")
	child.Env = append(os.Environ(), restartChildEnv+"="+path)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	must(t, err)
	must(t, child.Start())
	// The child says "loading" once seeded.
	lines := bufio.NewScanner(out)
	for lines.Scan() && !strings.Contains(lines.Text(), "loading") {
	}
	go func() {
		for lines.Scan() {
		}
	}()
	time.Sleep(time.Duration(secs) * time.Second)
	must(t, child.Process.Kill())
	_ = child.Wait()

	wal, db := fileSize(path+"-wal"), fileSize(path)
	start := time.Now()
	d, err := Open(t.Context(), "sqlite3-fk-wal", path, testLogger(t))
	must(t, err)
	opened := time.Since(start)
	_, err = d.PendingTxns(t.Context(), 0, 0)
	must(t, err)
	_, err = d.MessageByXMPPID(t.Context(), bob, "seed99999", mapping.FromXMPP)
	must(t, err)
	first := time.Since(start)
	must(t, d.Close())
	t.Logf("after %d s of load (bound off: %t): WAL %d MiB, database %d MiB; Open %v, Open and the first queries %v",
		secs, os.Getenv(restartNoBoundEnv) == "1", wal>>20, db>>20, opened, first)
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// restartChild seeds the database at path and loads it until killed.
func restartChild(t *testing.T, path string) {
	ctx := t.Context()
	opts := defaultOptions()
	if os.Getenv(restartNoBoundEnv) == "1" {
		opts.walLimit = 0
	}
	db, err := openWith(ctx, "sqlite3-fk-wal", path, testLogger(t), opts)
	must(t, err)
	body := fmt.Sprintf("%01000d", 0)
	for b := 0; b < 100; b++ {
		must(t, db.DB().DoTxn(ctx, nil, func(ctx context.Context) error {
			for i := b * 1000; i < (b+1)*1000; i++ {
				m := newMessage(bob, fmt.Sprintf("seed%d", i), mapping.FromXMPP)
				m.Body = body
				if _, err := db.AddMessage(ctx, m); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	fmt.Println("loading")
	walLoad{writers: 4, txnsEach: 1 << 30, every: 100 * time.Microsecond,
		readHold: 2 * time.Millisecond, readGap: time.Millisecond}.run(t, opts, db)
}
