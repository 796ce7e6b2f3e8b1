package mapping

import (
	"context"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"
)

// GroupRoom is how the room of a multi-user chat is made; newGroupPortal
// decides it, the Matrix side carries it out.
type GroupRoom struct {
	Name, Topic string
	// Invite is the user the bot invites as it makes the room ("": none).
	Invite id.UserID
	// Alias, if set, is the room's alias, and anyone who has it may join
	// the room (its join rule is public).
	Alias id.RoomAlias
}

// Why an alias query is refused (counted under alias_query, with the
// reasons mayReach and the strangers' budgets give).
const (
	ReasonNotGroupAlias Reason = "not_group_alias" // names no chat's address the bridge would encode
	ReasonBusy          Reason = "busy"            // maxAliasQueries are under way, or one waited past aliasQueryTimeout
)

// The bounds of the homeserver's alias queries, which a stranger may
// cause (anyone who tries to join an alias in the namespace): each is
// answered within aliasQueryTimeout (Dendrite gives up after 30 s) and
// at most maxAliasQueries are under way at once, the rest refused at
// once; they make their rooms one at a time (lockCreation), and the new
// rooms of one chat service spend its budget of new portals
// (limits.domain_new_portals_per_hour), as do those of all services
// together.
const (
	aliasQueryTimeout = 20 * time.Second
	maxAliasQueries   = 8
)

// QueryAlias answers the homeserver's question whether the room alias
// exists (the Matrix application service API, "Querying room aliases"):
// the alias of a chat's portal does once the portal has it, the room
// made now if the chat has none. False, counted and logged, for an alias
// that names no chat, a chat the bridge does not reach, or past the
// bounds; an error if the homeserver or the store failed.
func (b *Bridge) QueryAlias(ctx context.Context, alias id.RoomAlias) (bool, error) {
	return b.groups.queryAlias(ctx, alias)
}

func (g *groups) queryAlias(ctx context.Context, alias id.RoomAlias) (bool, error) {
	log := g.log.With().Str("alias", string(alias)).Logger()
	refuse := func(reason Reason, err error) (bool, error) {
		g.count("alias_query", reason)
		log.Debug().Err(err).Str("reason", string(reason)).Msg("Refused a room alias query")
		return false, nil
	}
	muc, err := g.cfg.Identities.AliasMUC(alias)
	if err != nil {
		return refuse(ReasonNotGroupAlias, err)
	}
	if muc.Domainpart() == g.cfg.Identities.ComponentDomain {
		return refuse(ReasonNotGroupAlias, errors.New("a puppet's address, not a chat's"))
	}
	if reason := g.mayReach("", muc); reason != "" {
		return refuse(reason, nil)
	}
	select {
	case g.aliasQueries <- struct{}{}:
		defer func() { <-g.aliasQueries }()
	default:
		return refuse(ReasonBusy, errors.New("too many alias queries under way"))
	}
	ctx, cancel := context.WithTimeout(ctx, aliasQueryTimeout)
	defer cancel()
	unlock, err := g.lockCreation(ctx)
	if err != nil {
		return refuse(ReasonBusy, err)
	}
	defer unlock()
	p, err := g.store.GroupPortal(ctx, muc)
	switch {
	case err == nil:
		// A portal made before (by the bot's join): the alias is added to
		// it, and who may join it stays as it was.
		if err := g.matrix.AddAlias(ctx, alias, p.RoomID); err != nil {
			return false, fmt.Errorf("add the alias %s to %s: %w", alias, p.RoomID, err)
		}
		g.count("alias_query", "added")
		return true, nil
	case !isNotFound(err):
		return false, fmt.Errorf("look up the portal of %s: %w", muc, err)
	}
	// The service's budget, and one for all services together (the key
	// no domain has): a stranger who names a new service each time has
	// as many rooms made as one service.
	if reason := g.in.strangers.admit(ask{portalsOfDomain, muc.Domainpart()}, ask{portalsOfDomain, ""}); reason != "" {
		return refuse(reason, nil)
	}
	if _, err := g.newGroupPortal(ctx, muc, "", alias); err != nil {
		return false, err
	}
	g.count("alias_query", "created")
	return true, nil
}
