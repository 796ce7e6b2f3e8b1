package xmppside

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"mellium.im/xmpp/jid"

	"xmppbridge/database"
	"xmppbridge/internal/logtest"
	"xmppbridge/mapping"
)

// awayStore refuses to store messages the first away times it is asked.
type awayStore struct {
	mapping.Store
	mu   sync.Mutex
	away int
}

func (s *awayStore) AddMessage(ctx context.Context, msg *mapping.Message, jobs ...*mapping.Job) (bool, error) {
	s.mu.Lock()
	away := s.away > 0
	s.away--
	s.mu.Unlock()
	if away {
		return false, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	}
	return s.Store.AddMessage(ctx, msg, jobs...)
}

// A message the core cannot store holds the stream until it can: said
// once when it starts to wait (and counted), once when it goes on, not
// once per try (every holdRetry), and the message is stored then.
func TestHeldMessageIsSaidOnceWhenHeldAndOnceWhenItGoesOn(t *testing.T) {
	ctx := context.Background()
	db, err := database.Open(ctx, "sqlite3-fk-wal", filepath.Join(t.TempDir(), "held.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.PutPortal(ctx, mapping.DirectPortal("!dm:example.org", specAlice, jid.MustParse(julietBare), time.Now())); err != nil {
		t.Fatal(err)
	}
	store := &awayStore{Store: db, away: 2}
	counts := map[string]int{}
	count := func(what, reason string) { counts[what+"/"+reason]++ }
	core := mapping.New(mapping.Config{Identities: specIDs, Permissions: mapping.Permissions{"example.org": mapping.PermUser}}, store, count, zerolog.Nop())
	logs := &logtest.Buffer{}
	c := &Component{Domain: jid.MustParse("matrix.example.org"), Core: core, Count: count, Log: logs.Logger()}
	puppet, _ := specIDs.Puppet(specAlice)
	m := &mapping.XMPPMessage{ID: "held-1", From: jid.MustParse(julietBare + "/balcony"), To: puppet, Type: mapping.TypeChat, Body: "Wherefore?", HasBody: true}
	if reply, err := c.handleMessage(ctx, m); err != nil || reply != nil {
		t.Fatalf("handleMessage: reply %+v, err %v; want it stored once the store takes it", reply, err)
	}
	said := map[string]int{}
	for _, l := range logs.Lines(t) {
		said[l.Level+" "+l.Message]++
	}
	want := map[string]int{
		"warn A message from XMPP cannot be stored; holding the XMPP stream and trying again": 1,
		"info Messages from XMPP are stored again; the stream goes on":                        1,
	}
	for line, n := range want {
		if said[line] != n {
			t.Errorf("said %q %d times, want %d (all: %v)", line, said[line], n, said)
		}
	}
	if len(said) != len(want) {
		t.Errorf("said %v, want only %v", said, want)
	}
	if counts["xmpp_message/held"] != 1 {
		t.Errorf("counted %d held, want 1 (all: %v)", counts["xmpp_message/held"], counts)
	}
	if _, err := db.MessageByXMPPID(ctx, jid.MustParse(julietBare), "held-1", mapping.FromXMPP); errors.Is(err, mapping.ErrNotFound) {
		t.Error("the held message was not stored once the store took it")
	} else if err != nil {
		t.Fatal(err)
	}
}
