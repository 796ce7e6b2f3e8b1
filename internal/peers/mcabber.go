package peers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Mcabber is the terminal XMPP client mcabber (Debian's package), run in
// a tmux session of its own with a configuration of its own, and driven by
// keystrokes, as Profanity is.
type Mcabber struct{ term }

// McabberAvailable tells whether mcabber and tmux are installed
// (scripts/setup.sh installs them).
func McabberAvailable() error { return installed("mcabber", "tmux") }

// StartMcabber opens mcabber as user, logged in to the world's Prosody.
func (w *World) StartMcabber(ctx context.Context, user string) (*Mcabber, error) {
	dir := filepath.Join(w.Dir, "mcabber-"+user)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	host, port, _ := strings.Cut(w.Prosody.Addr(), ":")
	rc := filepath.Join(dir, "mcabberrc")
	conf := fmt.Sprintf("set jid = %s@%s\nset password = %s\nset server = %s\nset port = %s\nset tls = 0\nset ssl = 0\nset resource = mcabber\nset logging = 0\n",
		user, w.Prosody.Domain, Password, host, port)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	m := &Mcabber{term{session: "xmppbridge-mcabber-" + user + "-" + fmt.Sprint(time.Now().UnixNano())}}
	if err := m.start("env", "HOME="+dir, "TERM=xterm", "mcabber", "-f", rc); err != nil {
		return nil, err
	}
	if err := m.WaitScreen(ctx, 30*time.Second, "Connection established"); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Close quits mcabber and ends its tmux session.
func (m *Mcabber) Close() {
	_ = m.Line("/quit")
	time.Sleep(200 * time.Millisecond)
	m.kill()
}
