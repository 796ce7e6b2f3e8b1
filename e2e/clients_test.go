//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// A real terminal client: profanity (Debian's), driven by
// keystrokes in tmux. Its message reaches Alice; Alice's message shows on
// its screen, from the puppet's full JID, by the name the bridge put in the
// roster; its own XEP-0184 receipt (which
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
	room := aliceJoinsFrom(t, ctx, ghost, "Do you bite your thumb at us, sir?")

	ev, err := alice.SendText(ctx, room, "I do bite my thumb, sir")
	if err != nil {
		t.Fatal(err)
	}
	// The portal put the puppet into abram's roster under Alice's
	// display name (XEP-0356, mod_privilege): profanity, which reads no
	// XEP-0172 nick, names the sender by it.
	name, err := alice.Client.GetOwnDisplayName(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitScreen(ctx, wait, name.DisplayName+"/matrix: I do bite my thumb, sir"); err != nil {
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
	quarrel, err := alice.Wait(ctx, wait, peers.IsText(room, ghost, "Quarrel, sir"))
	if err != nil {
		t.Fatal(err)
	}

	// Its /correct (XEP-0308) is an edit of that event on
	// Matrix, and Alice's edit is a correction on its screen.
	if err := p.Line("/correct Quarrel, sir? No, sir"); err != nil {
		t.Fatal(err)
	}
	edit, err := alice.Wait(ctx, wait, func(e *event.Event) bool {
		c := e.Content.AsMessage()
		return e.RoomID == room && e.Sender == ghost && c.RelatesTo != nil && c.RelatesTo.Type == event.RelReplace
	})
	if err != nil {
		s, _ := p.Screen()
		t.Fatalf("profanity's correction never reached Alice as an edit: %v\nits screen:\n%s", err, s)
	}
	if c := edit.Content.AsMessage(); c.RelatesTo.EventID != quarrel.ID || c.NewContent == nil || c.NewContent.Body != "Quarrel, sir? No, sir" {
		t.Errorf("edit of %s with %+v, want of %s", c.RelatesTo.EventID, c.NewContent, quarrel.ID)
	}
	if _, err := alice.Client.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "* I do bite my thumb, sir, but not at you",
		NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "I do bite my thumb, sir, but not at you"},
		RelatesTo:  &event.RelatesTo{Type: event.RelReplace, EventID: ev},
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitScreen(ctx, wait, "I do bite my thumb, sir, but not at you"); err != nil {
		t.Fatalf("Alice's edit never showed as a correction: %v", err)
	}
	if s, _ := p.Screen(); containsAny(s, "error", "malformed") || strings.Contains(s, "* I do bite") {
		t.Errorf("profanity shows an error or the edit as a new message:\n%s", s)
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

// A second terminal client: mcabber (Debian's), in tmux.
// It adds the puppet (typing the escaped JID as a person does, its
// backslash doubled for mcabber's command line) and is answered with the
// puppet's presence, writes to Alice, accepts the puppet's own request
// (mcabber returns receipts only to a contact that may see its presence),
// and returns XEP-0184 receipts: Alice sees her message delivered.
func TestMcabber(t *testing.T) {
	if err := peers.McabberAvailable(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := w.StartMcabber(ctx, "peter")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	alice := w.alice
	ghost := w.ghost("peter@localhost")
	puppet := w.puppet(t, alice.Client.UserID)
	typed := strings.ReplaceAll(puppet, `\`, `\\`)

	if err := m.Line("/add " + typed); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitScreen(ctx, wait, "has allowed you to receive their presence"); err != nil {
		t.Fatal(err)
	}
	if err := m.Line("/say_to " + typed + " Nurse! Your lady calls"); err != nil {
		t.Fatal(err)
	}
	room := aliceJoinsFrom(t, ctx, ghost, "Nurse! Your lady calls")
	// The puppet asks for a subscription when the portal opens; mcabber
	// returns receipts only to a contact it lets see its presence.
	if err := m.WaitScreen(ctx, wait, "wants to subscribe"); err != nil {
		t.Fatal(err)
	}
	if err := m.Line("/event 1 accept"); err != nil {
		t.Fatal(err)
	}
	ev, err := alice.SendText(ctx, room, "Anon, good nurse")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, isStatus(room, ev, event.MessageStatusSuccess)); err != nil {
		s, _ := m.Screen()
		t.Fatalf("mcabber's receipt never reached Alice as a delivery: %v\nits screen:\n%s", err, s)
	}
	if s, _ := m.Screen(); containsAny(s, "jid-malformed", "error") {
		t.Errorf("mcabber shows an error:\n%s", s)
	}
}

// aliceJoinsFrom has Alice take the invite of ghost that a client's first
// message raised, and waits for that message: the portal.
func aliceJoinsFrom(t *testing.T, ctx context.Context, ghost id.UserID, body string) id.RoomID {
	t.Helper()
	alice := w.alice
	invite, err := alice.Wait(ctx, wait, peers.IsInvite(alice.Client.UserID, ghost))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Client.JoinRoomByID(ctx, invite.RoomID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Wait(ctx, wait, peers.IsText(invite.RoomID, ghost, body)); err != nil {
		t.Fatalf("the client's message never reached Alice: %v", err)
	}
	return invite.RoomID
}

// profanity's /sendfile (XEP-0363 and XEP-0066 from a client people use):
// it finds Prosody's upload service by disco (XEP-0363 §3), takes a slot
// (§4), PUTs the file with the slot's Authorization header (§6) and sends
// the GET URL. What it sends is recorded first by a plain client (its
// stanza logged): the URL as the body and in XEP-0066's <x/> (XEP-0066 §3).
// Sent to Alice's puppet, the picture is an m.image of abram's ghost with
// the bytes profanity uploaded.
func TestProfanitySendFile(t *testing.T) {
	if err := peers.ProfanityAvailable(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := w.StartProfanity(ctx, "portia")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	alice := w.alice
	ghost := w.ghost("portia@localhost")
	pic := testPNG(t, 48, 36, 21)
	path := filepath.Join(t.TempDir(), "casket.png")
	if err := os.WriteFile(path, pic, 0o644); err != nil {
		t.Fatal(err)
	}

	witness := w.xmppUser(t, "nerissa", "witness")
	if err := p.Line("/msg nerissa@localhost"); err != nil {
		t.Fatal(err)
	}
	// Typed before the chat window is open, /sendfile is lost.
	if err := p.WaitScreen(ctx, wait, "nerissa@localhost ["); err != nil {
		t.Fatal(err)
	}
	if err := p.Line("/sendfile " + path); err != nil {
		t.Fatal(err)
	}
	sent, err := witness.Wait(ctx, wait, func(s *peers.Stanza) bool {
		return s.Name == "message" && strings.Contains(s.Body, "casket.png")
	})
	if err != nil {
		s, _ := p.Screen()
		t.Fatalf("profanity's /sendfile never reached a plain client: %v\nits screen:\n%s", err, s)
	}
	t.Logf("profanity 0.13 /sendfile sends:\n%s", sent.XML)
	url := strings.TrimSpace(sent.Body)
	if !sent.Has(`<x xmlns="jabber:x:oob"><url xmlns="jabber:x:oob">`+url+`</url>`) || !strings.Contains(url, "/file_share/") {
		t.Errorf("profanity's message is not its upload's URL as body and XEP-0066 URL: %s", sent.XML)
	}
	if got, err := peers.Download(ctx, wait, url); err != nil || !bytes.Equal(got, pic) {
		t.Errorf("profanity's upload serves %d bytes (%v), not the %d of the file", len(got), err, len(pic))
	}

	puppet := w.puppet(t, alice.Client.UserID)
	if err := p.Line("/msg " + puppet); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitScreen(ctx, wait, puppet+" ["); err != nil {
		t.Fatal(err)
	}
	if err := p.Line("/sendfile " + path); err != nil {
		t.Fatal(err)
	}
	invite, err := alice.Wait(ctx, wait, peers.IsInvite(alice.Client.UserID, ghost))
	if err != nil {
		s, _ := p.Screen()
		t.Fatalf("profanity's file never reached Matrix: %v\nits screen:\n%s", err, s)
	}
	if _, err := alice.Client.JoinRoomByID(ctx, invite.RoomID); err != nil {
		t.Fatal(err)
	}
	img, err := alice.Wait(ctx, wait, isFile(invite.RoomID, ghost, event.MsgImage))
	if err != nil {
		t.Fatalf("profanity's picture is no m.image: %v", err)
	}
	c := img.Content.AsMessage()
	if c.Body != "casket.png" || c.Info == nil || c.Info.MimeType != "image/png" || c.Info.Width != 48 || c.Info.Height != 36 {
		t.Errorf("m.image body %q info %+v: want casket.png, image/png, 48×36", c.Body, c.Info)
	}
	if got := download(t, ctx, alice.Client, c.URL); !bytes.Equal(got, pic) {
		t.Errorf("the picture on Matrix is %d bytes, not the %d profanity uploaded", len(got), len(pic))
	}
}
