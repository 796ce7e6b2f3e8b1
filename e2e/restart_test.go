//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"xmppbridge/internal/peers"
)

// A restart of the bridge keeps the portal and the id map; a message Alice
// sends while the bridge is down is delivered after it comes back (the
// homeserver retries the transaction); a crash (SIGKILL) loses nothing
// that was acknowledged.
func TestBridgeRestartKeepsPortalsAndMessages(t *testing.T) {
	ctx := context.Background()
	juliet := w.xmppUser(t, "juliet", "restart")
	room := openPortal(t, ctx, juliet, "juliet")
	ghost := w.ghost("juliet@localhost")
	alicePuppet := w.puppet(t, w.alice.Client.UserID)

	if err := w.Bridge.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.SendText(ctx, room, "Sent while the bridge was down"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // let Dendrite try and fail at least once
	if err := w.Bridge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := juliet.Wait(ctx, 2*wait, isMessage(alicePuppet, "Sent while the bridge was down")); err != nil {
		t.Fatal(err)
	}
	// The portal survived: Juliet's next message goes into the same room.
	if err := juliet.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='after-restart' type='chat'><body>Still here</body></message>`, peers.XMLEscape(alicePuppet))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.Wait(ctx, wait, peers.IsText(room, ghost, "Still here")); err != nil {
		t.Fatal(err)
	}

	// A crash right after Alice's message was handed over.
	if _, err := w.alice.SendText(ctx, room, "Across a crash"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	w.Bridge.Kill()
	if err := w.Bridge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := juliet.Wait(ctx, 2*wait, isMessage(alicePuppet, "Across a crash")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // a duplicate would have arrived by now
	if n := juliet.Count(isMessage(alicePuppet, "Across a crash")); n != 1 {
		t.Errorf("message across the crash arrived %d times, want 1", n)
	}
	if rooms := peers.Rooms(w.alice.Events(peers.IsInvite(w.alice.Client.UserID, ghost))); len(rooms) != 1 {
		t.Errorf("Juliet's ghost invited Alice to %d rooms, want 1: the portal was not kept", len(rooms))
	}
}

// When Prosody restarts, the bridge reconnects by itself; what Alice sent
// meanwhile is delivered once it is back.
func TestProsodyRestartReconnects(t *testing.T) {
	ctx := context.Background()
	tybalt := w.xmppUser(t, "tybalt", "restart")
	room := openPortal(t, ctx, tybalt, "tybalt")
	tybalt.Close()
	ghost := w.ghost("tybalt@localhost")
	alicePuppet := w.puppet(t, w.alice.Client.UserID)

	if err := w.Prosody.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.SendText(ctx, room, "While the XMPP server was down"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := w.Prosody.Start(ctx); err != nil {
		t.Fatal(err)
	}
	tybalt = w.xmppUser(t, "tybalt", "back")
	// Delivered live, or from Prosody's offline store when Romeo returns.
	if _, err := tybalt.Wait(ctx, 2*wait, isMessage(alicePuppet, "While the XMPP server was down")); err != nil {
		t.Fatal(err)
	}
	if err := tybalt.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='after-prosody' type='chat'><body>I am back</body></message>`, peers.XMLEscape(alicePuppet))); err != nil {
		t.Fatal(err)
	}
	if _, err := w.alice.Wait(ctx, wait, peers.IsText(room, ghost, "I am back")); err != nil {
		t.Fatal(err)
	}
}

// docs/reliability.md, Servers restarted under load: when Dendrite stops under load, the bridge holds what comes
// from XMPP meanwhile (its sends to Matrix fail and wait, with backoff)
// and, once Dendrite is back, delivers all of it, each once and in order;
// it tries again by itself, with no reconnect to wait for.
func TestDendriteRestartUnderLoad(t *testing.T) {
	ctx := context.Background()
	potpan := w.xmppUser(t, "potpan", "kitchen")
	room := openPortal(t, ctx, potpan, "potpan")
	ghost := w.ghost("potpan@localhost")
	puppet := peers.XMLEscape(w.puppet(t, w.alice.Client.UserID))
	if err := w.Dendrite.Stop(); err != nil {
		t.Fatal(err)
	}
	const n = 30
	for i := range n {
		if err := potpan.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='down-%d' type='chat'><body>While Dendrite was down %d</body></message>`, puppet, i, i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // the bridge's sends fail and back off meanwhile
	if err := w.Dendrite.Start(ctx); err != nil {
		t.Fatal(err)
	}
	last := fmt.Sprintf("While Dendrite was down %d", n-1)
	if _, err := w.alice.Wait(ctx, 3*wait, peers.IsText(room, ghost, last)); err != nil {
		t.Fatalf("the messages held while Dendrite was down never arrived: %v", err)
	}
	// The room's history, from the homeserver: Alice's /sync after the
	// restart may give a limited timeline, without the earlier ones.
	resp, err := w.alice.Client.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var got []*event.Event
	for _, e := range resp.Chunk {
		if e.Type != event.EventMessage || e.Sender != ghost {
			continue
		}
		_ = e.Content.ParseRaw(e.Type)
		if strings.HasPrefix(e.Content.AsMessage().Body, "While Dendrite was down") {
			got = append(got, e)
		}
	}
	slices.Reverse(got) // newest first, backwards
	if len(got) != n {
		t.Fatalf("%d of the %d messages arrived", len(got), n)
	}
	for i, e := range got {
		if want := fmt.Sprintf("While Dendrite was down %d", i); e.Content.AsMessage().Body != want {
			t.Errorf("message %d is %q, want %q: out of order", i, e.Content.AsMessage().Body, want)
		}
	}
}

// docs/reliability.md, Servers restarted under load: Prosody restarts while Alice writes to Verges, one message
// every 50 ms: the bridge reconnects by itself, holds what it could not
// send meanwhile, and every message reaches Verges once he is back (live,
// or from Prosody's offline store).
func TestProsodyRestartUnderLoad(t *testing.T) {
	ctx := context.Background()
	verges := w.xmppUser(t, "verges", "watch")
	room := openPortal(t, ctx, verges, "verges")
	alicePuppet := w.puppet(t, w.alice.Client.UserID)
	const n = 40
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := w.alice.SendText(ctx, room, fmt.Sprintf("Under load %d", i)); err != nil {
				sent <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		sent <- nil
	}()
	time.Sleep(600 * time.Millisecond)
	if err := w.Prosody.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := w.Prosody.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	back := w.xmppUser(t, "verges", "back")
	if _, err := back.Wait(ctx, 3*wait, isMessage(alicePuppet, fmt.Sprintf("Under load %d", n-1))); err != nil {
		t.Fatalf("the last message never arrived: %v", err)
	}
	time.Sleep(2 * time.Second) // what is still on its way
	var lost, twice []int
	for i := range n {
		body := fmt.Sprintf("Under load %d", i)
		switch c := verges.Count(isMessage(alicePuppet, body)) + back.Count(isMessage(alicePuppet, body)); {
		case c == 0:
			lost = append(lost, i)
		case c > 1:
			twice = append(twice, i)
		}
	}
	if len(lost) > 0 {
		t.Errorf("messages lost across the restart: %v", lost)
	}
	if len(twice) > 0 {
		t.Logf("messages that arrived twice (a resend after a cut, same id): %v", twice)
	}
}

// lockedBuffer keeps what a bridge logs, for a test to read.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// docs/reliability.md, Servers restarted under load: with the bridge on PostgreSQL, the PostgreSQL server crashes
// (restart -m immediate: no checkpoint, recovery from its WAL) while Alice
// and Dogberry write to each other every 50 ms. The bridge carries on by
// itself, every message arrives on both sides, and its log says what
// happened in a few lines, not one per message.
func TestPostgresRestartUnderLoad(t *testing.T) {
	ctx := context.Background()
	// The world's bridge, its registration and ports, on PostgreSQL.
	onPG, _ := onPostgres(t, ctx)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), onPG, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	pg := &peers.BridgeProcess{Bin: w.Bridge.Bin, Dir: dir, Config: filepath.Join(dir, "config.yaml"), Registr: w.Bridge.Registr,
		Settings: w.Bridge.Settings, Log: io.MultiWriter(logs, peers.Prefixed(w.Logs, "bridge-pg"))}
	if err := w.Bridge.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = pg.Stop()
		if err := w.Bridge.Start(ctx); err != nil {
			t.Errorf("the world's bridge did not start again: %v", err)
		}
	}()

	dogberry := w.xmppUser(t, "dogberry", "watch")
	room := openPortal(t, ctx, dogberry, "dogberry")
	ghost := w.ghost("dogberry@localhost")
	alicePuppet := w.puppet(t, w.alice.Client.UserID)
	puppet := peers.XMLEscape(alicePuppet)
	const n = 30
	done := make(chan error, 2)
	go func() {
		for i := range n {
			if _, err := w.alice.SendText(ctx, room, fmt.Sprintf("Alice under load %d", i)); err != nil {
				done <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		done <- nil
	}()
	go func() {
		for i := range n {
			if err := dogberry.SendRaw(ctx, fmt.Sprintf(`<message to='%s' id='pg-%d' type='chat'><body>Dogberry under load %d</body></message>`, puppet, i, i)); err != nil {
				done <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		done <- nil
	}()
	time.Sleep(500 * time.Millisecond)
	if err := peers.CrashPostgres(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dogberry.Wait(ctx, 3*wait, isMessage(alicePuppet, fmt.Sprintf("Alice under load %d", n-1))); err != nil {
		t.Fatalf("Alice's last message never reached Dogberry: %v", err)
	}
	if _, err := w.alice.Wait(ctx, 3*wait, peers.IsText(room, ghost, fmt.Sprintf("Dogberry under load %d", n-1))); err != nil {
		t.Fatalf("Dogberry's last message never reached Alice: %v", err)
	}
	// Each is waited for: the bridge holds the transactions it cannot
	// store yet, and Dendrite's sends wait meanwhile.
	for i := range n {
		if _, err := dogberry.Wait(ctx, wait, isMessage(alicePuppet, fmt.Sprintf("Alice under load %d", i))); err != nil {
			t.Fatalf("Alice's message %d never reached Dogberry: %v", i, err)
		}
	}
	time.Sleep(2 * time.Second) // what is still on its way
	resp, err := w.alice.Client.Messages(ctx, room, "", "", mautrix.DirectionBackward, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	onMatrix := map[string]int{}
	for _, e := range resp.Chunk {
		if e.Type == event.EventMessage && e.Sender == ghost {
			_ = e.Content.ParseRaw(e.Type)
			onMatrix[e.Content.AsMessage().Body]++
		}
	}
	for i := range n {
		if c := dogberry.Count(isMessage(alicePuppet, fmt.Sprintf("Alice under load %d", i))); c != 1 {
			t.Errorf("Alice's message %d reached Dogberry %d times", i, c)
		}
		if c := onMatrix[fmt.Sprintf("Dogberry under load %d", i)]; c != 1 {
			t.Errorf("Dogberry's message %d is %d times in the room", i, c)
		}
	}
	var noisy []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "WRN") || strings.Contains(line, "ERR") {
			noisy = append(noisy, line)
		}
	}
	t.Logf("the bridge logged %d warnings and errors across the crash", len(noisy))
	if len(noisy) >= n {
		t.Errorf("%d warnings and errors for %d messages each way: once per message, not once per outage:\n%s", len(noisy), n, strings.Join(noisy, "\n"))
	}
}
