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
	// In a chat: the room's XEP-0359 stanza-id of a groupchat message,
	// whether it is markable (XEP-0333), and a marker's message type.
	StanzaID string `json:"stanza_id"`
	Markable bool   `json:"markable"`
	Type     string `json:"type"`
	// A command carried out (Do): which, and its error, "" if none.
	Cmd   string `json:"cmd"`
	Error string `json:"error"`
	// URL is a message's XEP-0066 URL, or the file a command was about.
	URL    string `json:"url"`
	SHA256 string `json:"sha256"` // of a file downloaded
	Size   int64  `json:"size"`
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
	if len(refuse) > 0 {
		return w.startSlixmpp(ctx, user, append([]string{"--refuse"}, refuse...)...)
	}
	return w.startSlixmpp(ctx, user)
}

// StartSlixmppWithAvatar logs user in with slixmpp's XEP-0153 plugin on:
// every available presence it sends, a chat's join too, carries the hash
// of its vCard photo, as Gajim's and Conversations' do; its "avatar"
// command (Do) publishes the photo.
func (w *World) StartSlixmppWithAvatar(ctx context.Context, user string) (*Slixmpp, error) {
	return w.startSlixmpp(ctx, user, "--vcard-avatar")
}

func (w *World) startSlixmpp(ctx context.Context, user string, more ...string) (*Slixmpp, error) {
	script := filepath.Join(w.Dir, "slixmpp-client.py")
	if err := os.WriteFile(script, slixmppClient, 0o644); err != nil {
		return nil, err
	}
	args := append([]string{script, w.Prosody.Addr(), user + "@" + w.Prosody.Domain + "/slixmpp", Password}, more...)
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
	return c.WaitSince(ctx, 0, timeout, match)
}

// Mark is where the events printed so far end, for WaitSince.
func (c *Slixmpp) Mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// Do has the client carry out cmd (a command of slixmpp/client.py: "cmd"
// and its arguments) and waits until it has.
func (c *Slixmpp) Do(ctx context.Context, timeout time.Duration, cmd map[string]string) error {
	line, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	mark := c.Mark()
	if _, err := c.stdin.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("slixmpp %s: %w", cmd["cmd"], err)
	}
	done, err := c.WaitSince(ctx, mark, timeout, func(e SlixmppEvent) bool { return e.Event == "done" && e.Cmd == cmd["cmd"] })
	if err != nil {
		return fmt.Errorf("slixmpp %s: %w", cmd["cmd"], err)
	}
	if done.Error != "" {
		return fmt.Errorf("slixmpp %s: %s", cmd["cmd"], done.Error)
	}
	return nil
}

// WaitSince returns the first event after mark (Mark) that match accepts.
func (c *Slixmpp) WaitSince(ctx context.Context, mark int, timeout time.Duration, match func(SlixmppEvent) bool) (SlixmppEvent, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for seen := mark; ; {
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
