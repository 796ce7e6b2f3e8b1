// Command bridge runs the XMPP <-> Matrix receipt bridge: a Matrix
// application service and an XMPP component in one process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/sqlstatestore"
	"mellium.im/xmpp/jid"

	"xmppbridge"
	"xmppbridge/config"
	"xmppbridge/database"
	"xmppbridge/internal/retry"
	"xmppbridge/mapping"
	"xmppbridge/matrixside"
	"xmppbridge/media"
	"xmppbridge/outbox"
	"xmppbridge/xmppside"
)

// The core (*mapping.Bridge) is each of its users' small interface: the
// XMPP side's, the Matrix side's and the gauges'.
var (
	_ xmppside.Core   = (*mapping.Bridge)(nil)
	_ matrixside.Core = (*mapping.Bridge)(nil)
	_ coreState       = (*mapping.Bridge)(nil)
)

func main() {
	configPath := flag.String("c", "config.yaml", "path to the configuration file")
	regPath := flag.String("r", "registration.yaml", "path to the application service registration")
	generate := flag.Bool("g", false, "write the registration (keeping the tokens of one already there) and the tokens into the config, then exit")
	newTokens := flag.Bool("new-tokens", false, "with -g: write new tokens even over a registration that has some (the homeserver must then be given the file and restarted)")
	example := flag.Bool("e", false, "print the commented example configuration, then exit")
	version := flag.Bool("version", false, "print the bridge's version, then exit")
	copyDB := addCopyFlags()
	flag.Parse()
	if *version {
		fmt.Printf("xmppbridge %s (%s)\n", xmppside.SoftwareVersion(), runtime.Version())
		return
	}
	if *example {
		os.Stdout.Write(xmppbridge.ExampleConfig)
		return
	}
	if copyDB.requested() {
		if err := copyDB.run(*configPath); err != nil {
			fmt.Fprintln(os.Stderr, "bridge:", err)
			os.Exit(1)
		}
		return
	}
	if path := os.Getenv("XMPPBRIDGE_CPUPROFILE"); path != "" {
		// For measuring the bridge under the load bench (docs/performance.md):
		// a CPU profile of the whole run, written when it stops.
		stop, err := cpuProfile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bridge:", err)
			os.Exit(1)
		}
		defer stop()
	}
	if err := run(*configPath, *regPath, *generate, *newTokens); err != nil {
		fmt.Fprintln(os.Stderr, "bridge:", err)
		os.Exit(1)
	}
}

func run(configPath, regPath string, generate, newTokens bool) error {
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	if generate {
		g, err := cfg.Generate(regPath, newTokens)
		if err != nil {
			return err
		}
		fmt.Println(g.Message())
		return nil
	}
	reg, err := cfg.CheckRegistration(regPath)
	if err != nil {
		return err
	}
	log := newLogger(cfg)
	setMemory(cfg.Limits.MemoryMiB, log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx = log.WithContext(ctx)

	db, err := database.Open(ctx, cfg.AppService.Database.Type, cfg.DatabaseURI(), log.With().Str("component", "database").Logger())
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	warnIfEmpty(ctx, db, configPath, log)
	stateStore := sqlstatestore.NewSQLStateStore(db.DB(), dbutil.ZeroLogger(log.With().Str("component", "statestore").Logger()), false)
	// dbutil looks for its version table in every PostgreSQL schema; make
	// the state store's in ours first (see database.EnsureVersionTable).
	if err := database.EnsureVersionTable(ctx, stateStore.Database); err != nil {
		return fmt.Errorf("prepare state store: %w", err)
	}
	if err := stateStore.Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrade state store: %w", err)
	}
	as, err := appservice.CreateFull(appservice.CreateOpts{
		Registration:     reg,
		HomeserverDomain: cfg.Homeserver.Domain,
		HomeserverURL:    cfg.Homeserver.Address,
		StateStore:       stateStore,
	})
	if err != nil {
		return fmt.Errorf("set up application service: %w", err)
	}
	as.Log = log.With().Str("component", "appservice").Logger()

	count := newCounter()
	core := mapping.New(mapping.Config{
		Identities:     cfg.Identities(),
		Permissions:    cfg.Permissions(),
		BlockedDomains: cfg.XMPP.BlockedDomains,
		Receipts:       cfg.ReceiptPolicy(),
		Limits:         cfg.CoreLimits(),
		Presence:       cfg.PresencePolicy(),
		EditMaxAge:     cfg.Bridge.EditMaxAge,
		Groups:         cfg.GroupLimits(),
	}, db, count, log.With().Str("component", "core").Logger())
	domain, _ := jid.Parse(cfg.XMPP.Domain) // validated by config
	comp := &xmppside.Component{
		Address: cfg.XMPP.Address, Domain: domain, Secret: cfg.XMPP.Secret,
		MaxStanzaBytes: cfg.Limits.MaxStanzaKiB << 10,
		Core:           core, Count: count, Log: log.With().Str("component", "xmpp").Logger(),
	}
	hs := matrixside.NewHomeserver(as, cfg.Identities(), matrixside.Delivery{
		Fallback: cfg.Receipts.DeliveryFallback, SpecVersion: cfg.Receipts.DeliverySpecVersion,
	})
	hs.RegistrationPath = regPath
	if abs, err := filepath.Abs(regPath); err == nil {
		hs.RegistrationPath = abs
	}
	if err := checkToken(ctx, hs, cfg, log); err != nil {
		return err
	}
	core.SetSides(hs, comp)
	var served *media.Server
	if cfg.Media.Enabled {
		mover := newMedia(cfg, hs, comp)
		if cfg.Media.ToXMPP == config.MediaServe {
			if served, err = newServed(ctx, cfg, db, hs, count, log); err != nil {
				return err
			}
			mover.Serve = served.URLs
		}
		core.SetMedia(mover)
		if n := media.CleanTemp(cfg.Media.TempDir, time.Hour); n > 0 {
			log.Info().Int("files", n).Msg("Removed the temporary files of transfers an earlier run left")
		}
	}
	out := outbox.New(db, core, count, log.With().Str("component", "outbox").Logger())
	core.SetOutbox(out)
	srv := matrixside.NewServer(cfg.AppService.HSToken, db, core, count, log.With().Str("component", "appservice").Logger())
	srv.MaxTxnBytes = int64(cfg.Limits.MaxTxnMiB) << 20
	core.SetInbox(srv.Enqueue) // receipts that outran their event come back through it

	if err := core.LoadSettings(ctx); err != nil {
		return fmt.Errorf("read the users' settings: %w", err)
	}
	var ephemeral atomic.Value // the way Matrix receipts come, once chosen
	ephemeral.Store("")
	watch := watched{db: db, xmpp: comp, hs: hs, core: core}
	core.SetStatus(statusOf(watch, hs, cfg, func() string { return ephemeral.Load().(string) }))

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	goRun := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	goRun(func() {
		if err := srv.Listen(ctx, cfg.ListenAddress()); err != nil {
			errc <- fmt.Errorf("listen on %s (appservice.hostname/port): %w", cfg.ListenAddress(), err)
		}
	})
	if served != nil {
		goRun(func() {
			if err := served.Listen(ctx, cfg.Media.ServeListen); err != nil {
				errc <- fmt.Errorf("serve files on %s (media.serve_listen): %w", cfg.Media.ServeListen, err)
			}
		})
	}
	if cfg.Metrics.Enabled {
		goRun(func() {
			if err := serveMetrics(ctx, cfg.Metrics.Listen, watch); err != nil {
				errc <- fmt.Errorf("serve metrics on %s: %w", cfg.Metrics.Listen, err)
			}
		})
	}
	goRun(func() {
		if err := ensureBot(ctx, as, hs, cfg, log); err != nil {
			errc <- err
			return
		}
		mode := matrixside.ChooseMode(ctx, as, cfg.AppService.Ephemeral, log)
		ephemeral.Store(mode)
		if mode == matrixside.EphemeralSync {
			(&matrixside.Syncer{AS: as, Store: db, KV: db, Server: srv, Log: log.With().Str("component", "sync").Logger()}).Run(ctx)
		}
	})
	goRun(func() { srv.Run(ctx) })
	goRun(func() { core.Run(ctx) })
	goRun(func() { out.Run(ctx) })
	goRun(func() { hs.WatchToken(ctx, matrixside.TokenRecheck, core.Wake) })
	goRun(func() { comp.Run(ctx) })
	log.Info().Str("homeserver", cfg.Homeserver.Address).Str("xmpp", cfg.XMPP.Address).Str("domain", cfg.XMPP.Domain).Msg("Bridge started")

	select {
	case <-ctx.Done():
		log.Info().Msg("Stopping")
	case err = <-errc:
		stop()
	}
	wg.Wait()
	return err
}

// newMedia is what moves files between the sides (media.*).
func newMedia(cfg *config.Config, hs *matrixside.Homeserver, comp *xmppside.Component) *media.Mover {
	nets, _ := cfg.MediaNetworks() // validated
	max := int64(cfg.Media.MaxFileMiB) << 20
	var service jid.JID
	if cfg.Media.UploadService != "" {
		service, _ = jid.Parse(cfg.Media.UploadService) // validated
	}
	return &media.Mover{
		Fetcher: media.NewFetcher(media.Policy{MaxBytes: max, AllowHTTP: cfg.Media.AllowHTTP, AllowNets: nets,
			Timeout: cfg.Media.FetchTimeout, TempDir: cfg.Media.TempDir}),
		Homeserver: hs,
		Upload: &xmppside.Uploader{Component: comp, ServerDomain: cfg.MediaServerDomain(), Service: service,
			Client: &http.Client{Timeout: xmppside.DefaultUploadTimeout}},
		MaxBytes: max,
		TempDir:  cfg.Media.TempDir,
	}
}

// newServed is the server of the files from Matrix at the bridge's own
// signed URLs (media.to_xmpp: serve), its key the configured one or the
// one kept in the database.
func newServed(ctx context.Context, cfg *config.Config, db *database.Database, hs *matrixside.Homeserver, count mapping.Counter, log zerolog.Logger) (*media.Server, error) {
	key, err := media.SigningKey(ctx, db, cfg.Media.SigningKey)
	if err != nil {
		return nil, err
	}
	public, _ := cfg.MediaPublicURL() // validated
	urls := &media.SignedURLs{Public: public, Key: key, Lifetime: cfg.Media.ServeExpiry}
	return media.NewServer(urls, hs, int64(cfg.Media.MaxFileMiB)<<20, cfg.Media.TempDir, cfg.Media.FetchTimeout,
		count, log.With().Str("component", "media").Logger()), nil
}

// gcPercent is GOGC while the heap is below limits.memory_mib: the
// collector runs when the heap has grown to five times what was live.
// In the load bench (scripts/bench.sh) it took pushed m.delivery from
// 0.32x the relay to 0.41x and m.read from 0.43x to 0.60x, for a peak RSS
// of 50-84 MB instead of 34-80; the soft limit keeps it from growing
// further with the load.
const gcPercent = 400

// setMemory sets the Go heap's soft limit to mib MiB and collects less
// often below it (see gcPercent); 0, or GOGC or GOMEMLIMIT in the
// environment, leaves Go's own settings.
func setMemory(mib int, log zerolog.Logger) {
	if mib <= 0 {
		return
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(mib) << 20)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	log.Debug().Int64("memory_limit", debug.SetMemoryLimit(-1)).Msg("Go memory limit set")
}

// startCheckTimeout bounds the token check at start: a homeserver that
// has not answered by then is taken as not up yet.
const startCheckTimeout = 10 * time.Second

// checkToken asks the homeserver, before the bridge starts, whether it
// knows the bridge's token, as mautrix bridges do: one it refuses stops
// the bridge with what to do (tokenRefused), where it would otherwise
// start "healthy" and hold every message. A homeserver that does not
// answer is not up yet: the bridge starts anyway, as it always has, and
// ensureBot asks again until it does.
func checkToken(ctx context.Context, hs *matrixside.Homeserver, cfg *config.Config, log zerolog.Logger) error {
	cctx, cancel := context.WithTimeout(ctx, startCheckTimeout)
	defer cancel()
	err := hs.Whoami(cctx)
	switch {
	case errors.Is(err, matrixside.ErrWrongServerName):
		return err
	case errors.Is(err, matrixside.ErrTokenRefused):
		return tokenRefused(hs, cfg, err)
	case err != nil:
		log.Warn().Err(err).Str("homeserver", cfg.Homeserver.Address).Msg("The homeserver does not answer yet; starting anyway, and checking the bridge's token once it does")
	}
	return nil
}

// tokenRefused is the bridge's refusal to start with a token the
// homeserver refuses: one line that says what to do.
func tokenRefused(hs *matrixside.Homeserver, cfg *config.Config, err error) error {
	var refused *matrixside.TokenRefusedError
	if errors.As(err, &refused) {
		err = refused.Cause
	}
	return fmt.Errorf("the homeserver at %s does not know this bridge's token (%w): give it the registration file %s (Synapse: app_service_config_files; Dendrite: app_service_api.config_files) and restart the homeserver, then start the bridge again",
		cfg.Homeserver.Address, err, hs.RegistrationPath)
}

// ensureBot makes sure the homeserver knows the bridge's token and the bot
// user exists, and reads what the homeserver supports, waiting for it if
// it is not up yet. A token it refuses is an error: the bridge stops, as
// checkToken would have stopped it had the homeserver been up.
func ensureBot(ctx context.Context, as *appservice.AppService, hs *matrixside.Homeserver, cfg *config.Config, log zerolog.Logger) error {
	backoff := retry.Backoff{First: time.Second, Max: time.Minute}
	for ctx.Err() == nil {
		err := hs.Whoami(ctx)
		if errors.Is(err, matrixside.ErrWrongServerName) {
			return err
		}
		if errors.Is(err, matrixside.ErrTokenRefused) {
			return tokenRefused(hs, cfg, err)
		}
		if err == nil {
			err = as.BotIntent().EnsureRegistered(ctx)
		}
		if err == nil {
			_, err = hs.Detect(ctx)
		}
		if err == nil {
			return nil
		}
		wait := backoff.Next()
		log.Warn().Err(err).Dur("retry_in", wait).Msg("Could not reach the homeserver to check the bot user")
		retry.Wait(ctx, wait)
	}
	return nil
}

func newLogger(cfg *config.Config) zerolog.Logger {
	level, _ := zerolog.ParseLevel(cfg.Logging.Level)
	var log zerolog.Logger
	if cfg.Logging.Format == "json" {
		log = zerolog.New(os.Stderr)
	} else {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339})
	}
	return log.Level(level).With().Timestamp().Logger()
}

var events = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "xmppbridge_events_total",
	Help: "What the bridge did and refused, by kind and reason.",
}, []string{"what", "reason"})

func newCounter() mapping.Counter {
	return func(what, reason string) { events.WithLabelValues(what, reason).Inc() }
}

// cpuProfile starts a CPU profile (runtime/pprof) written to path; stop
// ends it.
func cpuProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("XMPPBRIDGE_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("XMPPBRIDGE_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
