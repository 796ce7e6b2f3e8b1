//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
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

// Issue 13: when Dendrite stops under load, the bridge holds what comes
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

// Issue 13: Prosody restarts while Alice writes to Verges, one message
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
