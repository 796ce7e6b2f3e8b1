package mapping

import (
	"context"
	"sort"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// memStore is an in-memory Store for testing the rules; the database package
// tests the real one on SQLite and PostgreSQL.
type memStore struct {
	mu       sync.Mutex
	portals  []*Portal
	messages []*Message
	txns     map[string]*Txn
	txnOrder []string
	done     map[string]bool
	jobs     []*Job
	nextJob  int64
	// unreadCalls counts UnreadUpTo, for a test of coalesced reads.
	unreadCalls int
	subs        map[string]*Subscription // by mxid and bare JID
}

func newMemStore() *memStore {
	return &memStore{txns: map[string]*Txn{}, done: map[string]bool{}}
}

func (s *memStore) PortalByRoom(_ context.Context, room id.RoomID) (*Portal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.portals {
		if p.RoomID == room {
			c := *p
			return &c, nil
		}
	}
	return nil, ErrNotFound
}

func (s *memStore) PortalByPair(_ context.Context, mxid id.UserID, peer jid.JID) (*Portal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.portals {
		if p.MXID == mxid && p.JID.Equal(peer) {
			c := *p
			return &c, nil
		}
	}
	return nil, ErrNotFound
}

func (s *memStore) PutPortal(_ context.Context, p *Portal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.portals {
		if q.MXID == p.MXID && q.JID.Equal(p.JID) {
			q.RoomID = p.RoomID
			return nil
		}
	}
	c := *p
	s.portals = append(s.portals, &c)
	return nil
}

func (s *memStore) AddMessage(_ context.Context, msg *Message, jobs ...*Job) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.messages {
		if (msg.EventID != "" && m.EventID == msg.EventID) ||
			(msg.XMPPID != "" && m.XMPPID == msg.XMPPID && m.PeerJID.Equal(msg.PeerJID) && m.Direction == msg.Direction) {
			return false, nil
		}
	}
	msg.RowID = int64(len(s.messages) + 1)
	c := *msg
	s.messages = append(s.messages, &c)
	for _, j := range jobs {
		j.MessageID = msg.RowID
		s.addJob(j)
	}
	return true, nil
}

func (s *memStore) MessageByRow(_ context.Context, row int64) (*Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if row < 1 || int(row) > len(s.messages) {
		return nil, ErrNotFound
	}
	c := *s.messages[row-1]
	return &c, nil
}

func (s *memStore) find(match func(*Message) bool) (*Message, error) {
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

func (s *memStore) MessageByEventID(_ context.Context, ev id.EventID) (*Message, error) {
	return s.find(func(m *Message) bool { return m.EventID == ev })
}

func (s *memStore) MessageByXMPPID(_ context.Context, peer jid.JID, xid string, dir Direction) (*Message, error) {
	return s.find(func(m *Message) bool { return m.XMPPID == xid && m.PeerJID.Equal(peer) && m.Direction == dir })
}

func (s *memStore) SetMessageEventID(_ context.Context, row int64, room id.RoomID, ev id.EventID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages[row-1].RoomID, s.messages[row-1].EventID = room, ev
	return nil
}

func (s *memStore) HasUnsentToMatrix(_ context.Context, mxid id.UserID, peer jid.JID) (bool, error) {
	_, err := s.find(func(m *Message) bool {
		return m.Direction == FromXMPP && m.MXID == mxid && m.PeerJID.Equal(peer.Bare()) && m.EventID == ""
	})
	return err == nil, nil
}

func (s *memStore) Subscribers(context.Context) ([]*Subscription, error) {
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

func (s *memStore) PutTxn(_ context.Context, txn *Txn) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.txns[txn.ID]; ok {
		return false, nil
	}
	s.txns[txn.ID] = txn
	s.txnOrder = append(s.txnOrder, txn.ID)
	return true, nil
}

func (s *memStore) PendingTxns(_ context.Context, limit int) ([]*Txn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Txn
	for _, t := range s.txnOrder {
		if !s.done[t] && (limit <= 0 || len(out) < limit) {
			out = append(out, s.txns[t])
		}
	}
	return out, nil
}

func (s *memStore) FinishTxn(_ context.Context, txnID string, acks []Ack, jobs []*Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done[txnID] {
		return nil
	}
	s.done[txnID] = true
	s.acks(acks, jobs)
	return nil
}

func (s *memStore) acks(acks []Ack, jobs []*Job) []bool {
	isNew := make([]bool, len(acks))
	for i, a := range acks {
		if a.UpTo != "" {
			for _, p := range s.portals {
				mark := &p.DeliveredUpTo
				switch {
				case a.Dir == FromMatrix:
					mark = &p.PeerReadUpTo
				case a.Kind == AckDisplayed:
					mark = &p.ReadUpTo
				}
				if p.RoomID == a.UpTo && *mark < a.Row {
					*mark, isNew[i] = a.Row, true
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

func (s *memStore) Acknowledge(_ context.Context, acks []Ack, jobs ...*Job) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acks(acks, jobs), nil
}

// jobsAdded is how many jobs were ever stored.
func (s *memStore) jobsAdded() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextJob
}

func (s *memStore) addJob(j *Job) {
	s.nextJob++
	j.ID = s.nextJob
	c := *j
	s.jobs = append(s.jobs, &c)
}

func (s *memStore) AddJobs(_ context.Context, jobs ...*Job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range jobs {
		s.addJob(j)
	}
	return nil
}

func (s *memStore) DueJobs(_ context.Context, now time.Time, limit int) ([]*Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
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

func (s *memStore) DeleteJob(_ context.Context, jobID int64) error {
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

func (s *memStore) RetryJob(_ context.Context, jobID int64, notBefore time.Time, lastErr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.ID == jobID {
			j.Attempts++
			j.NotBefore, j.LastError = notBefore, lastErr
		}
	}
	return nil
}

var _ Store = (*memStore)(nil)

// unreadLookups is how many times UnreadUpTo was called.
func (s *memStore) unreadLookups() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unreadCalls
}

func (s *memStore) UnreadUpTo(_ context.Context, upTo map[id.RoomID]int64, limit int) (map[id.RoomID][]*Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unreadCalls++
	out := map[id.RoomID][]*Message{}
	for room, row := range upTo {
		var unread []*Message
		var mark int64
		for _, p := range s.portals {
			if p.RoomID == room {
				mark = p.ReadUpTo
			}
		}
		for _, m := range s.messages {
			if m.RoomID == room && m.Direction == FromXMPP && m.RowID <= row && m.RowID > mark && m.DisplayedAt.IsZero() {
				c := *m
				unread = append(unread, &c)
			}
		}
		if len(unread) > limit {
			unread = unread[len(unread)-limit:]
		}
		if len(unread) > 0 {
			out[room] = unread
		}
	}
	return out, nil
}

func (s *memStore) NewestComposable(_ context.Context, room id.RoomID) (*Message, error) {
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

func (s *memStore) Subscription(_ context.Context, mxid id.UserID, peer jid.JID) (*Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub, ok := s.subs[subKey(mxid, peer)]; ok {
		c := *sub
		return &c, nil
	}
	return nil, ErrNotFound
}

func (s *memStore) setSub(mxid id.UserID, peer jid.JID, set func(*Subscription)) {
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

func (s *memStore) SetSubscriptionFrom(_ context.Context, mxid id.UserID, peer jid.JID, on bool) error {
	s.setSub(mxid, peer, func(sub *Subscription) { sub.FromThem = on })
	return nil
}

func (s *memStore) SetSubscriptionTo(_ context.Context, mxid id.UserID, peer jid.JID, on bool) error {
	s.setSub(mxid, peer, func(sub *Subscription) { sub.ToThem = on })
	return nil
}

func (s *memStore) DeleteJobs(ctx context.Context, ids ...int64) error {
	for _, id := range ids {
		_ = s.DeleteJob(ctx, id)
	}
	return nil
}

func (s *memStore) MessagesByEventIDs(ctx context.Context, evs []id.EventID) (map[id.EventID]*Message, error) {
	out := map[id.EventID]*Message{}
	for _, ev := range evs {
		if m, err := s.MessageByEventID(ctx, ev); err == nil {
			out[ev] = m
		}
	}
	return out, nil
}

func (s *memStore) MessagesByXMPPIDs(ctx context.Context, dir Direction, keys []XMPPKey) (map[XMPPKey]*Message, error) {
	out := map[XMPPKey]*Message{}
	for _, k := range keys {
		if peer, err := jid.Parse(k.Peer); err == nil {
			if m, err := s.MessageByXMPPID(ctx, peer, k.ID, dir); err == nil {
				out[k] = m
			}
		}
	}
	return out, nil
}

func (s *memStore) PortalsByRooms(ctx context.Context, rooms []id.RoomID) (map[id.RoomID]*Portal, error) {
	out := map[id.RoomID]*Portal{}
	for _, r := range rooms {
		if p, err := s.PortalByRoom(ctx, r); err == nil {
			out[r] = p
		}
	}
	return out, nil
}

func (s *memStore) DueJobsAfter(ctx context.Context, now time.Time, after int64, limit int) ([]*Job, error) {
	jobs, err := s.DueJobs(ctx, now, 1<<30)
	var out []*Job
	for _, j := range jobs {
		if j.ID > after && len(out) < limit {
			out = append(out, j)
		}
	}
	return out, err
}

func (s *memStore) FinishTxns(ctx context.Context, txnIDs []string, acks []Ack, jobs []*Job) error {
	s.mu.Lock()
	for _, id := range txnIDs {
		if s.done[id] {
			s.mu.Unlock()
			return ErrNotPending
		}
	}
	s.mu.Unlock()
	for i, id := range txnIDs {
		if i < len(txnIDs)-1 {
			_ = s.FinishTxn(ctx, id, nil, nil)
		}
	}
	return s.FinishTxn(ctx, txnIDs[len(txnIDs)-1], acks, jobs)
}
