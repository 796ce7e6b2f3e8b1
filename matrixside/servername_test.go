package matrixside

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// A homeserver that refuses the bot because homeserver.domain is not its
// server name is told apart from one that does not know the token: asked
// again with the as_token alone (the application service API, "Identity
// assertion": without user_id the request is the registration's sender's),
// it answers with the bot on its own server name. Giving it the
// registration again would change nothing there, so the bridge says to
// correct homeserver.domain instead.
func TestWhoamiTellsAWrongServerName(t *testing.T) {
	unknown := `{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown token"}`
	tests := []struct {
		name            string
		asBot, asSender string // whoami's answers with user_id and without; "" = 401
		want            error
		says            []string
	}{
		{"a typo in homeserver.domain", "", `{"user_id":"@xmppbridge:localhost"}`, ErrWrongServerName,
			[]string{`homeserver.domain is "example.org"`, `server name is "localhost"`, "@xmppbridge:localhost", "correct homeserver.domain"}},
		{"an unknown token", "", "", ErrTokenRefused, []string{"give it the registration file"}},
		{"all well", `{"user_id":"@xmppbridge:example.org"}`, "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				answer := tt.asSender
				if r.URL.Query().Has("user_id") {
					answer = tt.asBot
				}
				if answer == "" {
					w.WriteHeader(http.StatusUnauthorized)
					answer = unknown
				}
				_, _ = io.WriteString(w, answer)
			})
			h := newStandInHomeserver(t, hs, Delivery{})
			err := h.Whoami(context.Background())
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Whoami = %v, want %v", err, tt.want)
			}
			if tt.want == ErrWrongServerName && errors.Is(err, ErrTokenRefused) {
				t.Errorf("%v is taken for a refused token too", err)
			}
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
		})
	}
}
