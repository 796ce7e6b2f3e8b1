package mapping

import (
	"maunium.net/go/mautrix/id"
)

// Permission levels in the config's bridge.permissions.
const (
	PermUser = "user" // may use the bridge
	PermNone = "none" // may not
)

// Permissions decides who may use the bridge. Keys are "*", a homeserver
// domain or a full user ID; the most specific key wins.
type Permissions map[string]string

// Allowed tells whether the Matrix user u may use the bridge.
func (p Permissions) Allowed(u id.UserID) bool {
	if lvl, ok := p[string(u)]; ok {
		return lvl == PermUser
	}
	if _, server, err := u.Parse(); err == nil {
		if lvl, ok := p[server]; ok {
			return lvl == PermUser
		}
	}
	return p["*"] == PermUser
}
