package mapping_test

import (
	"context"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// Revoking a user's permission (bridge.permissions) or blocking a domain
// (xmpp.blocked_domains) stops what the bridge owes from existing portals
// too, not only what comes in: a send queued before the change is judged
// when it runs (mayReach), dropped for good and counted. Each setup queues
// one kind of send and does not run it; the change comes between.
func TestChangesApplyToQueuedSends(t *testing.T) {
	ctx := context.Background()
	juliet := jid.MustParse(julietJID)
	revoke := func(h *harness) {
		h.b.Config().Permissions = Permissions{"example.org": PermUser, string(alice): PermNone}
	}
	block := func(h *harness) {
		h.b.Config().BlockedDomains = append(h.b.Config().BlockedDomains, juliet.Domainpart())
	}
	for _, tc := range []struct {
		name string
		// queue leaves a send owed in the store; sent counts what of its
		// kind reached a side.
		queue func(t *testing.T, h *harness)
		sent  func(h *harness) int
	}{
		{"message to XMPP", func(t *testing.T, h *harness) {
			_ = h.store.PutPortal(ctx, DirectPortal(dm, alice, juliet, time.Time{}))
			if err := h.handleTxn(ctx, MatrixTxn{ID: "t1", Events: []MatrixEvent{textEvent("$a1", alice, dm, "It is the east")}}); err != nil {
				t.Fatal(err)
			}
		}, func(h *harness) int { return len(h.xmpp.sent) }},
		{"receipt to XMPP", func(t *testing.T, h *harness) {
			h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: true, MaxDisplayedPerRead: 50}
			evs := fromJuliet(t, h, 1, Requests{Receipt: true, Markable: true})
			if err := h.handleTxn(ctx, MatrixTxn{ID: "r1", Receipts: []Receipt{receiptEvent(dm, evs[0], ReceiptRead, alice, "")}}); err != nil {
				t.Fatal(err)
			}
		}, func(h *harness) int { return len(h.xmpp.sent) }},
		{"vCard request", func(t *testing.T, h *harness) {
			if err := h.store.AddJobs(ctx, VCardJob(alice, juliet)); err != nil {
				t.Fatal(err)
			}
		}, func(h *harness) int { return len(h.xmpp.asked) }},
		{"message to Matrix", func(t *testing.T, h *harness) {
			if _, err := h.b.HandleXMPPMessage(ctx, chat("j1", "Wherefore art thou?")); err != nil {
				t.Fatal(err)
			}
		}, func(h *harness) int { return len(h.matrix.texts) + h.matrix.rooms }},
		{"receipt to Matrix", func(t *testing.T, h *harness) {
			ids := sentToJuliet(t, h, 1)
			if _, err := h.b.HandleXMPPMessage(ctx, receipt(func(m *XMPPMessage) { m.Acks = append(m.Acks, XMPPAck{Wire: WireReceived, ID: ids[0]}) })); err != nil {
				t.Fatal(err)
			}
			h.b.FlushReceipts(ctx)
		}, func(h *harness) int { return len(h.matrix.deliveries) }},
	} {
		for _, change := range []struct {
			name   string
			apply  func(*harness)
			reason Reason
		}{
			{"unchanged", func(*harness) {}, ""},
			{"permission revoked", revoke, ReasonNotPermitted},
			{"domain blocked", block, ReasonBlockedDomain},
		} {
			if tc.name == "receipt to Matrix" && change.reason == ReasonNotPermitted {
				continue // its job names no user: judged by the person alone
			}
			t.Run(tc.name+"/"+change.name, func(t *testing.T) {
				h := newHarness(t)
				tc.queue(t, h)
				before := tc.sent(h)
				change.apply(h)
				h.drain(t)
				sent := tc.sent(h) - before
				refused := h.counts["send_refused/"+string(change.reason)]
				if change.reason == "" {
					if sent == 0 {
						t.Fatal("nothing sent: the setup queued no send")
					}
					return
				}
				if sent != 0 || refused == 0 {
					t.Errorf("%d sent, %d counted as send_refused/%s; want none sent and the refusal counted", sent, refused, change.reason)
				}
				if jobs, _ := h.store.DueJobs(ctx, time.Now(), 100); len(jobs) != 0 {
					t.Errorf("%d jobs left to retry, want the refused one dropped", len(jobs))
				}
			})
		}
	}
}
