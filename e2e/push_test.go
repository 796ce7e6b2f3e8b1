//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"xmppbridge/config"
)

// pushTxn posts a transaction to the bridge the way Synapse does: with the
// hs_token, and the receipts in "ephemeral" (MSC2409, as
// receive_ephemeral asks for).
func pushTxn(t *testing.T, txnID string, ephemeral []map[string]any) {
	t.Helper()
	cfg, err := config.Load(w.Bridge.Config)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"events": []any{}, "ephemeral": ephemeral})
	url := fmt.Sprintf("http://127.0.0.1:%d/_matrix/app/v1/transactions/%s", w.Bridge.Settings.ASPort, txnID)
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+cfg.AppService.HSToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("transaction %s answered %d", txnID, resp.StatusCode)
	}
}

func receiptEDU(room id.RoomID, ev id.EventID, typ string, user id.UserID) map[string]any {
	return map[string]any{
		"type":    "m.receipt",
		"room_id": room,
		"content": map[string]any{string(ev): map[string]any{typ: map[string]any{string(user): map[string]any{"ts": time.Now().UnixMilli()}}}},
	}
}

// Matrix receipts to XMPP (docs/protocols.md, Matrix → XMPP), the push way (MSC2409; Synapse, Tuwunel): a transaction carrying
// m.read.private, m.delivery, org.matrix.msc4089.delivery and m.read gives
// Juliet exactly what is due, and the private receipt never. Sent twice,
// it is translated once.
func TestPushedReceiptsReachXMPP(t *testing.T) {
	ctx := context.Background()
	c := w.xmppUser(t, "juliet", "push")
	room, evs, xids := writeThree(t, ctx, c, "juliet", "push")
	puppet := w.puppet(t, w.alice.Client.UserID)
	alice := w.alice.Client.UserID
	edus := []map[string]any{
		receiptEDU(room, evs[0], "m.read.private", alice),
		receiptEDU(room, evs[0], "m.delivery", alice),
		receiptEDU(room, evs[1], "org.matrix.msc4089.delivery", alice),
		receiptEDU(room, evs[2], "m.read.private", alice),
	}
	pushTxn(t, "push-1", edus)
	pushTxn(t, "push-1", edus) // the homeserver retries
	pushTxn(t, "push-2", edus[1:2])
	waitReceipts(t, ctx, c, puppet, xids[0], []string{"received", "x-delivered"})
	waitReceipts(t, ctx, c, puppet, xids[1], []string{"received", "x-delivered"})
	if got := receiptsFor(c, puppet, xids[2]); len(got) != 0 {
		t.Errorf("m.read.private leaked: %v", got)
	}
	// Now a pushed m.read on the second: displayed for both, the marker on
	// the second, deliveries not again.
	pushTxn(t, "push-3", []map[string]any{receiptEDU(room, evs[1], "m.read", alice)})
	waitReceipts(t, ctx, c, puppet, xids[0], []string{"received", "x-delivered", "x-displayed"})
	waitReceipts(t, ctx, c, puppet, xids[1], []string{"received", "x-delivered", "x-displayed", "marker"})
}
