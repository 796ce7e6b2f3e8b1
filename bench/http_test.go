package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/internal/standin"
	"xmppbridge/matrixside"
)

// standinOnly is the bridge's homeserver client, as the bridge sets it up,
// against a stand-in homeserver that offers MSC4089 delivery receipts.
func standinOnly(b *testing.B) *matrixside.Homeserver {
	hs := standin.NewHomeserver()
	hs.Versions = `{"versions":["v1.11"],"unstable_features":{"org.matrix.msc4089":true}}`
	b.Cleanup(hs.Close)
	reg := &appservice.Registration{ID: "xmpp", AppToken: "as", ServerToken: "hs", SenderLocalpart: "xmppbridge"}
	as, err := appservice.CreateFull(appservice.CreateOpts{Registration: reg, HomeserverDomain: "example.org", HomeserverURL: hs.URL})
	if err != nil {
		b.Fatal(err)
	}
	as.Log = zerolog.Nop()
	h := matrixside.NewHomeserver(as, ids, matrixside.Delivery{Fallback: matrixside.FallbackNone})
	if _, err := h.Detect(context.Background()); err != nil {
		b.Fatal(err)
	}
	return h
}

// BenchmarkHTTPOnly is the stand-in homeserver alone, with 32 receipts in
// flight: what a do-nothing relay could reach.
func BenchmarkHTTPOnly(b *testing.B) {
	h := standinOnly(b)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := b.N / 32
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ghost := ids.Ghost(jid.MustParse(fmt.Sprintf("p%d@x.example", g)))
			for i := 0; i < per; i++ {
				if err := h.SendDelivery(ctx, id.RoomID(fmt.Sprintf("!r%d:example.org", g)), ghost, id.EventID(fmt.Sprintf("$e%d", i))); err != nil {
					b.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	b.ReportMetric(float64(per*32)/time.Since(start).Seconds(), "requests/s")
}

// BenchmarkHTTPOnlyLatency is the stand-in homeserver's own round trip at
// a steady 1,000 receipts per second, sent as the bridge sends them: the
// baseline that BenchmarkXMPPToMatrixLatency's figures add to.
func BenchmarkHTTPOnlyLatency(b *testing.B) {
	h := standinOnly(b)
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	b.ResetTimer()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := 0; i < b.N; i++ {
		<-tick.C
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ghost := ids.Ghost(jid.MustParse(fmt.Sprintf("p%d@x.example", i%64)))
			start := time.Now()
			if err := h.SendDelivery(ctx, id.RoomID(fmt.Sprintf("!r%d:example.org", i%64)), ghost, id.EventID(fmt.Sprintf("$e%d", i))); err != nil {
				b.Error(err)
			}
			lat[i] = time.Since(start)
		}(i)
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
