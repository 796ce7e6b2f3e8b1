package rig

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Prosody is a Prosody 0.12 server run from a configuration of its own: one
// VirtualHost (Domain) for users, one XEP-0114 component (ComponentDomain)
// for the bridge, plaintext c2s with PLAIN allowed, no s2s, every listener on
// 127.0.0.1 and on ports chosen here, never Prosody's defaults.
type Prosody struct {
	Dir        string // data, pidfile, log and config live here
	ConfigPath string // Dir/prosody.cfg.lua
	LogPath    string // Dir/prosody.log
	// XMPPHost: Domain "localhost", ComponentDomain "matrix.localhost",
	// MUCDomain "conference.localhost" (Prosody's multi-user chat
	// component, with muc_mam for the rooms' stanza-ids and
	// muc_moderation, XEP-0425 0.2).
	XMPPHost
	// MUCNoIDDomain is a second multi-user chat component, whose rooms
	// give no XEP-0421 occupant-id (muc_occupant_id = false), as rooms of
	// servers without it: there an occupant is their real JID or their
	// nick.
	MUCNoIDDomain string // "noid.conference.localhost"
	// UploadDomain is Prosody's XEP-0363 upload service
	// (mod_http_file_share), which gives the users and the bridge's
	// component slots; its files are served on HTTPPort.
	UploadDomain string // "upload.localhost"
	HTTPPort     int

	opts ProsodyOptions
	logw io.Writer
	server
}

// ProsodyOptions adjusts the generated configuration. The zero value is what
// StartProsody uses.
type ProsodyOptions struct {
	// ComponentSecret for ComponentDomain; random when empty.
	ComponentSecret string
	// LogLevel for the log file and the console ("debug", "info", …);
	// "info" when empty. Below "info" the output is large.
	LogLevel string
	// ExtraModules are added to modules_enabled.
	ExtraModules []string
	// ExtraGlobal is Lua appended to the global section.
	ExtraGlobal string
	// ExtraVirtualHost is Lua appended under VirtualHost Domain.
	ExtraVirtualHost string
}

// Timeouts for a server to come up when the context has no deadline, and
// to go down after SIGTERM before it is killed.
const (
	prosodyStartTimeout = 30 * time.Second
	prosodyStopGrace    = 10 * time.Second
	startAttempts       = 3
)

// StartProsody writes a Prosody configuration into dir (a new temporary
// directory, removed on Close, when dir is ""), starts Prosody and waits
// until its c2s and component ports accept connections. The server's output
// goes to logw when it is not nil, and always to Dir/prosody.log.
func StartProsody(ctx context.Context, dir string, logw io.Writer) (*Prosody, error) {
	return StartProsodyWith(ctx, dir, logw, ProsodyOptions{})
}

// StartProsodyWith is StartProsody with options.
func StartProsodyWith(ctx context.Context, dir string, logw io.Writer, opts ProsodyOptions) (*Prosody, error) {
	if err := ProsodyAvailable(); err != nil {
		return nil, err
	}
	dir, owned, err := prepareDir(dir, "rig-prosody-")
	if err != nil {
		return nil, err
	}
	p := &Prosody{
		Dir:           dir,
		ConfigPath:    filepath.Join(dir, "prosody.cfg.lua"),
		LogPath:       filepath.Join(dir, "prosody.log"),
		XMPPHost:      defaultHost("Prosody", opts.ComponentSecret),
		MUCNoIDDomain: "noid.conference.localhost",
		UploadDomain:  "upload.localhost",
		opts:          opts,
		logw:          logw,
		server:        server{name: "prosody", dir: dir, ownDir: owned, grace: prosodyStopGrace},
	}
	for _, sub := range []string{"data", "certs"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			p.cleanupDir()
			return nil, fmt.Errorf("create prosody %s dir: %w", sub, err)
		}
	}
	if err := p.startOnFreePorts(ctx, []*int{&p.C2SPort, &p.ComponentPort, &p.HTTPPort}, p.writeConfig, p.start); err != nil {
		return nil, err
	}
	return p, nil
}

// Register creates (or resets the password of) an account on Domain with
// prosodyctl. It works whether or not the server is running.
func (p *Prosody) Register(user, pass string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "prosodyctl", "--config", p.ConfigPath, "register", user, p.Domain, pass)
	cmd.Dir = p.Dir
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("prosodyctl register %s@%s: %w: %s", user, p.Domain, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Start starts a stopped server again, on the same ports and data.
func (p *Prosody) Start(ctx context.Context) error {
	return p.start(ctx)
}

func (p *Prosody) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	c2sUp := fmt.Sprintf("Activated service 'c2s' on [127.0.0.1]:%d", p.C2SPort)
	compUp := fmt.Sprintf("Activated service 'component' on [127.0.0.1]:%d", p.ComponentPort)
	const portFailed = "Failed to open server port"
	out := newOutput(p.logw, "prosody: ", []string{c2sUp, compUp, portFailed})
	proc, err := p.launch(out, "prosody", "-F", "--config", p.ConfigPath)
	if err != nil {
		return err
	}

	return p.waitUp(ctx, proc, out, prosodyStartTimeout, portFailed, func() bool {
		return out.saw(c2sUp) && out.saw(compUp) && dialable(p.Addr()) && dialable(p.ComponentAddr())
	})
}

// Restart stops the server and starts it again on the same ports and data.
func (p *Prosody) Restart(ctx context.Context) error {
	return p.restart(ctx, p.start)
}

func (p *Prosody) writeConfig() error {
	level := p.opts.LogLevel
	if level == "" {
		level = "info"
	}
	modules := append([]string{
		"roster", "saslauth", "disco", "carbons", "private", "blocklist",
		"ping", "time", "version", "uptime",
		// Prosody 0.12's default set for profiles: vcard-temp (XEP-0054)
		// kept as PEP nodes, XEP-0153's photo hash added to presence.
		"pep", "vcard4", "vcard_legacy",
		// XEP-0356, for the component (prosody-modules).
		"privilege",
	}, p.opts.ExtraModules...)

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("-- Written by xmppbridge/internal/rig; rewritten on every start.")
	w("run_as_root = true")
	w("daemonize = false")
	w("pidfile = %s", luaString(filepath.Join(p.Dir, "prosody.pid")))
	w("data_path = %s", luaString(filepath.Join(p.Dir, "data")))
	w("certificates = %s", luaString(filepath.Join(p.Dir, "certs")))
	w("plugin_paths = {}")
	w("")
	w("-- Loopback only, and never Prosody's default ports (5222, 5269, 5347,")
	w("-- 5280, 5281): a system Prosody may hold them.")
	w(`interfaces = { "127.0.0.1" }`)
	w(`local_interfaces = { "127.0.0.1" }`)
	w("c2s_ports = { %d }", p.C2SPort)
	w("c2s_direct_tls_ports = {}")
	w("legacy_ssl_ports = {}")
	w("s2s_ports = {}")
	w("s2s_direct_tls_ports = {}")
	w("component_ports = { %d }", p.ComponentPort)
	w(`component_interfaces = { "127.0.0.1" }`)
	w("http_ports = { %d }", p.HTTPPort)
	w(`http_interfaces = { "127.0.0.1" }`)
	// Upload slots name 127.0.0.1 rather than upload.localhost, which
	// not every resolver knows; a request for that address is the upload
	// service's.
	w("http_external_url = %s", luaString(fmt.Sprintf("http://127.0.0.1:%d/", p.HTTPPort)))
	w("http_default_host = %s", luaString(p.UploadDomain))
	w("https_ports = {}")
	w(`https_interfaces = { "127.0.0.1" }`)
	w("proxy65_ports = {}")
	w("")
	w(`authentication = "internal_plain"`)
	w(`storage = "internal"`)
	w("c2s_require_encryption = false")
	w("s2s_require_encryption = false")
	w("allow_unencrypted_plain_auth = true")
	w("")
	w("modules_enabled = {")
	for _, m := range modules {
		w("\t%s;", luaString(m))
	}
	w("}")
	w(`modules_disabled = { "s2s"; "s2s_auth_certs" }`)
	w("")
	w("log = {")
	w("\t{ levels = { min = %s }, to = \"file\", filename = %s };", luaString(level), luaString(p.LogPath))
	// The console sink is what the rig reads to know the ports are up.
	w("\t{ levels = { min = %s }, to = \"console\" };", luaString(minLevel(level, "info")))
	w("}")
	if p.opts.ExtraGlobal != "" {
		w("")
		w("%s", p.opts.ExtraGlobal)
	}
	w("")
	w("VirtualHost %s", luaString(p.Domain))
	// XEP-0356 through the community mod_privilege (Debian's
	// prosody-modules): the component may write its users' rosters, so
	// the puppets are in them by name, as on a server set up for slidge.
	w("\tprivileged_entities = { [%s] = { roster = \"both\" } }", luaString(p.ComponentDomain))
	if p.opts.ExtraVirtualHost != "" {
		w("%s", p.opts.ExtraVirtualHost)
	}
	w("")
	w("Component %s", luaString(p.ComponentDomain))
	w("\tcomponent_secret = %s", luaString(p.ComponentSecret))
	w("\tmodules_enabled = { \"privilege\" }")
	w("")
	w("Component %s \"muc\"", luaString(p.MUCDomain))
	// XEP-0425 0.2 through the community mod_muc_moderation (Debian's
	// prosody-modules), which finds a message by the stanza-id muc_mam
	// archived it under.
	w("\tmodules_enabled = { \"muc_mam\", \"muc_moderation\" }")
	w("")
	w("Component %s \"muc\"", luaString(p.MUCNoIDDomain))
	w("\tmodules_enabled = { \"muc_mam\" }")
	w("\tmuc_occupant_id = false")
	w("")
	// XEP-0363 for the users and, as the puppets, the bridge: once set,
	// http_file_share_access is the whole list of who may take slots.
	w("Component %s \"http_file_share\"", luaString(p.UploadDomain))
	w("\thttp_file_share_access = { %s, %s }", luaString(p.Domain), luaString(p.ComponentDomain))

	if err := os.WriteFile(p.ConfigPath, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write prosody config: %w", err)
	}
	return nil
}

// minLevel is the more verbose of two Prosody log levels.
func minLevel(a, b string) string {
	order := map[string]int{"debug": 0, "info": 1, "warn": 2, "error": 3}
	if oa, ok := order[a]; ok && oa < order[b] {
		return a
	}
	return b
}

func luaString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\x00", `\0`)
	return `"` + r.Replace(s) + `"`
}

func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
