package mapping

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// MemStore is an in-memory store, for the tests of the core's rules: the
// core's Store, and what the outbox reads. It keeps nothing across runs and
// is not for use by the bridge. The store contract tests of the database
// package hold it to the same behaviour as the database on both engines.
type MemStore struct {
	mu       sync.Mutex
	portals  []*Portal
	mgmt     map[id.RoomID]id.UserID
	settings map[id.UserID]UserSetting
	messages []*Message
	txns     map[string]*Txn
	txnOrder []string
	done     map[string]bool
	jobs     []*Job
	nextJob  int64
	// unreadCalls counts UnreadUpTo, for a test of coalesced reads.
	unreadCalls int
	subs        map[string]*Subscription // by mxid and bare JID
	profiles    map[id.UserID]Profile
	ghosts      map[string]GhostProfile // by bare JID
	setAside    []*SetAside
}

// refusedError is the MemStore refusing data, as a database's constraint
// would.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

func refusal(format string, args ...any) error {
	return &refusedError{fmt.Sprintf(format, args...)}
}

// Refuses implements Store.
func (s *MemStore) Refuses(err error) bool {
	var r *refusedError
	return errors.As(err, &r)
}

// PutSetAside implements Store.
func (s *MemStore) PutSetAside(_ context.Context, a *SetAside) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.setAside {
		if o.TxnID == a.TxnID && o.EventID == a.EventID {
			return false, nil
		}
	}
	c := *a
	t := StorableText
	c.TxnID, c.EventID, c.Room, c.Sender = t(a.TxnID), id.EventID(t(string(a.EventID))), id.RoomID(t(string(a.Room))), id.UserID(t(string(a.Sender)))
	c.Type, c.Reason, c.Error = t(a.Type), Reason(t(string(a.Reason))), t(a.Error)
	c.At = time.UnixMilli(a.At.UnixMilli()) // as stored
	s.setAside = append(s.setAside, &c)
	return true, nil
}

// SetAsideCount implements Store.
func (s *MemStore) SetAsideCount(context.Context) (int, *SetAside, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.setAside) == 0 {
		return 0, nil, nil
	}
	c := *s.setAside[len(s.setAside)-1]
	return len(s.setAside), &c, nil
}

// NewMemStore makes an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{txns: map[string]*Txn{}, done: map[string]bool{}}
}

func (s *MemStore) PortalByRoom(_ context.Context, room id.RoomID) (*Portal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.portalOf(room); p != nil {
		return p.Clone(), nil
	}
	return nil, ErrNotFound
}

func (s *MemStore) portalOf(room id.RoomID) *Portal {
	for _, p := range s.portals {
		if p.RoomID == room {
			return p
		}
	}
	return nil
}

func (s *MemStore) pairPortal(mxid id.UserID, peer jid.JID) *Portal {
	for _, p := range s.portals {
		if p.Kind == PortalDirect && p.User() == mxid && p.JID.Equal(peer.Bare()) {
			return p
		}
	}
	return nil
}

func (s *MemStore) PortalByPair(_ context.Context, mxid id.UserID, peer jid.JID) (*Portal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pairPortal(mxid, peer); p != nil {
		return p.Clone(), nil
	}
	return nil, ErrNotFound
}

func (s *MemStore) groupPortal(room jid.JID) *Portal {
	for _, p := range s.portals {
		if p.Kind == PortalGroup && p.JID.Equal(room.Bare()) {
			return p
		}
	}
	return nil
}

func (s *MemStore) GroupPortal(_ context.Context, room jid.JID) (*Portal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.groupPortal(room); p != nil {
		return p.Clone(), nil
	}
	return nil, ErrNotFound
}

func (s *MemStore) GroupPortals(context.Context) ([]*Portal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Portal
	for _, p := range s.portals {
		if p.Kind == PortalGroup {
			out = append(out, p.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *Portal) int { return strings.Compare(a.JID.String(), b.JID.String()) })
	return out, nil
}

func (s *MemStore) RemoveMember(_ context.Context, room id.RoomID, member MemberID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.portalOf(room); p != nil {
		p.Members = slices.DeleteFunc(p.Members, func(m Member) bool { return m.ID == member })
	}
	return nil
}

func (s *MemStore) PortalsOf(_ context.Context, mxid id.UserID) ([]*Portal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Portal
	for _, p := range s.portals {
		if p.Member(MatrixMember(mxid)) != nil {
			out = append(out, p.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *Portal) int { return strings.Compare(a.JID.String(), b.JID.String()) })
	return out, nil
}

// PutPortal keeps the bare JID, the members by ID with the watermarks they
// have, and the portal's creation time unless it moves to another room, as
// the database does.
func (s *MemStore) PutPortal(_ context.Context, p *Portal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.CreatedAt.IsZero() {
		p.CreatedAt = time.Now()
	}
	p.CreatedAt = time.UnixMilli(p.CreatedAt.UnixMilli()) // as stored
	q := s.portalOf(p.RoomID)
	if p.Kind == PortalDirect {
		if pair := s.pairPortal(p.User(), p.JID); pair != nil {
			if q != nil && q != pair {
				return refusal("room %s is another portal", p.RoomID)
			}
			q = pair
			if q.RoomID != p.RoomID {
				q.RoomID, q.CreatedAt = p.RoomID, p.CreatedAt
			}
		} else if q != nil {
			return refusal("room %s is another portal", p.RoomID)
		}
	} else if q != nil && (q.Kind != p.Kind || !q.JID.Equal(p.JID.Bare())) {
		return refusal("room %s is another portal", p.RoomID)
	} else if g := s.groupPortal(p.JID); q == nil && g != nil {
		return refusal("%s has a portal already", p.JID.Bare())
	}
	if q == nil {
		q = &Portal{RoomID: p.RoomID, Kind: p.Kind, JID: p.JID.Bare(), CreatedAt: p.CreatedAt}
		s.portals = append(s.portals, q)
	}
	for _, m := range p.Members {
		if q.Member(m.ID) == nil {
			q.Members = append(q.Members, Member{ID: m.ID})
		}
	}
	slices.SortFunc(q.Members, func(a, b Member) int { return strings.Compare(string(a.ID), string(b.ID)) })
	p.CreatedAt = q.CreatedAt
	return nil
}

func (s *MemStore) AddMessage(_ context.Context, msg *Message, jobs ...*Job) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range jobs {
		if j.Kind == "" {
			return false, refusal("a job without a kind")
		}
	}
	if strings.IndexByte(msg.Body, 0) >= 0 || strings.IndexByte(msg.RelKey, 0) >= 0 {
		// As PostgreSQL: no U+0000 in text (SQLSTATE 22021).
		return false, refusal("a message with U+0000 in its text")
	}
	peer := msg.PeerJID.Bare()
	for _, m := range s.messages {
		if (msg.EventID != "" && m.EventID == msg.EventID) ||
			(msg.XMPPID != "" && m.XMPPID == msg.XMPPID && m.PeerJID.Equal(peer) && m.Direction == msg.Direction) {
			return false, nil
		}
	}
	msg.RowID = int64(len(s.messages) + 1)
	c := *msg
	c.PeerJID = peer // the resource is PeerResource's
	c.TS = time.UnixMilli(msg.TS.UnixMilli())
	s.messages = append(s.messages, &c)
	for _, j := range jobs {
		j.MessageID = msg.RowID
		s.addJob(j)
	}
	return true, nil
}

func (s *MemStore) Reactions(_ context.Context, target int64, dir Direction) ([]*Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	redacted := map[int64]bool{}
	for _, m := range s.messages {
		if m.RelKind == RelRedact {
			redacted[m.RelTo] = true
		}
	}
	var out []*Message
	for _, m := range s.messages {
		if m.RelTo == target && m.RelKind == RelReaction && m.Direction == dir && !redacted[m.RowID] {
			c := *m
			out = append(out, &c)
		}
	}
	return out, nil
}

func (s *MemStore) MessageByRow(_ context.Context, row int64) (*Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if row < 1 || int(row) > len(s.messages) {
		return nil, ErrNotFound
	}
	c := *s.messages[row-1]
	return &c, nil
}

func (s *MemStore) find(match func(*Message) bool) (*Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.messages {
		if match(m) {
			c := *m
			return &c, nil
		}
	}
	return nil, ErrNotFound
}

func (s *MemStore) MessageByEventID(_ context.Context, ev id.EventID) (*Message, error) {
	return s.find(func(m *Message) bool { return m.EventID == ev })
}

func (s *MemStore) MessageByXMPPID(_ context.Context, peer jid.JID, xid string, dir Direction) (*Message, error) {
	if xid == "" {
		return nil, ErrNotFound // a message without a stanza id is found by row or event only
	}
	return s.find(func(m *Message) bool { return m.XMPPID == xid && m.PeerJID.Equal(peer.Bare()) && m.Direction == dir })
}

// SetMessageEventID refuses an event id another message has, as the
// database's unique index does.
func (s *MemStore) SetMessageEventID(_ context.Context, row int64, room id.RoomID, ev id.EventID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if row < 1 || int(row) > len(s.messages) {
		return ErrNotFound
	}
	for _, m := range s.messages {
		if m.EventID == ev && m.RowID != row {
			return fmt.Errorf("event %s is message %d's already", ev, m.RowID)
		}
	}
	s.messages[row-1].RoomID, s.messages[row-1].EventID = room, ev
	return nil
}

func (s *MemStore) SetRoomStanzaID(_ context.Context, row int64, sid string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if row < 1 || int(row) > len(s.messages) {
		return false, nil
	}
	m := s.messages[row-1]
	if m.XMPPID == sid {
		return false, nil
	}
	for _, o := range s.messages {
		if o.XMPPID == sid && o.PeerJID.Equal(m.PeerJID) && o.Direction == m.Direction {
			return false, refusal("stanza-id %q names message %d already", sid, o.RowID)
		}
	}
	m.XMPPID, m.StanzaID = sid, sid
	return true, nil
}

func (s *MemStore) HasUnsentToMatrix(_ context.Context, mxid id.UserID, peer jid.JID) (bool, error) {
	_, err := s.find(func(m *Message) bool {
		return m.Direction == FromXMPP && m.MXID == mxid && m.PeerJID.Equal(peer.Bare()) && m.EventID == ""
	})
	return err == nil, nil
}

func (s *MemStore) PuppetProfile(_ context.Context, mxid id.UserID) (*Profile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.profiles[mxid]
	if !ok {
		return nil, ErrNotFound
	}
	p.Photo = slices.Clone(p.Photo)
	return &p, nil
}

func (s *MemStore) SetPuppetProfile(_ context.Context, p *Profile) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.profiles == nil {
		s.profiles = map[id.UserID]Profile{}
	}
	c := *p
	c.Photo = slices.Clone(p.Photo)
	s.profiles[p.MXID] = c
	return nil
}

func (s *MemStore) GhostProfile(_ context.Context, peer jid.JID) (*GhostProfile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.ghosts[peer.Bare().String()]
	if !ok {
		return nil, ErrNotFound
	}
	return &p, nil
}

func (s *MemStore) SetGhostProfile(_ context.Context, p *GhostProfile) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ghosts == nil {
		s.ghosts = map[string]GhostProfile{}
	}
	c := *p
	c.JID = p.JID.Bare()
	s.ghosts[c.JID.String()] = c
	return nil
}

func (s *MemStore) Subscribers(context.Context) ([]*Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Subscription
	for _, sub := range s.subs {
		if sub.FromThem {
			c := *sub
			out = append(out, &c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].MXID != out[j].MXID {
			return out[i].MXID < out[j].MXID
		}
		return out[i].JID.String() < out[j].JID.String()
	})
	return out, nil
}

func (s *MemStore) PutTxn(_ context.Context, txn *Txn) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.txns[txn.ID]; ok {
		return false, nil
	}
	s.txns[txn.ID] = txn
	s.txnOrder = append(s.txnOrder, txn.ID)
	return true, nil
}

func (s *MemStore) PendingTxns(_ context.Context, limit, maxBytes int) ([]*Txn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Txn
	size := 0
	for _, t := range s.txnOrder {
		if !s.done[t] && (limit <= 0 || len(out) < limit) && (maxBytes <= 0 || size < maxBytes) {
			out = append(out, s.txns[t])
			size += len(s.txns[t].Body)
		}
	}
	return out, nil
}

func (s *MemStore) FinishTxn(_ context.Context, txnID string, acks []Ack, jobs []*Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.txns[txnID]; !ok {
		return ErrNotFound
	}
	if s.done[txnID] {
		return nil
	}
	if err := s.checkAcks(acks, jobs); err != nil {
		return err
	}
	s.done[txnID] = true
	s.acks(acks, jobs)
	return nil
}

// checkAcks is checkJobs for the jobs of acks and jobs, before any is
// recorded: a transaction of the database stores all or none.
func (s *MemStore) checkAcks(acks []Ack, jobs []*Job) error {
	all := append([]*Job(nil), jobs...)
	for _, a := range acks {
		if a.Job != nil {
			all = append(all, a.Job)
		}
	}
	return s.checkJobs(all)
}

func (s *MemStore) acks(acks []Ack, jobs []*Job) []bool {
	isNew := make([]bool, len(acks))
	for i, a := range acks {
		if a.UpTo != "" {
			if p := s.portalOf(a.UpTo); p != nil {
				if m := p.Member(a.By); m != nil {
					mark := &m.DeliveredUpTo
					if a.Kind == AckDisplayed {
						mark = &m.ReadUpTo
					}
					if *mark < a.Row {
						*mark, isNew[i] = a.Row, true
					}
				}
			}
		}
		for _, m := range s.messages {
			if a.UpTo != "" || m.RowID != a.Row {
				continue
			}
			at := &m.DeliveredAt
			if a.Kind == AckDisplayed {
				at = &m.DisplayedAt
			}
			if at.IsZero() {
				*at, isNew[i] = a.At, true
			}
		}
		if isNew[i] {
			if a.Job != nil {
				if a.Job.MessageID == 0 {
					a.Job.MessageID = a.Row
				}
				s.addJob(a.Job)
			}
		}
	}
	for _, j := range jobs {
		s.addJob(j)
	}
	return isNew
}

func (s *MemStore) Acknowledge(_ context.Context, acks []Ack, jobs ...*Job) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkAcks(acks, jobs); err != nil {
		return nil, err
	}
	return s.acks(acks, jobs), nil
}

// jobsAdded is how many jobs were ever stored.
func (s *MemStore) jobsAdded() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextJob
}

// checkJobs refuses what the database's schema does: a job without a kind,
// or about a message that is not stored.
func (s *MemStore) checkJobs(jobs []*Job) error {
	for _, j := range jobs {
		if j.Kind == "" {
			return fmt.Errorf("a job without a kind")
		}
		if j.MessageID != 0 && (j.MessageID < 1 || int(j.MessageID) > len(s.messages)) {
			return fmt.Errorf("a job about message %d, which is not stored", j.MessageID)
		}
	}
	return nil
}

func (s *MemStore) addJob(j *Job) {
	s.nextJob++
	j.ID = s.nextJob
	c := *j
	s.jobs = append(s.jobs, &c)
}

func (s *MemStore) AddJobs(_ context.Context, jobs ...*Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkJobs(jobs); err != nil {
		return err
	}
	for _, j := range jobs {
		s.addJob(j)
	}
	return nil
}

func (s *MemStore) DueJobs(_ context.Context, now time.Time, limit int) ([]*Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit <= 0 {
		return nil, fmt.Errorf("due jobs: limit %d", limit)
	}
	var out []*Job
	for _, j := range s.jobs {
		if !j.NotBefore.After(now) && len(out) < limit {
			c := *j
			out = append(out, &c)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

func (s *MemStore) DeleteJob(_ context.Context, jobID int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, j := range s.jobs {
		if j.ID == jobID {
			s.jobs = append(s.jobs[:i], s.jobs[i+1:]...)
			return nil
		}
	}
	return nil
}

func (s *MemStore) RetryJob(_ context.Context, jobID int64, notBefore time.Time, lastErr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.ID == jobID {
			j.Attempts++
			j.NotBefore, j.LastError = notBefore, lastErr
			return nil
		}
	}
	return ErrNotFound
}

var _ Store = (*MemStore)(nil)

// unreadLookups is how many times UnreadUpTo was called.
func (s *MemStore) unreadLookups() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unreadCalls
}

func (s *MemStore) UnreadUpTo(_ context.Context, upTo map[Mark]int64, limit int) (map[Mark][]*Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unreadCalls++
	out := map[Mark][]*Message{}
	for read, row := range upTo {
		var unread []*Message
		var mark int64
		if p := s.portalOf(read.Room); p != nil {
			mark = p.Marks(read.By).ReadUpTo
		}
		for _, m := range s.messages {
			if m.RoomID == read.Room && m.Direction == FromXMPP && m.RowID <= row && m.RowID > mark && m.DisplayedAt.IsZero() {
				c := *m
				unread = append(unread, &c)
			}
		}
		if len(unread) > limit {
			unread = unread[len(unread)-limit:]
		}
		if len(unread) > 0 {
			out[read] = unread
		}
	}
	return out, nil
}

func (s *MemStore) NewestComposable(_ context.Context, room id.RoomID) (*Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.messages) - 1; i >= 0; i-- {
		if m := s.messages[i]; m.RoomID == room && m.Direction == FromXMPP && m.Requests.Composing {
			c := *m
			return &c, nil
		}
	}
	return nil, ErrNotFound
}

func subKey(mxid id.UserID, peer jid.JID) string { return string(mxid) + " " + peer.Bare().String() }

func (s *MemStore) Subscription(_ context.Context, mxid id.UserID, peer jid.JID) (*Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub, ok := s.subs[subKey(mxid, peer)]; ok {
		c := *sub
		return &c, nil
	}
	return nil, ErrNotFound
}

func (s *MemStore) setSub(mxid id.UserID, peer jid.JID, set func(*Subscription)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs == nil {
		s.subs = map[string]*Subscription{}
	}
	k := subKey(mxid, peer)
	if s.subs[k] == nil {
		s.subs[k] = &Subscription{MXID: mxid, JID: peer.Bare()}
	}
	set(s.subs[k])
}

func (s *MemStore) SetSubscriptionFrom(_ context.Context, mxid id.UserID, peer jid.JID, on bool) error {
	s.setSub(mxid, peer, func(sub *Subscription) { sub.FromThem = on })
	return nil
}

func (s *MemStore) SetSubscriptionTo(_ context.Context, mxid id.UserID, peer jid.JID, on bool) error {
	s.setSub(mxid, peer, func(sub *Subscription) { sub.ToThem = on })
	return nil
}

func (s *MemStore) DeleteJobs(ctx context.Context, ids ...int64) error {
	for _, id := range ids {
		_ = s.DeleteJob(ctx, id)
	}
	return nil
}

func (s *MemStore) MessagesByEventIDs(ctx context.Context, evs []id.EventID) (map[id.EventID]*Message, error) {
	out := map[id.EventID]*Message{}
	for _, ev := range evs {
		if m, err := s.MessageByEventID(ctx, ev); err == nil {
			out[ev] = m
		}
	}
	return out, nil
}

func (s *MemStore) MessagesByXMPPIDs(ctx context.Context, dir Direction, keys []XMPPKey) (map[XMPPKey]*Message, error) {
	out := map[XMPPKey]*Message{}
	for _, k := range keys {
		// The key's peer is a bare JID as written: matched as it is.
		if peer, err := jid.Parse(k.Peer); err == nil && peer.Resourcepart() == "" && peer.String() == k.Peer {
			if m, err := s.MessageByXMPPID(ctx, peer, k.ID, dir); err == nil {
				out[k] = m
			}
		}
	}
	return out, nil
}

func (s *MemStore) PortalsByRooms(ctx context.Context, rooms []id.RoomID) (map[id.RoomID]*Portal, error) {
	out := map[id.RoomID]*Portal{}
	for _, r := range rooms {
		if p, err := s.PortalByRoom(ctx, r); err == nil {
			out[r] = p
		}
	}
	return out, nil
}

func (s *MemStore) DueJobsAfter(ctx context.Context, now time.Time, after int64, limit int) ([]*Job, error) {
	jobs, err := s.DueJobs(ctx, now, 1<<30)
	var out []*Job
	for _, j := range jobs {
		if j.ID > after && len(out) < limit {
			out = append(out, j)
		}
	}
	return out, err
}

func (s *MemStore) FinishTxns(_ context.Context, txnIDs []string, acks []Ack, jobs []*Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range txnIDs {
		if _, ok := s.txns[id]; !ok || s.done[id] {
			return ErrNotPending
		}
	}
	if err := s.checkAcks(acks, jobs); err != nil {
		return err
	}
	for _, id := range txnIDs {
		s.done[id] = true
	}
	s.acks(acks, jobs)
	return nil
}

func (s *MemStore) ManagementRoom(_ context.Context, room id.RoomID) (id.UserID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.mgmt[room]; ok {
		return u, nil
	}
	return "", ErrNotFound
}

func (s *MemStore) PutManagementRoom(_ context.Context, room id.RoomID, mxid id.UserID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mgmt == nil {
		s.mgmt = map[id.RoomID]id.UserID{}
	}
	s.mgmt[room] = mxid
	return nil
}

func (s *MemStore) UserSettings(context.Context) (map[id.UserID]UserSetting, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[id.UserID]UserSetting{}
	for u, v := range s.settings {
		out[u] = v
	}
	return out, nil
}

func (s *MemStore) SetUserSetting(_ context.Context, v UserSetting) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.settings == nil {
		s.settings = map[id.UserID]UserSetting{}
	}
	s.settings[v.MXID] = v
	return nil
}
