package peers

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// BridgeSettings are what a test or the demo chooses for one bridge.
type BridgeSettings struct {
	HomeserverURL    string // Dendrite's client API
	HomeserverDomain string // "localhost"
	ASPort           int    // where the bridge listens for the homeserver
	XMPPAddress      string // the XMPP server's component port
	XMPPDomain       string // the component's domain
	XMPPSecret       string
	DatabaseType     string // "" for SQLite next to the config
	DatabaseURI      string
	LogLevel         string // "" for debug
	Ephemeral        string // appservice.ephemeral: "" for the default (auto), push or sync
	Extra            string // YAML appended to the config, for options of later features
}

// BridgeProcess is the bridge binary running as its own process, as people
// run it.
type BridgeProcess struct {
	Bin, Dir        string
	Config, Registr string
	Settings        BridgeSettings
	Log             io.Writer
	cmd             *exec.Cmd
	exited          chan error
}

// BuildBridge compiles ./cmd/bridge into dir.
func BuildBridge(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "bridge")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "xmppbridge/cmd/bridge")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build bridge: %v\n%s", err, out)
	}
	return bin, nil
}

// NewBridgeProcess writes the config into dir and generates the
// registration with "bridge -g", exactly as docs/deploy.md tells people to.
func NewBridgeProcess(ctx context.Context, bin, dir string, s BridgeSettings, log io.Writer) (*BridgeProcess, error) {
	if s.LogLevel == "" {
		s.LogLevel = "debug"
	}
	if s.DatabaseType == "" {
		s.DatabaseType, s.DatabaseURI = "sqlite3-fk-wal", "bridge.db"
	}
	ephemeral := ""
	if s.Ephemeral != "" {
		ephemeral = fmt.Sprintf("    ephemeral: %s\n", s.Ephemeral)
	}
	p := &BridgeProcess{Bin: bin, Dir: dir, Config: filepath.Join(dir, "config.yaml"), Registr: filepath.Join(dir, "registration.yaml"), Settings: s, Log: log}
	cfg := fmt.Sprintf(`homeserver:
    address: %s
    domain: %s
appservice:
    address: http://127.0.0.1:%d
    hostname: 127.0.0.1
    port: %d
    id: xmpp
    bot:
        username: xmppbridge
    database:
        type: %s
        uri: %q
%sxmpp:
    address: %s
    domain: %s
    secret: %q
logging:
    level: %s
    format: pretty
%s`, s.HomeserverURL, s.HomeserverDomain, s.ASPort, s.ASPort, s.DatabaseType, s.DatabaseURI, ephemeral, s.XMPPAddress, s.XMPPDomain, s.XMPPSecret, s.LogLevel, s.Extra)
	if err := os.WriteFile(p.Config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, bin, "-g", "-c", p.Config, "-r", p.Registr).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("bridge -g: %v\n%s", err, out)
	}
	return p, nil
}

// Start runs the bridge and waits until it listens for the homeserver.
func (p *BridgeProcess) Start(ctx context.Context) error {
	cmd := exec.Command(p.Bin, "-c", p.Config, "-r", p.Registr)
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = p.Log, p.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start bridge: %w", err)
	}
	p.cmd = cmd
	p.exited = make(chan error, 1)
	go func() { p.exited <- cmd.Wait() }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Settings.ASPort))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.exited:
			p.cmd = nil
			return fmt.Errorf("bridge exited at start: %v", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("bridge did not listen on %s within 30s", addr)
}

// Pid is the bridge's process id while it runs, else 0.
func (p *BridgeProcess) Pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Stop ends the bridge with SIGTERM, as an init system would.
func (p *BridgeProcess) Stop() error {
	if p.cmd == nil {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	p.cmd = nil
	return nil
}

// Running tells whether the bridge process is up (started, not yet
// stopped or killed).
func (p *BridgeProcess) Running() bool { return p.cmd != nil }

// Kill ends the bridge with SIGKILL: a crash.
func (p *BridgeProcess) Kill() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}
