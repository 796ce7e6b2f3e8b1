package rig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// Dendrite is a Dendrite monolith with SQLite databases (unless
// DendriteOptions.DatabaseURI says otherwise), its JetStream and media in
// Dir, federation off, open registration with m.login.dummy, rate limiting
// off, and the application services of RegistrationPaths loaded.
type Dendrite struct {
	Dir               string // databases, keys, media, jetstream, config
	ConfigPath        string // Dir/dendrite.yaml
	Port              int
	URL               string // http://127.0.0.1:Port
	ServerName        string // "localhost"
	RegistrationPaths []string

	opts DendriteOptions
	logw io.Writer
	server
}

// DendriteOptions adjusts the generated configuration. The zero value is
// what StartDendrite uses.
type DendriteOptions struct {
	// LogLevel of Dendrite's stdout logging ("trace", "debug", "info",
	// "warn", "error"); $XMPPBRIDGE_DENDRITE_LOG_LEVEL, else "info", when
	// empty.
	LogLevel string
	// DatabaseURI, when set, is a PostgreSQL URI all components use
	// (generate-config -db) instead of SQLite files in Dir. The database
	// must be empty or Dendrite's own.
	DatabaseURI string
	// Port, when set, is the client API port; otherwise a free one is
	// picked. Set it when something must know the URL before Dendrite
	// starts (the bridge's config, written before its registration).
	Port int
	// Configure, when set, edits the configuration (as decoded YAML) after
	// the rig's own edits and before it is written.
	Configure func(cfg map[string]any) error
}

const (
	dendriteStartTimeout = 2 * time.Minute
	dendriteStopGrace    = 15 * time.Second
)

// StartDendrite generates keys and a configuration in dir (a new temporary
// directory, removed on Close, when dir is ""), loads the application
// service registrations in registrationPaths, starts Dendrite on a free
// loopback port and waits until /_matrix/client/versions answers. The
// registrations must exist before Dendrite starts: it creates their bot
// users at startup. Dendrite's output goes to logw when it is not nil.
func StartDendrite(ctx context.Context, dir string, registrationPaths []string, logw io.Writer) (*Dendrite, error) {
	return StartDendriteWith(ctx, dir, registrationPaths, logw, DendriteOptions{})
}

// StartDendriteWith is StartDendrite with options.
func StartDendriteWith(ctx context.Context, dir string, registrationPaths []string, logw io.Writer, opts DendriteOptions) (*Dendrite, error) {
	if err := DendriteAvailable(); err != nil {
		return nil, err
	}
	dir, owned, err := prepareDir(dir, "rig-dendrite-")
	if err != nil {
		return nil, err
	}
	d := &Dendrite{
		Dir:        dir,
		ConfigPath: filepath.Join(dir, "dendrite.yaml"),
		ServerName: "localhost",
		opts:       opts,
		logw:       logw,
		server:     server{name: "dendrite", dir: dir, ownDir: owned, grace: dendriteStopGrace},
	}
	for _, p := range registrationPaths {
		abs, err := filepath.Abs(p)
		if err != nil {
			d.cleanupDir()
			return nil, fmt.Errorf("resolve registration %s: %w", p, err)
		}
		if _, err := os.Stat(abs); err != nil {
			d.cleanupDir()
			return nil, fmt.Errorf("registration: %w", err)
		}
		d.RegistrationPaths = append(d.RegistrationPaths, abs)
	}
	if err := d.writeConfig(ctx); err != nil {
		d.cleanupDir()
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if d.Port = d.opts.Port; d.Port == 0 {
			if d.Port, err = FreePort(); err != nil {
				d.cleanupDir()
				return nil, err
			}
		}
		d.URL = "http://127.0.0.1:" + strconv.Itoa(d.Port)
		err := d.start(ctx)
		if err == nil {
			return d, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == startAttempts || d.opts.Port != 0 {
			d.cleanupDir()
			return nil, err
		}
	}
}

func (d *Dendrite) bin(name string) string {
	return filepath.Join(DendriteBinDir(), name)
}

// writeConfig runs generate-keys (once per Dir) and generate-config, and
// writes the edited configuration.
func (d *Dendrite) writeConfig(ctx context.Context) error {
	key := filepath.Join(d.Dir, "matrix_key.pem")
	if _, err := os.Stat(key); errors.Is(err, os.ErrNotExist) {
		cmd := exec.CommandContext(ctx, d.bin("generate-keys"), "--private-key", key)
		cmd.Dir = d.Dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("generate-keys: %w: %s", err, strings.TrimSpace(string(out)))
		}
	}

	args := []string{"-ci", "-dir", d.Dir, "-server", d.ServerName}
	if d.opts.DatabaseURI != "" {
		args = append(args, "-db", d.opts.DatabaseURI)
	}
	cmd := exec.CommandContext(ctx, d.bin("generate-config"), args...)
	cmd.Dir = d.Dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("generate-config: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("parse generated dendrite config: %w", err)
	}

	level := d.opts.LogLevel
	if level == "" {
		level = os.Getenv("XMPPBRIDGE_DENDRITE_LOG_LEVEL")
	}
	if level == "" {
		level = "info"
	}
	regs := make([]any, 0, len(d.RegistrationPaths))
	for _, p := range d.RegistrationPaths {
		regs = append(regs, p)
	}
	edits := []struct {
		path  string
		value any
	}{
		{"global.private_key", key},
		{"global.disable_federation", true},
		{"global.trusted_third_party_id_servers", []any{}},
		{"global.report_stats.enabled", false},
		// On disk rather than -ci's in-memory JetStream, so that Restart
		// keeps what was queued (an appservice transaction, say), as a
		// real restart would.
		{"global.jetstream.in_memory", false},
		{"global.jetstream.storage_path", filepath.Join(d.Dir, "jetstream")},
		{"app_service_api.config_files", regs},
		{"client_api.registration_disabled", false},
		{"client_api.registration_requires_token", false},
		{"client_api.enable_registration_captcha", false},
		{"client_api.rate_limiting.enabled", false},
		{"federation_api.key_perspectives", []any{}},
		{"media_api.base_path", filepath.Join(d.Dir, "media")},
		// Full-text search indexes every message: cost, no use here.
		{"sync_api.search.enabled", false},
		{"logging", []any{map[string]any{"type": "std", "level": level}}},
	}
	for _, e := range edits {
		if err := setPath(cfg, e.path, e.value); err != nil {
			return fmt.Errorf("edit dendrite config: %w", err)
		}
	}
	if d.opts.Configure != nil {
		if err := d.opts.Configure(cfg); err != nil {
			return fmt.Errorf("configure dendrite: %w", err)
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode dendrite config: %w", err)
	}
	if err := os.WriteFile(d.ConfigPath, out, 0o600); err != nil {
		return fmt.Errorf("write dendrite config: %w", err)
	}
	return nil
}

// setPath sets a dotted key in decoded YAML, creating maps on the way.
func setPath(m map[string]any, path string, value any) error {
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k]
		if !ok || next == nil {
			child := map[string]any{}
			m[k] = child
			m = child
			continue
		}
		child, ok := next.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %q is a %T, not a map", path, k, next)
		}
		m = child
	}
	m[keys[len(keys)-1]] = value
	return nil
}

// Start starts a stopped server again, on the same port and data.
func (d *Dendrite) Start(ctx context.Context) error {
	return d.startRetrying(ctx)
}

// startRetrying is start, tried again when Dendrite panics as it starts:
// v0.15.2 can dereference a nil room server queryer
// (QueryMembershipsForRoom) when its streams hold work left from before a
// stop, a race in Dendrite, not in what it is given; a second start finds
// the work taken up.
func (d *Dendrite) startRetrying(ctx context.Context) error {
	var err error
	for range 3 {
		if err = d.start(ctx); err == nil || !strings.Contains(err.Error(), "panic:") {
			return err
		}
		if d.logw != nil {
			fmt.Fprintf(d.logw, "dendrite: panicked at start; starting it again\n")
		}
	}
	return err
}

func (d *Dendrite) start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	const inUse = "address already in use"
	out := newOutput(d.logw, "dendrite: ", []string{inUse})
	proc, err := d.launch(out, d.bin("dendrite"),
		"--config", d.ConfigPath,
		"--really-enable-open-registration",
		"--http-bind-address", "127.0.0.1:"+strconv.Itoa(d.Port),
	)
	if err != nil {
		return err
	}

	ctx, cancel := withDefaultTimeout(ctx, dendriteStartTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if proc.exited() {
			if out.saw(inUse) {
				return fmt.Errorf("dendrite: %w; last output:\n%s", errPortTaken, out.tail())
			}
			return proc.exitError()
		}
		if d.answers(ctx, hc) {
			return nil
		}
		select {
		case <-ctx.Done():
			proc.stop(dendriteStopGrace)
			return fmt.Errorf("dendrite did not come up: %w; last output:\n%s", ctx.Err(), out.tail())
		case <-tick.C:
		}
	}
}

// answers reports whether /_matrix/client/versions gives a Matrix answer.
func (d *Dendrite) answers(ctx context.Context, hc *http.Client) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL+"/_matrix/client/versions", nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var v struct {
		Versions []string `json:"versions"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&v) == nil && len(v.Versions) > 0
}

// Restart stops the server and starts it again on the same port and data.
func (d *Dendrite) Restart(ctx context.Context) error {
	return d.restart(ctx, d.startRetrying)
}

// UserID is the Matrix ID of localpart on this server.
func (d *Dendrite) UserID(localpart string) id.UserID {
	return id.NewUserID(localpart, d.ServerName)
}

// Client is a client of this server with the given credentials (an
// appservice's as_token and sender, say).
func (d *Dendrite) Client(userID id.UserID, accessToken string) (*mautrix.Client, error) {
	return mautrix.NewClient(d.URL, userID, accessToken)
}

// RegisterUser registers localpart with m.login.dummy and returns a client
// logged in as the new user.
func (d *Dendrite) RegisterUser(ctx context.Context, localpart, password string) (*mautrix.Client, error) {
	cli, err := mautrix.NewClient(d.URL, "", "")
	if err != nil {
		return nil, err
	}
	resp, err := cli.RegisterDummy(ctx, &mautrix.ReqRegister{
		Username:                 localpart,
		Password:                 password,
		InitialDeviceDisplayName: "rig",
	})
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", localpart, err)
	}
	cli.UserID = resp.UserID
	cli.AccessToken = resp.AccessToken
	cli.DeviceID = resp.DeviceID
	return cli, nil
}
