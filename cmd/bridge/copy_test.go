package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"mellium.im/xmpp/jid"

	"xmppbridge"
	"xmppbridge/database"
	"xmppbridge/mapping"
)

// exampleConfig writes the example configuration, its one placeholder
// that Load refuses filled in, into a directory of its own; the database
// is bridge.db next to it.
func exampleConfig(t *testing.T) string {
	t.Helper()
	data := bytes.Replace(xmppbridge.ExampleConfig, []byte("uri: xmppbridge.db"), []byte("uri: bridge.db"), 1)
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "secret:") {
			line = line[:strings.Index(line, "secret:")] + `secret: "a-secret-of-the-test"`
		}
		out = append(out, line)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCopyFlagsRefuse(t *testing.T) {
	configPath := exampleConfig(t)
	// As an operator runs it: in the config's directory, -c config.yaml
	// (the default), the database named relative to it.
	t.Chdir(filepath.Dir(configPath))
	configPath = "config.yaml"
	own, err := filepath.Abs("bridge.db")
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.db")
	tests := []struct {
		name     string
		to, from string
		want     string
	}{
		{"both ways at once", other, other, "not both"},
		{"to itself, named absolute", own, "", "same database"},
		{"from itself, named relative", "", "bridge.db", "same database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			replace := false
			f := copyFlags{to: &tt.to, from: &tt.from, replace: &replace}
			if !f.requested() {
				t.Fatal("requested() = false")
			}
			err := f.run(configPath)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// A start on a database without portals or messages says so once, with
// the command that copies an old one in; a database with a portal starts
// without a word.
func TestWarnIfEmpty(t *testing.T) {
	ctx := t.Context()
	db, err := database.Open(ctx, "sqlite3-fk-wal", filepath.Join(t.TempDir(), "bridge.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var logs bytes.Buffer
	warnIfEmpty(ctx, db, "/etc/xmppbridge/config.yaml", zerolog.New(&logs))
	if got := logs.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "starts from nothing") ||
		!strings.Contains(got, "bridge -c /etc/xmppbridge/config.yaml -copy-db-from OLD_DATABASE") {
		t.Errorf("on an empty database the log says:\n%s", got)
	}

	if err := db.PutPortal(ctx, mapping.DirectPortal("!room:example.org", "@alice:example.org", jid.MustParse("bob@example.net"), time.Now())); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	warnIfEmpty(ctx, db, "config.yaml", zerolog.New(&logs))
	if logs.Len() != 0 {
		t.Errorf("with a portal the log says:\n%s", logs.String())
	}
}
