package mapping_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
	"xmppbridge/mapping/memstore"
)

// fakeMatrix records what the core asked of the homeserver.
type fakeMatrix struct {
	rooms   int
	created []string // "ghost invitee"
	texts   []string // "room sender body txn"
	notices []string
	joins   []string
	leaves  []string
	fail    error

	deliveries, reads, failures []string
	offline                     bool
	names                       map[id.UserID]string // display names
	avatars                     map[id.UserID]string // mxc:// URIs
	images                      map[string][]byte    // by mxc:// URI
	avatarFetches               int
	uploads                     []string             // "ghost mime bytes"
	ghostAvatars                map[id.UserID]string // mxc:// URIs set
	ghostNames                  []string             // "ghost name"
	mu                          sync.Mutex           // lanes run side by side
	typing                      []string
	invites, sent               []string // "room user", "room event"
	topics, kicks               []string // "room sender topic", "room user reason"
	roomNames                   []string // "room name"
	// stamps are the OutMatrix.TS of each SendMessage (zero: none).
	stamps []time.Time

	aliases []string // "alias room", added to a room made before
	// beforeAnswer, if set, runs when SendText has made its event and not
	// yet answered: what the homeserver does meanwhile.
	beforeAnswer func(room id.RoomID, ev id.EventID)
	// beforeCreate, if set, runs as CreateGroup begins: a homeserver
	// slow to make the room.
	beforeCreate func()
	// mayModerate, if set, says who may redact others' events; none
	// but the bot if not.
	mayModerate func(id.UserID) bool
	moderators  []string // "room user on" of each SetModerator
}

func (f *fakeMatrix) CreateDM(_ context.Context, ghost, invitee id.UserID) (id.RoomID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return "", f.fail
	}
	f.rooms++
	f.created = append(f.created, string(ghost)+" "+string(invitee))
	return id.RoomID(fmt.Sprintf("!room%d:example.org", f.rooms)), nil
}

// CreateGroup records "group name invitee", and " alias ALIAS" if it has
// one.
func (f *fakeMatrix) CreateGroup(_ context.Context, room GroupRoom) (id.RoomID, error) {
	if f.beforeCreate != nil {
		f.beforeCreate()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return "", f.fail
	}
	f.rooms++
	made := "group " + room.Name + " " + string(room.Invite)
	if room.Alias != "" {
		made += " alias " + string(room.Alias)
	}
	f.created = append(f.created, made)
	return id.RoomID(fmt.Sprintf("!room%d:example.org", f.rooms)), nil
}

func (f *fakeMatrix) AddAlias(_ context.Context, alias id.RoomAlias, room id.RoomID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aliases = append(f.aliases, string(alias)+" "+string(room))
	return f.fail
}

func (f *fakeMatrix) Invite(_ context.Context, room id.RoomID, user id.UserID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invites = append(f.invites, string(room)+" "+string(user))
	return f.fail
}

func (f *fakeMatrix) Kick(_ context.Context, room id.RoomID, user id.UserID, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kicks = append(f.kicks, string(room)+" "+string(user)+" "+reason)
	return nil
}

func (f *fakeMatrix) SetRoomName(_ context.Context, room id.RoomID, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.roomNames = append(f.roomNames, string(room)+" "+name)
	return nil
}

func (f *fakeMatrix) SetTopic(_ context.Context, room id.RoomID, sender id.UserID, topic string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.topics = append(f.topics, string(room)+" "+string(sender)+" "+topic)
	return nil
}

func (f *fakeMatrix) SendSent(_ context.Context, room id.RoomID, ev id.EventID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, string(room)+" "+string(ev))
	return f.fail
}

// SendMessage records a plain text as "room sender body txn", an edit's
// body as "edit $original new text", a reply's as "reply $event text".
func (f *fakeMatrix) SendMessage(ctx context.Context, room id.RoomID, sender id.UserID, msg *OutMatrix, txnID string) (id.EventID, error) {
	f.mu.Lock()
	f.stamps = append(f.stamps, msg.TS)
	f.mu.Unlock()
	body := msg.Body
	switch {
	case msg.Media != nil && msg.Replace != "":
		body = fmt.Sprintf("edit %s %s %s %s filename=%s", msg.Replace, msg.Media.MsgType, msg.Media.URL, msg.NewBody, msg.Media.Name)
	case msg.Media != nil:
		body = fmt.Sprintf("%s %s %s filename=%s", msg.Media.MsgType, msg.Media.URL, msg.Body, msg.Media.Name)
	case msg.Replace != "":
		body = "edit " + string(msg.Replace) + " " + msg.NewBody
	case msg.ReplyTo != "":
		body = "reply " + string(msg.ReplyTo) + " " + msg.Body
	}
	return f.SendText(ctx, room, sender, body, txnID)
}

func (f *fakeMatrix) React(ctx context.Context, room id.RoomID, sender id.UserID, target id.EventID, key, txnID string) (id.EventID, error) {
	return f.SendText(ctx, room, sender, "react "+string(target)+" "+key, txnID)
}

func (f *fakeMatrix) Redact(ctx context.Context, room id.RoomID, sender id.UserID, target id.EventID, txnID string) (id.EventID, error) {
	return f.SendText(ctx, room, sender, "redact "+string(target), txnID)
}

// SetModerator records "room user on".
func (f *fakeMatrix) SetModerator(_ context.Context, room id.RoomID, user id.UserID, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.moderators = append(f.moderators, fmt.Sprintf("%s %s %v", room, user, on))
	return f.fail
}

// Moderate records "moderate $target reason" as sent by sender, or, if
// sender may not (mayModerate says no), by the bot.
func (f *fakeMatrix) Moderate(ctx context.Context, room id.RoomID, sender id.UserID, target id.EventID, reason, txnID string) (id.EventID, error) {
	if f.mayModerate == nil || !f.mayModerate(sender) {
		sender = testIDs.Bot()
	}
	return f.SendText(ctx, room, sender, "moderate "+string(target)+" "+reason, txnID)
}

func (f *fakeMatrix) SendText(_ context.Context, room id.RoomID, sender id.UserID, body, txnID string) (id.EventID, error) {
	f.mu.Lock()
	if f.fail != nil {
		f.mu.Unlock()
		return "", f.fail
	}
	f.texts = append(f.texts, fmt.Sprintf("%s %s %s %s", room, sender, body, txnID))
	ev := id.EventID(fmt.Sprintf("$ev%d", len(f.texts)))
	hook := f.beforeAnswer
	f.mu.Unlock()
	if hook != nil {
		hook(room, ev)
	}
	return ev, nil
}

func (f *fakeMatrix) SendNotice(_ context.Context, room id.RoomID, sender id.UserID, body, _, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notices = append(f.notices, fmt.Sprintf("%s %s %s", room, sender, body))
	return f.fail
}

func (f *fakeMatrix) Join(_ context.Context, room id.RoomID, user id.UserID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joins = append(f.joins, string(room)+" "+string(user))
	return f.fail
}

func (f *fakeMatrix) Leave(_ context.Context, room id.RoomID, user id.UserID, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaves = append(f.leaves, string(room)+" "+string(user)+" "+reason)
	return f.fail
}

func (f *fakeMatrix) ShowTyping(room id.RoomID, user id.UserID, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.typing = append(f.typing, fmt.Sprintf("%s %s %v", room, user, on))
}

func (f *fakeMatrix) SendDelivery(_ context.Context, room id.RoomID, ghost id.UserID, ev id.EventID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deliveries = append(f.deliveries, fmt.Sprintf("%s %s %s", room, ghost, ev))
	return f.fail
}

func (f *fakeMatrix) SendRead(_ context.Context, room id.RoomID, user id.UserID, ev id.EventID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, fmt.Sprintf("%s %s %s", room, user, ev))
	return f.fail
}

func (f *fakeMatrix) SendFailure(_ context.Context, room id.RoomID, ev id.EventID, st StatusArgs) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, fmt.Sprintf("%s %s %v %s", room, ev, st.Retriable, st.Condition))
	return f.fail
}

func (f *fakeMatrix) Offline(context.Context, id.UserID) (bool, error) { return f.offline, nil }

func (f *fakeMatrix) SetGhostName(_ context.Context, ghost id.UserID, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ghostNames = append(f.ghostNames, string(ghost)+" "+name)
	return nil
}

func (f *fakeMatrix) DisplayName(_ context.Context, u id.UserID) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.names[u], nil
}

func (f *fakeMatrix) Profile(_ context.Context, u id.UserID) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.names[u], f.avatars[u], nil
}

func (f *fakeMatrix) Avatar(_ context.Context, url string, _, maxBytes int) ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.avatarFetches++
	img, ok := f.images[url]
	if !ok || len(img) > maxBytes {
		return nil, "", fmt.Errorf("%w: no avatar at %s", ErrPermanent, url)
	}
	return img, "image/png", nil
}

func (f *fakeMatrix) UploadAvatar(_ context.Context, ghost id.UserID, data []byte, mime string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return "", f.fail
	}
	f.uploads = append(f.uploads, fmt.Sprintf("%s %s %s", ghost, mime, data))
	return fmt.Sprintf("mxc://example.org/up%d", len(f.uploads)), nil
}

func (f *fakeMatrix) SetGhostAvatar(_ context.Context, ghost id.UserID, url string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if f.ghostAvatars == nil {
		f.ghostAvatars = map[id.UserID]string{}
	}
	f.ghostAvatars[ghost] = url
	return nil
}

func (f *fakeMatrix) typings() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.typing...)
}

type fakeXMPP struct {
	mu        sync.Mutex    // lanes run side by side
	entered   chan struct{} // if set, Send says it was called, then
	block     chan struct{} // waits for this
	sent      []*OutMessage
	presences []*OutPresence    // SendPresence is in presence_test.go
	vcards    map[string]*VCard // by bare JID; none: item-not-found
	asked     []string          // "from to" of each vCard request
	rosters   []string          // "owner item name" of each roster write
	avatars   map[string][]byte // XEP-0084 data by bare JID; none: forbidden
	noRoster  bool              // the server grants no roster access
	pings     []string          // "from to" of each ping
	roomName  string            // what a chat names itself
	// renames are "from room name" of each configuration change;
	// renameAnswer, if set, is the room's answer (nil: a result).
	renames      []string
	renameAnswer error
	// instants are "from room" of each instant room's form (XEP-0045
	// §10.1.2); instantAnswer, if set, is the room's answer.
	instants      []string
	instantAnswer error
	// pingAnswer, if set, is what a ping to to is answered with.
	pingAnswer func(to jid.JID) error
	// moderations are "from room sid reason" of each XEP-0425 request;
	// moderateAnswer, if set, is the room's answer (nil: a result).
	moderations    []string
	moderateAnswer error
	fail           error
}

func (f *fakeXMPP) FetchAvatar(_ context.Context, from, to jid.JID, id string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	f.asked = append(f.asked, from.String()+" "+to.String()+" avatar "+id)
	if data, ok := f.avatars[to.String()]; ok {
		return data, nil
	}
	return nil, fmt.Errorf("%w: forbidden", ErrPermanent)
}

// RoomName is roomName, if set, else "".
func (f *fakeXMPP) RoomName(_ context.Context, from, room jid.JID) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, from.String()+" "+room.String()+" name")
	return f.roomName, nil
}

// RenameRoom records "from room name" and answers renameAnswer.
func (f *fakeXMPP) RenameRoom(_ context.Context, from, room jid.JID, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renames = append(f.renames, from.String()+" "+room.String()+" "+name)
	return f.renameAnswer
}

// InstantRoom records "from room" and answers instantAnswer.
func (f *fakeXMPP) InstantRoom(_ context.Context, from, room jid.JID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instants = append(f.instants, from.String()+" "+room.String())
	return f.instantAnswer
}

// Ping answers as pingAnswer says for the occupant JID asked (nil: a
// result), and records "from to".
func (f *fakeXMPP) Ping(_ context.Context, from, to jid.JID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pings = append(f.pings, from.String()+" "+to.String())
	if f.pingAnswer != nil {
		return f.pingAnswer(to)
	}
	return nil
}

// Moderate records "from room sid reason" and answers moderateAnswer.
func (f *fakeXMPP) Moderate(_ context.Context, from, room jid.JID, sid, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.moderations = append(f.moderations, from.String()+" "+room.String()+" "+sid+" "+reason)
	return f.moderateAnswer
}

func (f *fakeXMPP) SetRosterItem(_ context.Context, owner, item jid.JID, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noRoster {
		return ErrNoPrivilege
	}
	if f.fail != nil {
		return f.fail
	}
	f.rosters = append(f.rosters, owner.String()+" "+item.String()+" "+name)
	return nil
}

func (f *fakeXMPP) Send(_ context.Context, ms ...*OutMessage) error {
	if f.block != nil {
		f.entered <- struct{}{}
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.sent = append(f.sent, ms...)
	return nil
}

func (f *fakeXMPP) FetchVCard(_ context.Context, from, to jid.JID) (*VCard, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	f.asked = append(f.asked, from.String()+" "+to.String())
	if c, ok := f.vcards[to.String()]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("%w: item-not-found", ErrPermanent)
}

type harness struct {
	b      *Bridge
	store  *memstore.Store
	matrix *fakeMatrix
	xmpp   *fakeXMPP
	counts map[string]int
	// countMu guards counts, written by lanes side by side; tests read
	// counts once the outbox is drained.
	countMu sync.Mutex
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{store: memstore.New(), matrix: &fakeMatrix{}, xmpp: &fakeXMPP{}, counts: map[string]int{}}
	h.b = New(Config{
		Identities:     testIDs,
		Permissions:    Permissions{"example.org": PermUser},
		BlockedDomains: []string{"spam.example"},
	}, h.store, h.count, zerolog.Nop())
	h.b.SetSides(h.matrix, h.xmpp)
	return h
}

// count is the core's Counter: what it counted, by "what/reason".
func (h *harness) count(what, reason string) {
	h.countMu.Lock()
	h.counts[what+"/"+reason]++
	h.countMu.Unlock()
}

// withStore points h's core at store (over h's in-memory store), as
// newHarness wires it: a core started again, with the configuration h's
// had.
func (h *harness) withStore(store Store) {
	b := New(*h.b.Config(), store, h.count, zerolog.Nop())
	b.SetSides(h.matrix, h.xmpp)
	h.b = b
}

// withLog starts h's core again, logging everything to w.
func (h *harness) withLog(w io.Writer) {
	b := New(*h.b.Config(), h.store, h.count, zerolog.New(w).Level(zerolog.TraceLevel))
	b.SetSides(h.matrix, h.xmpp)
	h.b = b
}

// drain runs what the store holds, as the outbox would after a reconnect
// (every side tried again), one job at a time in id order, until nothing
// is left that it may run: a side that fails keeps its jobs in the store,
// as the outbox's pause does, until the next drain. The core imports no
// outbox (it imports the core), so this stands in for it; how the outbox
// schedules is tested in package outbox.
// handle stores txn in the inbox and hands it to the core, as the
// transaction processor (matrixside.Server) does.
func (h *harness) handleTxn(ctx context.Context, txn MatrixTxn) error {
	if _, err := h.store.PutTxn(ctx, &Txn{ID: txn.ID, Body: []byte("{}")}); err != nil {
		return err
	}
	return h.b.HandleMatrixTxn(ctx, txn)
}

func (h *harness) drain(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	h.b.FlushReceipts(ctx)
	failed := map[string]bool{}
	for ran := true; ran; {
		ran = false
		jobs, err := h.store.DueJobs(ctx, time.Now(), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		for _, job := range jobs {
			side := job.Kind.Side()
			if failed[side] {
				continue
			}
			ran = true
			err := h.b.RunJob(ctx, job)
			if err == nil || errors.Is(err, ErrPermanent) {
				_ = h.store.DeleteJob(ctx, job.ID)
				continue
			}
			_ = h.store.RetryJob(ctx, job.ID, time.Now(), err.Error())
			failed[side] = true
		}
	}
}

const (
	alice    = id.UserID("@alice:example.org")
	alicePup = `alice\3aexample.org@matrix.example.org`
	// aliceFrom is the full JID Alice's puppet speaks from.
	aliceFrom = alicePup + "/" + PuppetResource
	julietJID = "juliet@capulet.lit"
)

var julietGhost = testIDs.Ghost(jid.MustParse(julietJID))

func chat(id, body string) *XMPPMessage {
	return &XMPPMessage{
		ID: id, From: jid.MustParse(julietJID + "/balcony"), To: jid.MustParse(alicePup),
		Type: TypeChat, Body: body, HasBody: body != "",
	}
}

func TestXMPPMessageCreatesPortalAndIsBridged(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	m := chat("msg1", "Wherefore art thou?")
	m.Requests = Requests{Receipt: true, Displayed: true, Markable: true}
	if reply, err := h.b.HandleXMPPMessage(ctx, m); err != nil || reply != nil {
		t.Fatalf("HandleXMPPMessage = %v, %v", reply, err)
	}
	h.drain(t)
	if want := string(julietGhost) + " " + string(alice); len(h.matrix.created) != 1 || h.matrix.created[0] != want {
		t.Fatalf("rooms created %q, want [%q]", h.matrix.created, want)
	}
	if want := "!room1:example.org " + string(julietGhost) + " Wherefore art thou? xmpp-1"; len(h.matrix.texts) != 1 || h.matrix.texts[0] != want {
		t.Fatalf("texts %q, want [%q]", h.matrix.texts, want)
	}
	row, err := h.store.MessageByXMPPID(ctx, jid.MustParse(julietJID), "msg1", FromXMPP)
	if err != nil {
		t.Fatal(err)
	}
	if row.EventID != "$ev1" || row.RoomID != "!room1:example.org" || row.PeerResource != "balcony" || row.MXID != alice ||
		row.Requests != (Requests{Receipt: true, Displayed: true, Markable: true}) {
		t.Errorf("row = %+v", row)
	}
	// A second message reuses the portal.
	_, _ = h.b.HandleXMPPMessage(ctx, chat("msg2", "Deny thy father"))
	h.drain(t)
	if h.matrix.rooms != 1 || len(h.matrix.texts) != 2 {
		t.Errorf("rooms %d texts %d, want 1 and 2", h.matrix.rooms, len(h.matrix.texts))
	}
}

// Clients and servers resend: a (sender, id) already bridged is not again.
func TestXMPPDuplicateNotBridgedTwice(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, _ = h.b.HandleXMPPMessage(ctx, chat("dup", "once"))
	other := chat("dup", "once")
	other.From = jid.MustParse(julietJID + "/other-resource")
	_, _ = h.b.HandleXMPPMessage(ctx, other)
	h.drain(t)
	if len(h.matrix.texts) != 1 || h.counts["xmpp_message/"+string(ReasonDuplicate)] != 1 {
		t.Errorf("texts %d, duplicates counted %d", len(h.matrix.texts), h.counts["xmpp_message/"+string(ReasonDuplicate)])
	}
}

// A message without an id is bridged, but nothing can acknowledge it later,
// so the row records no requests.
func TestXMPPMessageWithoutID(t *testing.T) {
	h := newHarness(t)
	m := chat("", "no id")
	m.Requests = Requests{Receipt: true}
	_, _ = h.b.HandleXMPPMessage(context.Background(), m)
	_, _ = h.b.HandleXMPPMessage(context.Background(), chat("", "no id"))
	h.drain(t)
	if len(h.matrix.texts) != 2 {
		t.Fatalf("texts %d, want 2 (no id, no duplicate detection)", len(h.matrix.texts))
	}
	if row, _ := h.store.MessageByRow(context.Background(), 1); row.Requests != (Requests{}) {
		t.Errorf("requests %+v, want none", row.Requests)
	}
}

func TestXMPPRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*XMPPMessage)
		reason Reason
		bounce bool
	}{
		{"groupchat", func(m *XMPPMessage) { m.Type = TypeGroupchat }, ReasonGroupchat, false},
		{"headline", func(m *XMPPMessage) { m.Type = TypeHeadline }, ReasonHeadline, false},
		{"no body", func(m *XMPPMessage) { m.HasBody, m.Body = false, "" }, ReasonNoBody, false},
		{"blocked domain", func(m *XMPPMessage) { m.From = jid.MustParse("x@spam.example/r") }, ReasonBlockedDomain, false},
		// RFC 6121 §8.5.2.2.1: no such account, <service-unavailable/>.
		{"unknown puppet", func(m *XMPPMessage) { m.To = jid.MustParse("nobody@matrix.example.org") }, ReasonUnknownPuppet, true},
		{"not permitted", func(m *XMPPMessage) { m.To = jid.MustParse(`eve\3aevil.example@matrix.example.org`) }, ReasonNotPermitted, true},
		// XEP-0409 §4: a full-JID message with <im-ng/> is for that resource only.
		{"im-ng full JID", func(m *XMPPMessage) { m.To = jid.MustParse(alicePup + "/phone"); m.IMNG = true }, ReasonIMNGFullJID, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			m := chat("r1", "hello")
			tc.edit(m)
			reply, err := h.b.HandleXMPPMessage(context.Background(), m)
			if err != nil {
				t.Fatal(err)
			}
			h.drain(t)
			if len(h.matrix.texts) != 0 || h.counts["xmpp_message/"+string(tc.reason)] != 1 {
				t.Errorf("texts %q, counts %v; want nothing bridged and %s counted", h.matrix.texts, h.counts, tc.reason)
			}
			if (reply != nil) != tc.bounce {
				t.Fatalf("reply %+v, want bounce %v", reply, tc.bounce)
			}
			if reply != nil && (reply.Type != TypeError || reply.Error.Condition != "service-unavailable" || reply.ID != "r1" || !reply.To.Equal(m.From)) {
				t.Errorf("bounce %+v %+v", reply, reply.Error)
			}
		})
	}
}

// XEP-0409 §4: a message to a full JID without <im-ng/> is handled like one
// to the bare JID.
func TestXMPPFullJIDWithoutIMNGIsBridged(t *testing.T) {
	h := newHarness(t)
	m := chat("f1", "to a resource")
	m.To = jid.MustParse(alicePup + "/phone")
	if reply, _ := h.b.HandleXMPPMessage(context.Background(), m); reply != nil {
		t.Fatalf("bounced: %+v", reply)
	}
	h.drain(t)
	if len(h.matrix.texts) != 1 {
		t.Errorf("texts %q", h.matrix.texts)
	}
}

func memberEvent(sender id.UserID, room id.RoomID, target id.UserID, membership string) MatrixEvent {
	return MatrixEvent{ID: id.EventID("$m" + string(room)), Sender: sender, Room: room, Kind: EventMember, Type: "m.room.member", Target: target, Membership: membership}
}

func textEvent(evID string, sender id.UserID, room id.RoomID, body string) MatrixEvent {
	return MatrixEvent{ID: id.EventID(evID), Sender: sender, Room: room, Kind: EventMessage, Type: "m.room.message", TS: time.UnixMilli(1700000000000), MsgType: MsgText, Body: body}
}

func TestMatrixInviteOpensPortal(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.handleTxn(ctx, MatrixTxn{ID: "t1", Events: []MatrixEvent{memberEvent(alice, "!dm:example.org", julietGhost, MembershipInvite)}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if want := "!dm:example.org " + string(julietGhost); len(h.matrix.joins) != 1 || h.matrix.joins[0] != want {
		t.Fatalf("joins %q, want [%q]", h.matrix.joins, want)
	}
	p, err := h.store.PortalByRoom(ctx, "!dm:example.org")
	if err != nil || p.User() != alice || p.JID.String() != julietJID {
		t.Fatalf("portal %+v, %v", p, err)
	}
}

// By default only users of homeserver.domain may use the bridge; a ghost
// invited by anyone else declines with a reason.
func TestMatrixInviteByStrangerDeclined(t *testing.T) {
	h := newHarness(t)
	_ = h.handleTxn(context.Background(), MatrixTxn{ID: "t1", Events: []MatrixEvent{memberEvent("@eve:evil.example", "!x:evil.example", julietGhost, MembershipInvite)}})
	h.drain(t)
	if len(h.matrix.joins) != 0 || len(h.matrix.leaves) != 1 || h.matrix.leaves[0] != "!x:evil.example "+string(julietGhost)+" "+DeclineReason {
		t.Fatalf("joins %q leaves %q", h.matrix.joins, h.matrix.leaves)
	}
	if _, err := h.store.PortalByRoom(context.Background(), "!x:evil.example"); err == nil {
		t.Error("a portal was stored for a declined invite")
	}
}

var nmtoken = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)

func TestMatrixTextReachesXMPPWithRequests(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	evts := []MatrixEvent{textEvent("$e1", alice, "!dm:example.org", "It is the east")}
	if err := h.handleTxn(ctx, MatrixTxn{ID: "t1", Events: evts}); err != nil {
		t.Fatal(err)
	}
	// The homeserver re-sends the transaction, or the event comes again.
	_ = h.handleTxn(ctx, MatrixTxn{ID: "t2", Events: evts})
	// The row exists before anything is sent: receipts can never outrun it.
	row, err := h.store.MessageByEventID(ctx, "$e1")
	if err != nil || len(h.xmpp.sent) != 0 {
		t.Fatalf("row %v err %v sent %d before the outbox ran", row, err, len(h.xmpp.sent))
	}
	h.drain(t)
	if len(h.xmpp.sent) != 1 {
		t.Fatalf("sent %d stanzas, want 1", len(h.xmpp.sent))
	}
	out := h.xmpp.sent[0]
	if out.ID != row.XMPPID || out.OriginID != row.XMPPID || !nmtoken.MatchString(out.ID) {
		t.Errorf("id %q origin %q row %q: want the stored NMTOKEN id", out.ID, out.OriginID, row.XMPPID)
	}
	if out.From.String() != aliceFrom || out.To.String() != julietJID || out.Type != TypeChat || out.Body != "It is the east" {
		t.Errorf("out = %+v", out)
	}
	if want := (Requests{Receipt: true, Delivered: true, Displayed: true, Composing: true, Markable: true}); out.Request != want {
		t.Errorf("requests %+v, want %+v", out.Request, want)
	}
	// XEP-0085 §5.1: the messages of a sender that wants chat states carry
	// one, <active/>.
	if out.ChatState != "active" {
		t.Errorf("chat state %q, want active", out.ChatState)
	}
}

func TestMatrixIgnored(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	// A msgtype the bridge does not carry (files are media.go's).
	image := textEvent("$img", alice, "!dm:example.org", "geo:51.5,-0.1")
	image.MsgType = "m.location"
	_ = h.handleTxn(ctx, MatrixTxn{ID: "t1", Events: []MatrixEvent{
		textEvent("$own", julietGhost, "!dm:example.org", "echo of our own"),
		textEvent("$bob", "@bob:example.org", "!dm:example.org", "not the portal's user"),
		textEvent("$else", alice, "!other:example.org", "not a portal"),
		image,
	}})
	h.drain(t)
	if len(h.xmpp.sent) != 0 {
		t.Fatalf("sent %d", len(h.xmpp.sent))
	}
	for _, r := range []Reason{ReasonOwn, ReasonWrongSender, ReasonNotPortal, ReasonMsgType} {
		if h.counts["matrix_event/"+string(r)] != 1 {
			t.Errorf("%s counted %d times, want 1", r, h.counts["matrix_event/"+string(r)])
		}
	}
}

// An encrypted event gets a notice in the room, never silence.
func TestMatrixEncryptedGetsNotice(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	_ = h.handleTxn(ctx, MatrixTxn{ID: "t1", Events: []MatrixEvent{{
		ID: "$enc", Sender: alice, Room: "!dm:example.org", Kind: EventEncrypted, Type: "m.room.encrypted",
	}}})
	h.drain(t)
	if want := "!dm:example.org " + string(julietGhost) + " " + EncryptedNotice; len(h.matrix.notices) != 1 || h.matrix.notices[0] != want {
		t.Fatalf("notices %q", h.matrix.notices)
	}
}

// Public rooms are never portals: the ghost declines, saying why.
func TestMatrixInviteToPublicRoomDeclined(t *testing.T) {
	h := newHarness(t)
	invite := memberEvent(alice, "!public:example.org", julietGhost, MembershipInvite)
	invite.JoinRule = JoinRulePublic
	_ = h.handleTxn(context.Background(), MatrixTxn{ID: "t1", Events: []MatrixEvent{invite}})
	h.drain(t)
	if len(h.matrix.joins) != 0 || len(h.matrix.leaves) != 1 || !strings.HasSuffix(h.matrix.leaves[0], PublicRoomReason) {
		t.Fatalf("joins %q leaves %q", h.matrix.joins, h.matrix.leaves)
	}
	if _, err := h.store.PortalByRoom(context.Background(), "!public:example.org"); err == nil {
		t.Error("a public room became a portal")
	}
}

// recOutbox records what the core hands its outbox.
type recOutbox struct {
	mu      sync.Mutex
	queued  []*Job
	wakes   int
	rescans int
}

func (o *recOutbox) Rescan() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rescans++
}

func (o *recOutbox) Queue(jobs ...*Job) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.queued = append(o.queued, jobs...)
}

func (o *recOutbox) Wake() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.wakes++
}

// The core's loop records a receipt from XMPP as soon as the read loop
// hands it over, and hands the job it makes to the outbox; a reconnect's
// Wake reaches the outbox.
func TestRunRecordsReceiptsAndQueuesTheirJobs(t *testing.T) {
	h := newHarness(t)
	ids := sentToJuliet(t, h, 1)
	out := &recOutbox{}
	h.b.SetOutbox(out)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { h.b.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	if _, err := h.b.HandleXMPPMessage(ctx, receipt(func(m *XMPPMessage) { m.Acks = append(m.Acks, XMPPAck{Wire: WireReceived, ID: ids[0]}) })); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		out.mu.Lock()
		n := len(out.queued)
		out.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no job queued for the receipt")
		}
	}
	out.mu.Lock()
	job := out.queued[0]
	out.mu.Unlock()
	if job.Kind != JobMatrixDelivery || job.ID == 0 {
		t.Errorf("queued %+v, want a stored delivery job", job)
	}
	h.b.Wake()
	if out.wakes != 1 {
		t.Errorf("%d wakes reached the outbox, want 1", out.wakes)
	}
}

// A job of a kind the bridge does not know (left by another version)
// fails for good.
func TestRunUnknownKind(t *testing.T) {
	h := newHarness(t)
	err := h.b.RunJob(t.Context(), &Job{ID: 1, Kind: "matrix.gone", Payload: []byte(`{}`)})
	if !errors.Is(err, ErrPermanent) {
		t.Errorf("unknown kind: %v, want ErrPermanent", err)
	}
}
