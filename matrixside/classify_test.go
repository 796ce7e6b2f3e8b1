package matrixside

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"xmppbridge/mapping"
)

// TestClassify: what a failed request tells the outbox, for every answer a
// homeserver gives. Only what is wrong with every request alike holds the
// whole Matrix side: a homeserver that cannot be reached (or whose proxy
// says it is away), one over its administrator's limits, and one that
// refuses the bridge's token or registration: the client-server API
// answers 401 M_UNKNOWN_TOKEN to a token it does not know and 401
// M_MISSING_TOKEN to none ("Using access tokens"), the application service
// API M_EXCLUSIVE to a user outside its namespaces ("Server admin style
// permissions"), and Synapse and Dendrite 403 M_FORBIDDEN naming the
// application service to a user it may not act as ("Identity
// assertion"). A request that failed on its own is its lane's to retry,
// and any other client error is never retried (its sender is told).
func TestClassify(t *testing.T) {
	answer := func(code int, errcode, text string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if code == 0 {
				time.Sleep(200 * time.Millisecond) // longer than the client waits
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]string{"errcode": errcode, "error": text})
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
		refused   bool // ErrTokenRefused: said once, with what to do
		permanent bool
		tooLarge  bool
	}{
		{"connection refused", closed, true, false, false, false},
		{"502 from a proxy", answer(http.StatusBadGateway, "", ""), true, false, false, false},
		{"503", answer(http.StatusServiceUnavailable, "M_UNKNOWN", "x"), true, false, false, false},
		{"504", answer(http.StatusGatewayTimeout, "", ""), true, false, false, false},
		{"401 M_UNKNOWN_TOKEN", answer(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "Unknown token"), true, true, false, false},
		{"401 M_MISSING_TOKEN", answer(http.StatusUnauthorized, "M_MISSING_TOKEN", "Missing access token"), true, true, false, false},
		{"401 without errcode", answer(http.StatusUnauthorized, "", ""), true, true, false, false},
		{"401 M_USER_LOCKED: one user", answer(http.StatusUnauthorized, "M_USER_LOCKED", "This account has been locked"), false, false, true, false},
		{"403 Synapse: cannot masquerade", answer(http.StatusForbidden, "M_FORBIDDEN", "Application service cannot masquerade as this user (@_xmpp_a:example.org)."), true, true, false, false},
		{"403 Synapse: not registered", answer(http.StatusForbidden, "M_FORBIDDEN", "Application service has not registered this user (@_xmpp_a:example.org)"), true, true, false, false},
		{"403 Dendrite: not registered", answer(http.StatusForbidden, "M_FORBIDDEN", "Forbidden: appservice has not registered this user"), true, true, false, false},
		{"400 M_EXCLUSIVE", answer(http.StatusBadRequest, "M_EXCLUSIVE", "This user ID is reserved by an application service."), true, true, false, false},
		{"403 M_FORBIDDEN about a room", answer(http.StatusForbidden, "M_FORBIDDEN", "User @_xmpp_a:example.org not in room !r:example.org"), false, false, true, false},
		{"403 M_USER_DEACTIVATED", answer(http.StatusForbidden, "M_USER_DEACTIVATED", "deactivated"), false, false, true, false},
		{"403 M_RESOURCE_LIMIT_EXCEEDED", answer(http.StatusForbidden, "M_RESOURCE_LIMIT_EXCEEDED", "monthly active user limit"), true, false, false, false},
		{"400 M_BAD_JSON", answer(http.StatusBadRequest, "M_BAD_JSON", "bad"), false, false, true, false},
		{"400 M_NOT_JSON", answer(http.StatusBadRequest, "M_NOT_JSON", "not json"), false, false, true, false},
		{"404 M_NOT_FOUND", answer(http.StatusNotFound, "M_NOT_FOUND", "no such room"), false, false, true, false},
		{"404 M_UNRECOGNIZED", answer(http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request"), false, false, true, false},
		{"405", answer(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "method"), false, false, true, false},
		{"408 from a proxy", answer(http.StatusRequestTimeout, "", ""), false, false, false, false},
		{"413 too large (Dendrite: M_BAD_JSON)", answer(http.StatusRequestEntityTooLarge, "M_BAD_JSON", "too big"), false, false, true, true},
		{"M_TOO_LARGE (Synapse)", answer(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "too large"), false, false, true, true},
		{"429 M_LIMIT_EXCEEDED", answer(http.StatusTooManyRequests, "M_LIMIT_EXCEEDED", "slow down"), false, false, false, false},
		{"500 about one request", answer(http.StatusInternalServerError, "M_UNKNOWN", "x"), false, false, false, false},
		{"501 not implemented", answer(http.StatusNotImplemented, "M_UNRECOGNIZED", "x"), false, false, true, false},
		{"no answer in time", answer(0, "", ""), false, false, false, false},
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
			if refused := errors.Is(got, ErrTokenRefused); refused != tt.refused {
				t.Errorf("classify(%v): token refused = %v, want %v", err, refused, tt.refused)
			}
			if perm := errors.Is(got, mapping.ErrPermanent); perm != tt.permanent {
				t.Errorf("classify(%v): permanent = %v, want %v", err, perm, tt.permanent)
			}
			if big := errors.Is(got, mapping.ErrTooLarge); big != tt.tooLarge {
				t.Errorf("classify(%v): too large = %v, want %v", err, big, tt.tooLarge)
			}
		})
	}
}
