//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"xmppbridge/internal/peers"
)

// Issue 12, with a real terminal client: profanity (Debian's), driven by
// keystrokes in tmux. Its message reaches Alice; Alice's message shows on
// its screen, from the puppet's full JID; its own XEP-0184 receipt (which
// it addresses to the sender's full JID) reaches Alice as the delivery
// status; Alice's typing shows on its screen; its typing reaches Alice.
// Before puppets had a resource, the receipt went nowhere and profanity
// showed no typing.
func TestProfanity(t *testing.T) {
	if err := peers.ProfanityAvailable(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := w.StartProfanity(ctx, "abram")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	alice := w.alice
	ghost := w.ghost("abram@localhost")
	puppet := w.puppet(t, alice.Client.UserID)

	if err := p.Line("/msg " + puppet + " Do you bite your thumb at us, sir?"); err != nil {
		t.Fatal(err)
	}
	invite, err := alice.Wait(ctx, wait, peers.IsInvite(alice.Client.UserID, ghost))
	if err != nil {
		t.Fatal(err)
	}
	room := invite.RoomID
	if _, err := alice.Client.JoinRoomByID(ctx, room); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, peers.IsText(room, ghost, "Do you bite your thumb at us, sir?")); err != nil {
		t.Fatalf("profanity's message never reached Alice: %v", err)
	}

	ev, err := alice.SendText(ctx, room, "I do bite my thumb, sir")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitScreen(ctx, wait, puppet+"/matrix: I do bite my thumb, sir"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, isStatus(room, ev, event.MessageStatusSuccess)); err != nil {
		t.Fatalf("profanity's receipt never reached Alice as a delivery: %v", err)
	}

	if _, err := alice.Client.UserTyping(ctx, room, true, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitScreen(ctx, wait, "(typing...)"); err != nil {
		t.Fatal(err)
	}
	if err := p.Type("Quarrel, sir"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, isTyping(room, ghost, true)); err != nil {
		t.Fatalf("profanity's typing never reached Alice: %v", err)
	}
	if err := p.Line(""); err != nil { // sends "Quarrel, sir"
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, peers.IsText(room, ghost, "Quarrel, sir")); err != nil {
		t.Fatal(err)
	}
	if s, _ := p.Screen(); containsAny(s, "error", "malformed") {
		t.Errorf("profanity shows an error:\n%s", s)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(strings.ToLower(s), sub) {
			return true
		}
	}
	return false
}
