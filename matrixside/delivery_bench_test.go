package matrixside

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"maunium.net/go/mautrix/id"
)

// BenchmarkSendDeliveryFallback: a delivery receipt as every homeserver
// takes it today (no MSC4089): the bot's status event on the message, to
// a stand-in that answers at once. Its allocations are the bridge's own
// cost per delivery on that path, as the load bench's x2m-0184 pays it.
func BenchmarkSendDeliveryFallback(b *testing.B) {
	quiet := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/_matrix/client/versions" {
			_, _ = io.WriteString(w, `{"versions":["v1.11"]}`)
			return
		}
		_, _ = io.WriteString(w, `{"event_id":"$status"}`)
	})
	h := newStandInHomeserver(b, quiet, Delivery{Fallback: FallbackMessageStatus})
	ctx := context.Background()
	if err := h.SendDelivery(ctx, "!dm:example.org", deliveryGhost, "$warm"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := h.SendDelivery(ctx, "!dm:example.org", deliveryGhost, id.EventID(fmt.Sprintf("$e%d", i))); err != nil {
			b.Fatal(err)
		}
	}
}
