package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"
	"mellium.im/xmpp/jid"

	"xmppbridge/database"
	"xmppbridge/internal/standin"
	"xmppbridge/mapping"
	"xmppbridge/matrixside"
	"xmppbridge/outbox"
	"xmppbridge/xmppside"
)

var ids = mapping.Identities{HomeserverDomain: "example.org", ComponentDomain: "matrix.example.org", BotLocalpart: "xmppbridge"}

const (
	alice  = id.UserID("@alice:example.org")
	secret = "bench-secret"
	// rooms spreads the receipts over this many portals (people).
	rooms = 64
)

type bridge struct {
	db   *database.Database
	core *mapping.Bridge
	srv  *matrixside.Server
	hs   *standin.Homeserver
	xs   *standin.XMPPServer
	api  *httptest.Server
	stop context.CancelFunc
}

// start assembles the bridge as cmd/bridge does, against the stand-ins.
func start(b *testing.B, versions string, inbox bool) *bridge {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	br := &bridge{stop: cancel, hs: standin.NewHomeserver()}
	br.hs.Versions = versions
	var err error
	if br.xs, err = standin.NewXMPPServer(secret); err != nil {
		b.Fatal(err)
	}
	if br.db, err = database.Open(ctx, "sqlite3-fk-wal", filepath.Join(benchDir(b), "bench.db"), zerolog.Nop()); err != nil {
		b.Fatal(err)
	}
	ss := sqlstatestore.NewSQLStateStore(br.db.DB(), dbutil.ZeroLogger(zerolog.Nop()), false)
	_ = database.EnsureVersionTable(ctx, ss.Database)
	if err := ss.Upgrade(ctx); err != nil {
		b.Fatal(err)
	}
	reg := &appservice.Registration{ID: "xmpp", AppToken: "as", ServerToken: "hs", SenderLocalpart: "xmppbridge"}
	as, err := appservice.CreateFull(appservice.CreateOpts{Registration: reg, HomeserverDomain: "example.org", HomeserverURL: br.hs.URL, StateStore: ss})
	if err != nil {
		b.Fatal(err)
	}
	as.Log = zerolog.Nop()
	br.core = mapping.New(mapping.Config{
		Identities: ids, Permissions: mapping.Permissions{"example.org": mapping.PermUser},
		Receipts: mapping.ReceiptPolicy{SendToXMPP: true, MaxDisplayedPerRead: 50, ReadImpliesDelivered: true},
	}, br.db, nil, zerolog.Nop())
	comp := &xmppside.Component{Address: br.xs.Addr, Domain: jid.MustParse(ids.ComponentDomain), Secret: secret, Core: br.core, Count: func(string, string) {}, Log: zerolog.Nop()}
	hs := matrixside.NewHomeserver(as, ids, matrixside.Delivery{Fallback: matrixside.FallbackMessageStatus})
	br.core.SetSides(hs, comp)
	out := outbox.New(br.db, br.core, nil, zerolog.Nop())
	br.core.SetOutbox(out)
	br.srv = matrixside.NewServer("hs", br.db, br.core, func(string, string) {}, zerolog.Nop())
	br.core.SetInbox(br.srv.Enqueue)
	br.api = httptest.NewServer(br.srv.Handler())
	go comp.Run(ctx)
	go br.core.Run(ctx)
	go out.Run(ctx)
	if inbox {
		go br.srv.Run(ctx)
	}
	if err := br.xs.Ready(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := hs.Detect(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		br.api.Close()
		br.hs.Close()
		br.xs.Close()
		time.Sleep(50 * time.Millisecond)
		br.db.Close()
	})
	return br
}

func peer(i int) jid.JID { return jid.MustParse(fmt.Sprintf("p%d@xmpp.example", i%rooms)) }

func room(i int) id.RoomID { return id.RoomID(fmt.Sprintf("!r%d:example.org", i%rooms)) }

// seed stores n messages in the given direction spread over the portals,
// as if bridged before; ghosts count as registered and joined.
func (br *bridge) seed(b *testing.B, n int, dir mapping.Direction, req mapping.Requests) {
	b.Helper()
	ctx := context.Background()
	for i := 0; i < rooms; i++ {
		if err := br.db.PutPortal(ctx, mapping.DirectPortal(room(i), alice, peer(i), time.Unix(0, 0))); err != nil {
			b.Fatal(err)
		}
	}
	err := br.db.DB().DoTxn(ctx, nil, func(ctx context.Context) error {
		for i := 0; i < n; i++ {
			m := &mapping.Message{RoomID: room(i), EventID: id.EventID(fmt.Sprintf("$e%d", i)), XMPPID: fmt.Sprintf("m%d", i),
				PeerJID: peer(i), Direction: dir, MXID: alice, TS: time.Now(), Requests: req}
			if _, err := br.db.AddMessage(ctx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func waitFor(b *testing.B, what string, done func() bool) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for !done() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkXMPPToMatrix: XEP-0184 receipts arrive on the component stream;
// each becomes an org.matrix.msc4089.delivery receipt posted as the ghost.
func BenchmarkXMPPToMatrix(b *testing.B) {
	br := start(b, `{"versions":["v1.11"],"unstable_features":{"org.matrix.msc4089":true}}`, true)
	br.seed(b, b.N, mapping.FromMatrix, mapping.Requests{Receipt: true})
	puppet, _ := ids.Puppet(alice)
	var sb strings.Builder
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		fmt.Fprintf(&sb, `<message from='%s/res' to='%s'><received xmlns='urn:xmpp:receipts' id='m%d'/></message>`, peer(i), puppet, i)
		if sb.Len() > 32<<10 || i == b.N-1 {
			if err := br.xs.Write(sb.String()); err != nil {
				b.Fatal(err)
			}
			sb.Reset()
		}
	}
	waitFor(b, "receipts on Matrix", func() bool { return br.hs.Count("receipt") >= int64(b.N) })
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "receipts/s")
}

// BenchmarkMatrixToXMPP: the homeserver pushes transactions of 100
// m.delivery receipts; each becomes an XEP-0184 <received/> on the
// component stream.
func BenchmarkMatrixToXMPP(b *testing.B) {
	br := start(b, `{"versions":["v1.11"]}`, true)
	br.seed(b, b.N, mapping.FromXMPP, mapping.Requests{Receipt: true})
	br.xs.Match = "<received"
	var bodies [][]byte
	for i := 0; i < b.N; i += 100 {
		var edus []map[string]any
		for j := i; j < min(i+100, b.N); j++ {
			edus = append(edus, map[string]any{"type": "m.receipt", "room_id": room(j),
				"content": map[string]any{fmt.Sprintf("$e%d", j): map[string]any{"m.delivery": map[string]any{string(alice): map[string]any{"ts": 1}}}}})
		}
		body, _ := json.Marshal(map[string]any{"events": []any{}, "ephemeral": edus})
		bodies = append(bodies, body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i, body := range bodies {
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/_matrix/app/v1/transactions/t%d", br.api.URL, i), bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer hs")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("transaction %d: %v %v", i, err, resp)
		}
		resp.Body.Close()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pushed/s")
	waitFor(b, "receipts on XMPP", func() bool { return br.xs.Received() >= int64(b.N) })
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "receipts/s")
}

// BenchmarkReadUpTo10000: one m.read on the newest of 10,000 unread
// messages in one portal: the "up to" expansion and its recording.
func BenchmarkReadUpTo10000(b *testing.B) {
	// No inbox processor: the benchmark processes the transaction itself.
	br := start(b, `{"versions":["v1.11"]}`, false)
	ctx := context.Background()
	const unread = 10000
	r := id.RoomID("!big:example.org")
	p := jid.MustParse("crowd@xmpp.example")
	_ = br.db.PutPortal(ctx, mapping.DirectPortal(r, alice, p, time.Unix(0, 0)))
	err := br.db.DB().DoTxn(ctx, nil, func(ctx context.Context) error {
		for i := 0; i < unread; i++ {
			m := &mapping.Message{RoomID: r, EventID: id.EventID(fmt.Sprintf("$big%d", i)), XMPPID: fmt.Sprintf("big%d", i), PeerJID: p,
				Direction: mapping.FromXMPP, MXID: alice, TS: time.Now(), Requests: mapping.Requests{Receipt: true, Displayed: true, Markable: true}}
			if _, err := br.db.AddMessage(ctx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	read := mapping.Receipt{Room: r, Event: id.EventID(fmt.Sprintf("$big%d", unread-1)), Type: mapping.ReceiptRead, User: alice}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := br.db.DB().Exec(ctx, `UPDATE portal_member SET read_upto=0, delivered_upto=0`); err != nil {
			b.Fatal(err)
		}
		if _, err := br.db.PutTxn(ctx, &mapping.Txn{ID: fmt.Sprintf("read%d", i), Body: []byte("{}")}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := br.core.HandleMatrixTxn(ctx, mapping.MatrixTxn{ID: fmt.Sprintf("read%d", i), Receipts: []mapping.Receipt{read}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkXMPPToMatrixLatency: receipts at a steady 1,000 per second; the
// time from writing each to the component stream to its arrival at the
// stand-in homeserver, as percentiles (b.N is the number of receipts).
func BenchmarkXMPPToMatrixLatency(b *testing.B) {
	br := start(b, `{"versions":["v1.11"],"unstable_features":{"org.matrix.msc4089":true}}`, true)
	br.seed(b, b.N, mapping.FromMatrix, mapping.Requests{Receipt: true})
	puppet, _ := ids.Puppet(alice)
	sent := make([]time.Time, b.N)
	arrived := make([]time.Time, b.N)
	var mu sync.Mutex
	br.hs.Seen = func(path string) {
		// .../receipt/org.matrix.msc4089.delivery/$e<i>
		if i := strings.LastIndex(path, "/$e"); i >= 0 {
			if n, err := strconv.Atoi(path[i+3:]); err == nil && n < len(arrived) {
				mu.Lock()
				arrived[n] = time.Now()
				mu.Unlock()
			}
		}
	}
	b.ResetTimer()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := 0; i < b.N; i++ {
		<-tick.C
		sent[i] = time.Now()
		if err := br.xs.Write(fmt.Sprintf(`<message from='%s/res' to='%s'><received xmlns='urn:xmpp:receipts' id='m%d'/></message>`, peer(i), puppet, i)); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, "receipts on Matrix", func() bool { return br.hs.Count("receipt") >= int64(b.N) })
	b.StopTimer()
	lat := make([]time.Duration, b.N)
	mu.Lock()
	for i := range lat {
		lat[i] = arrived[i].Sub(sent[i])
	}
	mu.Unlock()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func benchDir(b *testing.B) string {
	if d := os.Getenv("BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "bench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}
