package matrixside

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"maunium.net/go/mautrix"

	"xmppbridge/mapping"
)

// A send the homeserver refuses for its size is told from other client
// errors (mapping.ErrTooLarge, still permanent), so that the core can
// answer the XMPP sender: Synapse answers 413 M_TOO_LARGE, Dendrite 413
// M_BAD_JSON (its event size check); the client-server spec's M_TOO_LARGE
// ("the request or entity was too large") under another status too.
func TestClassifyTooLarge(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		errcode  string
		tooLarge bool
	}{
		{"Synapse", http.StatusRequestEntityTooLarge, "M_TOO_LARGE", true},
		{"Dendrite", http.StatusRequestEntityTooLarge, "M_BAD_JSON", true},
		{"M_TOO_LARGE as 400", http.StatusBadRequest, "M_TOO_LARGE", true},
		{"another bad request", http.StatusBadRequest, "M_BAD_JSON", false},
		{"forbidden", http.StatusForbidden, "M_FORBIDDEN", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(`{"errcode":"` + tc.errcode + `","error":"x"}`))
			}))
			defer srv.Close()
			cli, err := mautrix.NewClient(srv.URL, "@bot:localhost", "token")
			if err != nil {
				t.Fatal(err)
			}
			cli.DefaultHTTPRetries = 0
			_, err = cli.SendText(context.Background(), "!room:localhost", "a long text")
			if err == nil {
				t.Fatal("the request succeeded")
			}
			got := classify(err)
			if errors.Is(got, mapping.ErrTooLarge) != tc.tooLarge {
				t.Errorf("classify(%v) = %v: too large %v, want %v", err, got, !tc.tooLarge, tc.tooLarge)
			}
			if !errors.Is(got, mapping.ErrPermanent) {
				t.Errorf("classify(%v) = %v, want permanent", err, got)
			}
		})
	}
}
