// Command demo runs the bridge end to end on loopback: it starts Prosody,
// Dendrite and the bridge with the embedded defaults, sends a message each
// way with real clients (and the receipts that answer them), a picture each
// way (XEP-0363 and XEP-0066 to m.image and back), then does the
// same in a group (an XMPP chat room with two occupants and Alice), prints
// what crossed and the id map, and stops everything. Run it through
// scripts/demo.sh, which installs Prosody and builds Dendrite first.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"xmppbridge/database"
	"xmppbridge/internal/peers"
	"xmppbridge/mapping"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

const timeout = 60 * time.Second

func run() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "xmppbridge-demo-")
	if err != nil {
		return err
	}
	logPath := filepath.Join(dir, "servers.log")
	logs, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logs.Close()
	step("Starting Prosody, Dendrite and the bridge in %s (their logs: %s)", dir, logPath)
	w, err := peers.StartWorld(ctx, dir, peers.WorldOptions{XMPPUsers: []string{"juliet", "beatrice", "benedick"}, LogLevel: "info"}, logs)
	if err != nil {
		return err
	}
	defer w.Stop()
	alice := w.Alice
	alicePuppet := w.Puppet(alice.Client.UserID)
	ghost := w.Ghost("juliet@localhost")
	juliet, err := w.XMPP(ctx, "juliet", "balcony")
	if err != nil {
		return err
	}
	defer juliet.Close()
	step("Matrix user %s is %s on XMPP; XMPP user juliet@localhost is %s on Matrix", alice.Client.UserID, alicePuppet, ghost)

	// XMPP -> Matrix.
	out := fmt.Sprintf(`<message to='%s' id='juliet-1' type='chat'><body>Wherefore art thou, Alice?</body><request xmlns='urn:xmpp:receipts'/><x xmlns='jabber:x:event'><delivered/><displayed/></x><markable xmlns='urn:xmpp:chat-markers:0'/></message>`, peers.XMLEscape(alicePuppet))
	step("Juliet (XMPP) sends:\n    %s", out)
	if err := juliet.SendRaw(ctx, out); err != nil {
		return err
	}
	invite, err := alice.Wait(ctx, timeout, peers.IsInvite(alice.Client.UserID, ghost))
	if err != nil {
		return err
	}
	step("Alice (Matrix) is invited by %s to the DM %s (is_direct=%v); she joins", invite.Sender, invite.RoomID, invite.Content.AsMember().IsDirect)
	room := invite.RoomID
	if _, err := alice.Client.JoinRoomByID(ctx, room); err != nil {
		return err
	}
	got, err := alice.Wait(ctx, timeout, peers.IsText(room, ghost, "Wherefore art thou, Alice?"))
	if err != nil {
		return err
	}
	step("Alice sees %s from %s: %q", got.ID, got.Sender, got.Content.AsMessage().Body)

	// Matrix -> XMPP.
	ev, err := alice.SendText(ctx, room, "It is the east, and Juliet is the sun")
	if err != nil {
		return err
	}
	step("Alice sends %s: %q", ev, "It is the east, and Juliet is the sun")
	st, err := juliet.Wait(ctx, timeout, func(s *peers.Stanza) bool {
		return s.Name == "message" && s.Body == "It is the east, and Juliet is the sun"
	})
	if err != nil {
		return err
	}
	step("Juliet receives:\n    %s", st.XML)

	if err := demoReceipts(ctx, w, juliet, room, st); err != nil {
		return err
	}
	if err := demoMedia(ctx, w, juliet, room); err != nil {
		return err
	}
	if err := demoGroup(ctx, w); err != nil {
		return err
	}

	step("Stopping the bridge to read its id map")
	_ = w.Bridge.Stop()
	db, err := database.Open(ctx, "sqlite3-fk-wal", filepath.Join(w.Bridge.Dir, "bridge.db"), zerolog.Nop())
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.Messages(ctx, room)
	if err != nil {
		return err
	}
	portal, err := db.PortalByRoom(ctx, room)
	if err != nil {
		return err
	}
	marks := portal.Marks(mapping.MatrixMember(portal.User())) // what Alice told XMPP
	fmt.Println("\n  direction  xmpp id                      matrix event id                               delivered  displayed")
	for _, m := range rows {
		// A message from XMPP is acknowledged "up to" Alice's marks.
		delivered := !m.DeliveredAt.IsZero() || m.Direction == mapping.FromXMPP && m.RowID <= marks.DeliveredUpTo
		displayed := !m.DisplayedAt.IsZero() || m.Direction == mapping.FromXMPP && m.RowID <= marks.ReadUpTo
		fmt.Printf("  %-9s  %-27s  %-44s  %-9v  %v\n", m.Direction, m.XMPPID, m.EventID, delivered, displayed)
	}
	step("Done; stopping Prosody and Dendrite")
	return nil
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}
