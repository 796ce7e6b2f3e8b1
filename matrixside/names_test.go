package matrixside

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// profileHomeserver keeps display names as a homeserver does, answering
// GET and PUT on /profile/{user}/displayname; everything else gets {}.
type profileHomeserver struct {
	mu      sync.Mutex
	names   map[string]string // user ID → display name; absent: no profile
	failGET bool              // GET answers 500
	puts    []string
}

func (p *profileHomeserver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	user, ok := strings.CutPrefix(r.URL.Path, "/_matrix/client/v3/profile/")
	user, isName := strings.CutSuffix(user, "/displayname")
	if !ok || !isName {
		_, _ = io.WriteString(w, `{}`)
		return
	}
	switch r.Method {
	case http.MethodGet:
		name, known := p.names[user]
		switch {
		case p.failGET:
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"errcode":"M_UNKNOWN","error":"database away"}`)
		case !known:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"errcode":"M_NOT_FOUND","error":"Profile was not found"}`)
		default:
			_ = json.NewEncoder(w).Encode(map[string]string{"displayname": name})
		}
	case http.MethodPut:
		var body struct {
			DisplayName string `json:"displayname"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		p.names[user] = body.DisplayName
		p.puts = append(p.puts, body.DisplayName)
		_, _ = io.WriteString(w, `{}`)
	}
}

func (p *profileHomeserver) state(user id.UserID) (string, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.names[string(user)], append([]string(nil), p.puts...)
}

// A person who gives no name is named after their JID's local part with
// " (XMPP)" (docs/protocols.md, "Names and avatars"), however the homeserver named the new account
// (Dendrite and Synapse give it its localpart; a profile may be missing or
// empty), and a name of the person's own that the bridge set stays.
func TestGhostIsNamedAfterItsJIDOverTheHomeserversDefault(t *testing.T) {
	ghost := ids.Ghost(jid.MustParse("juliet@capulet.lit"))
	tests := []struct {
		name    string
		profile *string // nil: no profile at all
		failGET bool
		want    string
		puts    int
	}{
		{name: "the localpart, as Dendrite gives it", profile: ptr(ghost.Localpart()), want: "juliet (XMPP)", puts: 1},
		{name: "an empty name", profile: ptr(""), want: "juliet (XMPP)", puts: 1},
		{name: "no profile", want: "juliet (XMPP)", puts: 1},
		{name: "her nick, set by the bridge", profile: ptr("Jules (XMPP)"), want: "Jules (XMPP)"},
		{name: "unknown: the profile cannot be read", profile: ptr("Jules (XMPP)"), failGET: true, want: "Jules (XMPP)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &profileHomeserver{names: map[string]string{}, failGET: tt.failGET}
			if tt.profile != nil {
				p.names[string(ghost)] = *tt.profile
			}
			h := newStandInHomeserver(t, p, Delivery{})
			for range 2 { // the second use asks nothing more
				if _, err := h.intent(context.Background(), ghost); err != nil {
					t.Fatal(err)
				}
			}
			got, puts := p.state(ghost)
			if got != tt.want || len(puts) != tt.puts {
				t.Errorf("named %q after %d renames %q, want %q after %d", got, len(puts), puts, tt.want, tt.puts)
			}
		})
	}
}

// A ghost whose profile could not be read is asked again on its next use,
// not left with the homeserver's name for the rest of the run.
func TestGhostNameIsAskedAgainAfterAFailure(t *testing.T) {
	ghost := ids.Ghost(jid.MustParse("juliet@capulet.lit"))
	p := &profileHomeserver{names: map[string]string{string(ghost): ghost.Localpart()}, failGET: true}
	h := newStandInHomeserver(t, p, Delivery{})
	if _, err := h.intent(context.Background(), ghost); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.failGET = false
	p.mu.Unlock()
	if _, err := h.intent(context.Background(), ghost); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.state(ghost); got != "juliet (XMPP)" {
		t.Errorf("named %q, want %q", got, "juliet (XMPP)")
	}
}

// A ghost first used to take its person's nick is given that name alone:
// its JID's name would only flash by in its rooms.
func TestSetGhostNameOnANewGhostRenamesOnce(t *testing.T) {
	ghost := ids.Ghost(jid.MustParse("juliet@capulet.lit"))
	p := &profileHomeserver{names: map[string]string{string(ghost): ghost.Localpart()}}
	h := newStandInHomeserver(t, p, Delivery{})
	if err := h.SetGhostName(context.Background(), ghost, "Jules"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.intent(context.Background(), ghost); err != nil {
		t.Fatal(err)
	}
	if got, puts := p.state(ghost); got != "Jules (XMPP)" || len(puts) != 1 {
		t.Errorf("named %q after renames %q, want only %q", got, puts, "Jules (XMPP)")
	}
}

func ptr[T any](v T) *T { return &v }
