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
type Profanity struct {
	session string
	home    string
}

// ProfanityAvailable tells whether profanity and tmux are installed
// (scripts/setup.sh installs them).
func ProfanityAvailable() error {
	for _, bin := range []string{"profanity", "tmux"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not installed (apt-get install profanity tmux; scripts/setup.sh does): %w", bin, err)
		}
	}
	return nil
}

// StartProfanity opens profanity as user and logs it in to the world's
// Prosody, with XEP-0184 receipts asked for and sent.
func (w *World) StartProfanity(ctx context.Context, user string) (*Profanity, error) {
	home := filepath.Join(w.Dir, "profanity-"+user)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	p := &Profanity{session: "xmppbridge-" + user + "-" + fmt.Sprint(time.Now().UnixNano()), home: home}
	cmd := exec.Command("tmux", "new-session", "-d", "-s", p.session, "-x", "220", "-y", "50",
		"env", "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_DATA_HOME="+filepath.Join(home, ".local"), "TERM=xterm", "profanity")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("start profanity in tmux: %w: %s", err, out)
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
func (p *Profanity) Type(text string) error {
	if out, err := exec.Command("tmux", "send-keys", "-t", p.session, "-l", text).CombinedOutput(); err != nil {
		return fmt.Errorf("type into profanity: %w: %s", err, out)
	}
	return nil
}

// Line types text and presses Enter.
func (p *Profanity) Line(text string) error {
	if err := p.Type(text); err != nil {
		return err
	}
	if out, err := exec.Command("tmux", "send-keys", "-t", p.session, "Enter").CombinedOutput(); err != nil {
		return fmt.Errorf("press Enter in profanity: %w: %s", err, out)
	}
	return nil
}

// Screen is what profanity shows now.
func (p *Profanity) Screen() (string, error) {
	out, err := exec.Command("tmux", "capture-pane", "-p", "-t", p.session).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("read profanity's screen: %w: %s", err, out)
	}
	return string(out), nil
}

// WaitScreen waits until the screen shows want (case-insensitively).
func (p *Profanity) WaitScreen(ctx context.Context, timeout time.Duration, want string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		s, err := p.Screen()
		if err == nil && strings.Contains(strings.ToLower(s), strings.ToLower(want)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("profanity never showed %q; its screen:\n%s", want, s)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close quits profanity and ends its tmux session.
func (p *Profanity) Close() {
	_ = p.Line("/quit")
	time.Sleep(200 * time.Millisecond)
	_ = exec.Command("tmux", "kill-session", "-t", p.session).Run()
}
