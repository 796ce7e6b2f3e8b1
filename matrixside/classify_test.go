package matrixside

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"xmppbridge/mapping"
)

// TestClassify: what a failed request tells the outbox. Only a homeserver
// that cannot be reached at all (or whose proxy says it is away) pauses
// every send toward Matrix; a request that failed on its own is its
// lane's to retry, and a client error is never retried.
func TestClassify(t *testing.T) {
	answer := func(code int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if code == 0 {
				time.Sleep(200 * time.Millisecond) // longer than the client waits
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = w.Write([]byte(`{"errcode":"M_UNKNOWN","error":"x"}`))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	// A port nothing listens on: the connection is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	tests := []struct {
		name      string
		url       string
		down      bool // ErrNotConnected: the whole side waits
		permanent bool
	}{
		{"connection refused", closed, true, false},
		{"502 from a proxy", answer(http.StatusBadGateway), true, false},
		{"503", answer(http.StatusServiceUnavailable), true, false},
		{"504", answer(http.StatusGatewayTimeout), true, false},
		{"500 about one request", answer(http.StatusInternalServerError), false, false},
		{"429 rate limited", answer(http.StatusTooManyRequests), false, false},
		{"403", answer(http.StatusForbidden), false, true},
		{"413 too large", answer(http.StatusRequestEntityTooLarge), false, true},
		{"no answer in time", answer(0), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli, err := mautrix.NewClient(tt.url, "@bot:localhost", "token")
			if err != nil {
				t.Fatal(err)
			}
			cli.DefaultHTTPRetries = 0
			cli.IgnoreRateLimit = true
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			_, err = cli.Whoami(ctx)
			if err == nil {
				t.Fatal("the request succeeded")
			}
			got := classify(err)
			if down := errors.Is(got, mapping.ErrNotConnected); down != tt.down {
				t.Errorf("classify(%v): side down = %v, want %v", err, down, tt.down)
			}
			if perm := errors.Is(got, mapping.ErrPermanent); perm != tt.permanent {
				t.Errorf("classify(%v): permanent = %v, want %v", err, perm, tt.permanent)
			}
		})
	}
}
