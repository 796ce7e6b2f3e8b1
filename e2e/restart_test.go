//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

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
