package mapping_test

import (
	"context"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// XEP-0022 §3.2: "the server" raises <offline/> for a message that asked
// for it when the recipient is offline, and the bridge is the puppets'
// server; unknown or online presence raises nothing. Whether the Matrix
// user is online is theirs to tell: the event goes out only while their
// receipts reach XMPP (the config's receipts.send_to_xmpp, or their own
// `receipts on|off` with the bot, which wins), and only to a person who
// had a portal with them before the message (not to whoever writes first).
func TestOfflineEvent(t *testing.T) {
	on, off := true, false
	for _, c := range []struct {
		name         string
		offline      bool
		configOn     bool
		userSetting  *bool
		portalBefore bool
		want         bool
	}{
		{"receipts on, a portal, offline", true, true, nil, true, true},
		{"receipts on, a portal, online", false, true, nil, true, false},
		{"receipts on, the message opens the portal", true, true, nil, false, false},
		{"receipts off in the config", true, false, nil, true, false},
		{"receipts off with the bot", true, true, &off, true, false},
		{"receipts on with the bot, off in the config", true, false, &on, true, true},
	} {
		h := newHarness(t)
		ctx := context.Background()
		h.matrix.offline = c.offline
		h.b.Config().Receipts = ReceiptPolicy{SendToXMPP: c.configOn}
		if c.userSetting != nil {
			// Alice's `receipts on|off`, as the bot stored it, read as at
			// start-up.
			must(t, h.store.SetUserSetting(ctx, UserSetting{MXID: alice, Receipts: c.userSetting}))
			must(t, h.b.LoadSettings(ctx))
		}
		if c.portalBefore {
			if err := h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{})); err != nil {
				t.Fatal(err)
			}
		}
		m := chat("off-1", "are you there?")
		m.Requests = Requests{Offline: true}
		if _, err := h.b.HandleXMPPMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
		h.drain(t)
		h.drain(t)
		var got []string
		for _, s := range h.xmpp.sent {
			for _, a := range s.Acks {
				if a.Wire == WireEventOffline {
					got = append(got, a.ID+" to "+s.To.String()+" from "+s.From.String())
				}
			}
		}
		switch {
		case c.want && (len(got) != 1 || got[0] != "off-1 to "+julietJID+" from "+aliceFrom):
			t.Errorf("%s: offline events %q, want one for off-1", c.name, got)
		case !c.want && len(got) != 0:
			t.Errorf("%s: offline events %q, want none", c.name, got)
		}
		if len(h.matrix.texts) != 1 {
			t.Errorf("%s: %d messages bridged, want 1", c.name, len(h.matrix.texts))
		}
	}
}
