package matrixside

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"xmppbridge/mapping"
)

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
