package peers

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/lib/pq" // the bridge's PostgreSQL driver
)

// PostgreSQL for the drills and the end-to-end tests: the machine's own
// server (scripts/setup.sh starts it), a schema per run.

// FreshPostgresSchema makes a schema of its own in the PostgreSQL database at uri
// and returns a URI whose connections use it (lib/pq passes search_path
// on as a run-time parameter).
func FreshPostgresSchema(ctx context.Context, uri, schema string) (string, error) {
	db, err := sql.Open("postgres", uri)
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", fmt.Errorf("PostgreSQL at %s: %w", uri, err)
	}
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	return uri + sep + "search_path=" + schema, nil
}

// DropPostgresSchema drops what FreshPostgresSchema made.
func DropPostgresSchema(uri, schema string) {
	if db, err := sql.Open("postgres", uri); err == nil {
		_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
		db.Close()
	}
}

// CrashPostgres stops the machine's PostgreSQL at once, as a crash would
// (no checkpoint: it recovers from its WAL), and starts it again.
func CrashPostgres() error { return CrashPostgresFor(0) }

// CrashPostgresFor is CrashPostgres with the server left down for down
// before it is started again: a machine that takes its time to come back.
func CrashPostgresFor(down time.Duration) error {
	versions, err := filepath.Glob("/etc/postgresql/*/main")
	if err != nil || len(versions) == 0 {
		return fmt.Errorf("no PostgreSQL cluster under /etc/postgresql to restart (%v)", err)
	}
	ver := filepath.Base(filepath.Dir(versions[0]))
	keepOwnFiles()
	ctl := func(args ...string) error {
		out, err := exec.Command("pg_ctlcluster", append([]string{ver, "main"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_ctlcluster %s main %s: %v: %s", ver, args[0], err, out)
		}
		return nil
	}
	if down == 0 {
		return ctl("restart", "-m", "immediate")
	}
	if err := ctl("stop", "-m", "immediate"); err != nil {
		return err
	}
	time.Sleep(down)
	return ctl("start")
}

// keepOwnFiles marks close-on-exec every file this process was started
// with beyond its standard three (Go opens its own so already). Without
// it, the server started again would hold them for its whole life: a
// flock(1) lock the tests were run under would never be released.
func keepOwnFiles() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
