package peers

import (
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

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
func CrashPostgres() error {
	versions, err := filepath.Glob("/etc/postgresql/*/main")
	if err != nil || len(versions) == 0 {
		return fmt.Errorf("no PostgreSQL cluster under /etc/postgresql to restart (%v)", err)
	}
	ver := filepath.Base(filepath.Dir(versions[0]))
	out, err := exec.Command("pg_ctlcluster", ver, "main", "restart", "-m", "immediate").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctlcluster %s main restart: %v: %s", ver, err, out)
	}
	return nil
}
