package mapping_test

import (
	"context"
	"errors"
	"testing"

	. "xmppbridge/mapping"
)

// FuzzJobPayload: no payload crashes a job of any kind (the outbox's jobs
// and the receipts parked behind a send, early_receipts.go, are stored
// and read back across versions and crashes); one that does not decode is
// refused for good (ErrPermanent), not retried for ever.
func FuzzJobPayload(f *testing.F) {
	kinds := JobKinds()
	for i := range kinds {
		f.Add(uint8(i), int64(1), []byte(`{}`))
	}
	f.Add(uint8(0), int64(0), []byte(`{"room":"!dm:example.org","user":"@alice:example.org","body":"x"}`))
	f.Add(uint8(1), int64(7), []byte(`[{"to":"juliet@capulet.lit","from":"a@b/c","type":"chat"}]`))
	f.Add(uint8(2), int64(0), []byte(`{"mxid":"@alice:example.org","jid":"juliet@capulet.lit","photo":"AAAA"}`))
	f.Add(uint8(3), int64(0), []byte(`not json`))
	f.Fuzz(func(t *testing.T, kind uint8, row int64, payload []byte) {
		h := newHarness(t)
		job := &Job{ID: 1, Kind: kinds[int(kind)%len(kinds)], MessageID: row, Payload: payload}
		err := h.b.RunJob(context.Background(), job)
		if err != nil && !errors.Is(err, ErrPermanent) && !errors.Is(err, ErrNotFound) {
			// The fakes never fail, so only the payload can be at fault,
			// and a bad payload is never worth a retry.
			t.Fatalf("%s with payload %q: a retriable error: %v", job.Kind, payload, err)
		}
	})
}
