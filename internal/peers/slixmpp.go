package peers

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

//go:embed slixmpp/client.py
var slixmppClient []byte

// SlixmppPython is the interpreter that has Debian's python3-slixmpp (the
// pyenv python3 first on PATH does not).
const SlixmppPython = "/usr/bin/python3"

// SlixmppAvailable tells why the slixmpp client cannot run, or nil.
func SlixmppAvailable() error {
	out, err := exec.Command(SlixmppPython, "-c", "from slixmpp import ClientXMPP").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s cannot import slixmpp (apt-get install python3-slixmpp; scripts/setup.sh does): %v: %s", SlixmppPython, err, out)
	}
	return nil
}

// SlixmppEvent is one line the client printed (see slixmpp/client.py).
type SlixmppEvent struct {
	Event        string `json:"event"`
	JID          string `json:"jid"`
	Subscription string `json:"subscription"`
	Approved     bool   `json:"approved"`
	From         string `json:"from"`
	ID           string `json:"id"`
	Body         string `json:"body"`
	Acked        bool   `json:"acked"`
	// URL is a message's XEP-0066 URL, or the file a command was about.
	URL    string `json:"url"`
	SHA256 string `json:"sha256"` // of a file downloaded
	Size   int64  `json:"size"`
	Error  string `json:"error"`
}

// Slixmpp is a real third-party XMPP client, slixmpp, logged in as one
// user, answering receipts only to contacts with a presence subscription.
type Slixmpp struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu     sync.Mutex
	events []SlixmppEvent
	more   chan struct{} // closed and replaced when an event arrives
	done   chan struct{}
}

// StartSlixmpp logs user in on w's Prosody. Subscription requests from the
// bare JIDs in refuse are declined; all others approved. Its log lines go
// to w.Logs.
func (w *World) StartSlixmpp(ctx context.Context, user string, refuse ...string) (*Slixmpp, error) {
	script := filepath.Join(w.Dir, "slixmpp-client.py")
	if err := os.WriteFile(script, slixmppClient, 0o644); err != nil {
		return nil, err
	}
	args := []string{script, w.Prosody.Addr(), user + "@" + w.Prosody.Domain + "/slixmpp", Password}
	if len(refuse) > 0 {
		args = append(append(args, "--refuse"), refuse...)
	}
	cmd := exec.Command(SlixmppPython, args...)
	cmd.Stderr = Prefixed(w.Logs, "slixmpp "+user)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start slixmpp: %w", err)
	}
	c := &Slixmpp{cmd: cmd, stdin: stdin, more: make(chan struct{}), done: make(chan struct{})}
	go c.read(stdout)
	if _, err := c.Wait(ctx, 30*time.Second, func(e SlixmppEvent) bool { return e.Event == "online" }); err != nil {
		c.Close()
		return nil, fmt.Errorf("slixmpp as %s never came online: %w", user, err)
	}
	return c, nil
}

func (c *Slixmpp) read(r io.Reader) {
	defer close(c.done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var e SlixmppEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		c.mu.Lock()
		c.events = append(c.events, e)
		close(c.more)
		c.more = make(chan struct{})
		c.mu.Unlock()
	}
}

// Wait returns the first event, since the client started, that match
// accepts.
func (c *Slixmpp) Wait(ctx context.Context, timeout time.Duration, match func(SlixmppEvent) bool) (SlixmppEvent, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for seen := 0; ; {
		c.mu.Lock()
		events, more := c.events, c.more
		c.mu.Unlock()
		for ; seen < len(events); seen++ {
			if match(events[seen]) {
				return events[seen], nil
			}
		}
		select {
		case <-more:
		case <-c.done:
			return SlixmppEvent{}, fmt.Errorf("slixmpp exited")
		case <-deadline.C:
			return SlixmppEvent{}, fmt.Errorf("no matching event in %s", timeout)
		case <-ctx.Done():
			return SlixmppEvent{}, ctx.Err()
		}
	}
}

// Command has the client do cmd (see slixmpp/client.py), a JSON object
// with "cmd" and its fields.
func (c *Slixmpp) Command(cmd map[string]any) error {
	line, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	_, err = c.stdin.Write(append(line, '\n'))
	return err
}

// Close logs the client out and waits for it to end.
func (c *Slixmpp) Close() {
	_ = c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
	}
	_ = c.cmd.Wait()
}
