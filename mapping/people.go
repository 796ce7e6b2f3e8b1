package mapping

import (
	"context"
	"encoding/json"
	"sync"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// people is what the bridge knows and says of the people on either side:
// the Matrix users' profiles and presence as their puppets show them to
// XMPP (profiles.go, presence.go, roster.go), and the XMPP people's
// ghosts on Matrix, named and pictured after their vCards, PEP and nicks
// (ghosts.go), with the budgets of strangers their ghosts spend.
type people struct {
	*core
	groups *groups // the presences of multi-user chats

	// nicks is the last XEP-0172 nick each XMPP person's ghost was named
	// after in this run (ghostName).
	nicksMu sync.Mutex
	nicks   map[string]string // by bare JID
}

// namedAfter notes that peer's ghost is named after nick (queued), so
// that ghostName does not queue it again in this run.
func (b *people) namedAfter(peer jid.JID, nick string) {
	b.nicksMu.Lock()
	b.nicks[peer.String()] = nick
	b.nicksMu.Unlock()
}

// admitStranger spends one token of each budget asked and, if ghost and
// peer has no ghost yet, one of their domain's new ghosts, all or none.
// It returns why it refused, or "".
func (b *people) admitStranger(ctx context.Context, peer jid.JID, ghost bool, asks ...ask) (Reason, error) {
	newGhost := false
	if ghost {
		known, err := b.ghostKnown(ctx, peer)
		if err != nil {
			return "", err
		}
		if newGhost = !known; newGhost {
			asks = append(asks, ask{ghostsOfDomain, peer.Domainpart()})
		}
	}
	if reason := b.in.strangers.admit(asks...); reason != "" {
		return reason, nil
	}
	if newGhost {
		return "", b.noteGhost(ctx, peer)
	}
	return "", nil
}

// ghostName is the job that names peer's ghost after the nick their
// message carries (XEP-0172 §4.2), if it is one the ghost was not named
// after yet in this run; nil otherwise.
func (b *people) ghostName(mxid id.UserID, peer jid.JID, nick string) *Job {
	if nick == "" {
		return nil
	}
	b.nicksMu.Lock()
	same := b.nicks[peer.String()] == nick
	b.nicksMu.Unlock()
	if same {
		return nil
	}
	payload, _ := json.Marshal(jobArgs{User: b.cfg.Identities.Ghost(peer), Body: nick}) // strings only
	return newJob(JobGhostName, about{mxid: mxid, peer: peer}, 0, payload)
}
