package mapping

import (
	"context"
	"errors"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
)

// XEP-0410: MUC Self-Ping. A chat can lose a puppet without telling it:
// the chat's server restarted, the link between the servers broke, or
// an error answering a stanza made the room drop it. The bridge would go
// on believing the puppet in, and what the chat says would stop reaching
// Matrix. So a puppet that has had no word from a chat for selfPingAfter
// asks its own occupant JID whether it is there (§3.1), and joins again
// if the chat says it is not (§3.2). Prosody 0.12 and ejabberd 23.01 both
// answer for the room: a result while the puppet is in, <not-acceptable/>
// once it is not.

const (
	// selfPingAfter is how long a puppet goes without word from a chat
	// before it asks (XEP-0410 §3.1: after a period of inactivity).
	selfPingAfter = 15 * time.Minute
	// selfPingCheck is how often the bridge looks for the pings due.
	selfPingCheck = time.Minute
	// maxSelfPings is how many pings are under way at once: a chat's
	// server that never answers holds no more of the bridge than that.
	maxSelfPings = 4
)

// selfPingLoop sends the self-pings due every selfPingCheck until ctx
// ends.
func (g *chatState) selfPingLoop(ctx context.Context) {
	tick := time.NewTicker(selfPingCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		_ = g.guard.Run(&g.log, g.counter, "muc_self_ping", func() error {
			g.selfPing(ctx)
			return nil
		})
	}
}

// selfPing asks, for every puppet in a chat that has had no word from it
// for selfPingAfter, whether it is still there, and waits for the
// answers; one that is not joins again (a rejoin: asking for what it
// missed). The next ask of each is selfPingAfter later, unless the chat
// is heard from meanwhile.
func (g *chatState) selfPing(ctx context.Context) {
	type due struct {
		r    *mucRoom
		mxid id.UserID
		nick string
	}
	now := g.now()
	var dues []due
	g.mu.Lock()
	for _, r := range g.rooms {
		for u := range r.joined {
			if now.Sub(r.heard[u]) >= selfPingAfter {
				dues = append(dues, due{r, u, r.nicks[u]})
				r.heard[u] = now
			}
		}
	}
	g.mu.Unlock()
	places := make(chan struct{}, maxSelfPings)
	var wg sync.WaitGroup
	for _, d := range dues {
		places <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-places }()
			g.pingSelf(ctx, d.r, d.mxid, d.nick)
		}()
	}
	wg.Wait()
}

// pingSelf asks the occupant JID of mxid's puppet in r whether it is
// there (XEP-0410 §3.1) and, if the answer says it is not (§3.2), has it
// join again.
func (g *chatState) pingSelf(ctx context.Context, r *mucRoom, mxid id.UserID, nick string) {
	from, err := g.cfg.Identities.PuppetFrom(mxid)
	if err != nil {
		return
	}
	to, err := r.jid.WithResource(nick)
	if err != nil {
		return
	}
	err = g.xmpp.Ping(ctx, from, to)
	var answer *StanzaError
	switch {
	case err == nil:
		g.count("muc_self_ping", "joined")
		return
	case !errors.As(err, &answer):
		// No answer (in time), or no link: nothing is known.
		g.count("muc_self_ping", "no_answer")
		return
	}
	switch answer.Condition {
	case "service-unavailable", "feature-not-implemented":
		// §3.2: the room passed the ping on to the puppet, which it has
		// as an occupant.
		g.count("muc_self_ping", "joined")
		return
	case "remote-server-not-found", "remote-server-timeout":
		// §3.2: the chat's server is out of reach; ask again later.
		g.count("muc_self_ping", "no_answer")
		return
	}
	// §3.2: any other error, <not-acceptable/> first, says the puppet is
	// not in the chat.
	g.mu.Lock()
	delete(r.joined, mxid)
	g.mu.Unlock()
	g.count("muc_self_ping", "rejoin")
	g.log.Info().Str("muc", r.jid.String()).Str("mxid", string(mxid)).Str("answer", answer.Condition).Msg("A puppet was no longer in its chat; joining again")
	_ = g.queueStored(ctx, groupJob(JobJoinMUC, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), MXID: mxid, Rejoin: true}))
}
