package mapping_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// An XMPP message that can never reach Matrix is not dropped without a
// word: its sender gets one message of type error, from the puppet it
// wrote to, with the message's id and without its body (RFC 6120 §8.2).
// Too large for the homeserver (ErrTooLarge): RFC 6120 §8.3.3.9
// <not-acceptable/>, type modify, a shorter one would pass. Refused for
// any other reason for good (ErrPermanent: the room refuses the ghost, the
// homeserver cannot read it): §8.3.3.19 <service-unavailable/>, type
// cancel. A send held because the homeserver is away or refuses the
// bridge's token (ErrNotConnected) is no failure of the message: nothing
// is answered and the job stays, to go once the homeserver takes it.
func TestUndeliverableToMatrixIsAnswered(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      error
		held      bool   // the job stays for the next try
		condition string // the answer's, "" for none
		typ       string
		reason    Reason
	}{
		{"too large", fmt.Errorf("%w: %w: 413", ErrTooLarge, ErrPermanent), false, "not-acceptable", "modify", ReasonTooLarge},
		{"refused by the room", fmt.Errorf("%w: M_FORBIDDEN (HTTP 403): not in room", ErrPermanent), false, "service-unavailable", "cancel", ReasonUndeliverable},
		{"bad request", fmt.Errorf("%w: M_BAD_JSON (HTTP 400)", ErrPermanent), false, "service-unavailable", "cancel", ReasonUndeliverable},
		{"token refused", fmt.Errorf("%w: M_UNKNOWN_TOKEN (HTTP 401)", ErrNotConnected), true, "", "", ""},
		{"homeserver down", fmt.Errorf("%w: connection refused", ErrNotConnected), true, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			_ = h.store.PutPortal(ctx, DirectPortal(dm, alice, jid.MustParse(julietJID), time.Time{}))
			h.matrix.fail = tc.fail
			m := chat("big1", "a very long story")
			if reply, err := h.b.HandleXMPPMessage(ctx, m); err != nil || reply != nil {
				t.Fatalf("HandleXMPPMessage = %+v, %v", reply, err)
			}
			h.drain(t)
			h.drain(t) // a second round answers nothing more
			jobs, _ := h.store.DueJobs(ctx, time.Now(), 100)
			if held := len(jobs) == 1 && jobs[0].Kind == JobSendToMatrix; held != tc.held || (!tc.held && len(jobs) != 0) {
				t.Errorf("jobs left %v, want the send held: %v", jobs, tc.held)
			}
			if tc.condition == "" {
				if len(h.xmpp.sent) != 0 {
					t.Errorf("answered %+v to a send that is only held", h.xmpp.sent[0])
				}
				return
			}
			if len(h.xmpp.sent) != 1 {
				t.Fatalf("sent %d stanzas to XMPP, want the error once", len(h.xmpp.sent))
			}
			out := h.xmpp.sent[0]
			if out.Type != TypeError || out.ID != "big1" || out.From.String() != alicePup || !out.To.Equal(m.From) || out.Body != "" {
				t.Errorf("answer %+v, want an error from %s to %s with the id and no body", out, alicePup, m.From)
			}
			if e := out.Error; e == nil || e.Type != tc.typ || e.Condition != tc.condition || e.Text == "" {
				t.Errorf("error %+v, want <%s/> of type %s with a text", e, tc.condition, tc.typ)
			}
			if h.counts["xmpp_message/"+string(tc.reason)] != 1 {
				t.Errorf("counts %v, want xmpp_message/%s once", h.counts, tc.reason)
			}
		})
	}
}

// A message from Matrix that can never reach XMPP (a rule of the bridge no
// longer lets it through when its send runs) is marked failed for its
// sender, once, by a failure status on its event; one that went is not.
func TestUndeliverableToXMPPIsMarkedFailed(t *testing.T) {
	ctx := context.Background()
	juliet := jid.MustParse(julietJID)
	for _, tc := range []struct {
		name   string
		change func(h *harness)
		failed []string
	}{
		{"sent", func(*harness) {}, nil},
		{"permission revoked", func(h *harness) {
			h.b.Config().Permissions = Permissions{"example.org": PermUser, string(alice): PermNone}
		}, []string{string(dm) + " $a1 false " + string(ReasonUndeliverable)}},
		{"domain blocked", func(h *harness) {
			h.b.Config().BlockedDomains = append(h.b.Config().BlockedDomains, juliet.Domainpart())
		}, []string{string(dm) + " $a1 false " + string(ReasonUndeliverable)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			_ = h.store.PutPortal(ctx, DirectPortal(dm, alice, juliet, time.Time{}))
			if err := h.handleTxn(ctx, MatrixTxn{ID: "t1", Events: []MatrixEvent{textEvent("$a1", alice, dm, "It is the east")}}); err != nil {
				t.Fatal(err)
			}
			tc.change(h)
			h.drain(t)
			h.drain(t)
			if !slices.Equal(h.matrix.failures, tc.failed) {
				t.Errorf("failure statuses %q, want %q", h.matrix.failures, tc.failed)
			}
			if jobs, _ := h.store.DueJobs(ctx, time.Now(), 100); len(jobs) != 0 {
				t.Errorf("%d jobs left, want none", len(jobs))
			}
		})
	}
}
