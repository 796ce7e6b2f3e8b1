// Package memstore is an in-memory mapping.Store, for tests only: the
// core's tests (package mapping) run their rules on it, with no database.
// It keeps nothing across runs and is not for use by the bridge. The
// database package's store contract tests (forEachStore) run on it as on
// SQLite and PostgreSQL, and hold it to the engines' behaviour: what those
// tests ask of a store, it answers as the database does.
//
// It is its own package, not part of mapping, so that the bridge's
// production package holds no test fake; the core's tests that use it are
// therefore external tests (package mapping_test).
package memstore

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

	"xmppbridge/mapping"
)

// Store is the in-memory store: the core's mapping.Store, and what the
// outbox reads. New makes an empty one.
type Store struct {
	mu       sync.Mutex
	portals  []*mapping.Portal
	mgmt     map[id.RoomID]id.UserID
	settings map[id.UserID]mapping.UserSetting
	messages []*mapping.Message
	txns     map[string]*mapping.Txn
	txnOrder []string
	done     map[string]bool
	jobs     []*mapping.Job
	nextJob  int64
	// unreadCalls counts UnreadUpTo, for a test of coalesced reads.
	unreadCalls int
	subs        map[string]*mapping.Subscription // by mxid and bare JID
	profiles    map[id.UserID]mapping.Profile
	ghosts      map[string]mapping.GhostProfile // by JID, as given
	setAside    []*mapping.SetAside
}

// refusedError is the store refusing data, as a database's constraint
// would.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// Refusal is an error the store refuses data with, which its Refuses
// knows, wrapped or not.
func Refusal(format string, args ...any) error {
	return &refusedError{fmt.Sprintf(format, args...)}
}

// Refuses implements mapping.Store.
func (s *Store) Refuses(err error) bool {
	var r *refusedError
	return errors.As(err, &r)
}

// PutSetAside implements mapping.Store.
func (s *Store) PutSetAside(_ context.Context, a *mapping.SetAside) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.setAside {
		if o.TxnID == a.TxnID && o.EventID == a.EventID {
			return false, nil
		}
	}
	c := *a
	t := mapping.StorableText
	c.TxnID, c.EventID, c.Room, c.Sender = t(a.TxnID), id.EventID(t(string(a.EventID))), id.RoomID(t(string(a.Room))), id.UserID(t(string(a.Sender)))
	c.Type, c.Reason, c.Error = t(a.Type), mapping.Reason(t(string(a.Reason))), t(a.Error)
	c.At = time.UnixMilli(a.At.UnixMilli()) // as stored
	s.setAside = append(s.setAside, &c)
	return true, nil
}

// SetAsideCount implements mapping.Store.
func (s *Store) SetAsideCount(context.Context) (int, *mapping.SetAside, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.setAside) == 0 {
		return 0, nil, nil
	}
	c := *s.setAside[len(s.setAside)-1]
	return len(s.setAside), &c, nil
}

// New makes an empty store.
func New() *Store {
	return &Store{txns: map[string]*mapping.Txn{}, done: map[string]bool{}}
}

func (s *Store) PortalByRoom(_ context.Context, room id.RoomID) (*mapping.Portal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.portalOf(room); p != nil {
		return p.Clone(), nil
	}
	return nil, mapping.ErrNotFound
}

func (s *Store) portalOf(room id.RoomID) *mapping.Portal {
	for _, p := range s.portals {
		if p.RoomID == room {
			return p
		}
	}
	return nil
}

func (s *Store) pairPortal(mxid id.UserID, peer jid.JID) *mapping.Portal {
	for _, p := range s.portals {
		if p.Kind == mapping.PortalDirect && p.User() == mxid && p.JID.Equal(peer.Bare()) {
			return p
		}
	}
	return nil
}

func (s *Store) PortalByPair(_ context.Context, mxid id.UserID, peer jid.JID) (*mapping.Portal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pairPortal(mxid, peer); p != nil {
		return p.Clone(), nil
	}
	return nil, mapping.ErrNotFound
}

func (s *Store) groupPortal(room jid.JID) *mapping.Portal {
	for _, p := range s.portals {
		if p.Kind == mapping.PortalGroup && p.JID.Equal(room.Bare()) {
			return p
		}
	}
	return nil
}

func (s *Store) GroupPortal(_ context.Context, room jid.JID) (*mapping.Portal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.groupPortal(room); p != nil {
		return p.Clone(), nil
	}
	return nil, mapping.ErrNotFound
}

func (s *Store) GroupPortals(context.Context) ([]*mapping.Portal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*mapping.Portal
	for _, p := range s.portals {
		if p.Kind == mapping.PortalGroup {
			out = append(out, p.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *mapping.Portal) int { return strings.Compare(a.JID.String(), b.JID.String()) })
	return out, nil
}

func (s *Store) GroupsOf(_ context.Context, user id.UserID) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.portals {
		if p.Kind == mapping.PortalGroup && p.Member(mapping.MatrixMember(user)) != nil {
			n++
		}
	}
	return n, nil
}

func (s *Store) RemoveMember(_ context.Context, room id.RoomID, member mapping.MemberID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.portalOf(room); p != nil {
		p.Members = slices.DeleteFunc(p.Members, func(m mapping.Member) bool { return m.ID == member })
	}
	return nil
}

func (s *Store) SetJoin(_ context.Context, room id.RoomID, m mapping.Member) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.portalOf(room)
	if p == nil {
		return Refusal("room %s is no portal", room)
	}
	if had := p.Member(m.ID); had != nil {
		had.Nick, had.Password = m.Nick, m.Password
		return nil
	}
	p.Members = append(p.Members, mapping.Member{ID: m.ID, Nick: m.Nick, Password: m.Password})
	slices.SortFunc(p.Members, func(a, b mapping.Member) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return nil
}

func (s *Store) PortalsOf(_ context.Context, mxid id.UserID) ([]*mapping.Portal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*mapping.Portal
	for _, p := range s.portals {
		if p.Member(mapping.MatrixMember(mxid)) != nil {
			out = append(out, p.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *mapping.Portal) int { return strings.Compare(a.JID.String(), b.JID.String()) })
	return out, nil
}

// PutPortal keeps the bare JID, the members by ID with the watermarks they
// have, and the portal's creation time unless it moves to another room, as
// the database does.
func (s *Store) PutPortal(_ context.Context, p *mapping.Portal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.CreatedAt.IsZero() {
		p.CreatedAt = time.Now()
	}
	p.CreatedAt = time.UnixMilli(p.CreatedAt.UnixMilli()) // as stored
	q := s.portalOf(p.RoomID)
	if p.Kind == mapping.PortalDirect {
		if pair := s.pairPortal(p.User(), p.JID); pair != nil {
			if q != nil && q != pair {
				return Refusal("room %s is another portal", p.RoomID)
			}
			q = pair
			if q.RoomID != p.RoomID {
				q.RoomID, q.CreatedAt = p.RoomID, p.CreatedAt
			}
		} else if q != nil {
			return Refusal("room %s is another portal", p.RoomID)
		}
	} else if q != nil && (q.Kind != p.Kind || !q.JID.Equal(p.JID.Bare())) {
		return Refusal("room %s is another portal", p.RoomID)
	} else if g := s.groupPortal(p.JID); q == nil && g != nil {
		return Refusal("%s has a portal already", p.JID.Bare())
	}
	if q == nil {
		q = &mapping.Portal{RoomID: p.RoomID, Kind: p.Kind, JID: p.JID.Bare(), CreatedAt: p.CreatedAt}
		s.portals = append(s.portals, q)
	}
	for _, m := range p.Members {
		if q.Member(m.ID) == nil {
			q.Members = append(q.Members, mapping.Member{ID: m.ID})
		}
	}
	slices.SortFunc(q.Members, func(a, b mapping.Member) int { return strings.Compare(string(a.ID), string(b.ID)) })
	p.CreatedAt = q.CreatedAt
	return nil
}

func (s *Store) AddMessage(_ context.Context, msg *mapping.Message, jobs ...*mapping.Job) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range jobs {
		if j.Kind == "" {
			return false, Refusal("a job without a kind")
		}
	}
	if strings.IndexByte(msg.Body, 0) >= 0 || strings.IndexByte(msg.RelKey, 0) >= 0 {
		// As PostgreSQL: no U+0000 in text (SQLSTATE 22021).
		return false, Refusal("a message with U+0000 in its text")
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
	c.Sender = msg.SentBy()
	c.TS = time.UnixMilli(msg.TS.UnixMilli())
	s.messages = append(s.messages, &c)
	for _, j := range jobs {
		j.MessageID = msg.RowID
		s.addJob(j)
	}
	return true, nil
}

func (s *Store) Reactions(_ context.Context, target int64, dir mapping.Direction) ([]*mapping.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	redacted := map[int64]bool{}
	for _, m := range s.messages {
		if m.RelKind == mapping.RelRedact {
			redacted[m.RelTo] = true
		}
	}
	var out []*mapping.Message
	for _, m := range s.messages {
		if m.RelTo == target && m.RelKind == mapping.RelReaction && m.Direction == dir && !redacted[m.RowID] {
			c := *m
			out = append(out, &c)
		}
	}
	return out, nil
}

func (s *Store) MessageByRow(_ context.Context, row int64) (*mapping.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if row < 1 || int(row) > len(s.messages) {
		return nil, mapping.ErrNotFound
	}
	c := *s.messages[row-1]
	return &c, nil
}

func (s *Store) find(match func(*mapping.Message) bool) (*mapping.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.messages {
		if match(m) {
			c := *m
			return &c, nil
		}
	}
	return nil, mapping.ErrNotFound
}

func (s *Store) MessageByEventID(_ context.Context, ev id.EventID) (*mapping.Message, error) {
	return s.find(func(m *mapping.Message) bool { return m.EventID == ev })
}

func (s *Store) MessageByXMPPID(_ context.Context, peer jid.JID, xid string, dir mapping.Direction) (*mapping.Message, error) {
	if xid == "" {
		return nil, mapping.ErrNotFound // a message without a stanza id is found by row or event only
	}
	return s.find(func(m *mapping.Message) bool {
		return m.XMPPID == xid && m.PeerJID.Equal(peer.Bare()) && m.Direction == dir
	})
}

func (s *Store) LastInRoom(_ context.Context, room id.RoomID) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last time.Time
	found := false
	for _, m := range s.messages {
		if m.RoomID == room && (!found || m.TS.After(last)) {
			last, found = m.TS, true
		}
	}
	if !found {
		return time.Time{}, mapping.ErrNotFound
	}
	return last, nil
}

func (s *Store) RecentByOriginID(_ context.Context, room id.RoomID, origin string) (*mapping.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var recent []*mapping.Message
	for _, m := range s.messages {
		if m.RoomID == room {
			recent = append(recent, m)
		}
	}
	// Newest first, by time and then row, as the database's index.
	slices.SortStableFunc(recent, func(a, b *mapping.Message) int {
		if c := b.TS.Compare(a.TS); c != 0 {
			return c
		}
		return int(b.RowID - a.RowID)
	})
	for _, m := range recent[:min(len(recent), mapping.RecentWindow)] {
		if origin != "" && m.OriginID == origin {
			c := *m
			return &c, nil
		}
	}
	return nil, mapping.ErrNotFound
}

// SetMessageEventID refuses an event id another message has, as the
// database's unique index does.
func (s *Store) SetMessageEventID(_ context.Context, row int64, room id.RoomID, ev id.EventID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if row < 1 || int(row) > len(s.messages) {
		return mapping.ErrNotFound
	}
	for _, m := range s.messages {
		if m.EventID == ev && m.RowID != row {
			return fmt.Errorf("event %s is message %d's already", ev, m.RowID)
		}
	}
	s.messages[row-1].RoomID, s.messages[row-1].EventID = room, ev
	return nil
}

func (s *Store) SetRoomStanzaID(_ context.Context, row int64, sid string) (bool, error) {
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
			return false, Refusal("stanza-id %q names message %d already", sid, o.RowID)
		}
	}
	m.XMPPID, m.StanzaID = sid, sid
	return true, nil
}

func (s *Store) HasUnsentToMatrix(_ context.Context, mxid id.UserID, peer jid.JID) (bool, error) {
	_, err := s.find(func(m *mapping.Message) bool {
		return m.Direction == mapping.FromXMPP && m.MXID == mxid && m.PeerJID.Equal(peer.Bare()) && m.EventID == ""
	})
	return err == nil, nil
}

func (s *Store) PuppetProfile(_ context.Context, mxid id.UserID) (*mapping.Profile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.profiles[mxid]
	if !ok {
		return nil, mapping.ErrNotFound
	}
	p.Photo = slices.Clone(p.Photo)
	return &p, nil
}

func (s *Store) SetPuppetProfile(_ context.Context, p *mapping.Profile) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.profiles == nil {
		s.profiles = map[id.UserID]mapping.Profile{}
	}
	c := *p
	c.Photo = slices.Clone(p.Photo)
	s.profiles[p.MXID] = c
	return nil
}

func (s *Store) GhostProfile(_ context.Context, peer jid.JID) (*mapping.GhostProfile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.ghosts[peer.String()]
	if !ok {
		return nil, mapping.ErrNotFound
	}
	return &p, nil
}

func (s *Store) SetGhostProfile(_ context.Context, p *mapping.GhostProfile) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ghosts == nil {
		s.ghosts = map[string]mapping.GhostProfile{}
	}
	s.ghosts[p.JID.String()] = *p
	return nil
}

func (s *Store) Subscribers(context.Context) ([]*mapping.Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*mapping.Subscription
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

func (s *Store) PutTxn(_ context.Context, txn *mapping.Txn) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.txns[txn.ID]; ok {
		return false, nil
	}
	s.txns[txn.ID] = txn
	s.txnOrder = append(s.txnOrder, txn.ID)
	return true, nil
}

func (s *Store) PendingTxns(_ context.Context, limit, maxBytes int) ([]*mapping.Txn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*mapping.Txn
	size := 0
	for _, t := range s.txnOrder {
		if !s.done[t] && (limit <= 0 || len(out) < limit) && (maxBytes <= 0 || size < maxBytes) {
			out = append(out, s.txns[t])
			size += len(s.txns[t].Body)
		}
	}
	return out, nil
}

func (s *Store) FinishTxn(_ context.Context, txnID string, acks []mapping.Ack, jobs []*mapping.Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.txns[txnID]; !ok {
		return mapping.ErrNotFound
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
func (s *Store) checkAcks(acks []mapping.Ack, jobs []*mapping.Job) error {
	all := append([]*mapping.Job(nil), jobs...)
	for _, a := range acks {
		if a.Job != nil {
			all = append(all, a.Job)
		}
	}
	return s.checkJobs(all)
}

func (s *Store) acks(acks []mapping.Ack, jobs []*mapping.Job) []bool {
	isNew := make([]bool, len(acks))
	for i, a := range acks {
		if a.UpTo != "" {
			if p := s.portalOf(a.UpTo); p != nil {
				if m := p.Member(a.By); m != nil {
					mark := &m.DeliveredUpTo
					if a.Kind == mapping.AckDisplayed {
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
			if a.Kind == mapping.AckDisplayed {
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

func (s *Store) Acknowledge(_ context.Context, acks []mapping.Ack, jobs ...*mapping.Job) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkAcks(acks, jobs); err != nil {
		return nil, err
	}
	return s.acks(acks, jobs), nil
}

// checkJobs refuses what the database's schema does: a job without a kind,
// or about a message that is not stored.
func (s *Store) checkJobs(jobs []*mapping.Job) error {
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

func (s *Store) addJob(j *mapping.Job) {
	s.nextJob++
	j.ID = s.nextJob
	c := *j
	s.jobs = append(s.jobs, &c)
}

func (s *Store) AddJobs(_ context.Context, jobs ...*mapping.Job) error {
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

func (s *Store) DueJobs(_ context.Context, now time.Time, limit int) ([]*mapping.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit <= 0 {
		return nil, fmt.Errorf("due jobs: limit %d", limit)
	}
	var out []*mapping.Job
	for _, j := range s.jobs {
		if !j.NotBefore.After(now) && len(out) < limit {
			c := *j
			out = append(out, &c)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

func (s *Store) DeleteJob(_ context.Context, jobID int64) error {
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

func (s *Store) RetryJob(_ context.Context, jobID int64, notBefore time.Time, lastErr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.ID == jobID {
			j.Attempts++
			j.NotBefore, j.LastError = notBefore, lastErr
			return nil
		}
	}
	return mapping.ErrNotFound
}

var _ mapping.Store = (*Store)(nil)

func (s *Store) UnreadUpTo(_ context.Context, upTo map[mapping.Mark]int64, limit int) (map[mapping.Mark][]*mapping.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unreadCalls++
	out := map[mapping.Mark][]*mapping.Message{}
	for read, row := range upTo {
		var unread []*mapping.Message
		var mark int64
		if p := s.portalOf(read.Room); p != nil {
			mark = p.Marks(read.By).ReadUpTo
		}
		for _, m := range s.messages {
			if m.RoomID == read.Room && m.Direction == mapping.FromXMPP && m.RowID <= row && m.RowID > mark && m.DisplayedAt.IsZero() {
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

func (s *Store) NewestComposable(_ context.Context, room id.RoomID) (*mapping.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.messages) - 1; i >= 0; i-- {
		if m := s.messages[i]; m.RoomID == room && m.Direction == mapping.FromXMPP && m.Requests.Composing {
			c := *m
			return &c, nil
		}
	}
	return nil, mapping.ErrNotFound
}

func subKey(mxid id.UserID, peer jid.JID) string { return string(mxid) + " " + peer.Bare().String() }

func (s *Store) Subscription(_ context.Context, mxid id.UserID, peer jid.JID) (*mapping.Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub, ok := s.subs[subKey(mxid, peer)]; ok {
		c := *sub
		return &c, nil
	}
	return nil, mapping.ErrNotFound
}

func (s *Store) setSub(mxid id.UserID, peer jid.JID, set func(*mapping.Subscription)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs == nil {
		s.subs = map[string]*mapping.Subscription{}
	}
	k := subKey(mxid, peer)
	if s.subs[k] == nil {
		s.subs[k] = &mapping.Subscription{MXID: mxid, JID: peer.Bare()}
	}
	set(s.subs[k])
}

func (s *Store) SetSubscriptionFrom(_ context.Context, mxid id.UserID, peer jid.JID, on bool) error {
	s.setSub(mxid, peer, func(sub *mapping.Subscription) { sub.FromThem = on })
	return nil
}

func (s *Store) SetSubscriptionTo(_ context.Context, mxid id.UserID, peer jid.JID, on bool) error {
	s.setSub(mxid, peer, func(sub *mapping.Subscription) { sub.ToThem = on })
	return nil
}

func (s *Store) DeleteJobs(ctx context.Context, ids ...int64) error {
	for _, id := range ids {
		_ = s.DeleteJob(ctx, id)
	}
	return nil
}

func (s *Store) MessagesByEventIDs(ctx context.Context, evs []id.EventID) (map[id.EventID]*mapping.Message, error) {
	out := map[id.EventID]*mapping.Message{}
	for _, ev := range evs {
		if m, err := s.MessageByEventID(ctx, ev); err == nil {
			out[ev] = m
		}
	}
	return out, nil
}

func (s *Store) MessagesByXMPPIDs(ctx context.Context, dir mapping.Direction, keys []mapping.XMPPKey) (map[mapping.XMPPKey]*mapping.Message, error) {
	out := map[mapping.XMPPKey]*mapping.Message{}
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

func (s *Store) PortalsByRooms(ctx context.Context, rooms []id.RoomID) (map[id.RoomID]*mapping.Portal, error) {
	out := map[id.RoomID]*mapping.Portal{}
	for _, r := range rooms {
		if p, err := s.PortalByRoom(ctx, r); err == nil {
			out[r] = p
		}
	}
	return out, nil
}

func (s *Store) DueJobsAfter(ctx context.Context, now time.Time, after int64, limit int) ([]*mapping.Job, error) {
	jobs, err := s.DueJobs(ctx, now, 1<<30)
	var out []*mapping.Job
	for _, j := range jobs {
		if j.ID > after && len(out) < limit {
			out = append(out, j)
		}
	}
	return out, err
}

func (s *Store) FinishTxns(_ context.Context, txnIDs []string, acks []mapping.Ack, jobs []*mapping.Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range txnIDs {
		if _, ok := s.txns[id]; !ok || s.done[id] {
			return mapping.ErrNotPending
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

func (s *Store) ManagementRoom(_ context.Context, room id.RoomID) (id.UserID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.mgmt[room]; ok {
		return u, nil
	}
	return "", mapping.ErrNotFound
}

func (s *Store) PutManagementRoom(_ context.Context, room id.RoomID, mxid id.UserID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mgmt == nil {
		s.mgmt = map[id.RoomID]id.UserID{}
	}
	s.mgmt[room] = mxid
	return nil
}

func (s *Store) UserSettings(context.Context) (map[id.UserID]mapping.UserSetting, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[id.UserID]mapping.UserSetting{}
	for u, v := range s.settings {
		out[u] = v
	}
	return out, nil
}

func (s *Store) SetUserSetting(_ context.Context, v mapping.UserSetting) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.settings == nil {
		s.settings = map[id.UserID]mapping.UserSetting{}
	}
	s.settings[v.MXID] = v
	return nil
}

// What follows is for the core's tests, what no method of mapping.Store
// does.

// JobsAdded is how many jobs were ever stored.
func (s *Store) JobsAdded() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextJob
}

// UnreadLookups is how many times UnreadUpTo was called.
func (s *Store) UnreadLookups() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unreadCalls
}

// SetPortalCreatedAt sets the creation time of the portal of room, which
// PutPortal keeps once the portal is stored, as the database does.
func (s *Store) SetPortalCreatedAt(room id.RoomID, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.portalOf(room); p != nil {
		p.CreatedAt = at
	}
}

// StoredSubscriptions is every subscription stored, either way.
func (s *Store) StoredSubscriptions() []mapping.Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []mapping.Subscription
	for _, sub := range s.subs {
		out = append(out, *sub)
	}
	return out
}

// MarkPending makes the finished transaction txnID pending again.
func (s *Store) MarkPending(txnID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done[txnID] = false
}
