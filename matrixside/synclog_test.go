package matrixside

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/appservice"

	"xmppbridge/internal/logtest"
)

func appServiceAt(t *testing.T, url string) *appservice.AppService {
	t.Helper()
	reg := &appservice.Registration{ID: "xmpp", AppToken: "as", ServerToken: "hs", SenderLocalpart: "xmppbridge"}
	as, err := appservice.CreateFull(appservice.CreateOpts{Registration: reg, HomeserverDomain: "example.org", HomeserverURL: url})
	if err != nil {
		t.Fatal(err)
	}
	return as
}

// ephemeral: auto asks the homeserver what it is. One that does not say
// (Dendrite with federation off answers 404 M_UNRECOGNIZED) is synced, an
// expected fallback said at info, with no error line from the probe and
// no error field (which the console prints in red); only a homeserver
// that cannot be reached at all is worth a warning.
func TestChooseModeSaysItsFallbackAtInfo(t *testing.T) {
	serve := func(code int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			_, _ = io.WriteString(w, body)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		name, url, want string
		warn            bool
	}{
		{"federation off", serve(http.StatusNotFound, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`), EphemeralSync, false},
		{"Synapse", serve(http.StatusOK, `{"server":{"name":"Synapse","version":"1.140"}}`), EphemeralPush, false},
		{"Dendrite", serve(http.StatusOK, `{"server":{"name":"Dendrite","version":"0.15.2"}}`), EphemeralSync, false},
		{"unreachable", closed, EphemeralSync, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &logtest.Buffer{}
			log := logs.Logger()
			ctx := log.WithContext(context.Background()) // as the bridge's main does
			if got := ChooseMode(ctx, appServiceAt(t, tt.url), EphemeralAuto, log); got != tt.want {
				t.Errorf("chose %q, want %q", got, tt.want)
			}
			lines := logs.Lines(t)
			var said []logtest.Line
			for _, l := range lines {
				if l.Level != "debug" {
					said = append(said, l)
				}
			}
			want := "info"
			if tt.warn {
				want = "warn"
			}
			if len(said) != 1 || said[0].Level != want || said[0].Ephemeral != tt.want || (!tt.warn && said[0].Error != "") {
				t.Errorf("logged %+v, want one %s line with ephemeral %q", said, want, tt.want)
			}
		})
	}
}

type emptyKV struct{}

func (emptyKV) GetKV(context.Context, string) (string, error) { return "", nil }
func (emptyKV) SetKV(context.Context, string, string) error   { return nil }

// syncHomeserver answers the bot's filter, and its /sync as sync says.
func syncHomeserver(t *testing.T, sync http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/filter") {
			_, _ = io.WriteString(w, `{"filter_id":"1"}`)
			return
		}
		sync(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A stop cuts the long-polling /sync short: that is no failure, and
// nothing is said above debug.
func TestSyncStopIsNoWarning(t *testing.T) {
	var polls atomic.Int64
	url := syncHomeserver(t, func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1)
		<-r.Context().Done() // a long poll with nothing new
	})
	srv, db, _ := newServer(t)
	logs := &logtest.Buffer{}
	log := logs.Logger()
	s := &Syncer{AS: appServiceAt(t, url), Store: db, KV: emptyKV{}, Server: srv, Log: log}
	ctx, cancel := context.WithCancel(log.WithContext(context.Background()))
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	for deadline := time.Now().Add(10 * time.Second); polls.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the syncer never asked")
		}
	}
	cancel()
	<-done
	for _, l := range logs.Lines(t) {
		if l.Level != "debug" && l.Level != "trace" {
			t.Errorf("at stop: %s %q", l.Level, l.Message)
		}
	}
}

// A homeserver away is said once (here at once: no grace), its first
// failed try at info, the others at debug with a summary now and then,
// and its return at info;
// mautrix's own error line for each failed request is not repeated.
func TestSyncOutageIsSaidOnceThenSummarised(t *testing.T) {
	var up atomic.Bool
	url := syncHomeserver(t, func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"errcode":"M_UNKNOWN","error":"database away"}`)
			return
		}
		_, _ = io.WriteString(w, `{"next_batch":"s2"}`)
	})
	srv, db, _ := newServer(t)
	logs := &logtest.Buffer{}
	log := logs.Logger()
	s := &Syncer{AS: appServiceAt(t, url), Store: db, KV: emptyKV{}, Server: srv, Log: log,
		retryFirst: 5 * time.Millisecond, outageGrace: time.Nanosecond, outageEvery: 100 * time.Millisecond}
	ctx, cancel := context.WithCancel(log.WithContext(context.Background()))
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	logs.Wait(t, "failed tries and a summary", func(ls []logtest.Line) bool {
		return logtest.Count(ls, "debug", "Sync for receipts failed") >= 2 && logtest.Count(ls, "warn", "Sync for receipts still fails") >= 1
	})
	up.Store(true)
	lines := logs.Wait(t, "the end of the outage", func(ls []logtest.Line) bool {
		return logtest.Count(ls, "info", "Sync for receipts works again") == 1
	})
	if n := logtest.Count(lines, "warn", "Sync for receipts fails"); n != 1 {
		t.Errorf("the outage was said %d times, want once", n)
	}
	if n := logtest.Count(lines, "info", "Sync for receipts failed"); n != 1 {
		t.Errorf("%d failed tries said at info, want the first one only", n)
	}
	for _, l := range lines {
		if l.Level == "error" || (l.Level == "warn" && !strings.HasPrefix(l.Message, "Sync for receipts")) {
			t.Errorf("unexpected %s line %q", l.Level, l.Message)
		}
	}
}
