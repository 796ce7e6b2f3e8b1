package mapping_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// XEP-0356 (roster access): where Juliet's server lets the component write
// rosters, the portal puts Alice's puppet into her roster under Alice's
// name (RFC 6121 §2.3 roster set, on her behalf), and a new display name
// writes it again in each of Alice's portals; where it grants nothing,
// nothing is written and nothing fails.
func TestPuppetInTheRoster(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.matrix.names = map[id.UserID]string{alice: "Alice L"}
	h.handle(t, chat("m1", "Wherefore art thou?"))
	entry := func(owner, name string) string { return owner + " " + alicePup + " " + name }
	if got := h.xmpp.rosters; fmt.Sprint(got) != fmt.Sprint([]string{entry(julietJID, "Alice L")}) {
		t.Fatalf("roster writes %q, want Alice's puppet named in Juliet's", got)
	}
	if err := h.store.PutPortal(ctx, DirectPortal("!r2:example.org", alice, jid.MustParse("romeo@montague.lit"), time.Time{})); err != nil {
		t.Fatal(err)
	}
	h.xmpp.rosters = nil
	if err := h.handleTxn(ctx, MatrixTxn{ID: "rename", Events: []MatrixEvent{profileMember("!room1:example.org", alice, "Alice Liddell", "")}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if got := h.xmpp.rosters; fmt.Sprint(got) != fmt.Sprint([]string{entry(julietJID, "Alice Liddell"), entry("romeo@montague.lit", "Alice Liddell")}) {
		t.Fatalf("roster writes after the rename %q, want one per portal", got)
	}

	h.xmpp.noRoster, h.xmpp.rosters = true, nil
	if err := h.handleTxn(ctx, MatrixTxn{ID: "rename2", Events: []MatrixEvent{profileMember("!room1:example.org", alice, "Alice", "")}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.rosters) != 0 || h.counts["xmpp_roster/not_granted"] != 2 {
		t.Errorf("writes %q counts %v: want none, two counted not_granted", h.xmpp.rosters, h.counts)
	}
}
