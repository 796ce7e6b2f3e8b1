package matrixside

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// topicStandIn is a homeserver holding one room's topic: it answers its
// m.room.topic state, takes a new one as anyone but forbidden (403
// M_FORBIDDEN, as to a user below the power m.room.topic needs), and
// records each PUT of it.
type topicStandIn struct {
	mu        sync.Mutex
	topic     string
	forbidden string // the user who may not set it
	puts      []string
}

func (s *topicStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path, as := r.URL.EscapedPath(), r.URL.Query().Get("user_id")
	switch {
	case path == "/_matrix/client/versions":
		_, _ = io.WriteString(w, `{"versions":["v1.11"]}`)
	case strings.Contains(path, "/state/m.room.topic") && r.Method == http.MethodGet:
		_, _ = io.WriteString(w, `{"topic":"`+s.topic+`"}`)
	case strings.Contains(path, "/state/m.room.topic") && as == s.forbidden:
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"errcode":"M_FORBIDDEN","error":"You don't have permission"}`)
	case strings.Contains(path, "/state/m.room.topic"):
		body, _ := io.ReadAll(r.Body)
		s.puts = append(s.puts, as+" "+string(body))
		_, _ = io.WriteString(w, `{"event_id":"$topic"}`)
	default:
		_, _ = io.WriteString(w, `{}`)
	}
}

// SetTopic sets nothing where the topic already is that (a subject the
// room sends again at each join), sets it as the ghost where it may, and
// as the bot where the ghost is forbidden (a room whose m.room.topic asks
// more power than a ghost has).
func TestSetTopic(t *testing.T) {
	ctx := context.Background()
	ghost := ids.Ghost(jid.MustParse("hecate@capulet.lit"))
	si := &topicStandIn{topic: "Fair is foul"}
	h := newStandInHomeserver(t, si, Delivery{})
	if err := h.SetTopic(ctx, "!g:example.org", ghost, "Fair is foul"); err != nil || len(si.puts) != 0 {
		t.Errorf("the same topic again: %v, puts %q", err, si.puts)
	}
	if err := h.SetTopic(ctx, "!g:example.org", ghost, "Double, double"); err != nil {
		t.Fatal(err)
	}
	si.forbidden = string(ghost)
	if err := h.SetTopic(ctx, "!g:example.org", ghost, "Toil and trouble"); err != nil {
		t.Fatal(err)
	}
	bot := string(h.AS.BotMXID())
	want := []string{string(ghost) + ` {"topic":"Double, double"}`, bot + ` {"topic":"Toil and trouble"}`}
	if len(si.puts) != 2 || si.puts[0] != want[0] || si.puts[1] != want[1] {
		t.Errorf("puts\n  %q\nwant\n  %q", si.puts, want)
	}
}

// The room of a chat as the core says it is made (client-server API,
// "POST /createRoom"): by the bot's join, private with the user invited;
// for its alias (Matrix AS API §Querying room aliases), public with the
// alias's localpart as room_alias_name and no one invited, and out of
// the room directory either way.
func TestCreateGroupRequests(t *testing.T) {
	for _, tc := range []struct {
		room            mapping.GroupRoom
		preset, aliasLP string
		invite          []string
	}{
		{mapping.GroupRoom{Name: "lounge", Invite: "@alice:example.org"}, "private_chat", "", []string{"@alice:example.org"}},
		{mapping.GroupRoom{Name: "lounge", Alias: "#_xmpp_lounge=40conference.capulet.lit:example.org"}, "public_chat", "_xmpp_lounge=40conference.capulet.lit", nil},
	} {
		si := &standIn{versions: `{"versions":["v1.11"]}`}
		h := newStandInHomeserver(t, si, Delivery{Fallback: FallbackMessageStatus})
		_, _ = h.CreateGroup(context.Background(), tc.room)
		var body struct {
			Preset     string   `json:"preset"`
			Visibility string   `json:"visibility"`
			Alias      string   `json:"room_alias_name"`
			Invite     []string `json:"invite"`
		}
		for _, r := range si.requests() {
			if strings.HasPrefix(r, "POST /_matrix/client/v3/createRoom") {
				if err := json.Unmarshal([]byte(r[strings.Index(r, "{"):]), &body); err != nil {
					t.Fatal(err)
				}
			}
		}
		if body.Preset != tc.preset || body.Visibility != "private" || body.Alias != tc.aliasLP || strings.Join(body.Invite, ",") != strings.Join(tc.invite, ",") {
			t.Errorf("%+v: createRoom %+v, requests %q", tc.room, body, si.requests())
		}
	}
}

// memberStandIn is a homeserver that refuses every invite as Dendrite
// 0.15.2 refuses one of a user already in the room (403 M_FORBIDDEN "user
// is already joined to room") and answers the invitee's m.room.member
// state with membership.
type memberStandIn struct{ membership string }

func (s *memberStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	switch {
	case strings.HasSuffix(path, "/invite"):
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"errcode":"M_FORBIDDEN","error":"user is already joined to room"}`)
	case strings.Contains(path, "/state/m.room.member/") && s.membership != "":
		_, _ = io.WriteString(w, `{"membership":"`+s.membership+`"}`)
	case strings.Contains(path, "/state/"):
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"errcode":"M_NOT_FOUND","error":"no such state"}`)
	default:
		_, _ = io.WriteString(w, `{}`)
	}
}

// An invite asked again after the bridge was killed between the
// homeserver taking it (or the ghost's join) and the bridge hearing so is
// done, not a permanent failure: the homeserver says the ghost is invited
// or in. A refusal of someone who is neither stays one.
func TestInviteOfSomeoneAlreadyIn(t *testing.T) {
	ghost := ids.Ghost(jid.MustParse("benedick@capulet.lit"))
	for _, tc := range []struct {
		membership string
		ok         bool
	}{{"join", true}, {"invite", true}, {"leave", false}, {"", false}} {
		h := newStandInHomeserver(t, &memberStandIn{membership: tc.membership}, Delivery{})
		err := h.Invite(context.Background(), "!g:example.org", ghost)
		if (err == nil) != tc.ok {
			t.Errorf("membership %q: Invite = %v, want ok %v", tc.membership, err, tc.ok)
		}
	}
}
