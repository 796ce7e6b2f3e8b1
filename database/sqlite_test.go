package database

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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
