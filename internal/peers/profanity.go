package peers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Profanity is the terminal XMPP client profanity (Debian's package), run
// in a tmux session of its own with a fresh home, and driven as a person
// drives it: keystrokes in, the screen read back.
type Profanity struct{ term }

// ProfanityAvailable tells whether profanity and tmux are installed
// (scripts/setup.sh installs them).
func ProfanityAvailable() error { return installed("profanity", "tmux") }

// installed tells whether the programs are on PATH.
func installed(bins ...string) error {
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not installed (apt-get install %s; scripts/setup.sh does): %w", bin, strings.Join(bins, " "), err)
		}
	}
	return nil
}

// term is a terminal program in a tmux session of its own.
type term struct{ session string }

// start runs argv in a new detached tmux session, 220 columns wide so that
// a line is not wrapped.
func (t *term) start(argv ...string) error {
	args := append([]string{"new-session", "-d", "-s", t.session, "-x", "220", "-y", "50"}, argv...)
	if out, err := exec.Command("tmux", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("start %s in tmux: %w: %s", argv, err, out)
	}
	return nil
}

func (t *term) kill() { _ = exec.Command("tmux", "kill-session", "-t", t.session).Run() }

// StartProfanity opens profanity as user and logs it in to the world's
// Prosody, with XEP-0184 receipts asked for and sent.
func (w *World) StartProfanity(ctx context.Context, user string) (*Profanity, error) {
	home := filepath.Join(w.Dir, "profanity-"+user)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	p := &Profanity{term{session: "xmppbridge-" + user + "-" + fmt.Sprint(time.Now().UnixNano())}}
	if err := p.start("env", "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_DATA_HOME="+filepath.Join(home, ".local"), "TERM=xterm", "profanity"); err != nil {
		return nil, err
	}
	if err := p.WaitScreen(ctx, 20*time.Second, "profanity"); err != nil {
		p.Close()
		return nil, err
	}
	host, port, _ := strings.Cut(w.Prosody.Addr(), ":")
	for _, line := range []string{"/receipts send on", "/receipts request on", "/states on",
		fmt.Sprintf("/connect %s@%s server %s port %s tls disable", user, w.Prosody.Domain, host, port)} {
		if err := p.Line(line); err != nil {
			p.Close()
			return nil, err
		}
	}
	if err := p.WaitScreen(ctx, 20*time.Second, "password"); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.Line(Password); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.WaitScreen(ctx, 30*time.Second, "logged in"); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Type types text (taken literally) without pressing Enter.
func (t *term) Type(text string) error {
	if out, err := exec.Command("tmux", "send-keys", "-t", t.session, "-l", text).CombinedOutput(); err != nil {
		return fmt.Errorf("type into %s: %w: %s", t.session, err, out)
	}
	return nil
}

// Key presses one key by its tmux name (Enter, Tab, C-n, ...).
func (t *term) Key(name string) error {
	if out, err := exec.Command("tmux", "send-keys", "-t", t.session, name).CombinedOutput(); err != nil {
		return fmt.Errorf("press %s in %s: %w: %s", name, t.session, err, out)
	}
	return nil
}

// Line types text and presses Enter.
func (t *term) Line(text string) error {
	if err := t.Type(text); err != nil {
		return err
	}
	return t.Key("Enter")
}

// Screen is what the program shows now.
func (t *term) Screen() (string, error) {
	out, err := exec.Command("tmux", "capture-pane", "-p", "-t", t.session).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("read the screen of %s: %w: %s", t.session, err, out)
	}
	return string(out), nil
}

// WaitScreen waits until the screen shows want (case-insensitively).
func (t *term) WaitScreen(ctx context.Context, timeout time.Duration, want string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		s, err := t.Screen()
		if err == nil && strings.Contains(strings.ToLower(s), strings.ToLower(want)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never showed %q; its screen:\n%s", t.session, want, s)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close quits profanity and ends its tmux session.
func (p *Profanity) Close() {
	_ = p.Line("/quit")
	time.Sleep(200 * time.Millisecond)
	p.kill()
}
