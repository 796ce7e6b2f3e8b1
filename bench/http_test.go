package bench

import (
	"context"
	"fmt"
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

func BenchmarkHTTPOnly(b *testing.B) {
	hs := standin.NewHomeserver()
	hs.Versions = `{"versions":["v1.11"],"unstable_features":{"org.matrix.msc4089":true}}`
	defer hs.Close()
	reg := &appservice.Registration{ID: "xmpp", AppToken: "as", ServerToken: "hs", SenderLocalpart: "xmppbridge"}
	as, _ := appservice.CreateFull(appservice.CreateOpts{Registration: reg, HomeserverDomain: "example.org", HomeserverURL: hs.URL})
	as.Log = zerolog.Nop()
	h := matrixside.NewHomeserver(as, ids, matrixside.Delivery{Fallback: matrixside.FallbackNone})
	ctx := context.Background()
	_, _ = h.Detect(ctx)
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
