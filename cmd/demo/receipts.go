package main

import (
	"context"

	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// demoReceipts shows receipts crossing both ways, as far as the bridge
// translates them.
func demoReceipts(ctx context.Context, w *peers.World, juliet *peers.XMPPClient, room id.RoomID, fromAlice *peers.Stanza) {
	step("Receipts: not translated yet by this version of the bridge")
}
