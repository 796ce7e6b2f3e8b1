// Package rig starts real peers on loopback — Prosody or ejabberd (the XMPP
// server the bridge's XEP-0114 component connects to; XMPPServer is what
// both offer) and Dendrite (the Matrix homeserver the application service
// talks to) — for end-to-end tests and for the demo program.
//
// Nothing here needs *testing.T: every server is started from a directory of
// its own, streams its output to an io.Writer of the caller's (LogWriter turns
// a t.Logf into one), and is stopped by Close, which is safe to call twice.
// Servers run in their own process group and are killed with it.
//
// The binaries come from scripts/setup.sh: Prosody and ejabberd from
// Debian, Dendrite built once into DendriteBinDir.
package rig

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DendriteVersion is the Dendrite release the rig runs.
const DendriteVersion = "v0.15.2"

// ErrUnavailable is wrapped by ProsodyAvailable and DendriteAvailable when a
// peer is not installed.
var ErrUnavailable = errors.New("peer not installed: run scripts/setup.sh")

// CacheDir is where scripts/setup.sh caches what it builds:
// $XMPPBRIDGE_CACHE, or ~/.cache/xmppbridge.
func CacheDir() string {
	if d := os.Getenv("XMPPBRIDGE_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return filepath.Join(os.TempDir(), "xmppbridge-cache")
	}
	return filepath.Join(home, ".cache", "xmppbridge")
}

// DendriteBinDir holds the dendrite, generate-config and generate-keys
// binaries built by scripts/setup.sh.
func DendriteBinDir() string {
	return filepath.Join(CacheDir(), "dendrite-"+DendriteVersion)
}

// ProsodyAvailable reports whether prosody and prosodyctl are on PATH.
func ProsodyAvailable() error {
	for _, name := range []string{"prosody", "prosodyctl"} {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("%s not found on PATH: %w", name, ErrUnavailable)
		}
	}
	return nil
}

// DendriteAvailable reports whether the Dendrite binaries are in
// DendriteBinDir.
func DendriteAvailable() error {
	for _, name := range []string{"dendrite", "generate-config", "generate-keys"} {
		p := filepath.Join(DendriteBinDir(), name)
		st, err := os.Stat(p)
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is missing: %w", p, ErrUnavailable)
		}
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on right
// now. Another process may take it before the caller does; the Start
// functions retry with fresh ports when that happens.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LogWriter adapts a Printf-style function (t.Logf, log.Printf) into an
// io.Writer that logs one call per line, each line prefixed.
func LogWriter(logf func(format string, args ...any), prefix string) io.Writer {
	return &lineWriter{emit: func(line string) { logf("%s%s", prefix, line) }}
}

// lineWriter splits what it is given into lines.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(line string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// output collects a server's stdout and stderr: it keeps the last lines for
// error messages, notes which of the markers it was told to watch for have
// appeared, and copies every line, prefixed, to the caller's writer.
type output struct {
	mu      sync.Mutex
	partial []byte
	last    []string
	markers []string
	seen    map[string]bool
	logw    io.Writer
	prefix  string
}

const keepLines = 40

func newOutput(logw io.Writer, prefix string, markers []string) *output {
	return &output{logw: logw, prefix: prefix, markers: markers, seen: map[string]bool{}}
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(o.partial[:i]), "\r")
		o.partial = o.partial[i+1:]
		o.line(line)
	}
	return len(p), nil
}

func (o *output) line(line string) {
	if len(o.last) == keepLines {
		copy(o.last, o.last[1:])
		o.last = o.last[:keepLines-1]
	}
	o.last = append(o.last, line)
	for _, m := range o.markers {
		if strings.Contains(line, m) {
			o.seen[m] = true
		}
	}
	if o.logw != nil {
		// A failing log writer must not stop the copy: the server would get
		// EPIPE on its stdout.
		_, _ = io.WriteString(o.logw, o.prefix+line+"\n")
	}
}

func (o *output) saw(marker string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen[marker]
}

func (o *output) tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	lines := o.last
	if len(o.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(o.partial))
	}
	if len(lines) == 0 {
		return "(no output)"
	}
	return strings.Join(lines, "\n")
}

// process is one running server, in a process group of its own.
// server is the life cycle the servers share: at most one process
// at a time, stopped with SIGTERM and then SIGKILL after a grace period, in
// a directory that Close removes if the rig created it.
type server struct {
	name   string
	dir    string
	ownDir bool
	grace  time.Duration

	mu     sync.Mutex
	proc   *process
	closed bool
}

// launch starts the server's process. s.mu is held: the caller waits for
// the server to come up under it.
func (s *server) launch(out *output, bin string, args ...string) (*process, error) {
	return s.launchEnv(out, nil, bin, args...)
}

// launchEnv is launch with variables added to the server's environment.
func (s *server) launchEnv(out *output, env []string, bin string, args ...string) (*process, error) {
	if s.closed {
		return nil, fmt.Errorf("%s: closed", s.name)
	}
	if s.proc != nil && !s.proc.exited() {
		return nil, fmt.Errorf("%s: already running", s.name)
	}
	proc, err := launch(s.name, s.dir, childEnv(env...), out, bin, args...)
	if err != nil {
		return nil, err
	}
	s.proc = proc
	return proc, nil
}

// Stop stops the server (SIGTERM, then SIGKILL after a grace period); Start
// or Restart bring it back.
func (s *server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.stop(s.grace)
		s.proc = nil
	}
	return nil
}

// startOnFreePorts picks free ports for ports, writes the configuration
// and starts the server, again with new ports when one was taken
// meanwhile (up to startAttempts times). After a failure it removes what
// the rig created.
func (s *server) startOnFreePorts(ctx context.Context, ports []*int, writeConfig func() error, start func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		for _, port := range ports {
			n, err := FreePort()
			if err != nil {
				s.cleanupDir()
				return err
			}
			*port = n
		}
		if err := writeConfig(); err != nil {
			s.cleanupDir()
			return err
		}
		err := start(ctx)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errPortTaken) || attempt == startAttempts {
			s.cleanupDir()
			return err
		}
	}
}

var errPortTaken = errors.New("port already in use")

// waitUp waits until ready says the server that proc runs is up. A line
// of its output with portFailed (wrapped as errPortTaken), its exit, or
// the end of ctx (of timeout, when ctx has no deadline) fails it; but for
// its exit, the process is stopped then.
func (s *server) waitUp(ctx context.Context, proc *process, out *output, timeout time.Duration, portFailed string, ready func() bool) error {
	ctx, cancel := withDefaultTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		switch {
		case out.saw(portFailed):
			proc.stop(s.grace)
			return fmt.Errorf("%s: %w; last output:\n%s", s.name, errPortTaken, out.tail())
		case proc.exited():
			return proc.exitError()
		case ready():
			return nil
		}
		select {
		case <-ctx.Done():
			proc.stop(s.grace)
			return fmt.Errorf("%s did not come up: %w; last output:\n%s", s.name, ctx.Err(), out.tail())
		case <-tick.C:
		}
	}
}

func (s *server) restart(ctx context.Context, start func(context.Context) error) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return start(ctx)
}

// Close stops the server and, if the rig created its directory, removes
// it. It is safe to call more than once.
func (s *server) Close() error {
	if err := s.Stop(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.cleanupDir()
}

func (s *server) cleanupDir() error {
	if !s.ownDir {
		return nil
	}
	return os.RemoveAll(s.dir)
}

type process struct {
	name    string
	cmd     *exec.Cmd
	out     *output
	done    chan struct{}
	waitErr error
}

func launch(name, dir string, env []string, out *output, bin string, args ...string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = nil
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = 2 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the program that started the server dies without Close, the
		// server goes with it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the group, waits up to grace, then SIGKILLs it.
func (p *process) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	if !p.exited() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-p.done:
			t.Stop()
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	}
	// Anything the server left behind in its group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// exitError describes a server that exited while it was being waited for.
func (p *process) exitError() error {
	return fmt.Errorf("%s exited during startup (%v); last output:\n%s", p.name, p.waitErr, p.out.tail())
}

// childEnv is the environment for servers: ours, minus what would make them
// open extra listeners.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PPROFLISTEN=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// prepareDir makes dir absolute and creates it; an empty dir means a new
// temporary directory, which the caller owns (and removes on Close).
func prepareDir(dir, pattern string) (abs string, owned bool, err error) {
	if dir == "" {
		d, err := os.MkdirTemp("", pattern)
		if err != nil {
			return "", false, fmt.Errorf("create temporary directory: %w", err)
		}
		return d, true, nil
	}
	abs, err = filepath.Abs(dir)
	if err != nil {
		return "", false, fmt.Errorf("resolve %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", false, fmt.Errorf("create %s: %w", abs, err)
	}
	return abs, false, nil
}

// dialable reports whether something accepts TCP connections on addr.
func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

const pollInterval = 50 * time.Millisecond

// randomToken is 32 random hex digits, for secrets and tokens.
func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
