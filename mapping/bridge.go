package mapping

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/internal/safely"
)

// ErrPermanent marks a send that will never succeed; the outbox drops it
// instead of retrying. The sides wrap their errors with it.
var ErrPermanent = errors.New("permanent failure")

// ErrNotConnected is returned by a side that has no live connection; the
// outbox retries later and is woken when the connection comes back.
var ErrNotConnected = errors.New("not connected")

// ErrNotPending is returned by Store.FinishTxns when a transaction of the
// group was not pending.
var ErrNotPending = errors.New("transaction not pending")

// MatrixSide is what the core asks of the homeserver; matrixside implements it.
type MatrixSide interface {
	// CreateDM creates a direct-message room as ghost and invites invitee.
	CreateDM(ctx context.Context, ghost, invitee id.UserID) (id.RoomID, error)
	// CreateGroup creates the room of a multi-user chat as the bot, as
	// room says.
	CreateGroup(ctx context.Context, room GroupRoom) (id.RoomID, error)
	// AddAlias has the bot give room the alias.
	AddAlias(ctx context.Context, alias id.RoomAlias, room id.RoomID) error
	// Invite has the bot invite user into room.
	Invite(ctx context.Context, room id.RoomID, user id.UserID) error
	// Kick has the bot remove user from room, saying reason.
	Kick(ctx context.Context, room id.RoomID, user id.UserID, reason string) error
	// SetRoomName makes room's name name (the bot sets it), if it is not.
	SetRoomName(ctx context.Context, room id.RoomID, name string) error
	// SetTopic makes room's topic topic, set by sender if it may, else
	// by the bot; nothing if it already is.
	SetTopic(ctx context.Context, room id.RoomID, sender id.UserID, topic string) error
	// SendSent marks ev as sent: taken by the XMPP side, delivered to no
	// one known.
	SendSent(ctx context.Context, room id.RoomID, ev id.EventID) error
	// SendMessage posts msg as sender; txnID makes a retry idempotent.
	SendMessage(ctx context.Context, room id.RoomID, sender id.UserID, msg *OutMatrix, txnID string) (id.EventID, error)
	// React puts sender's reaction key on target (an m.reaction).
	React(ctx context.Context, room id.RoomID, sender id.UserID, target id.EventID, key, txnID string) (id.EventID, error)
	// Redact removes target as sender (an m.room.redaction).
	Redact(ctx context.Context, room id.RoomID, sender id.UserID, target id.EventID, txnID string) (id.EventID, error)
	// SetModerator has the bot give user the power to redact others'
	// events in room (on), or take it back (off), if it has to.
	SetModerator(ctx context.Context, room id.RoomID, user id.UserID, on bool) error
	// Moderate removes target, another's event, with reason: as sender if
	// the room lets sender redact others' events, else as the bot.
	Moderate(ctx context.Context, room id.RoomID, sender id.UserID, target id.EventID, reason, txnID string) (id.EventID, error)
	// SendNotice posts an m.notice as sender, with html as its formatted
	// body if not "".
	SendNotice(ctx context.Context, room id.RoomID, sender id.UserID, body, html, txnID string) error
	Join(ctx context.Context, room id.RoomID, user id.UserID) error
	Leave(ctx context.Context, room id.RoomID, user id.UserID, reason string) error
	// ShowTyping shows or clears user's typing in room, without waiting:
	// best effort, the newest state winning, with a timeout so that a lost
	// cancellation cannot leave it on.
	ShowTyping(room id.RoomID, user id.UserID, on bool)
	// SendDelivery says that ev was delivered to ghost, in whatever way the
	// homeserver allows (m.delivery, its unstable name, or a status event).
	SendDelivery(ctx context.Context, room id.RoomID, ghost id.UserID, ev id.EventID) error
	// SendRead moves user's m.read receipt to ev.
	SendRead(ctx context.Context, room id.RoomID, user id.UserID, ev id.EventID) error
	// Offline tells whether the homeserver knows user to be offline; false
	// when it does not know (presence disabled, never seen).
	Offline(ctx context.Context, user id.UserID) (bool, error)
	// SendFailure marks ev as not delivered.
	SendFailure(ctx context.Context, room id.RoomID, ev id.EventID, status StatusArgs) error
	// DisplayName is user's display name on the homeserver, "" if none.
	DisplayName(ctx context.Context, user id.UserID) (string, error)
	// Profile is user's display name and avatar (an mxc:// URI), "" for
	// what they have not set.
	Profile(ctx context.Context, user id.UserID) (name, avatarURL string, err error)
	// Avatar fetches the image at avatarURL as a thumbnail about size
	// pixels a side, and its MIME type; an error wrapping ErrPermanent if
	// it is larger than maxBytes, missing or not an image.
	Avatar(ctx context.Context, avatarURL string, size, maxBytes int) ([]byte, string, error)
	// UploadAvatar puts an image into the media repository as ghost and
	// returns its mxc:// URI.
	UploadAvatar(ctx context.Context, ghost id.UserID, data []byte, mimeType string) (string, error)
	// SetGhostAvatar sets ghost's avatar to the mxc:// URI url ("": none).
	SetGhostAvatar(ctx context.Context, ghost id.UserID, url string) error
	// SetGhostName names ghost after its XMPP person's name (the side
	// marks it as XMPP's).
	SetGhostName(ctx context.Context, ghost id.UserID, name string) error
}

// XMPPSide is what the core asks of the XMPP server; xmppside implements it.
type XMPPSide interface {
	// Send sends the messages in order, all or (on an error) some of them.
	Send(ctx context.Context, msgs ...*OutMessage) error
	SendPresence(ctx context.Context, p *OutPresence) error
	// FetchVCard asks to (a person's bare JID, or an occupant's JID in a
	// chat, room/nick) for its vCard (XEP-0054) as from; an error
	// wrapping ErrPermanent if it has none for from.
	FetchVCard(ctx context.Context, from, to jid.JID) (*VCard, error)
	// FetchAvatar asks to's PEP service for the XEP-0084 avatar data item
	// id, as from; an error wrapping ErrPermanent if from may not read it
	// or it is not there.
	FetchAvatar(ctx context.Context, from, to jid.JID, id string) ([]byte, error)
	// SetRosterItem names item in owner's roster, on the server's
	// permission (XEP-0356); ErrNoPrivilege without it.
	SetRosterItem(ctx context.Context, owner, item jid.JID, name string) error
	// Ping asks to whether it is there (XEP-0199), as from: nil for a
	// result; an error answer wraps ErrPermanent and a *StanzaError.
	Ping(ctx context.Context, from, to jid.JID) error
	// RoomName is the name the chat room gives itself (XEP-0045 §6.4),
	// asked as from; "" if none.
	RoomName(ctx context.Context, from, room jid.JID) (string, error)
	// RenameRoom has from, the chat room's owner, change its name to
	// name (XEP-0045 §10.2: the owner's configuration form, submitted
	// with the name changed); an error answer wraps ErrPermanent and a
	// *StanzaError.
	RenameRoom(ctx context.Context, from, room jid.JID, name string) error
	// InstantRoom has from, the owner of the chat room its join made,
	// accept the room's default configuration (XEP-0045 §10.1.2), which
	// unlocks it; an error answer wraps ErrPermanent and a *StanzaError.
	InstantRoom(ctx context.Context, from, room jid.JID) error
	// Moderate asks the chat room, as from (an occupant), to retract the
	// message it stamped with the stanza-id sid, saying reason ("": none)
	// (XEP-0425): nil once the room took it; an error answer wraps
	// ErrPermanent and a *StanzaError.
	Moderate(ctx context.Context, from, room jid.JID, sid, reason string) error
}

// Counter counts what the bridge refused or did, by what and why (a
// Reason, or what came of it).
type Counter func(what, reason string)

// Config is the part of the configuration the core reads.
type Config struct {
	Identities  Identities
	Permissions Permissions
	// BlockedDomains are XMPP domains whose people may not use the bridge.
	BlockedDomains []string
	Receipts       ReceiptPolicy
	Presence       PresencePolicy
	Limits         Limits // zero: DefaultLimits
	// EditMaxAge bounds the Matrix edits that go as XEP-0308 corrections
	// (bridge.edit_max_age); zero: DefaultEditMaxAge.
	EditMaxAge time.Duration
	// Groups bounds what one Matrix user may have the bridge join
	// (groups.*); zero fields: DefaultGroupLimits'.
	Groups GroupLimits
}

// ReceiptPolicy is how receipts from Matrix reach XMPP (config: receipts.*).
type ReceiptPolicy struct {
	// MaxDisplayedPerRead caps the XEP-0022 <displayed/> (and delivery)
	// notifications one m.read raises; the newest messages win.
	MaxDisplayedPerRead int
	// ReadImpliesDelivered sends a requested delivery receipt that was
	// never sent before the displayed ones: bridged messages are never
	// encrypted, so a message read was received.
	ReadImpliesDelivered bool
	// SendToXMPP is whether Matrix users' receipts reach XMPP at all;
	// Overrides sets it per user.
	SendToXMPP bool
	Overrides  map[id.UserID]bool
	// ToFullJID addresses receipts to the resource the message came from
	// instead of the bare JID (IM-NG: all of the person's clients).
	ToFullJID bool
}

// sendsReceipts tells whether u lets the bridge tell XMPP about receipts.
func (p ReceiptPolicy) sendsReceipts(u id.UserID) bool {
	if v, ok := p.Overrides[u]; ok {
		return v
	}
	return p.SendToXMPP
}

// Bridge is the core: it decides what every input means and what must be
// sent, and keeps the sends owed in the store until they are done. It is
// the front the sides and main see (xmppside.Core, matrixside.Core): its
// own methods are what they call, and the work is the concerns' (below),
// each owning its handlers, its job kinds and its state, so that none
// grows past what one reader holds in mind.
type Bridge struct {
	*core

	bot       *bot       // commands.go
	people    *people    // people.go
	relations *relations // relations_rules.go
	receipts  *receipts  // receipts.go
	messages  *messages  // sends.go
	groups    *groups    // groups.go
}

// core is what every concern shares: the configuration, the store, both
// sides, the outbox and the helpers they all use. Each concern embeds the
// one core of its Bridge, so that a setter (SetSides, SetOutbox, ...)
// reaches all of them.
type core struct {
	cfg     Config
	store   Store
	matrix  MatrixSide
	xmpp    XMPPSide
	counter Counter
	guard   safely.Guard // a panic in work handed in fails that work only
	log     zerolog.Logger
	wake    chan struct{} // pokes Run
	now     func() time.Time
	out     Outbox // jobs.go
	media   Media  // media.go; nil: files cross as their links
	inbox   Inbox  // early_receipts.go

	// in holds the receipts from XMPP waiting to be recorded, and the
	// budgets of XMPP strangers (intake.go), which the message intake and
	// the subscriptions spend as well as the receipts.
	in *intake
	// storeFailed: a write of jobs failed, and none has succeeded since
	// (stored).
	storeFailed atomic.Bool
}

// New makes a core. The sides may be set later with SetSides, since they
// usually need the core to deliver what they receive.
func New(cfg Config, store Store, count Counter, log zerolog.Logger) *Bridge {
	if count == nil {
		count = func(string, string) {}
	}
	c := &core{cfg: cfg, store: store, counter: count, log: log, wake: make(chan struct{}, 1), now: time.Now, out: noOutbox{}}
	c.in = newIntake(cfg.Limits, func() time.Time { return c.now() }, log)
	// The concerns that call each other hold pointers to each other, set
	// here: the messages hand what comes in to the others, and the bot's
	// settings decide what the receipts send to XMPP.
	b := &Bridge{core: c,
		bot:       &bot{core: c},
		people:    &people{core: c, nicks: map[string]string{}},
		relations: &relations{core: c},
	}
	b.receipts = &receipts{core: c, bot: b.bot, typing: map[id.RoomID]map[id.UserID]bool{}}
	b.groups = newGroups(c, b.receipts, b.bot, b.relations)
	b.relations.nickIn = b.groups.nickOf
	b.messages = &messages{core: c, bot: b.bot, people: b.people, relations: b.relations, receipts: b.receipts, groups: b.groups}
	b.bot.messages = b.messages
	b.people.groups = b.groups
	b.groups.people = b.people
	return b
}

// flushEvery is how long Run waits for a poke before it looks anyway: for
// receipts a store error left waiting (FlushReceipts keeps them for its
// next call), since nothing else may come to poke it.
const flushEvery = time.Second

// Run does the core's own work until ctx ends: as soon as it is poked, it
// checks and records the receipts from XMPP that the read loop gathered
// meanwhile, a burst at a time (FlushReceipts); and, beside it, the
// puppets ask the chats they are in whether they still are
// (selfPingLoop, XEP-0410).
func (b *Bridge) Run(ctx context.Context) {
	go b.groups.state.selfPingLoop(ctx)
	for ctx.Err() == nil {
		wake := b.wake
		if !b.flushSafely(ctx) {
			// The store failed: wait flushEvery, whatever arrives, rather
			// than try again with every receipt.
			wake = nil
		}
		timer := time.NewTimer(flushEvery)
		select {
		case <-ctx.Done():
		case <-wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// flushSafely is FlushReceipts, where a panic drops the burst it was
// working on (counted, logged with its stack) instead of the process:
// those receipts came from XMPP people, and one of them may be the cause.
func (b *Bridge) flushSafely(ctx context.Context) bool {
	ok := true
	_ = b.guard.Run(&b.log, b.counter, "xmpp_receipts", func() error {
		ok = b.FlushReceipts(ctx)
		return nil
	})
	return ok
}

// Unrecorded is how many receipts read from XMPP are not recorded yet:
// held in memory, so a crash loses them (XEP-0114 acknowledges nothing).
// What the XMPP server wrote and the bridge has not read is not counted.
func (b *Bridge) Unrecorded() int { return b.in.held() + int(b.receipts.flushing.Load()) }

// poke makes Run look for work now.
func (b *core) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// SetSides connects the core to both servers.
func (b *Bridge) SetSides(m MatrixSide, x XMPPSide) { b.matrix, b.xmpp = m, x }

// Identities returns the identity mapping in force.
func (b *Bridge) Identities() Identities { return b.cfg.Identities }

func (b *core) blocked(j jid.JID) bool {
	for _, d := range b.cfg.BlockedDomains {
		if j.Domainpart() == d {
			return true
		}
	}
	return false
}

// tsOf is when evt was sent, or now (the core's clock) if it says not.
func (b *core) tsOf(evt MatrixEvent) time.Time {
	if !evt.TS.IsZero() {
		return evt.TS
	}
	return b.now()
}

// count counts one thing of kind what, left alone for reason or done
// (a Reason naming the outcome).
func (b *core) count(what string, reason Reason) { b.counter(what, string(reason)) }
