//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The operator's view (docs/deploy.md, Watching it), on the metrics listener. /health/live
// answers while the process runs; /health/ready is 503, naming the XMPP
// link, while Prosody is down, and 200 again once the bridge has
// reconnected by itself; /metrics has the link, the database, the owed
// sends and the WAL.
func TestHealthAndMetrics(t *testing.T) {
	ctx := context.Background()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + w.MetricsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	readyIs := func(want int) map[string]string {
		t.Helper()
		deadline := time.Now().Add(wait)
		for {
			status, body := get("/health/ready")
			if status == want {
				var parts map[string]string
				if err := json.Unmarshal([]byte(body), &parts); err != nil {
					t.Fatalf("/health/ready: %v: %s", err, body)
				}
				return parts
			}
			if time.Now().After(deadline) {
				t.Fatalf("/health/ready stayed %d, want %d: %s", status, want, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if status, _ := get("/health/live"); status != 200 {
		t.Fatalf("/health/live = %d", status)
	}
	if parts := readyIs(200); parts["database"] != "ok" || parts["xmpp"] != "ok" || parts["homeserver"] != "ok" {
		t.Errorf("ready: %v", parts)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{"xmppbridge_xmpp_connected 1", "xmppbridge_database_up 1", `xmppbridge_owed_sends{side="xmpp"}`, "xmppbridge_sqlite_wal_bytes", "xmppbridge_transaction_lag_seconds", `xmppbridge_oldest_owed_send_seconds{side="matrix"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if err := w.Prosody.Stop(); err != nil {
		t.Fatal(err)
	}
	parts := readyIs(503)
	if parts["xmpp"] == "ok" || parts["database"] != "ok" {
		t.Errorf("not ready, but for what: %v", parts)
	}
	if err := w.Prosody.Start(ctx); err != nil {
		t.Fatal(err)
	}
	readyIs(200)
}
