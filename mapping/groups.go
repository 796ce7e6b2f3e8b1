package mapping

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// Group portals: a Matrix room and an XMPP multi-user chat (XEP-0045) as
// one conversation. Each Matrix member who joins the room joins the chat
// as their puppet; each other occupant is a ghost in the room
// (OccupantGhost). The room's members are the portal's: the bot (which
// created the room and keeps the portal when everyone left), the Matrix
// members and the occupants (OccupantMember), each with their own marks.
//
// Every puppet in a chat receives everything said in it, so what comes
// from a chat is taken from one of them only, the room's listener (the
// first of the puppets known to be in it); the id map's uniqueness on the
// room's stanza-id is the guard behind that.

// Kinds of sends of group portals.
const (
	JobOpenGroup     JobKind = "matrix.open_group" // the bot's `join`: the room created, the user invited
	JobJoinMUC       JobKind = "xmpp.muc_join"     // a puppet joins a chat (XEP-0045 §7.2)
	JobLeaveMUC      JobKind = "xmpp.muc_leave"    // a puppet leaves it (§7.14)
	JobGroupToMatrix JobKind = "matrix.group_send" // an occupant's message, by row, as their ghost
	JobMatrixSent    JobKind = "matrix.sent"       // the room took a Matrix user's message
	JobPuppetPhoto   JobKind = "xmpp.muc_photo"    // a puppet's avatar hash to a chat it is in (XEP-0153)
)

// Reasons of group portals, as counted.
const (
	ReasonNotListener   Reason = "not_listener"   // a copy another puppet takes
	ReasonOwnReflection Reason = "own_reflection" // a puppet's own message, come back
	ReasonRoomItself    Reason = "room_itself"    // said by the room, not an occupant
	ReasonNoStanzaID    Reason = "no_stanza_id"   // a reflection the room stamped no stanza-id on (XEP-0359)
	ReasonGroupDelivery Reason = "group_delivery" // no delivery receipts in a group (MSC4089, XEP-0184 §5.3, "Groupchat")
)

// OccupantMember is the MemberID of the occupant key of the chat room: its
// occupant JID with the key as resource (a bare JID never has one).
func OccupantMember(room jid.JID, key string) MemberID {
	return MemberID(room.Bare().String() + "/" + key)
}

// Occupant is the room and the key of an occupant's MemberID, false if m
// is not one.
func (m MemberID) Occupant() (jid.JID, string, bool) {
	s := string(m)
	if strings.HasPrefix(s, "@") {
		return jid.JID{}, "", false
	}
	room, key, ok := strings.Cut(s, "/")
	if !ok || key == "" {
		return jid.JID{}, "", false
	}
	j, err := jid.Parse(room)
	if err != nil {
		return jid.JID{}, "", false
	}
	return j, key, true
}

// maxOccupants bounds the occupants the bridge takes of one chat in a run.
const maxOccupants = 5000

// groups carries the group portals: the bot's `join`, the puppets' joins
// and leaves, the occupants, and the messages of a chat both ways; their
// receipts are receipts'.
type groups struct {
	*core
	receipts   *receipts
	bot        *bot
	relations  *relations
	people     *people     // the occupants' avatars (ghosts.go)
	state      *chatState  // roomstate.go
	moderation *moderation // moderation.go

	mu    sync.Mutex
	rooms map[string]*mucRoom // by the chat's bare JID
	named map[id.UserID]string

	// creating is held while a group portal is made (lockCreation);
	// aliasQueries, by each alias query under way (queryAlias).
	creating, aliasQueries chan struct{}

	// limits bound each Matrix user's chats (joinBudget): joins is
	// each user's budget of joins an hour, granted the chats a bot's
	// join spent it on, which the member's join into the portal then
	// does not spend again (under mu).
	limits  GroupLimits
	joins   map[id.UserID]*bucket
	granted map[id.UserID]map[string]time.Time
}

// GroupLimits bound what one Matrix user may have the bridge join
// (config: groups.*): the chats their puppet is in at once
// (MaxRoomsPerUser), and the joins of chats they may start an hour, as
// many at once (JoinsPerHour), each a bot's join (which makes a room if
// the chat has none) or a join into a chat's room by its alias.
type GroupLimits struct {
	MaxRoomsPerUser, JoinsPerHour int
}

// DefaultGroupLimits are the limits when the configuration sets none:
// more chats than a person follows, and joins enough to set a new user
// up in an hour, far from what fills a chat service with puppets.
var DefaultGroupLimits = GroupLimits{MaxRoomsPerUser: 50, JoinsPerHour: 20}

// Why a join is refused (counted under group_member and bot_join).
const (
	ReasonRoomBudget Reason = "room_budget" // the user's puppet is in MaxRoomsPerUser chats
	ReasonJoinBudget Reason = "join_budget" // the user started JoinsPerHour joins in the hour
)

// joinBudget tells whether user may have their puppet join the chat muc,
// one more than they are in: "" if so, else why not, in words, counted
// under what and logged. A join spends one of the user's joins of the
// hour; a bot's join (byBot) spends it for the member's join into the
// portal that follows within the hour as well, and asking again for the
// same chat meanwhile spends nothing. Callers ask only for a chat whose
// portal the user is not a member of.
func (g *groups) joinBudget(ctx context.Context, what string, user id.UserID, muc jid.JID, byBot bool) (string, error) {
	in, err := g.store.GroupsOf(ctx, user)
	if err != nil {
		return "", fmt.Errorf("count the chats of %s: %w", user, err)
	}
	refuse := func(reason Reason, why string) (string, error) {
		g.count(what, reason)
		g.log.Info().Str("mxid", string(user)).Str("muc", muc.String()).Str("reason", string(reason)).Msg("Refused a join past the user's budget")
		return why, nil
	}
	if in >= g.limits.MaxRoomsPerUser {
		return refuse(ReasonRoomBudget, fmt.Sprintf("their puppet is in %d chats, as many as this bridge lets one user be in (groups.max_rooms_per_user): leave one first", in))
	}
	rate := perHour(g.limits.JoinsPerHour)
	chat := muc.Bare().String()
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if at, ok := g.granted[user][chat]; ok && now.Sub(at) < time.Hour {
		if !byBot {
			delete(g.granted[user], chat)
		}
		return "", nil
	}
	b := g.joins[user]
	if b == nil {
		full := rate.full(now)
		b = &full
		g.joins[user] = b
	}
	if !rate.take(b, now, 1) {
		return refuse(ReasonJoinBudget, fmt.Sprintf("they started %d joins of chats within the hour, as many as this bridge lets one user start (groups.joins_per_user_per_hour): try again later", g.limits.JoinsPerHour))
	}
	if byBot {
		// The member's join that follows is paid for.
		if g.granted[user] == nil {
			g.granted[user] = map[string]time.Time{}
		}
		for c, at := range g.granted[user] {
			if now.Sub(at) >= time.Hour {
				delete(g.granted[user], c)
			}
		}
		g.granted[user][chat] = now
	}
	return "", nil
}

// mucRoom is what the bridge knows of a chat in this run, from the
// presences it sent and received.
type mucRoom struct {
	jid    jid.JID
	portal id.RoomID
	// nicks are the nicks of the Matrix members' puppets, asked or given;
	// joined, those the room said are in (status 110).
	nicks  map[id.UserID]string
	joined map[id.UserID]bool
	// told is the XEP-0153 photo hash each puppet's presence last gave
	// the room in this run ("" none), absent where none said any or its
	// profile changed before the room took the join (puppetPhoto).
	told map[id.UserID]string
	// own are the occupant-ids of the puppets (XEP-0421).
	own map[string]bool
	// moderators are the members the bridge gave the power to moderate
	// in the portal in this run, as their puppets' role is (moderation.go).
	moderators map[id.UserID]bool
	// nameAsked: the chat's name was asked in this run; name is what it
	// answered last, "" if nothing yet (roomname.go); infoPending: a
	// question of it is queued and not yet asked (configChanged).
	nameAsked, infoPending bool
	name                   string
	// heard is when each puppet last had word from the room (selfPing);
	// dropped, when the room last dropped it (status 333, 332).
	heard, dropped map[id.UserID]time.Time
	// occupants are the others, by nick.
	occupants map[string]MemberID
	// realJIDs are the others' real bare JIDs, by nick, where the room's
	// presences to the listener give them (XEP-0045 §7.2.3, §7.2.4);
	// nonAnonymous: the room shows them to every occupant (status 100 in
	// a puppet's own presence, §7.2.3), anonymityKnown: the own presence
	// of the latest join said whether (occupantKey).
	realJIDs                     map[string]string
	nonAnonymous, anonymityKnown bool
	// waiting are the occupants who wait for it, by nick, with the photo
	// hash their presence carried (XEP-0153; nil: none said).
	waiting map[string]*string
	// subject is the room's subject as last seen (hasSubject: one was);
	// subjectIDs the ids of the subjects puppets sent, awaiting the
	// room's answer, with whose they are (roomstate.go).
	subject    string
	hasSubject bool
	subjectIDs map[string]id.UserID
	// topicBusy: a topic is on its way to the portal; topicNext is the
	// newest subject come meanwhile, which follows it.
	topicBusy bool
	topicNext *subjectArgs
	// admitted are the occupants made members in this run, in or gone:
	// what maxOccupants bounds. churn is the chat's budget of departures
	// and nick changes (roomChurn).
	admitted map[MemberID]bool
	churn    bucket
	// saidNoStanzaID: the log said in this run that the chat stamps no
	// stanza-ids (noStanzaID).
	saidNoStanzaID bool
}

func newGroups(c *core, r *receipts, b *bot, rel *relations) *groups {
	limits := c.cfg.Groups
	limits.MaxRoomsPerUser = cmp.Or(limits.MaxRoomsPerUser, DefaultGroupLimits.MaxRoomsPerUser)
	limits.JoinsPerHour = cmp.Or(limits.JoinsPerHour, DefaultGroupLimits.JoinsPerHour)
	g := &groups{core: c, receipts: r, bot: b, relations: rel, rooms: map[string]*mucRoom{}, named: map[id.UserID]string{},
		creating: make(chan struct{}, 1), aliasQueries: make(chan struct{}, maxAliasQueries),
		limits: limits, joins: map[id.UserID]*bucket{}, granted: map[id.UserID]map[string]time.Time{}}
	g.state = &chatState{g}
	g.moderation = &moderation{g}
	return g
}

// room is the state of the chat j (its portal's room), made if new.
func (g *groups) room(j jid.JID, portal id.RoomID) *mucRoom {
	now := g.now()
	key := j.Bare().String()
	r := g.rooms[key]
	if r == nil {
		r = &mucRoom{jid: j.Bare(), portal: portal, nicks: map[id.UserID]string{}, joined: map[id.UserID]bool{}, told: map[id.UserID]string{}, heard: map[id.UserID]time.Time{}, dropped: map[id.UserID]time.Time{},
			own: map[string]bool{}, moderators: map[id.UserID]bool{}, occupants: map[string]MemberID{}, realJIDs: map[string]string{}, waiting: map[string]*string{}, subjectIDs: map[string]id.UserID{},
			admitted: map[MemberID]bool{}, churn: roomChurn.full(now)}
		g.rooms[key] = r
	}
	return r
}

// listener is the puppet whose copy of what the room says is taken: the
// first in the room by ID, or of those asked to join if none is in yet.
func (r *mucRoom) listener() id.UserID {
	var first id.UserID
	for u := range r.joined {
		if first == "" || u < first {
			first = u
		}
	}
	if first != "" {
		return first
	}
	for u := range r.nicks {
		if first == "" || u < first {
			first = u
		}
	}
	return first
}

// nickOf is the nick mxid's puppet has, or asked for, in the chat muc,
// "" if none.
func (g *groups) nickOf(muc jid.JID, mxid id.UserID) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.rooms[muc.Bare().String()]; r != nil {
		return r.nicks[mxid]
	}
	return ""
}

// ownNick tells whether nick is one of the puppets'.
func (r *mucRoom) ownNick(nick string) bool {
	for _, n := range r.nicks {
		if n == nick {
			return true
		}
	}
	return false
}

// occupantKey is what the occupant nick of the chat r is known by (the
// key of their OccupantMember and ghost), and whether it stays theirs
// when they change nick, from the most to the least trustworthy:
//   - their XEP-0421 occupant-id, where the room gives one: stable
//     across nick changes and visits, one per real bare JID, which no
//     one else can take (§4, Business Rules);
//   - else, in a non-anonymous room, their real bare JID, which the
//     room shows every occupant (XEP-0045 §7.2.3): stable too, but
//     never in a semi-anonymous room, where only moderators see it
//     (§7.2.4), lest a puppet that is one show it to the whole portal;
//   - else their nick, which a nick change leaves behind and anyone may
//     take once they left.
//
// The caller holds g.mu.
func (r *mucRoom) occupantKey(nick, occupantID string) (key string, stable bool) {
	switch {
	case occupantID != "":
		return occupantID, true
	case r.nonAnonymous && r.realJIDs[nick] != "":
		return r.realJIDs[nick], true
	}
	return nick, false
}

// groupArgs is the payload of the jobs of a group portal.
type groupArgs struct {
	Room  id.RoomID `json:"room,omitempty"`
	MUC   string    `json:"muc"`
	MXID  id.UserID `json:"mxid,omitempty"`
	Nick  string    `json:"nick,omitempty"`
	Reply id.RoomID `json:"reply,omitempty"` // where a command came from
	// Password is the room's password the bot's join was told (XEP-0045
	// §7.2.6), on its way to the member's row (SetJoin).
	Password string `json:"password,omitempty"`
	// Member is the occupant a message to Matrix is from.
	Member MemberID `json:"member,omitempty"`
	// Fetch is the file of the message to fetch first (media.go), File
	// the file fetched, to post.
	Fetch *mediaFetchArgs `json:"fetch,omitempty"`
	File  *MediaFile      `json:"file,omitempty"`
	// Rejoin: a join at a connection of the component (rejoin), which
	// asks the chat for what the bridge missed.
	Rejoin bool `json:"rejoin,omitempty"`
	// Reason is why the room removed MXID's puppet.
	Reason string `json:"reason,omitempty"`
	// Moderator: MXID's puppet is a moderator of the chat (moderation.go).
	Moderator bool `json:"moderator,omitempty"`
	// History: a message of the room's history, posted at the time the
	// room gave it (historyTime).
	History bool `json:"history,omitempty"`
}

func groupJob(kind JobKind, lane id.RoomID, row int64, args groupArgs) *Job {
	payload, _ := json.Marshal(args) // strings only
	return newJob(kind, about{room: lane}, row, payload)
}

// joinCommand is the bot's `join room@service [nick] [password]`: the
// user's portal of the chat, opened if new, and the user invited into it;
// their puppet joins it as nick (else their display name), with the
// room's password if it has one (XEP-0045 §7.2.6).
func (b *bot) joinCommand(ctx context.Context, room id.RoomID, user id.UserID, args []string) ([]*Job, error) {
	if len(args) == 0 {
		return []*Job{b.reply(room, "Say which chat: `join room@conference.example.org [nick] [password]`.")}, nil
	}
	arg := args[0]
	muc, err := jid.Parse(arg)
	switch {
	case len(args) > 3:
		return []*Job{b.reply(room, "Say `join room@service`, and after it a nick and a password if you like: a nick is one word here.")}, nil
	case err != nil || muc.Localpart() == "" || muc.Resourcepart() != "":
		return []*Job{b.reply(room, fmt.Sprintf("`%s` is not the address of an XMPP chat room: write it as `room@service`, e.g. `lounge@conference.example.org`.", arg))}, nil
	case muc.Domainpart() == b.cfg.Identities.ComponentDomain:
		return []*Job{b.reply(room, fmt.Sprintf("`%s` is on this bridge, not an XMPP chat room.", arg))}, nil
	case b.blocked(muc):
		return []*Job{b.reply(room, fmt.Sprintf("This bridge does not talk to `%s`.", muc.Domainpart()))}, nil
	}
	join := groupArgs{MUC: muc.String(), MXID: user, Reply: room}
	if len(args) > 1 {
		// The nick is the occupant's resource in the room (§7.2.1): one
		// the room's address cannot take is refused here, not in the room.
		if _, err := muc.WithResource(args[1]); err != nil {
			return []*Job{b.reply(room, fmt.Sprintf("`%s` cannot be a nick in a chat room.", args[1]))}, nil
		}
		join.Nick = args[1]
	}
	if len(args) > 2 {
		if len(args[2]) > maxMUCPassword {
			return []*Job{b.reply(room, fmt.Sprintf("That password is longer than the %d bytes the bridge keeps.", maxMUCPassword))}, nil
		}
		join.Password = args[2]
	}
	// A chat the user is not in yet spends their budget (joinBudget):
	// a join may make a room, and puts the puppet in one more chat.
	p, err := b.store.GroupPortal(ctx, muc)
	if err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("look up the portal of %s: %w", muc, err)
	}
	if err != nil || p.Member(MatrixMember(user)) == nil {
		why, err := b.messages.groups.joinBudget(ctx, "bot_join", user, muc, true)
		if err != nil {
			return nil, err
		} else if why != "" {
			return []*Job{b.reply(room, fmt.Sprintf("%s's puppet does not join `%s`: %s.", user, muc, why))}, nil
		}
	}
	// In the chat's lane (its address stands for the room it may not
	// have yet): its room is created once, however many ask.
	return []*Job{groupJob(JobOpenGroup, id.RoomID(muc.String()), 0, join)}, nil
}

// maxMUCPassword bounds a room's password the bridge keeps for a user.
const maxMUCPassword = 256

var _ = register(JobOpenGroup, jobKind{side: SideMatrix, order: byRoom, payload: groupArgs{},
	run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args groupArgs) error {
		return b.groups.openGroup(ctx, args)
	})})

// openGroup runs a JobOpenGroup: the chat's room, created by the bot if
// there is none, the user invited, and the bot says where. The user's
// puppet joins the chat when the user joins the room (memberJoined).
func (g *groups) openGroup(ctx context.Context, args groupArgs) error {
	muc, err := payloadJID(args.MUC)
	if err != nil {
		return err
	}
	if err := g.unreachable(args.MXID, muc); err != nil {
		return err
	}
	unlock, err := g.lockCreation(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	p, err := g.store.GroupPortal(ctx, muc)
	what := "Opened"
	if err == nil {
		what = "Invited you to"
		if err := g.matrix.Invite(ctx, p.RoomID, args.MXID); err != nil {
			return fmt.Errorf("invite %s into %s: %w", args.MXID, p.RoomID, err)
		}
	} else if isNotFound(err) {
		if p, err = g.newGroupPortal(ctx, muc, args.MXID, ""); err != nil {
			return err
		}
	} else {
		return fmt.Errorf("look up the portal of %s: %w", muc, err)
	}
	jobs := []*Job{g.bot.reply(args.Reply, fmt.Sprintf("%s the chat `%s`: %s (accept the invite, and your puppet joins it)", what, muc, roomLink(p.RoomID)))}
	if args.Nick != "" || args.Password != "" || p.Member(MatrixMember(args.MXID)) != nil {
		// Kept on the member's row for every join of the puppet, the
		// rejoins after a restart too; one already in the room joins
		// again with them now (a new nick is a nick change, §7.6).
		if err := g.store.SetJoin(ctx, p.RoomID, Member{ID: MatrixMember(args.MXID), Nick: args.Nick, Password: args.Password}); err != nil {
			return fmt.Errorf("keep how %s joins %s: %w", args.MXID, muc, err)
		}
		if p.Member(MatrixMember(args.MXID)) != nil {
			jobs = append(jobs, groupJob(JobJoinMUC, p.RoomID, 0, groupArgs{Room: p.RoomID, MUC: muc.String(), MXID: args.MXID}))
		}
	}
	if err := g.store.AddJobs(ctx, jobs...); err != nil {
		return fmt.Errorf("answer the join of %s: %w", muc, err)
	}
	g.queue(jobs...)
	return nil
}

// lockCreation waits, as long as ctx lets it, until no other group
// portal is being made, and holds that until unlock: a chat has one room
// however many ask for it at once (the bot's join, in the chat's lane,
// and an alias asked for, on the homeserver's request), and the bridge
// makes one room at a time whoever asks.
func (g *groups) lockCreation(ctx context.Context) (unlock func(), err error) {
	select {
	case g.creating <- struct{}{}:
		return func() { <-g.creating }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait to make a group portal: %w", ctx.Err())
	}
}

// newGroupPortal makes the room of the chat muc and its portal: the one
// place a group portal is made, for the bot's join (invite: the user who
// asked, invited) or for its alias asked for (alias: the room has it, and
// anyone who has it may join, as anyone who has the chat's address may
// join the chat, XEP-0045 §7.2). The bot creates the room and is the
// portal's first member: it keeps the portal when the others have left.
// The caller holds lockCreation and found no portal of muc.
func (g *groups) newGroupPortal(ctx context.Context, muc jid.JID, invite id.UserID, alias id.RoomAlias) (*Portal, error) {
	room, err := g.matrix.CreateGroup(ctx, GroupRoom{Name: muc.Localpart(), Topic: "XMPP chat " + muc.String(), Invite: invite, Alias: alias})
	if err != nil {
		return nil, fmt.Errorf("create the room of %s: %w", muc, err)
	}
	p := &Portal{RoomID: room, Kind: PortalGroup, JID: muc.Bare(), CreatedAt: g.now(),
		Members: []Member{{ID: MatrixMember(g.cfg.Identities.Bot())}}}
	if err := g.store.PutPortal(ctx, p); err != nil {
		return nil, fmt.Errorf("store the portal of %s: %w", muc, err)
	}
	g.log.Info().Str("room", string(room)).Str("muc", muc.String()).Str("mxid", string(invite)).Str("alias", string(alias)).Msg("Created group portal")
	return p, nil
}

// memberFromMatrix takes a Matrix user's membership in a group portal:
// one who joins the room joins the chat as their puppet, one who leaves
// it (or is kicked or banned) leaves the chat.
func (g *groups) memberFromMatrix(ctx context.Context, portal *Portal, evt MatrixEvent) ([]*Job, error) {
	user := evt.Target
	if user == g.cfg.Identities.Bot() {
		return nil, nil
	}
	member := MatrixMember(user)
	switch evt.Membership {
	case MembershipJoin:
		if !g.cfg.Permissions.Allowed(user) {
			// A portal with an alias is public: anyone who has its alias
			// may join. One not allowed to use the bridge does not stay
			// to read what the chat says (the bot removes them, saying
			// why); their puppet never joins the chat.
			g.count("group_member", ReasonNotPermitted)
			return []*Job{groupJob(JobGroupKick, portal.RoomID, 0, groupArgs{Room: portal.RoomID, MUC: portal.JID.String(), MXID: user,
				Reason: "You are not allowed to use this bridge."})}, nil
		}
		if portal.Member(member) == nil {
			why, err := g.joinBudget(ctx, "group_member", user, portal.JID, false)
			if err != nil {
				return nil, err
			} else if why != "" {
				// In the room, not in the chat: what they say stays here.
				return []*Job{g.bot.reply(portal.RoomID, fmt.Sprintf("%s's puppet does not join `%s`: %s. What they say in this room does not reach the chat; leaving the room and joining it again tries anew.", user, portal.JID, why))}, nil
			}
			p := &Portal{RoomID: portal.RoomID, Kind: PortalGroup, JID: portal.JID, Members: []Member{{ID: member}}}
			if err := g.store.PutPortal(ctx, p); err != nil {
				return nil, fmt.Errorf("add %s to the portal of %s: %w", user, portal.JID, err)
			}
		}
		g.count("group_member", "joined")
		// The profile the join gives, whose avatar the puppet shows the
		// chat (puppetPhoto) and answers occupants' vCard queries with.
		jobs, err := g.people.profileChanged(ctx, evt)
		if err != nil {
			return nil, err
		}
		return append(jobs, groupJob(JobJoinMUC, portal.RoomID, 0, groupArgs{Room: portal.RoomID, MUC: portal.JID.String(), MXID: user})), nil
	case "leave", "ban":
		if portal.Member(member) == nil {
			return nil, nil
		}
		if err := g.store.RemoveMember(ctx, portal.RoomID, member); err != nil {
			return nil, err
		}
		g.count("group_member", "left")
		return []*Job{groupJob(JobLeaveMUC, portal.RoomID, 0, groupArgs{Room: portal.RoomID, MUC: portal.JID.String(), MXID: user})}, nil
	}
	return nil, nil
}

// A puppet's joins and leaves go in the XMPP side's one line, with the
// messages: a message a user sends as they join follows the join.
var (
	_ = register(JobJoinMUC, jobKind{side: SideXMPP, order: bySide, payload: groupArgs{},
		run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args groupArgs) error {
			return b.groups.joinMUC(ctx, args)
		})})
	_ = register(JobLeaveMUC, jobKind{side: SideXMPP, order: bySide, payload: groupArgs{},
		run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args groupArgs) error {
			return b.groups.leaveMUC(ctx, args)
		})})
)

// joinMUC has the user's puppet join the chat (XEP-0045 §7.2.1) with no
// history (§7.2.15: the bridge carries what is said from now on), as the
// nick args names or else the user's display name.
func (g *groups) joinMUC(ctx context.Context, args groupArgs) error {
	muc, from, err := g.puppetTo(args.MXID, args.MUC)
	if err != nil {
		return err
	}
	// How the user asked to join (the bot's join): their nick, unless a
	// nick in use is being tried again, and the room's password.
	var asked Member
	if p, err := g.store.PortalByRoom(ctx, args.Room); err == nil {
		if m := p.Member(MatrixMember(args.MXID)); m != nil {
			asked = *m
		}
	} else if !isNotFound(err) {
		return fmt.Errorf("look up how %s joins %s: %w", args.MXID, muc, err)
	}
	nick := cmp.Or(args.Nick, asked.Nick)
	if nick == "" {
		if name, err := g.matrix.DisplayName(ctx, args.MXID); err == nil {
			nick = strings.TrimSpace(name)
		}
	}
	if nick == "" {
		nick = args.MXID.Localpart()
	}
	to, err := muc.WithResource(nick)
	if err != nil {
		// A name the room cannot take as a nick (RFC 7622 §3.4): the
		// localpart always can.
		if to, err = muc.WithResource(args.MXID.Localpart()); err != nil {
			return fmt.Errorf("%w: no nick for %s: %w", ErrPermanent, args.MXID, err)
		}
		nick = args.MXID.Localpart()
	}
	// XEP-0153 §3.1: the hash of the member's avatar, as the puppet's
	// presence to its subscribers has it, so that occupants' clients
	// show it (and ask the puppet's vCard through the room).
	join := &OutPresence{From: from, To: to, JoinMUC: true, MUCPassword: asked.Password, Caps: true}
	if err := g.people.withPhoto(ctx, args.MXID, join); err != nil {
		return err
	}
	g.mu.Lock()
	r := g.room(muc, args.Room)
	r.nicks[args.MXID] = nick
	r.anonymityKnown = false // its own presence tells again (occupantKey)
	if join.Photo != nil {
		r.told[args.MXID] = *join.Photo
	} else {
		delete(r.told, args.MXID)
	}
	g.mu.Unlock()
	if args.Rejoin {
		if join.HistorySince, err = g.missedSince(ctx, args.Room); err != nil {
			return err
		}
	}
	if err := g.xmpp.SendPresence(ctx, join); err != nil {
		return fmt.Errorf("join %s as %s: %w", muc, args.MXID, err)
	}
	g.count("muc_join", "sent")
	return nil
}

// rejoinAfter is how often, at most, a puppet the room dropped (status
// 333, 332) joins again at once.
const rejoinAfter = time.Minute

// historyOverlap is how far before the newest message it has the bridge
// asks a chat for history on a rejoin: the chat's clock and the bridge's
// may differ, and what comes twice is known by its stanza-id.
const historyOverlap = 5 * time.Minute

// missedSince is when what the bridge missed of the portal room's chat
// begins: its newest message (less historyOverlap), or the portal's
// making if it has none. A rejoin asks the chat for what was said since
// (XEP-0045 §7.2.15 "since"): the messages said while the bridge or its
// link was down, which a join asking for none would lose.
func (g *groups) missedSince(ctx context.Context, room id.RoomID) (time.Time, error) {
	last, err := g.store.LastInRoom(ctx, room)
	if isNotFound(err) {
		p, err := g.store.PortalByRoom(ctx, room)
		if err != nil {
			return time.Time{}, fmt.Errorf("look up the portal %s: %w", room, err)
		}
		return p.CreatedAt, nil
	} else if err != nil {
		return time.Time{}, err
	}
	return last.Add(-historyOverlap), nil
}

// puppetTo is the chat a job names and the address mxid's puppet speaks
// to it from, if a send between them may still go (mayReach).
func (g *groups) puppetTo(mxid id.UserID, chat string) (muc, from jid.JID, err error) {
	if muc, err = payloadJID(chat); err != nil {
		return muc, from, err
	}
	if err := g.unreachable(mxid, muc); err != nil {
		return muc, from, err
	}
	if from, err = g.cfg.Identities.PuppetFrom(mxid); err != nil {
		return muc, from, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	return muc, from, nil
}

// leaveMUC has the user's puppet leave the chat (XEP-0045 §7.14).
func (g *groups) leaveMUC(ctx context.Context, args groupArgs) error {
	muc, err := payloadJID(args.MUC)
	if err != nil {
		return err
	}
	from, err := g.cfg.Identities.PuppetFrom(args.MXID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	g.mu.Lock()
	r := g.room(muc, args.Room)
	nick := r.nicks[args.MXID]
	delete(r.nicks, args.MXID)
	delete(r.joined, args.MXID)
	g.mu.Unlock()
	if nick == "" {
		return nil // not in it in this run
	}
	to, err := muc.WithResource(nick)
	if err != nil {
		return nil
	}
	return g.xmpp.SendPresence(ctx, &OutPresence{From: from, To: to, Type: PresenceUnavailable})
}

// Rejoin has every Matrix member's puppet join its chats again: at every
// connection of the XMPP stream, since a room forgets occupants whose
// server went away, and the bridge's own state of the rooms is of one run.
func (b *Bridge) Rejoin(ctx context.Context) error { return b.groups.rejoin(ctx) }

func (g *groups) rejoin(ctx context.Context) error {
	ps, err := g.store.GroupPortals(ctx)
	if err != nil {
		return fmt.Errorf("list the group portals to rejoin: %w", err)
	}
	var jobs []*Job
	for _, p := range ps {
		for _, m := range p.Members {
			if u, ok := m.ID.MXID(); ok && u != g.cfg.Identities.Bot() && g.mayReach(u, p.JID) == "" {
				jobs = append(jobs, groupJob(JobJoinMUC, p.RoomID, 0, groupArgs{Room: p.RoomID, MUC: p.JID.String(), MXID: u, Rejoin: true}))
			}
		}
	}
	if err := g.addJobs(ctx, jobs); err != nil {
		return fmt.Errorf("rejoin the puppets: %w", err)
	}
	return nil
}

// known is the state of the chat j if a puppet was sent to it in this
// run, else nil.
func (g *groups) known(j jid.JID) *mucRoom {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rooms[j.Bare().String()]
}

// presenceFromMUC takes a presence of the chat r to the puppet of mxid:
// the puppet's own (status 110: in; an error: the join refused), or
// another occupant's, whose ghost joins or leaves the room.
func (g *groups) presenceFromMUC(ctx context.Context, log zerolog.Logger, r *mucRoom, mxid id.UserID, p *XMPPPresence) error {
	nick := p.From.Resourcepart()
	g.mu.Lock()
	r.heard[mxid] = g.now()
	mine := r.nicks[mxid] == nick && nick != ""
	if p.MUC.Has(110) || mine && p.Type != PresenceError {
		// XEP-0045 §7.2.2: the occupant's own presence, last of the join.
		if p.Type == PresenceUnavailable {
			delete(r.joined, mxid)
			if p.MUC.Has(307) || p.MUC.Has(301) {
				// §9.1, §9.2: the room removed the puppet.
				delete(r.nicks, mxid)
				g.mu.Unlock()
				return g.state.puppetRemoved(ctx, r, mxid, p.MUC)
			}
			if p.MUC.Has(333) || p.MUC.Has(332) {
				// Status 333: the room dropped the puppet over an error;
				// 332: its service is shutting down. Neither is the
				// member's leaving: join again, at once, but not more
				// than once every rejoinAfter (a room that drops it again
				// at once is left to the self-ping, selfping.go).
				now := g.now()
				again := now.Sub(r.dropped[mxid]) < rejoinAfter
				if !again {
					r.dropped[mxid] = now
				}
				g.mu.Unlock()
				if again {
					g.count("muc_presence", "dropped_again")
					return nil
				}
				g.count("muc_presence", "dropped")
				return g.queueStored(ctx, groupJob(JobJoinMUC, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), MXID: mxid, Rejoin: true}))
			}
		} else {
			_, told := r.told[mxid]
			photo := !r.joined[mxid] && !told
			r.joined[mxid] = true
			r.nicks[mxid] = nick
			if p.MUC != nil && p.MUC.OccupantID != "" {
				r.own[p.MUC.OccupantID] = true
			}
			waiting := r.learnAnonymity(p.MUC)
			var jobs []*Job
			for _, job := range []*Job{g.moderation.moderatorJob(r, mxid, p.MUC), g.state.nameOnce(r, groupArgs{Room: r.portal, MUC: r.jid.String(), MXID: mxid}),
				g.state.photoAfterJoin(r, mxid, photo), g.state.instantJob(r, mxid, p.MUC)} {
				if job != nil {
					jobs = append(jobs, job)
				}
			}
			listener := r.listener()
			if len(jobs) > 0 || len(waiting) > 0 {
				g.mu.Unlock()
				g.count("muc_presence", "self")
				for _, o := range waiting {
					if err := g.admit(ctx, log, r, listener, o.nick, o.member, o.photo); err != nil {
						return err
					}
				}
				if len(jobs) == 0 {
					return nil
				}
				return g.queueStored(ctx, jobs...)
			}
		}
		g.mu.Unlock()
		g.count("muc_presence", "self")
		return nil
	}
	if p.Type == PresenceError {
		delete(r.nicks, mxid)
		g.mu.Unlock()
		return g.joinRefused(ctx, r, mxid, nick, p.Error)
	}
	if nick == "" {
		g.mu.Unlock()
		// The room's own presence, from its bare JID: no occupant's.
		// ejabberd sends each joining occupant one (with the room's
		// entity caps, XEP-0115) before the occupants', and an
		// unavailable one when the occupant leaves.
		g.count("muc_presence", ReasonRoomItself)
		return nil
	}
	listener := r.listener()
	own := r.ownNick(nick) || p.MUC != nil && r.own[p.MUC.OccupantID]
	g.mu.Unlock()
	if mxid != listener {
		g.count("muc_presence", ReasonNotListener)
		return nil
	}
	if own {
		g.count("muc_presence", ReasonOwnReflection)
		return nil
	}
	if p.MUC == nil {
		p.MUC = &MUCPresence{}
	}
	g.mu.Lock()
	if p.Type != PresenceUnavailable && p.MUC.RealJID.Domainpart() != "" && (r.realJIDs[nick] != "" || len(r.realJIDs) < maxOccupants) {
		r.realJIDs[nick] = p.MUC.RealJID.Bare().String()
	}
	if p.Type == PresenceUnavailable {
		delete(r.waiting, nick)
	}
	key, stable := r.occupantKey(nick, p.MUC.OccupantID)
	// §7.2.3: a join receives the others' presences first and its own,
	// which says whether the room is non-anonymous, last; an occupant
	// who could be known by real JID waits for it (learnAnonymity).
	waits := !stable && !r.anonymityKnown && r.realJIDs[nick] != ""
	g.mu.Unlock()
	member := OccupantMember(r.jid, key)
	if _, err := g.cfg.Identities.OccupantGhost(r.jid, key); err != nil {
		log.Debug().Err(err).Msg("Ignored an occupant the bridge cannot name")
		g.count("muc_presence", "bad_occupant")
		return nil
	}
	if p.Type == PresenceUnavailable {
		return g.state.occupantLeft(ctx, r, nick, p)
	}
	if waits {
		g.mu.Lock()
		r.waiting[nick] = p.Photo
		g.mu.Unlock()
		g.count("muc_presence", "waiting")
		return nil
	}
	return g.admit(ctx, log, r, mxid, nick, member, p.Photo)
}

// admit makes the occupant nick of the chat r, known as member, a member
// of the portal, their ghost named after the nick in the room, if new;
// photo, the XEP-0153 hash their presence to mxid's puppet carried (nil:
// it said nothing of one), their ghost's avatar.
func (g *groups) admit(ctx context.Context, log zerolog.Logger, r *mucRoom, mxid id.UserID, nick string, member MemberID, photo *string) error {
	isNew, err := g.occupant(ctx, r, nick, member)
	if err != nil {
		return err
	}
	var jobs []*Job
	if isNew {
		// A new occupant: their ghost, named after their nick, in the room.
		g.count("muc_presence", "occupant")
		jobs = append(jobs, groupJob(JobGroupGhost, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), Nick: nick, Member: member}))
	}
	g.mu.Lock()
	in := r.occupants[nick] == member // not past maxOccupants
	g.mu.Unlock()
	if in && photo != nil {
		// XEP-0153 §3.2: another photo than the ghost's is fetched.
		job, err := g.people.occupantPhoto(ctx, log, mxid, r.jid, nick, member, *photo)
		if err != nil {
			return err
		}
		if job != nil {
			jobs = append(jobs, job)
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	return g.queueStored(ctx, jobs...)
}

// waiter is an occupant who waited to know whether the room is
// non-anonymous (learnAnonymity): their nick, their member now, the
// photo hash their presence carried.
type waiter struct {
	nick   string
	member MemberID
	photo  *string
}

// learnAnonymity takes x, the own presence of a puppet's join: whether
// the room is non-anonymous (status 100, XEP-0045 §7.2.3), and the
// occupants who waited to know it. The caller holds g.mu.
func (r *mucRoom) learnAnonymity(x *MUCPresence) []waiter {
	if r.anonymityKnown {
		return nil
	}
	r.anonymityKnown, r.nonAnonymous = true, x.Has(100)
	var waiting []waiter
	for nick, photo := range r.waiting {
		if _, seen := r.occupants[nick]; !seen {
			key, _ := r.occupantKey(nick, "")
			waiting = append(waiting, waiter{nick, OccupantMember(r.jid, key), photo})
		}
	}
	clear(r.waiting)
	return waiting
}

// occupant notes that nick in the chat r is member, a member of the
// portal from now on (with marks of their own), and tells whether that is
// new in this run. A message or a marker may come before the presence
// that shows the occupant (the room's order is per occupant), so both
// paths come here.
func (g *groups) occupant(ctx context.Context, r *mucRoom, nick string, member MemberID) (bool, error) {
	g.mu.Lock()
	seen := r.occupants[nick] == member
	// Counted by distinct members, not by who is in: occupants who come
	// and go under new nicks each cost a new ghost.
	full := len(r.admitted) >= maxOccupants && !r.admitted[member]
	g.mu.Unlock()
	if seen {
		return false, nil
	}
	if full {
		// A room that claims more occupants than any real one has (a
		// broken or hostile service) makes no more ghosts or members:
		// each costs a write and a Matrix account.
		g.count("muc_presence", "too_many_occupants")
		return false, nil
	}
	if err := g.store.PutPortal(ctx, &Portal{RoomID: r.portal, Kind: PortalGroup, JID: r.jid, Members: []Member{{ID: member}}}); err != nil {
		return false, fmt.Errorf("add occupant %s to the portal of %s: %w", nick, r.jid, err)
	}
	g.mu.Lock()
	r.occupants[nick] = member
	r.admitted[member] = true
	g.mu.Unlock()
	return true, nil
}

// JobGroupGhost brings an occupant's ghost into the room, named after
// their nick.
const JobGroupGhost JobKind = "matrix.group_ghost"

var _ = register(JobGroupGhost, jobKind{side: SideMatrix, order: byRoom, payload: groupArgs{},
	run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args groupArgs) error {
		ghost, err := b.groups.ghostOf(args.Member)
		if err != nil {
			return err
		}
		if err := b.groups.nameGhost(ctx, ghost, args.Nick); err != nil {
			return err
		}
		if err := b.matrix.Invite(ctx, args.Room, ghost); err != nil {
			return err
		}
		return b.matrix.Join(ctx, args.Room, ghost)
	})})

// ghostOf is the ghost of an occupant member.
func (g *groups) ghostOf(m MemberID) (id.UserID, error) {
	room, key, ok := m.Occupant()
	if !ok {
		return "", fmt.Errorf("%w: %q is no occupant", ErrPermanent, m)
	}
	ghost, err := g.cfg.Identities.OccupantGhost(room, key)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	return ghost, nil
}

// nameGhost names an occupant's ghost after their nick, once a run.
func (g *groups) nameGhost(ctx context.Context, ghost id.UserID, nick string) error {
	g.mu.Lock()
	done := g.named[ghost] == nick
	g.mu.Unlock()
	if done || nick == "" {
		return nil
	}
	if err := g.matrix.SetGhostName(ctx, ghost, nick); err != nil {
		return err
	}
	g.mu.Lock()
	g.named[ghost] = nick
	g.mu.Unlock()
	return nil
}

func (g *groups) queueStored(ctx context.Context, jobs ...*Job) error {
	if err := g.store.AddJobs(ctx, jobs...); err != nil {
		return fmt.Errorf("queue %s: %w", jobs[0].Kind, err)
	}
	g.queue(jobs...)
	return nil
}

// joinRefused tells the user why their puppet is not in the chat, in the
// portal's room, from the bot, in a sentence for each of XEP-0045's
// errors of a join: a password (§7.2.7, <not-authorized/>), a
// members-only room (§7.2.8, <registration-required/>), a ban (§7.2.9,
// <forbidden/>), a nick in use (§7.2.10, <conflict/>: tried once more
// with a suffix first), a full room (§7.2.11, <service-unavailable/>), a
// locked or missing room (§7.2.12, §7.2.13, <item-not-found/>). Another
// condition is named as the room gave it, bounded, and counted as other.
func (g *groups) joinRefused(ctx context.Context, r *mucRoom, mxid id.UserID, nick string, e *StanzaError) error {
	cond := conditionOf(e)
	if cond == "conflict" && !strings.HasSuffix(nick, " (Matrix)") {
		g.count("muc_join", "refused_conflict")
		return g.queueStored(ctx, groupJob(JobJoinMUC, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), MXID: mxid, Nick: nick + " (Matrix)"}))
	}
	puppet := mxid.String()
	if j, err := g.cfg.Identities.PuppetFrom(mxid); err == nil {
		puppet = j.Bare().String()
	}
	why, known := map[string]string{
		"conflict":                "the nick is in use",
		"registration-required":   "the chat is members-only: an admin of it can make `" + puppet + "` a member",
		"forbidden":               "the chat has banned `" + puppet + "`",
		"not-authorized":          "the chat needs a password, or another one",
		"service-unavailable":     "the chat is full",
		"item-not-found":          "the chat does not exist, or is locked until its owner configures it",
		"remote-server-not-found": "the chat's server cannot be reached",
	}[cond]
	if !known {
		why = "the chat answered " + clip(cond, 64)
		cond = "other"
	}
	g.count("muc_join", Reason("refused_"+cond))
	text := fmt.Sprintf("%s could not join `%s` as `%s`: %s.", mxid, r.jid, nick, why)
	if cond == "not-authorized" {
		// §7.2.6: the password goes with the join; the bot's join keeps it.
		word := nick
		if strings.ContainsAny(word, " \t") || word == "" {
			word = "NICK" // the bot's join takes a nick of one word
		}
		text += fmt.Sprintf(" Tell me `join %s %s PASSWORD` and your puppet joins with it.", r.jid, word)
	}
	return g.queueStored(ctx, g.bot.reply(r.portal, text))
}

// messageFromMUC takes a groupchat message of the chat to the puppet of
// mxid: an occupant's message to Matrix as their ghost, a puppet's own
// come back (the room took it: its stanza-id names it from now on), or
// an occupant's displayed marker.
func (g *groups) messageFromMUC(ctx context.Context, log zerolog.Logger, mxid id.UserID, m *XMPPMessage) error {
	r := g.known(m.From)
	if r == nil {
		// A room no puppet was sent to in this run: stray, or from before
		// a restart whose rejoin has not been answered yet.
		g.count("xmpp_message", ReasonGroupchat)
		return nil
	}
	nick := m.From.Resourcepart()
	g.mu.Lock()
	r.heard[mxid] = g.now()
	listener := r.listener()
	own := r.ownNick(nick) || m.OccupantID != "" && r.own[m.OccupantID]
	g.mu.Unlock()
	switch {
	case mxid != listener:
		g.count("xmpp_message", ReasonNotListener)
		return nil
	case m.Moderation != nil:
		return g.moderation.moderationFromMUC(ctx, log, r, nick, m) // moderation.go
	case m.HasSubject && !m.HasBody:
		// §7.2.16, §8.1: the room's subject, from the room itself or
		// the occupant who set it.
		return g.state.subjectFromMUC(ctx, log, r, m, own)
	case nick == "" && slices.Contains(m.MUCStatus, 104):
		// §10.2.1: the room's configuration changed, its name may have.
		return g.state.configChanged(ctx, log, r, mxid)
	case nick == "":
		g.count("xmpp_message", ReasonRoomItself)
		return nil
	case own:
		return g.reflection(ctx, log, r, m)
	}
	g.mu.Lock()
	key, _ := r.occupantKey(nick, m.OccupantID)
	g.mu.Unlock()
	member := OccupantMember(r.jid, key)
	if _, err := g.occupant(ctx, r, nick, member); err != nil {
		return err
	}
	receiptsIn(m, func(kind *xmppReceiptKind, xid string) {
		if kind == kindMarkerDisplayed { // the only receipt of a groupchat (XEP-0333 §3)
			g.receipts.markerInGroup(ctx, log, r.jid, member, xid)
		}
	})
	ts, history := g.historyTime(log, m)
	job := func() *Job {
		return groupJob(JobGroupToMatrix, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), Nick: nick, Member: member, History: history})
	}
	if m.ChatState != "" {
		g.state.typingInMUC(r, m.From, member, m.ChatState)
	}
	rows, done, err := g.relations.relationFromMUC(ctx, log, r.portal, r.jid, member, m)
	if err != nil {
		return err
	} else if done {
		for _, row := range rows {
			if err := g.addMessage(ctx, row, job(), "xmpp_"+string(row.RelKind)); err != nil {
				return err
			}
		}
		return nil
	}
	if !m.HasBody {
		return nil
	}
	xid := m.StanzaID // XEP-0359 §3: what the room names it by
	if xid == "" {
		xid = m.ID
	}
	msg := &Message{
		RoomID: r.portal, XMPPID: xid, OriginID: m.OriginID, StanzaID: m.StanzaID,
		PeerJID: r.jid, PeerResource: nick, Direction: FromXMPP, Sender: member,
		Body: m.Body, TS: ts,
		// XEP-0184 §5.3 and XEP-0022 have no place in a groupchat: only
		// the displayed marker, which the room's members all see.
		Requests: Requests{Markable: m.Requests.Markable},
	}
	send := job()
	if fetch, ok := g.toFetch(log, m, string(member)); ok {
		send = groupJob(JobGroupMediaFetch, r.portal, 0, groupArgs{Room: r.portal, MUC: r.jid.String(), Nick: nick, Member: member, Fetch: &fetch})
	}
	return g.addMessage(ctx, msg, send, "xmpp_message")
}

// historyTime is when the message m of a chat was said: the stamp of the
// room's own XEP-0203 <delay/> on the history a join receives (XEP-0045
// §7.2.15; xmppside keeps only a delay from the room itself), and true;
// else, or for a stamp that does not parse, is before 1970 or is later
// than now (a
// room's clock, or a room, that cannot be believed), the time it came,
// and false, counted muc_history / bad_stamp or future_stamp.
func (g *groups) historyTime(log zerolog.Logger, m *XMPPMessage) (time.Time, bool) {
	now := g.now()
	switch {
	case m.Delay == nil:
		return now, false
	case m.Delay.Bad || m.Delay.Stamp.Before(time.UnixMilli(0)):
		// Matrix's origin_server_ts counts milliseconds from 1970.
		g.count("muc_history", "bad_stamp")
		log.Debug().Msg("Ignored a room's delay whose stamp is no date and time")
		return now, false
	case m.Delay.Stamp.After(now):
		g.count("muc_history", "future_stamp")
		log.Debug().Time("stamp", m.Delay.Stamp).Msg("Ignored a room's delay stamped in the future")
		return now, false
	}
	g.count("muc_history", "stamped")
	return m.Delay.Stamp, true
}

// addMessage stores msg, of a chat, with job, its send to Matrix, and
// counts it as what: "group" if new, a duplicate if known.
func (g *groups) addMessage(ctx context.Context, msg *Message, job *Job, what string) error {
	added, err := g.store.AddMessage(ctx, msg, job)
	if g.stored(err) != nil {
		return fmt.Errorf("store message %s of %s: %w", msg.XMPPID, msg.PeerJID, err)
	}
	if !added {
		g.count(what, ReasonDuplicate)
		return nil
	}
	g.count(what, "group")
	g.queue(job)
	return nil
}

// reflection takes a puppet's own message as the room sent it back
// (XEP-0045 §7.4): the proof the room took it. The message is named by
// the room's stanza-id from now on, and its sender's event is marked sent.
func (g *groups) reflection(ctx context.Context, log zerolog.Logger, r *mucRoom, m *XMPPMessage) error {
	ours := m.OriginID
	if ours == "" {
		ours = m.ID
	}
	if ours == "" || !m.HasBody {
		g.count("xmpp_message", ReasonOwnReflection)
		return nil
	}
	if m.StanzaID == "" {
		g.noStanzaID(log, r)
		return nil
	}
	msg, err := g.store.MessageByXMPPID(ctx, r.jid, ours, FromMatrix)
	if isNotFound(err) {
		g.count("xmpp_message", ReasonOwnReflection)
		return nil
	} else if err != nil {
		return fmt.Errorf("look up the message %s reflected by %s: %w", ours, r.jid, err)
	}
	changed, err := g.store.SetRoomStanzaID(ctx, msg.RowID, m.StanzaID)
	if g.stored(err) != nil {
		return err
	}
	if !changed || msg.EventID == "" {
		return nil
	}
	log.Debug().Int64("row", msg.RowID).Str("stanza_id", m.StanzaID).Msg("The room took a message")
	g.count("xmpp_message", "reflected")
	return g.queueStored(ctx, receiptJob(JobMatrixSent, msg.RoomID, msg, ""))
}

// noStanzaID takes the reflection of a member's message that the chat r
// stamped with no stanza-id (XEP-0359 §3): the room took it, but messages
// of a chat are named by the room's stanza-id, which markers and
// relations in the room point at, so it is not marked sent, and a read of
// it sends no marker. ejabberd stamps none in a room that does not
// archive (its room option mam, off by default); said once a run per
// chat, counted each time.
func (g *groups) noStanzaID(log zerolog.Logger, r *mucRoom) {
	g.count("xmpp_message", ReasonNoStanzaID)
	g.mu.Lock()
	said := r.saidNoStanzaID
	r.saidNoStanzaID = true
	g.mu.Unlock()
	if !said {
		log.Warn().Str("muc", r.jid.String()).Msg("The chat stamps no stanza-id (XEP-0359) on its messages: messages from Matrix are not marked sent there, and reads send no marker; on ejabberd, turn the room's mam option on (docs/deploy.md, Group chats)")
	}
}

var (
	// A message reaches the room in order: the room exists, so its lane.
	_ = register(JobGroupToMatrix, jobKind{side: SideMatrix, order: byRoom, payload: groupArgs{},
		run: func(b *Bridge, ctx context.Context, job *Job) error { return b.groups.groupToMatrix(ctx, job) }})
	_ = register(JobMatrixSent, jobKind{side: SideMatrix, order: inRoom, payload: receiptArgs{},
		run: withPayload(func(b *Bridge, ctx context.Context, _ *Job, args receiptArgs) error {
			return b.matrix.SendSent(ctx, args.Room, args.Event)
		})})
)

// groupToMatrix posts an occupant's message into the portal as their
// ghost, named after their nick.
func (g *groups) groupToMatrix(ctx context.Context, job *Job) error {
	args, err := payloadOf[groupArgs](job)
	if err != nil {
		return err
	}
	msg, err := g.store.MessageByRow(ctx, job.MessageID)
	if err != nil {
		return fmt.Errorf("load message %d: %w", job.MessageID, err)
	}
	if msg.EventID != "" {
		return nil
	}
	if err := g.unreachable("", msg.PeerJID); err != nil {
		return err
	}
	ghost, err := g.ghostOf(args.Member)
	if err != nil {
		return err
	}
	if err := g.nameGhost(ctx, ghost, args.Nick); err != nil {
		return err
	}
	var ev id.EventID
	switch {
	case args.File != nil:
		ev, err = g.matrix.SendMessage(ctx, msg.RoomID, ghost, mediaOut(args.File), relationTxn(job.MessageID))
	case msg.RelKind != RelNone:
		ev, err = g.relations.relationToMatrix(ctx, msg.RoomID, ghost, msg, relationTxn(job.MessageID))
	default:
		out := &OutMatrix{Body: msg.Body}
		if args.History {
			out.TS = msg.TS
		}
		ev, err = g.matrix.SendMessage(ctx, msg.RoomID, ghost, out, relationTxn(job.MessageID))
	}
	if err != nil {
		return fmt.Errorf("send message %d to %s: %w", job.MessageID, msg.RoomID, err)
	}
	if err := g.store.SetMessageEventID(ctx, job.MessageID, msg.RoomID, ev); err != nil {
		return fmt.Errorf("note event %s of message %d: %w", ev, job.MessageID, err)
	}
	g.count("bridged", "group_to_matrix")
	return nil
}

// messageFromMatrix takes a Matrix member's message in a group portal: a
// groupchat message from their puppet to the chat, markable (XEP-0333
// §"groupchat") and asking for nothing else.
func (g *groups) messageFromMatrix(ctx context.Context, log zerolog.Logger, portal *Portal, evt MatrixEvent) ([]*Job, error) {
	if evt.Kind == EventEncrypted {
		g.count("matrix_event", "encrypted")
		return []*Job{argsJob(JobNotice, jobArgs{Room: evt.Room, User: g.cfg.Identities.Bot(), Body: EncryptedNotice})}, nil
	}
	if evt.Kind == EventRedaction {
		if done, err := g.moderation.moderationFromMatrix(ctx, log, portal, evt); done || err != nil {
			return nil, err
		}
	}
	if done, err := g.relations.relationFromMatrix(ctx, log, portal, evt); done || err != nil {
		return nil, err
	}
	if evt.Kind != EventMessage {
		g.count("matrix_event", ReasonMsgType)
		return nil, nil
	}
	body, job, refused, ok := g.outgoing(evt, portal.JID)
	if !ok {
		return refused, nil
	}
	xid := NewXMPPID()
	msg := &Message{
		RoomID: evt.Room, EventID: evt.ID, XMPPID: xid, OriginID: xid,
		PeerJID: portal.JID, Direction: FromMatrix, MXID: evt.Sender,
		Body: body, TS: g.tsOf(evt), Requests: Requests{Markable: true},
	}
	added, err := g.store.AddMessage(ctx, msg, job)
	if g.stored(err) != nil {
		return nil, fmt.Errorf("store message: %w", err)
	}
	if !added {
		g.count("matrix_event", ReasonDuplicate)
		return nil, nil
	}
	g.queue(job)
	log.Debug().Str("xmpp_id", xid).Msg("Message queued for a chat")
	return nil, nil
}

// isGroup tells whether the room of msg is a group portal's.
func (g *groups) isGroup(ctx context.Context, room id.RoomID) (bool, error) {
	if room == "" {
		return false, nil
	}
	p, err := g.store.PortalByRoom(ctx, room)
	if isNotFound(err) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("look up portal %s: %w", room, err)
	}
	return p.Kind == PortalGroup, nil
}
