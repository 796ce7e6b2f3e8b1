//go:build e2e

package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// The operator of a bridge on SQLite moves it to PostgreSQL as the docs
// say: stop it, "bridge -c config.yaml -copy-db-to postgres://…", point the
// config at PostgreSQL, start it. It carries on in the same portal: a
// message each way goes through the room it had (no second portal, no new
// invite), and the puppet still knows that the person is subscribed to it
// (RFC 6121 §4.3.2: a probe from a subscriber is answered with presence;
// a bridge that forgot would answer "unsubscribed", and the person's server
// would drop the puppet from their roster). Its log does not say that it
// starts from nothing. Moved back with "-copy-db-from … -copy-db-replace"
// over the old SQLite file, it carries on in the same portal again.
func TestMoveSQLiteToPostgres(t *testing.T) {
	ctx := context.Background()
	// A person of this test's own: the move copies every portal, and no
	// other test's portal with them may stand in for this one.
	if err := w.Prosody.Register("oatcake", peers.Password); err != nil {
		t.Fatal(err)
	}
	person := w.xmppUser(t, "oatcake", "before")
	interested(t, ctx, person)
	room := openPortal(t, ctx, person, "oatcake")
	ghost := w.ghost("oatcake@localhost")
	puppet := w.puppet(t, w.alice.Client.UserID)
	if err := person.SendRaw(ctx, fmt.Sprintf(`<presence to='%s' type='subscribe' id='move-sub'/>`, peers.XMLEscape(puppet))); err != nil {
		t.Fatal(err)
	}
	if _, err := person.Wait(ctx, wait, isPresence(puppet, "subscribed")); err != nil {
		t.Fatalf("no subscribed before the move: %v", err)
	}

	onPG, dbURI := onPostgres(t, ctx)

	if err := w.Bridge.Stop(); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	pg := &peers.BridgeProcess{Bin: w.Bridge.Bin, Dir: t.TempDir(), Registr: w.Bridge.Registr,
		Settings: w.Bridge.Settings, Log: io.MultiWriter(logs, peers.Prefixed(w.Logs, "bridge-moved"))}
	pg.Config = filepath.Join(pg.Dir, "config.yaml")
	defer func() {
		_ = pg.Stop()
		if w.Bridge.Pid() != 0 {
			return // moved back already
		}
		if err := w.Bridge.Start(ctx); err != nil {
			t.Errorf("the world's bridge did not start again on its own config: %v", err)
		} else if err := bridgeReady(ctx); err != nil {
			t.Errorf("the world's bridge is not ready again: %v", err)
		}
	}()

	copyDB(t, ctx, "-copy-db-to", dbURI)
	// The same config, its database now PostgreSQL.
	if err := os.WriteFile(pg.Config, onPG, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bridgeReady(ctx); err != nil {
		t.Fatal(err)
	}

	// The person comes online again: their server probes the puppet.
	person.Close()
	after := w.xmppUser(t, "oatcake", "after")
	if _, err := after.Wait(ctx, wait, isPresence(ofResource(puppet), "")); err != nil {
		t.Errorf("no presence in answer to the probe after the move: %v", err)
	}
	// bothWays sends a message each way, and returns the Matrix event of
	// the one from XMPP.
	bothWays := func(where string) id.EventID {
		t.Helper()
		if err := after.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='%s' type='chat'><body>Still here, %s</body></message>`,
			peers.XMLEscape(puppet), "move-"+strings.ReplaceAll(where, " ", "-"), where)); err != nil {
			t.Fatal(err)
		}
		fromXMPP, err := w.alice.Wait(ctx, wait, peers.IsText(room, ghost, "Still here, "+where))
		if err != nil {
			t.Fatalf("on %s, the message from XMPP did not reach the portal of before the move: %v", where, err)
		}
		if _, err := w.alice.SendText(ctx, room, "Welcome to "+where); err != nil {
			t.Fatal(err)
		}
		if _, err := after.Wait(ctx, wait, isMessage(puppet, "Welcome to "+where)); err != nil {
			t.Errorf("on %s, the message from the portal did not reach XMPP: %v", where, err)
		}
		if rooms := peers.Rooms(w.alice.Events(peers.IsInvite(w.alice.Client.UserID, ghost))); len(rooms) != 1 {
			t.Errorf("on %s, the ghost invited Alice to %d rooms, want 1: the move opened a second portal", where, len(rooms))
		}
		return fromXMPP.ID
	}
	bridgedOnPG := bothWays("PostgreSQL")
	// An "unsubscribed" in answer to the probe reaches only the person's
	// server, which takes the puppet's approval back from their roster
	// (RFC 6121 §3.2.3): the roster tells.
	if sub := rosterSubscription(t, ctx, after, puppet); sub != "to" && sub != "both" {
		t.Errorf("the person's roster has the puppet with subscription %q, want to or both: the puppet forgot it was approved", sub)
	}
	if strings.Contains(logs.String(), "starts from nothing") {
		t.Error("the moved bridge says it starts from nothing")
	}

	// And back to SQLite, over the file of before, which the bridge's time
	// on PostgreSQL made stale: the world's bridge then starts on what it
	// did meanwhile too.
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	copyDB(t, ctx, "-copy-db-from", dbURI, "-copy-db-replace")
	if err := w.Bridge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bridgeReady(ctx); err != nil {
		t.Fatal(err)
	}
	bothWays("SQLite again")
	// The id map has what crossed while on PostgreSQL: a reply to it is a
	// XEP-0461 reply to its stanza id.
	if _, err := w.alice.Client.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "Glad you are",
		RelatesTo: &event.RelatesTo{InReplyTo: &event.InReplyTo{EventID: bridgedOnPG}},
	}); err != nil {
		t.Fatal(err)
	}
	reply, err := after.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "message" && strings.HasSuffix(s.Body, "Glad you are") })
	if err != nil {
		t.Fatal(err)
	}
	if !reply.Has(`urn:xmpp:reply:0`) || !reply.Has(`id="move-PostgreSQL"`) {
		t.Errorf("the reply to the message bridged on PostgreSQL does not name it: %s", reply.XML)
	}
}

// copyDB runs the world's bridge binary on its config with args, a copy
// of its database, and fails t if the copy fails.
func copyDB(t *testing.T, ctx context.Context, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, w.Bridge.Bin, append([]string{"-c", w.Bridge.Config}, args...)...)
	cmd.Dir = w.Bridge.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bridge %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("bridge %s:\n%s", strings.Join(args, " "), out)
	if !strings.Contains(string(out), "Copied ") {
		t.Errorf("the copy does not say what it copied:\n%s", out)
	}
}

// onPostgres is the world's bridge config with its database in a fresh
// PostgreSQL schema of its own, dropped when t ends, and the URI of that
// schema.
func onPostgres(t *testing.T, ctx context.Context) (config []byte, dbURI string) {
	t.Helper()
	base := os.Getenv("XMPPBRIDGE_TEST_POSTGRES")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	schema := fmt.Sprintf("e2e_%d", time.Now().UnixNano())
	dbURI, err := peers.FreshPostgresSchema(ctx, base, schema)
	if err != nil {
		t.Fatalf("PostgreSQL (scripts/setup.sh starts it): %v", err)
	}
	t.Cleanup(func() { peers.DropPostgresSchema(base, schema) })
	cfg, err := os.ReadFile(w.Bridge.Config)
	if err != nil {
		t.Fatal(err)
	}
	onPG := strings.Replace(string(cfg), "type: sqlite3-fk-wal\n        uri: \"bridge.db\"", "type: postgres\n        uri: "+strconv.Quote(dbURI), 1)
	if onPG == string(cfg) {
		t.Fatalf("the world's bridge config has no SQLite database to replace:\n%s", cfg)
	}
	return []byte(onPG), dbURI
}

// rosterSubscription is the subscription the roster of c's account has
// with contact ("" if it has no item for it).
func rosterSubscription(t *testing.T, ctx context.Context, c *peers.XMPPClient, contact string) string {
	t.Helper()
	if err := c.SendRaw(ctx, `<iq type='get' id='roster-move'><query xmlns='jabber:iq:roster'/></iq>`); err != nil {
		t.Fatal(err)
	}
	res, err := c.Wait(ctx, wait, func(s *peers.Stanza) bool { return s.Name == "iq" && s.ID == "roster-move" })
	if err != nil {
		t.Fatal(err)
	}
	var roster struct {
		Items []struct {
			JID          string `xml:"jid,attr"`
			Subscription string `xml:"subscription,attr"`
		} `xml:"query>item"`
	}
	if err := xml.Unmarshal([]byte(res.XML), &roster); err != nil {
		t.Fatalf("read the roster %s: %v", res.XML, err)
	}
	for _, item := range roster.Items {
		if item.JID == contact {
			return item.Subscription
		}
	}
	return ""
}
