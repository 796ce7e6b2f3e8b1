package mapping

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// The bot (docs/users.md, The bot's commands). A permitted user's DM with the bot is their
// management room: what they write there is a command, with no prefix;
// in a portal a command starts with CommandPrefix and is not bridged.
// Replies are m.notice from the bot, with an HTML body, stored with the
// transaction that brought the command (so each command is answered
// once, even across a crash). Only permitted users reach the bot: it
// declines anybody else's invite, with a reason.

// CommandPrefix starts a command in a portal.
const CommandPrefix = "!xmpp"

// JobOpenPortal opens the portal of a `start` command.
const JobOpenPortal JobKind = "matrix.open_portal"

// openArgs is the payload of a JobOpenPortal.
type openArgs struct {
	MXID  id.UserID `json:"mxid"`
	JID   string    `json:"jid"`
	Reply id.RoomID `json:"reply"` // where the command came from
}

// BotDeclineReason is given when someone who may not use the bridge
// invites the bot.
const BotDeclineReason = "You are not permitted to use this XMPP bridge."

const helpText = "Commands (in a chat with me as they are; in a portal after `!xmpp`):\n" +
	"`help`: this list\n" +
	"`start <jid>`: open a chat with an XMPP person, e.g. `start juliet@example.org`\n" +
	"`join <room@service> [nick] [password]`: join an XMPP chat room (XEP-0045), in a room of its own here, or join `#_xmpp_room=40service:<this server>`\n" +
	"`list`: your chats with XMPP people\n" +
	"`receipts on|off`: whether your read and delivery receipts reach XMPP\n" +
	"`typing on|off`: whether your typing reaches XMPP\n" +
	"`status`: how the bridge is doing\n" +
	"`ping`: am I here?"

// commandWords are the commands the bot knows (helpText).
var commandWords = []string{"help", "ping", "start", "join", "list", "receipts", "typing", "status"}

// bot is the bridge's bot: the commands and what users set through them,
// which the receipts and the typing sent to XMPP obey (tellsXMPP,
// receiptsCross).
type bot struct {
	*core
	messages *messages // ensurePortal, setAsideStatus

	settingsMu sync.RWMutex
	settings   map[id.UserID]UserSetting
	status     Status // where `status` reads the bridge's state
}

// Status is what `status` says of the bridge, line by line; main sets it
// from what the sides know.
type Status func(ctx context.Context) []string

// SetStatus tells the core where `status` reads the bridge's state.
func (b *Bridge) SetStatus(s Status) { b.bot.status = s }

// LoadSettings reads what users set through the bot.
func (b *Bridge) LoadSettings(ctx context.Context) error { return b.bot.loadSettings(ctx) }

func (b *bot) loadSettings(ctx context.Context) error {
	s, err := b.store.UserSettings(ctx)
	if err != nil {
		return err
	}
	b.settingsMu.Lock()
	b.settings = s
	b.settingsMu.Unlock()
	return nil
}

// tellsXMPP tells whether u's receipts (typing: their typing) may reach
// XMPP: their own setting, else the config's (receipts.send_to_xmpp and
// its per-user overrides).
func (b *bot) tellsXMPP(u id.UserID, typing bool) bool {
	b.settingsMu.RLock()
	s := b.settings[u]
	b.settingsMu.RUnlock()
	return b.tells(u, s, typing)
}

// tells is tellsXMPP with u's setting s already read.
func (b *bot) tells(u id.UserID, s UserSetting, typing bool) bool {
	if typing && s.Typing != nil {
		return *s.Typing
	}
	if !typing && s.Receipts != nil {
		return *s.Receipts
	}
	return b.cfg.Receipts.sendsReceipts(u)
}

// receiptsCross tells whether rc's user let it reach XMPP when they made
// it: their receipts are on, and were already on at its ts. A receipt
// without a ts is judged by the setting now.
func (b *bot) receiptsCross(rc Receipt) bool {
	b.settingsMu.RLock()
	s := b.settings[rc.User]
	b.settingsMu.RUnlock()
	return b.tells(rc.User, s, false) && (rc.TS.IsZero() || !rc.TS.Before(s.ReceiptsOnSince))
}

// botInvited answers an invite of the bot: a permitted user's room
// becomes their management room, with a welcome; anybody else's invite
// is declined with a reason.
func (b *bot) botInvited(ctx context.Context, evt MatrixEvent) ([]*Job, error) {
	bot := b.cfg.Identities.Bot()
	if evt.Membership != MembershipInvite {
		return nil, nil
	}
	if !b.cfg.Permissions.Allowed(evt.Sender) {
		b.count("bot_invite", ReasonNotPermitted)
		return []*Job{argsJob(JobLeave, jobArgs{Room: evt.Room, User: bot, Reason: BotDeclineReason})}, nil
	}
	if err := b.store.PutManagementRoom(ctx, evt.Room, evt.Sender); err != nil {
		return nil, err
	}
	b.count("bot_invite", "accepted")
	return []*Job{
		argsJob(JobJoin, jobArgs{Room: evt.Room, User: bot}),
		b.reply(evt.Room, "Hello! I bridge your chats with XMPP people.\n"+helpText),
	}, nil
}

// commandOf tells whether evt is a command: the text of one, and true.
func (b *bot) commandOf(ctx context.Context, evt MatrixEvent, portal *Portal) (string, bool, error) {
	if evt.Kind != EventMessage || evt.MsgType != MsgText {
		return "", false, nil
	}
	if portal != nil {
		rest, ok := strings.CutPrefix(evt.Body, CommandPrefix)
		if !ok || (rest != "" && rest[0] != ' ') {
			return "", false, nil
		}
		return rest, true, nil
	}
	owner, err := b.store.ManagementRoom(ctx, evt.Room)
	if isNotFound(err) {
		return "", false, nil
	} else if err != nil {
		return "", false, fmt.Errorf("look up management room %s: %w", evt.Room, err)
	}
	// The prefix is not needed here, but habits from portals are welcome.
	text := strings.TrimSpace(evt.Body)
	if rest, ok := strings.CutPrefix(text, CommandPrefix); ok && (rest == "" || rest[0] == ' ') {
		text = rest
	}
	return text, owner == evt.Sender, nil
}

// command carries out one command of user's in room, sent at at (its
// origin_server_ts), and answers it.
func (b *bot) command(ctx context.Context, room id.RoomID, user id.UserID, at time.Time, text string) ([]*Job, error) {
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return []*Job{b.reply(room, helpText)}, nil
	}
	name, args := strings.ToLower(fields[0]), fields[1:]
	// Counted by name, a label the metric keeps: one for every word the
	// bot does not know, or anyone could make the metric grow without end.
	if slices.Contains(commandWords, name) {
		b.count("bot_command", Reason(name))
	} else {
		b.count("bot_command", "unknown")
	}
	switch name {
	case "help":
		return []*Job{b.reply(room, helpText)}, nil
	case "ping":
		return []*Job{b.reply(room, "Pong.")}, nil
	case "start":
		return b.startCommand(ctx, room, user, strings.Join(args, " "))
	case "join":
		return b.joinCommand(ctx, room, user, args)
	case "list":
		ps, err := b.store.PortalsOf(ctx, user)
		if err != nil {
			return nil, err
		}
		if len(ps) == 0 {
			return []*Job{b.reply(room, "You have no chats with XMPP people yet: `start <jid>` opens one.")}, nil
		}
		lines := []string{fmt.Sprintf("Your chats with XMPP people (%d):", len(ps))}
		for _, p := range ps {
			lines = append(lines, fmt.Sprintf("`%s`: %s", p.JID, roomLink(p.RoomID)))
		}
		return []*Job{b.reply(room, strings.Join(lines, "\n"))}, nil
	case "receipts", "typing":
		if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
			return []*Job{b.reply(room, fmt.Sprintf("Say `%s on` or `%s off`.", name, name))}, nil
		}
		on := args[0] == "on"
		if err := b.setUserSetting(ctx, user, name == "typing", on, at); err != nil {
			return nil, err
		}
		what := map[string]string{"receipts": "Your read and delivery receipts", "typing": "Your typing"}[name]
		if on {
			return []*Job{b.reply(room, what+" reach XMPP again.")}, nil
		}
		return []*Job{b.reply(room, what+" no longer reach XMPP. Receipts from XMPP still show here.")}, nil
	case "status":
		var lines []string
		if b.status != nil {
			lines = b.status(ctx)
		}
		lines = append(lines, b.messages.setAsideStatus(ctx))
		return []*Job{b.reply(room, strings.Join(append([]string{"Bridge status:"}, lines...), "\n"))}, nil
	}
	return []*Job{b.reply(room, fmt.Sprintf("I do not know `%s`. Send `help` for what I do.", fields[0]))}, nil
}

// startCommand opens (or names) user's portal with the XMPP person at
// arg; a bad address is answered, and nothing is created.
func (b *bot) startCommand(ctx context.Context, room id.RoomID, user id.UserID, arg string) ([]*Job, error) {
	peer, err := jid.Parse(arg)
	switch {
	case arg == "":
		return []*Job{b.reply(room, "Say whom: `start juliet@example.org`.")}, nil
	case err != nil || peer.Localpart() == "" || peer.Resourcepart() != "" || strings.ContainsAny(arg, " \t"):
		return []*Job{b.reply(room, fmt.Sprintf("`%s` is not the address of an XMPP person: write it as `name@server`, e.g. `juliet@example.org`.", arg))}, nil
	case peer.Domainpart() == b.cfg.Identities.ComponentDomain:
		return []*Job{b.reply(room, fmt.Sprintf("`%s` is a Matrix user on this bridge: write to them on Matrix.", arg))}, nil
	case b.blocked(peer):
		return []*Job{b.reply(room, fmt.Sprintf("This bridge does not talk to `%s`.", peer.Domainpart()))}, nil
	}
	p, err := b.store.PortalByPair(ctx, user, peer)
	if err == nil {
		return []*Job{b.reply(room, fmt.Sprintf("You already have a chat with `%s`: %s", peer, roomLink(p.RoomID)))}, nil
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("look up portal: %w", err)
	}
	payload, _ := json.Marshal(openArgs{MXID: user, JID: peer.String(), Reply: room}) // strings only
	return []*Job{newJob(JobOpenPortal, about{mxid: user, peer: peer}, 0, payload)}, nil
}

// In the pair's lane: the portal is created once, whatever comes.
var _ = register(JobOpenPortal, jobKind{side: SideMatrix, order: byPair, payload: openArgs{}, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.bot.openPortal(ctx, job) }})

// openPortal runs a JobOpenPortal: the ghost creates the DM and invites
// the user (unless a message opened it meanwhile), and the bot says so.
func (b *bot) openPortal(ctx context.Context, job *Job) error {
	args, err := payloadOf[openArgs](job)
	if err != nil {
		return err
	}
	peer, err := payloadJID(args.JID)
	if err != nil {
		return err
	}
	p, err := b.messages.ensurePortal(ctx, args.MXID, peer)
	if err != nil {
		return err
	}
	reply := b.reply(args.Reply, fmt.Sprintf("Opened a chat with `%s`: %s (you are invited)", peer, roomLink(p.RoomID)))
	if err := b.store.AddJobs(ctx, reply); err != nil {
		return fmt.Errorf("answer the start of %s: %w", peer, err)
	}
	b.queue(reply)
	return nil
}

// setUserSetting stores one of user's settings, set at at, and puts it
// in force. Receipts turned on remember when: one made before that, while
// they were off, may reach the bridge after the command and must not
// cross (receiptsCross).
func (b *bot) setUserSetting(ctx context.Context, user id.UserID, typing, on bool, at time.Time) error {
	b.settingsMu.RLock()
	s := b.settings[user]
	b.settingsMu.RUnlock()
	wasOn := b.tells(user, s, typing)
	s.MXID = user
	if typing {
		s.Typing = &on
	} else {
		s.Receipts = &on
		if on && !wasOn {
			if at.IsZero() {
				at = time.Now()
			}
			s.ReceiptsOnSince = at
		}
	}
	if err := b.store.SetUserSetting(ctx, s); err != nil {
		return err
	}
	b.settingsMu.Lock()
	if b.settings == nil {
		b.settings = map[id.UserID]UserSetting{}
	}
	b.settings[user] = s
	b.settingsMu.Unlock()
	return nil
}

// reply is the bot's m.notice of text in room: text with `code` spans,
// and its HTML.
func (b *bot) reply(room id.RoomID, text string) *Job {
	return argsJob(JobNotice, jobArgs{Room: room, User: b.cfg.Identities.Bot(), Body: strings.ReplaceAll(text, "`", ""), HTML: noticeHTML(text)})
}

var codeSpan = regexp.MustCompile("`([^`]*)`")

// noticeHTML is text as HTML: escaped, `x` as <code>, lines as <br>.
func noticeHTML(text string) string {
	return strings.ReplaceAll(codeSpan.ReplaceAllString(html.EscapeString(text), "<code>$1</code>"), "\n", "<br>")
}

func roomLink(room id.RoomID) string { return "https://matrix.to/#/" + string(room) }
