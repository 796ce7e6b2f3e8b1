//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/peers"
)

// world wraps the installation the tests of this package share (starting
// Dendrite takes seconds, so it is started once).
type world struct {
	*peers.World
	alice *peers.MatrixUser
	stop  func()
}

var w *world

func TestMain(m *testing.M) {
	code := 1
	ww, logPath, err := startWorld(peers.WorldOptions{XMPPUsers: []string{"juliet", "romeo", "tybalt", "mercutio", "benvolio", "paris", "nurse", "balthasar", "friar", "rosaline", "sampson", "gregory", "abram", "peter", "montague", "escalus", "lawrence", "potpan", "benedick", "hero", "claudio", "beatrice", "verges", "dogberry", "seacoal", "macbeth", "banquo", "ursula", "antonio", "borachio", "conrade", "viola", "orsino", "olivia", "sebastian", "valentine", "leonato", "margaret", "feste", "maria", "portia", "nerissa", "bassanio", "perdita", "florizel"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setting up Prosody, Dendrite and the bridge:", err)
	} else {
		w = ww
		code = m.Run()
		w.Stop()
	}
	if msg := keepLogs(logPath, code != 0); msg != "" {
		fmt.Fprint(os.Stderr, msg)
	}
	os.Exit(code)
}

// startWorld starts a world (an XMPP server, Dendrite, the bridge, Alice)
// in a new directory, its servers' and the bridge's output in logPath.
func startWorld(opts peers.WorldOptions) (ww *world, logPath string, err error) {
	dir, err := os.MkdirTemp("", "xmppbridge-e2e-")
	if err != nil {
		return nil, "", err
	}
	logPath = filepath.Join(dir, "servers.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, logPath, err
	}
	pw, err := peers.StartWorld(context.Background(), dir, opts, logFile)
	if err != nil {
		logFile.Close()
		return nil, logPath, err
	}
	// The log file is closed once the world stops: wrap Stop.
	return &world{World: pw, alice: pw.Alice, stop: func() { pw.Stop(); logFile.Close() }}, logPath, nil
}

// Stop stops what the world started.
func (w *world) Stop() { w.stop() }

// keepLogs removes the world's directory after a success; after a failure
// it keeps it, and is what to tell: where the logs are, and in CI their
// last lines.
func keepLogs(logPath string, failed bool) string {
	if !failed {
		os.RemoveAll(filepath.Dir(logPath))
		return ""
	}
	msg := fmt.Sprintf("e2e: logs of the servers and the bridge are in %s\n", logPath)
	if os.Getenv("CI") != "" {
		if data, err := os.ReadFile(logPath); err == nil {
			if len(data) > 60000 {
				data = data[len(data)-60000:]
			}
			msg += fmt.Sprintf("---- last lines of %s ----\n%s\n", logPath, data)
		}
	}
	return msg
}

// xmppUser logs an XMPP person in for the length of the test.
func (w *world) xmppUser(t *testing.T, user, resource string) *peers.XMPPClient {
	t.Helper()
	c, err := w.XMPP(context.Background(), user, resource)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (w *world) puppet(t *testing.T, u id.UserID) string { return w.Puppet(u) }

func (w *world) ghost(bare string) id.UserID { return w.Ghost(bare) }

// metrics is what w's bridge serves at /metrics.
func (w *world) metrics(t *testing.T) string {
	t.Helper()
	_, body := httpGet(t, context.Background(), "http://"+w.MetricsAddr+"/metrics", "")
	return string(body)
}
