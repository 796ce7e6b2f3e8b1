package rig

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Ejabberd is an ejabberd 23.01 (Debian's) run from a configuration of its
// own, as a plain Erlang node in the foreground: not the system service
// and not through ejabberdctl (which, as root, runs the server as the
// ejabberd user and needs Erlang distribution). One host (Domain) for
// users, a XEP-0114 component (ejabberd_service) for the bridge, mod_muc
// on MUCDomain with mod_mam and every room archiving (the room option
// `mam`), so that rooms stamp XEP-0359 stanza-ids; plaintext c2s, no s2s,
// every listener on 127.0.0.1 and on ports chosen here. Its Mnesia
// database is in Dir/spool. Accounts are made through mod_http_api on
// APIPort, open to loopback only.
type Ejabberd struct {
	Dir        string // spool, log and config live here
	ConfigPath string // Dir/ejabberd.yml
	LogPath    string // Dir/ejabberd.log
	XMPPHost
	APIPort int // mod_http_api, for Register

	logw io.Writer
	server
}

const (
	ejabberdStartTimeout = 60 * time.Second
	ejabberdStopGrace    = 10 * time.Second
)

// ejabberdLibs is where Debian installs ejabberd's Erlang applications
// (ejabberdctl's ERL_LIBS), "" if it is not installed.
func ejabberdLibs() string {
	apps, _ := filepath.Glob("/usr/lib/*/ejabberd-*/ebin/ejabberd.app")
	if len(apps) == 0 {
		return ""
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(apps[0])))
}

// EjabberdAvailable reports whether erl is on PATH and ejabberd's Erlang
// applications are installed.
func EjabberdAvailable() error {
	if _, err := exec.LookPath("erl"); err != nil {
		return fmt.Errorf("erl not found on PATH: %w", ErrUnavailable)
	}
	if ejabberdLibs() == "" {
		return fmt.Errorf("ejabberd's Erlang applications (/usr/lib/*/ejabberd-*) are missing: %w", ErrUnavailable)
	}
	return nil
}

// StartEjabberd writes an ejabberd configuration into dir (a new temporary
// directory, removed on Close, when dir is ""), starts ejabberd and waits
// until its c2s, component and API ports accept connections. Its output
// goes to logw when it is not nil, and always to Dir/ejabberd.log.
func StartEjabberd(ctx context.Context, dir string, logw io.Writer) (*Ejabberd, error) {
	if err := EjabberdAvailable(); err != nil {
		return nil, err
	}
	dir, owned, err := prepareDir(dir, "rig-ejabberd-")
	if err != nil {
		return nil, err
	}
	e := &Ejabberd{
		Dir:        dir,
		ConfigPath: filepath.Join(dir, "ejabberd.yml"),
		LogPath:    filepath.Join(dir, "ejabberd.log"),
		XMPPHost:   defaultHost("ejabberd", ""),
		logw:       logw,
		server:     server{name: "ejabberd", dir: dir, ownDir: owned, grace: ejabberdStopGrace},
	}
	if err := os.MkdirAll(filepath.Join(dir, "spool"), 0o755); err != nil {
		e.cleanupDir()
		return nil, fmt.Errorf("create ejabberd spool dir: %w", err)
	}
	if err := e.startOnFreePorts(ctx, []*int{&e.C2SPort, &e.ComponentPort, &e.APIPort}, e.writeConfig, e.start); err != nil {
		return nil, err
	}
	return e, nil
}

// Start starts a stopped server again, on the same ports and data.
func (e *Ejabberd) Start(ctx context.Context) error {
	return e.start(ctx)
}

// Restart stops the server and starts it again on the same ports and data.
func (e *Ejabberd) Restart(ctx context.Context) error {
	return e.restart(ctx, e.start)
}

func (e *Ejabberd) start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	listening := func(port int, module string) string {
		return fmt.Sprintf("Start accepting TCP connections at 127.0.0.1:%d for %s", port, module)
	}
	c2sUp := listening(e.C2SPort, "ejabberd_c2s")
	compUp := listening(e.ComponentPort, "ejabberd_service")
	apiUp := listening(e.APIPort, "ejabberd_http")
	// A listener that cannot bind stops the whole node.
	const portFailed = "eaddrinuse"
	out := newOutput(e.logw, "ejabberd: ", []string{c2sUp, compUp, apiUp, portFailed})
	spool := filepath.Join(e.Dir, "spool")
	proc, err := e.launchEnv(out, []string{
		"EJABBERD_CONFIG_PATH=" + e.ConfigPath,
		"EJABBERD_LOG_PATH=" + e.LogPath,
		"ERL_LIBS=" + ejabberdLibs(),
		"ERL_CRASH_DUMP=" + filepath.Join(e.Dir, "erl_crash.dump"),
		"ERL_CRASH_DUMP_BYTES=0",
	},
		// No node name: no Erlang distribution, so no epmd left running
		// and nothing to collide with another node on the machine.
		"erl", "-noinput", "+K", "true", "-mnesia", "dir", strconv.Quote(spool), "-s", "ejabberd")
	if err != nil {
		return err
	}
	return e.waitUp(ctx, proc, out, ejabberdStartTimeout, portFailed, func() bool {
		return out.saw(c2sUp) && out.saw(compUp) && out.saw(apiUp) && dialable(e.Addr()) && dialable(e.ComponentAddr())
	})
}

// Register creates an account on Domain through mod_http_api's register
// command. The server must be running.
func (e *Ejabberd) Register(user, pass string) error {
	body, _ := json.Marshal(map[string]string{"user": user, "host": e.Domain, "password": pass})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/api/register", e.APIPort), bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ejabberd register %s@%s: %w", user, e.Domain, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ejabberd register %s@%s: %s: %s", user, e.Domain, resp.Status, strings.TrimSpace(string(answer)))
	}
	return nil
}

func (e *Ejabberd) writeConfig() error {
	cfg := fmt.Sprintf(`# Written by xmppbridge/internal/rig; rewritten on every start.
loglevel: info
hosts:
  - %[1]s
# Loopback only, and never ejabberd's default ports (5222, 5269, 5280,
# 5443): a system ejabberd may hold them. No TLS: no certificates.
listen:
  - port: %[2]d
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
  - port: %[3]d
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:
      %[4]s:
        password: %[5]s
  - port: %[6]d
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
auth_method: internal
# Plain storage lets clients use PLAIN as well as SCRAM.
auth_password_format: plain
# No s2s: an address on another server bounces at once rather than
# after a DNS lookup.
s2s_access: none
acl:
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  c2s:
    allow: all
  muc_create:
    allow: all
api_permissions:
  "accounts from loopback":
    who:
      ip: 127.0.0.1/8
    what:
      - register
modules:
  mod_caps: {}
  mod_disco: {}
  mod_ping: {}
  mod_privacy: {}
  mod_blocking: {}
  mod_pubsub:
    plugins:
      - flat
      - pep
  mod_roster: {}
  mod_vcard: {}
  mod_vcard_xupdate: {}
  # A room stamps XEP-0359 stanza-ids only when it archives: mod_mam, and
  # the room option mam on for every room. People's own archives stay off.
  mod_mam:
    default: never
  mod_muc:
    host: %[7]s
    default_room_options:
      mam: true
`, e.Domain, e.C2SPort, e.ComponentPort, e.ComponentDomain, strconv.Quote(e.ComponentSecret), e.APIPort, e.MUCDomain)
	if err := os.WriteFile(e.ConfigPath, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("write ejabberd config: %w", err)
	}
	return nil
}
