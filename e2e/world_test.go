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
}

var w *world

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xmppbridge-e2e-")
	if err != nil {
		panic(err)
	}
	logPath := filepath.Join(dir, "servers.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		panic(err)
	}
	code := 1
	pw, err := peers.StartWorld(context.Background(), dir, peers.WorldOptions{XMPPUsers: []string{"juliet", "romeo", "tybalt", "mercutio", "benvolio", "paris", "nurse", "balthasar", "friar", "rosaline", "sampson", "gregory", "abram", "peter", "montague", "escalus", "lawrence", "potpan", "benedick", "hero", "claudio", "beatrice", "verges", "dogberry", "seacoal", "macbeth", "banquo", "ursula", "antonio", "borachio", "conrade", "leonato", "margaret"}}, logFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setting up Prosody, Dendrite and the bridge:", err)
	} else {
		w = &world{World: pw, alice: pw.Alice}
		code = m.Run()
		pw.Stop()
	}
	logFile.Close()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: logs of Prosody, Dendrite and the bridge are in %s\n", logPath)
		if os.Getenv("CI") != "" {
			if data, err := os.ReadFile(logPath); err == nil {
				if len(data) > 60000 {
					data = data[len(data)-60000:]
				}
				fmt.Fprintf(os.Stderr, "---- last lines of %s ----\n%s\n", logPath, data)
			}
		}
	} else {
		os.RemoveAll(dir)
	}
	os.Exit(code)
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
