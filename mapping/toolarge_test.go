package mapping

import (
	"context"
	"fmt"
	"testing"

	"mellium.im/xmpp/jid"
)

// An XMPP message the homeserver refuses for its size (ErrTooLarge) is
// not dropped without a word: its sender gets a message of type error
// (RFC 6120 §8.3.3.9 <not-acceptable/>, type modify, with a text), from
// the puppet it wrote to, with the message's id and without its body
// (RFC 6120 §8.2). Any other refusal answers nothing, as before.
func TestTooLargeForMatrixIsAnswered(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   error
		answer bool
	}{
		{"too large", fmt.Errorf("%w: %w: 413", ErrTooLarge, ErrPermanent), true},
		{"forbidden", fmt.Errorf("%w: 403", ErrPermanent), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			_ = h.store.PutPortal(ctx, &Portal{RoomID: dm, MXID: alice, JID: jid.MustParse(julietJID)})
			h.matrix.fail = tc.fail
			m := chat("big1", "a very long story")
			if reply, err := h.b.HandleXMPPMessage(ctx, m); err != nil || reply != nil {
				t.Fatalf("HandleXMPPMessage = %+v, %v", reply, err)
			}
			h.drain(t)
			if jobs, _ := h.store.DueJobs(ctx, h.b.now(), 100); len(jobs) != 0 {
				t.Errorf("%d jobs left to retry, want the send dropped", len(jobs))
			}
			if !tc.answer {
				if len(h.xmpp.sent) != 0 {
					t.Errorf("answered %+v", h.xmpp.sent[0])
				}
				return
			}
			if len(h.xmpp.sent) != 1 {
				t.Fatalf("sent %d stanzas to XMPP, want the error", len(h.xmpp.sent))
			}
			out := h.xmpp.sent[0]
			if out.Type != TypeError || out.ID != "big1" || out.From.String() != alicePup || !out.To.Equal(m.From) || out.Body != "" {
				t.Errorf("answer %+v, want an error from %s to %s with the id and no body", out, alicePup, m.From)
			}
			if e := out.Error; e == nil || e.Type != "modify" || e.Condition != "not-acceptable" || e.Text == "" {
				t.Errorf("error %+v, want <not-acceptable/> of type modify with a text", e)
			}
			if h.counts["xmpp_message/"+string(ReasonTooLarge)] != 1 {
				t.Errorf("counts %v, want xmpp_message/%s once", h.counts, ReasonTooLarge)
			}
		})
	}
}
