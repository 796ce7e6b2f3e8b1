package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"
	"mellium.im/xmpp/jid"

	"xmppbridge/database"
	"xmppbridge/internal/standin"
	"xmppbridge/mapping"
)

// The group shape: one group portal (a Matrix room for an XEP-0045
// multi-user chat) with as many Matrix members as XMPP occupants and a
// history of BENCH_HISTORY messages, half by occupants and half by
// members, all markable and named by the room's stanza-id (XEP-0359 §3).
// x2m-0333: displayed markers of the occupants (XEP-0333 §3, "groupchat"),
// each their ghost's m.read; m2x-read: the members' m.read, each one
// groupchat <displayed/> from their puppet. Both at 100 and at 10 members
// (group10), so that the cost per receipt can be read against the room's
// size; and x2m-busy, m2x-busy: a direct portal paced at 1,000/s, alone and
// beside the group's burst (as the flood shape does for a 1:1 flood).
//
// Each receipt is about a message no other reader's receipt names, so
// that a result (the ghost's m.read, the puppet's <displayed/>) tells
// whose it is by the message alone: message j is read by reader (j/2) mod
// the members, in order, as people read a room in turn.

// groupLane is where the tracker's lanes of a group's readers start:
// past any direct portal's room index.
const groupLane = 1 << 20

var (
	groupRoom = id.RoomID("!group:example.org")
	groupMUC  = jid.MustParse("lounge@conference.xmpp.example")
)

// groupShape is the group portal of a scenario and where its messages
// start among the scenario's.
type groupShape struct {
	members, history int
	first            int // index of the group's first message
}

func occupantNick(o int) string   { return fmt.Sprintf("o%03d", o) }
func occupantKey(o int) string    { return fmt.Sprintf("oid%03d", o) }
func groupMember(u int) id.UserID { return id.UserID(fmt.Sprintf("@g%03d:example.org", u)) }

// groupListener is the puppet whose copy of the room's stanzas the bridge
// takes: the first member by MXID.
func groupListener() string { return puppetOf(groupMember(0)) }

// fromOccupant tells whether message j of the group's history was sent by
// an occupant (else by a Matrix member).
func fromOccupant(j int) bool { return j%2 == 0 }

// groupScenarios are the group shape's scenarios.
func (d *driver) groupScenarios() []*scenario {
	var out []*scenario
	for _, members := range []int{100, 10} {
		shape := "group"
		if members != 100 {
			shape = fmt.Sprintf("group%d", members)
		}
		for _, dir := range []string{"x2m-0333", "m2x-read"} {
			s := &scenario{shape: shape, family: "group", dir: dir, portals: 1, upTo: true}
			g := s.addGroup(members, d.history)
			s.burst = g.receipts(s, dir, d.n)
			out = append(out, s)
		}
	}
	k := rate * d.pacedSeconds
	for _, dir := range []string{"x2m-busy", "m2x-busy"} {
		// Room 0 is a direct portal, paced; the group is busy beside it.
		s := &scenario{shape: "group", family: "group", dir: dir, portals: 1}
		kind, seedDir, groupDir := xmppReceived, mapping.FromMatrix, "x2m-0333"
		if dir == "m2x-busy" {
			kind, seedDir, groupDir = matrixDelivery, mapping.FromXMPP, "m2x-read"
		}
		s.seedDir, s.seedReq = seedDir, mapping.Requests{Receipt: true, Markable: true}
		for i := range 2 * k {
			s.roomOf = append(s.roomOf, 0)
			s.paced = append(s.paced, receipt{i: i, room: 0, kind: kind})
		}
		g := s.addGroup(100, d.history)
		s.flood = g.receipts(s, groupDir, d.n)
		out = append(out, s)
	}
	return out
}

// addGroup adds the group's history to s's messages.
func (s *scenario) addGroup(members, history int) *groupShape {
	g := &groupShape{members: members, history: history, first: len(s.roomOf)}
	for j := range history {
		s.roomOf = append(s.roomOf, groupLane+(j/2)%members)
	}
	s.group = g
	return g
}

// receipts are the newest n receipts the group's readers send in dir:
// occupants' markers about any message, members' m.read about the
// occupants' (only messages from XMPP are read toward XMPP), oldest first.
func (g *groupShape) receipts(s *scenario, dir string, n int) []receipt {
	var rs []receipt
	for j := g.history - 1; j >= 0 && len(rs) < n; j-- {
		i := g.first + j
		switch {
		case dir == "x2m-0333":
			rs = append(rs, receipt{i: i, room: s.roomOf[i], kind: groupDisplayed})
		case fromOccupant(j):
			rs = append(rs, receipt{i: i, room: s.roomOf[i], kind: groupRead})
		}
	}
	for a, b := 0, len(rs)-1; a < b; a, b = a+1, b-1 {
		rs[a], rs[b] = rs[b], rs[a]
	}
	return rs
}

// reader is the index of the occupant or member who reads message i.
func (r receipt) reader() int { return r.room - groupLane }

// groupStanza is an occupant's displayed marker as the room relays it to
// the listener puppet: type groupchat, from the occupant's room JID, with
// the room's occupant-id (XEP-0421 §3) and naming the message by the
// room's stanza-id (XEP-0333 §3, "groupchat").
func groupStanza(b *strings.Builder, r receipt) {
	o := r.reader()
	fmt.Fprintf(b, `<message from='%s/%s' to='%s' type='groupchat' id='gd%d'><displayed xmlns='urn:xmpp:chat-markers:0' id='m%d'/><occupant-id xmlns='urn:xmpp:occupant-id:0' id='%s'/></message>`,
		groupMUC, occupantNick(o), groupListener(), r.i, r.i, occupantKey(o))
}

// seedGroup seeds s's direct portals and messages (before the group's)
// as seed does, and the group portal: its members on both sides, their
// ghosts registered, and its history.
func seedGroup(ctx context.Context, path string, s *scenario) error {
	ts := time.Now().Add(-time.Hour)
	g := s.group
	msgs := directMessages(s.roomOf[:g.first], s.seedDir, s.seedReq, ts)
	for j := range g.history {
		i := g.first + j
		m := &mapping.Message{RoomID: groupRoom, EventID: id.EventID(eventID(i)), XMPPID: xmppID(i), StanzaID: xmppID(i),
			PeerJID: groupMUC, TS: ts.Add(time.Duration(i) * time.Millisecond), Requests: mapping.Requests{Markable: true}}
		if who := (j / 2) % g.members; fromOccupant(j) {
			m.Direction, m.PeerResource, m.Sender = mapping.FromXMPP, occupantNick(who), mapping.OccupantMember(groupMUC, occupantKey(who))
		} else {
			// As after the room's reflection (XEP-0045 §7.4): named by
			// the room's stanza-id, its own id kept as its origin-id.
			m.Direction, m.MXID, m.Sender, m.OriginID = mapping.FromMatrix, groupMember(who), mapping.MatrixMember(groupMember(who)), fmt.Sprintf("o%d", i)
		}
		msgs = append(msgs, m)
	}
	portals := 0
	if g.first > 0 {
		portals = s.portals
	}
	return seedPortals(ctx, "sqlite3-fk-wal", path, portals, msgs, func(ctx context.Context, db *database.Database, ss *sqlstatestore.SQLStateStore) error {
		p := &mapping.Portal{RoomID: groupRoom, Kind: mapping.PortalGroup, JID: groupMUC, CreatedAt: ts,
			Members: []mapping.Member{{ID: mapping.MatrixMember(ids.Bot())}}}
		for u := range g.members {
			p.Members = append(p.Members, mapping.Member{ID: mapping.MatrixMember(groupMember(u))})
			key := occupantKey(u)
			p.Members = append(p.Members, mapping.Member{ID: mapping.OccupantMember(groupMUC, key)})
			ghost, err := ids.OccupantGhost(groupMUC, key)
			if err != nil {
				return err
			}
			if err := ss.MarkRegistered(ctx, ghost); err != nil {
				return err
			}
		}
		return db.PutPortal(ctx, p)
	})
}

// mucRoomStandin answers the puppets' joins of the group's chat as a
// multi-user chat service does (XEP-0045 §7.2.2-§7.2.3): to the puppet
// that joins, the presence of each occupant (with its XEP-0421
// occupant-id), then its own with status 110, last. It reads what the
// component writes (a Tap) and answers on a goroutine of its own, so
// that the stream's reader never waits on its writer.
type mucRoomStandin struct {
	members  int
	buf      []byte
	answers  chan string
	joins    atomic.Int64 // joins answered
	once     sync.Once
	occupied string // the occupants' presences, the same for every join
}

func newMUCRoomStandin(xs *standin.XMPPServer, members int) *mucRoomStandin {
	m := mucAnswers(members)
	go func() {
		for a := range m.answers {
			_ = xs.Write(a)
			m.joins.Add(1)
		}
	}()
	return m
}

// mucAnswers is a mucRoomStandin whose answers nobody sends yet.
func mucAnswers(members int) *mucRoomStandin {
	m := &mucRoomStandin{members: members, answers: make(chan string, 1024)}
	var b strings.Builder
	for o := range members {
		fmt.Fprintf(&b, `<presence from='%s/%s' to='`+groupTo+`'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member' role='participant'/></x><occupant-id xmlns='urn:xmpp:occupant-id:0' id='%s'/></presence>`,
			groupMUC, occupantNick(o), occupantKey(o))
	}
	m.occupied = b.String()
	return m
}

// groupTo stands for the joining puppet in the occupants' presences.
const groupTo = "\x00to\x00"

var (
	presenceStart = []byte("<presence")
	attrRe        = regexp.MustCompile(`\s(from|to|type)=["']([^"']*)["']`)
)

// Write takes the next chunk of what the component sends.
func (m *mucRoomStandin) Write(b []byte) (int, error) {
	m.buf = append(m.buf, b...)
	for {
		k := bytes.Index(m.buf, presenceStart)
		if k < 0 {
			m.buf = m.buf[max(0, len(m.buf)-len(presenceStart)):]
			return len(b), nil
		}
		end := bytes.IndexByte(m.buf[k:], '>')
		if end < 0 {
			m.buf = m.buf[k:]
			return len(b), nil
		}
		m.presence(m.buf[k : k+end])
		m.buf = m.buf[k+end:]
	}
}

func (m *mucRoomStandin) presence(start []byte) {
	attrs := map[string]string{}
	for _, a := range attrRe.FindAllSubmatch(start, -1) {
		attrs[string(a[1])] = string(a[2])
	}
	room, nick, _ := strings.Cut(attrs["to"], "/")
	if room != groupMUC.String() || nick == "" || attrs["type"] != "" {
		return
	}
	from := strings.ReplaceAll(attrs["from"], "'", "&apos;")
	self := fmt.Sprintf(`<presence from='%s/%s' to='%s'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member' role='participant'/><status code='110'/></x><occupant-id xmlns='urn:xmpp:occupant-id:0' id='puppet-%s'/></presence>`,
		groupMUC, nick, from, nick)
	m.answers <- strings.ReplaceAll(m.occupied, groupTo, from) + self
}

func (m *mucRoomStandin) Close() error {
	m.once.Do(func() { close(m.answers) })
	return nil
}

// wait waits until every member's puppet was answered and the listener's
// copy of the occupants' presences has brought each occupant's ghost into
// the room (a join each at the homeserver), or until timeout.
func (m *mucRoomStandin) wait(hs *standin.Homeserver, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for m.joins.Load() < int64(m.members) || hs.Count("join") < int64(m.members) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the group was not set up in %s: %d of %d puppets' joins answered, %d of %d ghosts joined",
				timeout, m.joins.Load(), m.members, hs.Count("join"), m.members)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// What else the joins set off (the ghosts' names) settles.
	time.Sleep(500 * time.Millisecond)
	return nil
}

// groupNote says what a group burst's figures are of: the room, and the
// CPU per result as well as per receipt, since the bridge's results are
// fewer (a burst's markers of one reader are one m.read, a transaction's
// reads of one member one marker) and the relay's one per receipt.
func groupNote(r row) string {
	g, b, l := r.s.group, r.bridge, r.relay
	return fmt.Sprintf("%s: %d Matrix members and %d occupants, %d messages of history; results (m.read posted, markers sent): bridge %d, relay %d; CPU ms per 1k results: bridge %s, relay %s",
		r.s.name(), g.members, g.members, g.history, b.results, l.results, perK(b.cpu, int(b.results)), perK(l.cpu, int(l.results)))
}

// groupSizes puts the group bursts' CPU per 1,000 receipts at each size
// side by side: the cost per receipt must not grow with the room.
func groupSizes(rows []row) []string {
	var out []string
	for _, dir := range []string{"x2m-0333", "m2x-read"} {
		var parts []string
		for _, r := range rows {
			if r.s.group != nil && r.s.dir == dir {
				parts = append(parts, fmt.Sprintf("at %d members %s (relay %s; per 1k results %s)",
					r.s.group.members, perK(r.bridge.cpu, r.bridge.sent), perK(r.relay.cpu, r.relay.sent), perK(r.bridge.cpu, int(r.bridge.results))))
			}
		}
		if len(parts) > 1 {
			out = append(out, fmt.Sprintf("group %s, CPU ms per 1k receipts by room size: %s", dir, strings.Join(parts, ", ")))
		}
	}
	return out
}
