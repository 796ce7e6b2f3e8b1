package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"xmppbridge/config"
	"xmppbridge/database"
	"xmppbridge/mapping"
	"xmppbridge/matrixside"
	"xmppbridge/xmppside"
)

// What an operator watches, on the metrics listener: /metrics, and the
// health endpoints /health/live (the process answers) and /health/ready
// (the database answers, the XMPP link is up, the homeserver answers and
// knows the bridge's token).

// checkTimeout bounds each check of /health/ready.
const checkTimeout = 2 * time.Second

// coreState is what the gauges read of the core (*mapping.Bridge).
type coreState interface {
	// Unrecorded is how many receipts read from XMPP are held in memory.
	Unrecorded() int
}

// watched is what the health checks and the gauges look at.
type watched struct {
	db   *database.Database
	xmpp *xmppside.Component
	hs   *matrixside.Homeserver
	core coreState
}

// ready runs the readiness checks: each part's error, nil if it is fine.
func (w watched) ready(ctx context.Context) map[string]error {
	check := func(f func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, checkTimeout)
		defer cancel()
		return f(ctx)
	}
	return map[string]error{
		"database": check(w.db.Ping),
		"xmpp": check(func(context.Context) error {
			if !w.xmpp.Connected() {
				return errors.New("not connected to the XMPP server")
			}
			return nil
		}),
		"homeserver": check(w.homeserver),
	}
}

// homeserver checks that the homeserver answers and knows the bridge's
// token: an authenticated request (whoami, its yes cached for a few
// seconds), since /versions answers whatever the token.
func (w watched) homeserver(ctx context.Context) error {
	err := w.hs.CheckToken(ctx)
	var refused *matrixside.TokenRefusedError
	if errors.As(err, &refused) {
		return fmt.Errorf("token refused: %w; give the homeserver %s and restart it", refused.Cause, w.hs.RegistrationPath)
	}
	return err
}

// healthHandler serves /health/live and /health/ready: 200 when all is
// well, 503 and what is not otherwise, as JSON.
func (w watched) healthHandler(mux *http.ServeMux) {
	mux.HandleFunc("GET /health/live", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write([]byte(`{"status":"live"}` + "\n"))
	})
	mux.HandleFunc("GET /health/ready", func(rw http.ResponseWriter, r *http.Request) {
		out := map[string]string{}
		status := http.StatusOK
		for part, err := range w.ready(r.Context()) {
			out[part] = "ok"
			if err != nil {
				out[part], status = err.Error(), http.StatusServiceUnavailable
			}
		}
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(status)
		_ = json.NewEncoder(rw).Encode(out)
	})
}

// gauges are read at each scrape.
func (w watched) gauges() []prometheus.Collector {
	owed := func(side string, age bool) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
			defer cancel()
			o, err := w.db.OwedSends(ctx)
			if err != nil {
				return -1
			}
			if !age {
				return float64(o[side].Count)
			}
			if o[side].Oldest.IsZero() {
				return 0
			}
			return time.Since(o[side].Oldest).Seconds()
		}
	}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmppbridge_xmpp_connected", Help: "1 while the XEP-0114 component is connected to the XMPP server."}, func() float64 {
			if w.xmpp.Connected() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmppbridge_database_up", Help: "1 while the database answers a ping."}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
			defer cancel()
			if w.db.Ping(ctx) != nil {
				return 0
			}
			return 1
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmppbridge_transaction_lag_seconds", Help: "How long the oldest homeserver transaction still to process has waited (0 if none)."}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
			defer cancel()
			at, err := w.db.OldestPendingTxn(ctx)
			if err != nil {
				return -1
			} else if at.IsZero() {
				return 0
			}
			return time.Since(at).Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmppbridge_unrecorded_receipts", Help: "Receipts read from XMPP and not yet recorded: in memory, waiting for the database (a crash loses them; XEP-0114 acknowledges nothing)."}, func() float64 {
			return float64(w.core.Unrecorded())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmppbridge_set_aside", Help: "Homeserver events and transactions set aside, ever: ones that could never be processed (the store refused their data, they could not be read, handling them panicked), kept in the set_aside table (-1 if the database does not answer)."}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
			defer cancel()
			n, _, err := w.db.SetAsideCount(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmppbridge_sqlite_wal_bytes", Help: "Size of the SQLite write-ahead log (-1 on PostgreSQL)."}, func() float64 { return float64(w.db.WALBytes()) }),
	}
	for _, side := range []string{mapping.SideMatrix, mapping.SideXMPP} {
		labels := prometheus.Labels{"side": side}
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmppbridge_owed_sends", Help: "Sends the outbox owes a side (the homeserver, the XMPP server).", ConstLabels: labels}, owed(side, false)),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmppbridge_oldest_owed_send_seconds", Help: "How long the oldest send owed to a side has waited (0 if none).", ConstLabels: labels}, owed(side, true)),
		)
	}
	return cs
}

// The metrics listener's timeouts: its requests are GETs without a body,
// so reading one takes no time; answering waits for the database, each
// check for up to checkTimeout and a scrape's several gauges one after
// another; a scraper comes back every 15 s or so, on the same connection.
const (
	metricsReadTimeout  = 10 * time.Second
	metricsWriteTimeout = 30 * time.Second
	metricsIdleTimeout  = time.Minute
)

// serveMetrics serves /metrics and the health endpoints on addr until ctx
// ends.
func serveMetrics(ctx context.Context, addr string, w watched) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(events)
	reg.MustRegister(w.gauges()...)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	w.healthHandler(mux)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: metricsReadTimeout, ReadTimeout: metricsReadTimeout,
		WriteTimeout: metricsWriteTimeout, IdleTimeout: metricsIdleTimeout}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// statusOf is what the bot's `status` says: the XMPP link, the ways the
// homeserver was found to take and give receipts, and the owed sends.
func statusOf(w watched, hs *matrixside.Homeserver, cfg *config.Config, ephemeral func() string) mapping.Status {
	return func(ctx context.Context) []string {
		link := "down (reconnecting by itself)"
		if w.xmpp.Connected() {
			link = "up"
		}
		lines := []string{
			fmt.Sprintf("XMPP link to %s as %s: %s", cfg.XMPP.Address, cfg.XMPP.Domain, link),
			fmt.Sprintf("Delivery receipts reach Matrix as: %s", orUnknown(string(hs.DeliveryChosen()))),
			fmt.Sprintf("Matrix receipts come by: %s", orUnknown(ephemeral())),
		}
		ctx, cancel := context.WithTimeout(ctx, checkTimeout)
		defer cancel()
		owed, err := w.db.OwedSends(ctx)
		if err != nil {
			return append(lines, "Owed sends: the database does not answer ("+err.Error()+")")
		}
		for _, side := range []string{mapping.SideMatrix, mapping.SideXMPP} {
			o := owed[side]
			line := fmt.Sprintf("Sends owed to %s: %d", side, o.Count)
			if !o.Oldest.IsZero() {
				line += fmt.Sprintf(", the oldest for %s", time.Since(o.Oldest).Round(time.Second))
			}
			lines = append(lines, line)
		}
		return lines
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "not known yet"
	}
	return s
}
