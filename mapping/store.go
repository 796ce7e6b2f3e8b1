package mapping

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// ErrNotFound is returned by Store lookups that find nothing.
var ErrNotFound = errors.New("not found")

// PortalKind says who a portal's room is shared by.
type PortalKind string

const (
	// PortalDirect is the room of one Matrix user with one XMPP person:
	// the bridge looks it up by that pair, so a pair has one at most.
	PortalDirect PortalKind = "direct"
	// PortalGroup is the room of an XMPP multi-user chat (XEP-0045), with
	// however many members on each side.
	PortalGroup PortalKind = "group"
)

// MemberID names a member of a portal: a Matrix user's ID (it starts with
// '@') or an XMPP member's bare JID (which never does: RFC 7622 §3.3 keeps
// '@' out of a domainpart, and a localpart is followed by one). The person
// of a direct portal is their bare JID; an occupant of a multi-user chat,
// whose bare JID is the room's, needs a form of its own (XEP-0421
// occupant-id, the real JID, or the occupant JID with its nick).
type MemberID string

// MatrixMember is the MemberID of a Matrix user.
func MatrixMember(u id.UserID) MemberID { return MemberID(u) }

// XMPPMember is the MemberID of an XMPP member, by bare JID.
func XMPPMember(j jid.JID) MemberID { return MemberID(j.Bare().String()) }

// MXID is the Matrix user m names, or false if m is an XMPP member.
func (m MemberID) MXID() (id.UserID, bool) {
	if strings.HasPrefix(string(m), "@") {
		return id.UserID(m), true
	}
	return "", false
}

// Member is one member of a portal and what they told the other side,
// as "up to" watermarks: rows of the id map, forward only, set by "up to"
// acks (PutPortal leaves them alone). A Matrix member's are the messages
// from XMPP her receipts acknowledged to XMPP as delivered and displayed;
// an XMPP member's ReadUpTo is the newest message from Matrix they
// displayed, where their ghost's m.read stands.
type Member struct {
	ID                      MemberID
	DeliveredUpTo, ReadUpTo int64
	// Nick and Password are how a Matrix member's puppet joins the chat of
	// a group portal, as the bot's join was told (SetJoin): the nick
	// instead of their display name, and the room's password (XEP-0045
	// §7.2.6); "" for none.
	Nick, Password string
}

// Mark names a member's watermarks: the member By of the portal of Room.
type Mark struct {
	Room id.RoomID
	By   MemberID
}

// Portal is a Matrix room the bridge carries to an XMPP address, with its
// members.
type Portal struct {
	RoomID id.RoomID
	Kind   PortalKind
	// JID is the bare address the room speaks to: the person of a direct
	// portal, the multi-user chat of a group one.
	JID       jid.JID
	CreatedAt time.Time
	// Members, Matrix users first, each by ID.
	Members []Member
}

// DirectPortal is the portal of room between mxid and the XMPP person
// peer, as PutPortal stores a new one.
func DirectPortal(room id.RoomID, mxid id.UserID, peer jid.JID, created time.Time) *Portal {
	return &Portal{RoomID: room, Kind: PortalDirect, JID: peer.Bare(), CreatedAt: created,
		Members: []Member{{ID: MatrixMember(mxid)}, {ID: XMPPMember(peer)}}}
}

// Clone is a copy of p that shares nothing with it: a store hands out
// clones of what it keeps, so that a caller's changes stay the caller's.
func (p *Portal) Clone() *Portal {
	c := *p
	c.Members = slices.Clone(p.Members)
	return &c
}

// Member is the member m of p, or nil if m is not one.
func (p *Portal) Member(m MemberID) *Member {
	for i := range p.Members {
		if p.Members[i].ID == m {
			return &p.Members[i]
		}
	}
	return nil
}

// User is the Matrix user of a direct portal ("" for a group one): the one
// whose puppet speaks for the room to the person.
func (p *Portal) User() id.UserID {
	if p.Kind != PortalDirect {
		return ""
	}
	for _, m := range p.Members {
		if u, ok := m.ID.MXID(); ok {
			return u
		}
	}
	return ""
}

// Marks is what member m told the other side (zero if m is no member).
func (p *Portal) Marks(m MemberID) Member {
	if mem := p.Member(m); mem != nil {
		return *mem
	}
	return Member{ID: m}
}

// Direction says which way a message crossed the bridge.
type Direction string

const (
	// FromXMPP: sent by an XMPP person, delivered to Matrix by their ghost.
	FromXMPP Direction = "xmpp"
	// FromMatrix: sent by a Matrix user, delivered to XMPP by their puppet.
	FromMatrix Direction = "matrix"
)

// Requests is what the sender of a message asked to be told about it.
type Requests struct {
	Receipt   bool // XEP-0184 <request/>
	Delivered bool // XEP-0022 <delivered/>
	Displayed bool // XEP-0022 <displayed/>
	Composing bool // XEP-0022 <composing/>
	Offline   bool // XEP-0022 <offline/>
	Markable  bool // XEP-0333 <markable/>
}

// Message is one row of the id map: a message that crossed the bridge.
type Message struct {
	RowID   int64
	RoomID  id.RoomID
	EventID id.EventID // empty until the Matrix side has it
	// XMPPID is the stanza's id attribute: ours for FromMatrix messages,
	// the sender's for FromXMPP ones (empty if the sender gave none, in
	// which case nothing can acknowledge it later).
	XMPPID       string
	OriginID     string // XEP-0359
	StanzaID     string // XEP-0359, as stamped by the sender's server
	PeerJID      jid.JID
	PeerResource string
	Direction    Direction
	// MXID is the Matrix member the message is of: the sender of a
	// FromMatrix message, the recipient of a FromXMPP one in a direct
	// portal (PeerJID is the other).
	MXID id.UserID
	// Sender is the member who sent it (SentBy).
	Sender      MemberID
	Body        string
	TS          time.Time
	Requests    Requests
	DeliveredAt time.Time
	DisplayedAt time.Time
	// RelKind says what the message points at, RelTo at which row (for an
	// edit, always the original), RelKey a reaction's key (relations.go).
	RelKind RelKind
	RelTo   int64
	RelKey  string
}

// SentBy is the member who sent m: Sender if set, else the Matrix user
// of a message from Matrix or the person of one from XMPP, which is who
// sends in a direct portal. In a group, an occupant's message names its
// occupant (OccupantMember): the room's JID is everyone's there.
func (m *Message) SentBy() MemberID {
	switch {
	case m.Sender != "":
		return m.Sender
	case m.Direction == FromMatrix:
		return MatrixMember(m.MXID)
	}
	return XMPPMember(m.PeerJID)
}

// RecentWindow is how many of a room's newest messages RecentByOriginID
// looks through.
const RecentWindow = 50

// Job is a send owed to one of the servers, kept until it has been done.
type Job struct {
	ID        int64
	Kind      JobKind
	MessageID int64  // row of the message it concerns, if any
	Payload   []byte // kind-specific JSON
	Attempts  int
	NotBefore time.Time
	LastError string
	// Lane keeps order: jobs of one lane (and side) run one at a time, in
	// order; different lanes run in parallel. Empty needs no order. Its
	// kind declares what it is (jobs.go); the outbox reads it by Order.
	Lane string
	// Made is what Payload encodes, as its maker held it, in memory only:
	// a job run by the process that made it (nearly all of them, soon
	// after) is handed its decision as it is, not decoded from JSON again;
	// one read back from the store (after a restart) has none and decodes
	// Payload. A kind that sets it says what type it holds.
	Made any
}

// JobKind names what a Job does; each kind has one handler (RunJob) and
// declares its side and lane in jobKinds.
type JobKind string

// AckKind is what happened to a message, as its sender may learn.
type AckKind string

const (
	AckDelivered AckKind = "delivered"
	AckDisplayed AckKind = "displayed"
)

// Ack records that a message was delivered or displayed. Job, if set, is
// stored only when the ack is new: that is how each (message, kind) is
// translated once, however many devices or resources report it.
type Ack struct {
	Row  int64
	Kind AckKind
	At   time.Time
	Job  *Job
	// UpTo, when set, makes this an "up to" ack: member By of the room
	// UpTo told the other side it has the kind for every message from
	// that side with a row up to Row (By's watermark of the kind moves),
	// and the ack is new if the watermark moved.
	UpTo id.RoomID
	By   MemberID
}

// XMPPKey names a message by its stanza id and the bare JID of the peer it
// was exchanged with.
type XMPPKey struct {
	Peer string // bare JID
	ID   string
}

// Txn is a transaction pushed by the homeserver, kept until processed.
type Txn struct {
	ID   string
	Body []byte
}

// Store is what the core keeps, in parts by what each rule needs. The
// database package implements it on SQLite and PostgreSQL; package
// mapping/memstore in memory, for the core's tests. Methods returning one
// row return ErrNotFound when there is none. The database's store contract
// tests (forEachStore) hold both to the same behaviour.
type Store interface {
	SubscriptionStore // presence.go
	ProfileStore      // profiles.go
	GhostProfileStore // ghosts.go
	BotStore          // commands.go
	PortalStore
	MessageStore
	AckStore
	TxnStore
	SetAsideStore
	// AddJobs stores jobs for the outbox (which reads them through its own
	// outbox.Store).
	AddJobs(ctx context.Context, jobs ...*Job) error
}

// PortalStore keeps the portals and their members.
type PortalStore interface {
	PortalByRoom(ctx context.Context, room id.RoomID) (*Portal, error)
	// PortalByPair is the direct portal of mxid with the person peer.
	PortalByPair(ctx context.Context, mxid id.UserID, peer jid.JID) (*Portal, error)
	// GroupPortal is the group portal of the multi-user chat room (a
	// room has one at most).
	GroupPortal(ctx context.Context, room jid.JID) (*Portal, error)
	// GroupPortals lists every group portal, by JID.
	GroupPortals(ctx context.Context) ([]*Portal, error)
	// GroupsOf is how many group portals the Matrix user is a member of.
	GroupsOf(ctx context.Context, user id.UserID) (int, error)
	// RemoveMember takes member out of the portal of room, with its
	// watermarks; nothing if it is not one.
	RemoveMember(ctx context.Context, room id.RoomID, member MemberID) error
	// SetJoin sets how the Matrix member m.ID's puppet joins the chat of
	// the group portal of room (m.Nick, m.Password), adding them as a
	// member if they are not one; their watermarks stay.
	SetJoin(ctx context.Context, room id.RoomID, m Member) error
	// PortalsOf lists the portals mxid is a member of, by JID.
	PortalsOf(ctx context.Context, mxid id.UserID) ([]*Portal, error)
	// PortalsByRooms looks up many rooms at once; rooms that are not
	// portals are missing from the map.
	PortalsByRooms(ctx context.Context, rooms []id.RoomID) (map[id.RoomID]*Portal, error)
	// PutPortal inserts the portal with its members or, for a direct one
	// whose pair already has a portal, moves that one, members and
	// watermarks, to p.RoomID. Members already there keep their
	// watermarks. It fails if p.RoomID is another portal's.
	PutPortal(ctx context.Context, p *Portal) error
}

// MessageStore is the id map: bridged messages by row, Matrix event and
// XMPP stanza id.
type MessageStore interface {
	// AddMessage stores msg and, in the same transaction, the jobs that
	// send it (their MessageID is set to msg's new row). It returns false
	// and stores nothing when the message is already known: same
	// (PeerJID, XMPPID, Direction) for a non-empty XMPPID, or same EventID.
	AddMessage(ctx context.Context, msg *Message, jobs ...*Job) (bool, error)
	MessageByRow(ctx context.Context, row int64) (*Message, error)
	MessageByEventID(ctx context.Context, ev id.EventID) (*Message, error)
	// MessagesByEventIDs looks up many events at once; unknown ones are
	// missing from the map.
	MessagesByEventIDs(ctx context.Context, evs []id.EventID) (map[id.EventID]*Message, error)
	MessageByXMPPID(ctx context.Context, peer jid.JID, xmppID string, dir Direction) (*Message, error)
	// MessagesByXMPPIDs looks up many stanza ids at once; unknown ones are
	// missing from the map.
	MessagesByXMPPIDs(ctx context.Context, dir Direction, keys []XMPPKey) (map[XMPPKey]*Message, error)
	SetMessageEventID(ctx context.Context, row int64, room id.RoomID, ev id.EventID) error
	// SetRoomStanzaID names the message at row, sent to a multi-user
	// chat, by the stanza-id the room gave it (XEP-0359), as everything
	// that later points at it in the room does: its XMPPID and StanzaID
	// become sid (its OriginID keeps the id the bridge gave it). It
	// tells whether they changed.
	SetRoomStanzaID(ctx context.Context, row int64, sid string) (bool, error)
	// RecentByOriginID is the newest of the last RecentWindow messages of
	// room whose XEP-0359 origin-id is origin: how a correction in a chat
	// names what it corrects (XEP-0308 names the original by the id its
	// sender gave it, where everything else in a chat uses the room's
	// stanza-id). A correction is of a recent message, and a lookup that
	// reaches back no further costs the same however long the history.
	RecentByOriginID(ctx context.Context, room id.RoomID, origin string) (*Message, error)
	// LastInRoom is the time of the newest message of room, ErrNotFound if
	// it has none.
	LastInRoom(ctx context.Context, room id.RoomID) (time.Time, error)
	// Reactions lists the reactions to the message at row target sent in
	// direction dir that no redaction removed, oldest first.
	Reactions(ctx context.Context, target int64, dir Direction) ([]*Message, error)
	// HasUnsentToMatrix tells whether a message from peer to mxid is
	// stored without its Matrix event yet (on its way, or failed).
	HasUnsentToMatrix(ctx context.Context, mxid id.UserID, peer jid.JID) (bool, error)
}

// AckStore records what was delivered and displayed, and answers what is
// not yet.
type AckStore interface {
	// Acknowledge records acks and stores the jobs of the new ones (and
	// jobs), in one transaction. new[i] tells whether acks[i] was new.
	Acknowledge(ctx context.Context, acks []Ack, jobs ...*Job) (new []bool, err error)
	// UnreadUpTo lists, for each member of a room in upTo, the newest
	// limit FromXMPP messages of the room with a row up to the mark's and
	// above the member's ReadUpTo that are not displayed yet, oldest
	// first; a mark with none is absent. It is one lookup for however many
	// rooms.
	UnreadUpTo(ctx context.Context, upTo map[Mark]int64, limit int) (map[Mark][]*Message, error)
	// NewestComposable is the newest FromXMPP message of room that asked
	// for XEP-0022 composing events.
	NewestComposable(ctx context.Context, room id.RoomID) (*Message, error)
}

// TxnStore is the core's part of the inbox of homeserver transactions:
// it finishes them with what they caused, and hands parked receipts back
// (the Matrix side stores and reads them, through its own interface).
type TxnStore interface {
	// PutTxn stores a transaction; false if its id was seen before.
	PutTxn(ctx context.Context, txn *Txn) (bool, error)
	// FinishTxn marks the transaction processed, records the acks its
	// events produced (with their jobs) and stores jobs, atomically.
	FinishTxn(ctx context.Context, txnID string, acks []Ack, jobs []*Job) error
	// FinishTxns is FinishTxn for several pending transactions at once; if
	// one of them is not pending, it stores nothing and fails with
	// ErrNotPending.
	FinishTxns(ctx context.Context, txnIDs []string, acks []Ack, jobs []*Job) error
}

// SetAside is an item of the inbox the bridge could never process, kept
// instead of blocking everything behind it: an event (EventID set), or a
// whole transaction (EventID empty) whose failure no event explains.
type SetAside struct {
	TxnID   string
	EventID id.EventID
	Room    id.RoomID
	Sender  id.UserID
	Type    string
	// Reason says why in a word (SetAsideRefused, …); Error is the
	// error's text.
	Reason Reason
	Error  string
	At     time.Time
}

// Why an item of the inbox was set aside (the reason of the set_aside
// count and of its row).
const (
	SetAsideRefused Reason = "refused" // the store refused its data
	SetAsideDecode  Reason = "decode"  // it could not be read
	SetAsidePanic   Reason = "panic"   // handling it panicked
)

// SetAsideStore keeps what was set aside, and tells a failure of the data
// from a failure of the store.
type SetAsideStore interface {
	// Refuses tells whether err is the store refusing this data (a
	// constraint, a value the engine cannot keep, a stored value it
	// cannot read): retrying cannot help. It is false for the store itself
	// failing (connection, disk, lock), which a retry can outlast.
	Refuses(err error) bool
	// PutSetAside records s; false, storing nothing, if the same (TxnID,
	// EventID) was set aside before.
	PutSetAside(ctx context.Context, s *SetAside) (bool, error)
	// SetAsideCount is how many items were set aside, and the newest (nil
	// if none).
	SetAsideCount(ctx context.Context) (int, *SetAside, error)
}

// StorableText is s without what a store refuses in text: PostgreSQL keeps
// no U+0000 in a text value (its only refusal of valid UTF-8, and a JSON
// string may carry one as \u0000). What the bridge stores from Matrix goes
// through it, so that one character cannot make a message unstorable.
func StorableText(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "")
}

// UserSetting is what a user chose for themself through the bot; nil
// leaves the config's default.
type UserSetting struct {
	MXID     id.UserID
	Receipts *bool // their receipts reach XMPP
	Typing   *bool // their typing reaches XMPP
	// ReceiptsOnSince is when their receipts last came on after being off
	// (the origin_server_ts of the command); zero if never.
	ReceiptsOnSince time.Time
}

// BotStore keeps the bot's rooms and what users set through it.
type BotStore interface {
	// ManagementRoom is the user whose room with the bot room is.
	ManagementRoom(ctx context.Context, room id.RoomID) (id.UserID, error)
	PutManagementRoom(ctx context.Context, room id.RoomID, mxid id.UserID) error
	UserSettings(ctx context.Context) (map[id.UserID]UserSetting, error)
	SetUserSetting(ctx context.Context, s UserSetting) error
}
