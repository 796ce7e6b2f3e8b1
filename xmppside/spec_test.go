package xmppside

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/database"
	"xmppbridge/mapping"
)

// These tests feed the specifications' own example stanzas through the
// decoder and the core, on a real (SQLite) store. Each example is
// readdressed: its from becomes Juliet, its to Alice's puppet, and the
// message it speaks of is one the bridge sent to Juliet under the
// example's own id.

var specIDs = mapping.Identities{HomeserverDomain: "example.org", ComponentDomain: "matrix.example.org", BotLocalpart: "xmppbridge"}

type recMatrix struct {
	mu                               sync.Mutex
	deliveries, reads, typing, fails []string
	name                             string // every user's display name
}

func (r *recMatrix) add(list *[]string, s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	*list = append(*list, s)
	return nil
}
func (r *recMatrix) CreateDM(context.Context, id.UserID, id.UserID) (id.RoomID, error) {
	return "!new:example.org", nil
}
func (r *recMatrix) CreateGroup(context.Context, mapping.GroupRoom) (id.RoomID, error) {
	return "!group:example.org", nil
}
func (r *recMatrix) AddAlias(context.Context, id.RoomAlias, id.RoomID) error      { return nil }
func (r *recMatrix) Invite(context.Context, id.RoomID, id.UserID) error           { return nil }
func (r *recMatrix) Kick(context.Context, id.RoomID, id.UserID, string) error     { return nil }
func (r *recMatrix) SetRoomName(context.Context, id.RoomID, string) error         { return nil }
func (r *recMatrix) SetTopic(context.Context, id.RoomID, id.UserID, string) error { return nil }
func (r *recMatrix) SendSent(_ context.Context, room id.RoomID, ev id.EventID) error {
	return r.add(&r.fails, "sent "+string(ev))
}
func (r *recMatrix) SendMessage(context.Context, id.RoomID, id.UserID, *mapping.OutMatrix, string) (id.EventID, error) {
	return "$new", nil
}
func (r *recMatrix) React(context.Context, id.RoomID, id.UserID, id.EventID, string, string) (id.EventID, error) {
	return "$reaction", nil
}
func (r *recMatrix) Redact(context.Context, id.RoomID, id.UserID, id.EventID, string) (id.EventID, error) {
	return "$redaction", nil
}
func (r *recMatrix) SetModerator(context.Context, id.RoomID, id.UserID, bool) error { return nil }
func (r *recMatrix) Moderate(context.Context, id.RoomID, id.UserID, id.EventID, string, string) (id.EventID, error) {
	return "$redaction", nil
}
func (r *recMatrix) SendNotice(context.Context, id.RoomID, id.UserID, string, string, string) error {
	return nil
}
func (r *recMatrix) Join(context.Context, id.RoomID, id.UserID) error          { return nil }
func (r *recMatrix) Leave(context.Context, id.RoomID, id.UserID, string) error { return nil }
func (r *recMatrix) ShowTyping(_ id.RoomID, u id.UserID, on bool) {
	r.add(&r.typing, fmt.Sprintf("%s %v", u, on))
}
func (r *recMatrix) SendDelivery(_ context.Context, _ id.RoomID, u id.UserID, ev id.EventID) error {
	return r.add(&r.deliveries, fmt.Sprintf("%s %s", u, ev))
}
func (r *recMatrix) SendRead(_ context.Context, _ id.RoomID, u id.UserID, ev id.EventID) error {
	return r.add(&r.reads, fmt.Sprintf("%s %s", u, ev))
}
func (r *recMatrix) SendFailure(_ context.Context, _ id.RoomID, ev id.EventID, st mapping.StatusArgs) error {
	return r.add(&r.fails, fmt.Sprintf("%s %s", ev, st.Condition))
}
func (r *recMatrix) Offline(context.Context, id.UserID) (bool, error) { return false, nil }

func (r *recMatrix) DisplayName(context.Context, id.UserID) (string, error) { return r.name, nil }
func (r *recMatrix) Profile(context.Context, id.UserID) (string, string, error) {
	return r.name, "", nil
}
func (r *recMatrix) Avatar(context.Context, string, int, int) ([]byte, string, error) {
	return nil, "", mapping.ErrPermanent
}
func (r *recMatrix) UploadAvatar(context.Context, id.UserID, []byte, string) (string, error) {
	return "", mapping.ErrPermanent
}
func (r *recMatrix) SetGhostAvatar(context.Context, id.UserID, string) error { return nil }

func (r *recMatrix) SetGhostName(context.Context, id.UserID, string) error { return nil }

func (r *recMatrix) get(list *[]string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), *list...)
}

type specRig struct {
	core   *mapping.Bridge
	db     *database.Database
	matrix *recMatrix
}

const julietBare = "juliet@capulet.lit"

var (
	specAlice = id.UserID("@alice:example.org")
	specGhost = specIDs.Ghost(jid.MustParse(julietBare))
)

// newSpecRig stores a portal and one message the bridge sent to Juliet
// under xmppID, asking for everything (as the bridge always does).
func newSpecRig(t *testing.T, xmppID string) *specRig {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, "sqlite3-fk-wal", filepath.Join(t.TempDir(), "spec.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &specRig{db: db, matrix: &recMatrix{}}
	r.core = mapping.New(mapping.Config{Identities: specIDs, Permissions: mapping.Permissions{"example.org": mapping.PermUser}}, db, nil, zerolog.Nop())
	r.core.SetSides(r.matrix, nil)
	_ = db.PutPortal(ctx, mapping.DirectPortal("!dm:example.org", specAlice, jid.MustParse(julietBare), time.Time{}))
	_, err = db.AddMessage(ctx, &mapping.Message{
		RoomID: "!dm:example.org", EventID: "$sent", XMPPID: xmppID, OriginID: xmppID,
		PeerJID: jid.MustParse(julietBare), Direction: mapping.FromMatrix, MXID: specAlice, Body: "Art thou not Romeo?", TS: time.Now(),
		Requests: mapping.Requests{Receipt: true, Delivered: true, Displayed: true, Composing: true, Markable: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// feed decodes a golden stanza, readdresses it and hands it to the core,
// then runs the outbox until it is empty.
func (r *specRig) feed(t *testing.T, file string) {
	t.Helper()
	m := decodeFile(t, file)
	m.From = jid.MustParse(julietBare + "/balcony")
	puppet, _ := specIDs.Puppet(specAlice)
	m.To = puppet
	reply, err := r.core.HandleXMPPMessage(context.Background(), m)
	if err != nil || reply != nil {
		t.Fatalf("%s: reply %+v, err %v (XEP-0184 §5: no error for a receipt)", file, reply, err)
	}
	// Record what was taken, then carry out every job that raised, as
	// the outbox would, until none is left.
	ctx := context.Background()
	r.core.FlushReceipts(ctx)
	for {
		jobs, err := r.db.DueJobs(ctx, time.Now(), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 0 {
			return
		}
		for _, job := range jobs {
			if err := r.core.RunJob(ctx, job); err != nil {
				t.Fatalf("%s: job %s: %v", file, job.Kind, err)
			}
			if err := r.db.DeleteJob(ctx, job.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestSpecExamplesToMatrix(t *testing.T) {
	for _, tc := range []struct {
		file, xmppID string
		delivered    int
		read         int
		typing       []string
	}{
		// XEP-0184 §5, the receipt for Example 1's message.
		{"xep0184-example2-received.xml", "richard2-4.1.247", 1, 0, nil},
		// XEP-0022 Listing 7: "Juliet receives notification of message delivery".
		{"xep0022-listing7-delivered.xml", "message22", 1, 0, nil},
		// XEP-0022 Listing 8: "... of message display".
		{"xep0022-listing8-displayed.xml", "message22", 0, 1, nil},
		// XEP-0022 Listings 9 and 10: composing, then its cancellation.
		{"xep0022-listing9-composing.xml", "message22", 0, 0, []string{string(specGhost) + " true"}},
		{"xep0022-listing10-cancel.xml", "message22", 0, 0, []string{string(specGhost) + " false"}},
		// XEP-0333 §3: a displayed marker.
		{"xep0333-displayed.xml", "message-1", 0, 1, nil},
		// XEP-0085 §5.1: composing and paused.
		{"xep0085-composing.xml", "x", 0, 0, []string{string(specGhost) + " true"}},
		{"xep0085-paused.xml", "x", 0, 0, []string{string(specGhost) + " false"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r := newSpecRig(t, tc.xmppID)
			r.feed(t, tc.file)
			if got := r.matrix.get(&r.matrix.deliveries); len(got) != tc.delivered || (tc.delivered == 1 && got[0] != string(specGhost)+" $sent") {
				t.Errorf("deliveries %q, want %d on $sent", got, tc.delivered)
			}
			if got := r.matrix.get(&r.matrix.reads); len(got) != tc.read || (tc.read == 1 && got[0] != string(specGhost)+" $sent") {
				t.Errorf("reads %q, want %d on $sent", got, tc.read)
			}
			if got := r.matrix.get(&r.matrix.typing); fmt.Sprint(got) != fmt.Sprint(tc.typing) {
				t.Errorf("typing %q, want %q", got, tc.typing)
			}
		})
	}
}

// The same examples about a message the bridge never sent change nothing.
func TestSpecExamplesUnknownID(t *testing.T) {
	r := newSpecRig(t, "some-other-id")
	for _, f := range []string{"xep0184-example2-received.xml", "xep0022-listing7-delivered.xml", "xep0022-listing8-displayed.xml", "xep0022-listing9-composing.xml", "xep0333-displayed.xml"} {
		r.feed(t, f)
	}
	if d, rd, ty := r.matrix.get(&r.matrix.deliveries), r.matrix.get(&r.matrix.reads), r.matrix.get(&r.matrix.typing); len(d)+len(rd)+len(ty) != 0 {
		t.Errorf("deliveries %q reads %q typing %q; want nothing", d, rd, ty)
	}
}
