package peers

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/internal/rig"
	"xmppbridge/mapping"
)

// Password is the password of every test user.
const Password = "pass-word-1"

// World is a whole installation on loopback: an XMPP server (Prosody, or
// ejabberd), Dendrite, the bridge between them, XMPP accounts and a Matrix
// user Alice. The end-to-end tests and the demo both stand on it.
type World struct {
	Dir string
	// Server is the XMPP server, Prosody or ejabberd; Prosody is it when
	// it is Prosody, for what only Prosody's tests use.
	Server   rig.XMPPServer
	Prosody  *rig.Prosody
	Dendrite *rig.Dendrite
	Bridge   *BridgeProcess
	IDs      mapping.Identities
	Alice    *MatrixUser
	Logs     io.Writer
	// MetricsAddr is where the bridge serves /metrics and /health/*.
	MetricsAddr string
}

// WorldOptions tune a World.
type WorldOptions struct {
	// Ejabberd runs the world on ejabberd instead of Prosody.
	Ejabberd    bool
	XMPPUsers   []string // registered on the XMPP server with Password
	BridgeExtra string   // YAML appended to the bridge config
	LogLevel    string
}

// StartWorld builds the bridge, starts both servers and the bridge in dir,
// and logs Alice in on Matrix. Server and bridge output goes to logs.
func StartWorld(ctx context.Context, dir string, opts WorldOptions, logs io.Writer) (*World, error) {
	w := &World{Dir: dir, Logs: logs}
	if err := w.start(ctx, opts); err != nil {
		w.Stop()
		return nil, err
	}
	return w, nil
}

func (w *World) start(ctx context.Context, opts WorldOptions) error {
	if err := rig.DendriteAvailable(); err != nil {
		return err
	}
	sub := func(name string) string {
		d := filepath.Join(w.Dir, name)
		_ = os.MkdirAll(d, 0o755)
		return d
	}
	var err error
	if opts.Ejabberd {
		var e *rig.Ejabberd
		if e, err = rig.StartEjabberd(ctx, sub("ejabberd"), Prefixed(w.Logs, "ejabberd")); err != nil {
			return err
		}
		w.Server = e
	} else {
		if w.Prosody, err = rig.StartProsody(ctx, sub("prosody"), Prefixed(w.Logs, "prosody")); err != nil {
			return err
		}
		w.Server = w.Prosody
	}
	for _, u := range opts.XMPPUsers {
		if err := w.Server.Register(u, Password); err != nil {
			return err
		}
	}
	xmpp := w.Server.Host()
	dendritePort, err := rig.FreePort()
	if err != nil {
		return err
	}
	asPort, err := rig.FreePort()
	if err != nil {
		return err
	}
	metricsPort, err := rig.FreePort()
	if err != nil {
		return err
	}
	w.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", metricsPort)
	bin, err := BuildBridge(ctx, sub("bin"))
	if err != nil {
		return err
	}
	w.Bridge, err = NewBridgeProcess(ctx, bin, sub("bridge"), BridgeSettings{
		HomeserverURL:    fmt.Sprintf("http://127.0.0.1:%d", dendritePort),
		HomeserverDomain: "localhost",
		ASPort:           asPort,
		XMPPAddress:      xmpp.ComponentAddr(),
		XMPPDomain:       xmpp.ComponentDomain,
		XMPPSecret:       xmpp.ComponentSecret,
		LogLevel:         opts.LogLevel,
		// The rig's upload service is Prosody's, on loopback and plain
		// http: the bridge may fetch from there and nowhere else private.
		Extra: "metrics:\n    enabled: true\n    listen: " + w.MetricsAddr + "\n" +
			"media:\n    allow_http: true\n    allow_networks: [127.0.0.1]\n" + opts.BridgeExtra,
	}, Prefixed(w.Logs, "bridge"))
	if err != nil {
		return err
	}
	// Dendrite reads the registration when it starts: "bridge -g" first.
	if w.Dendrite, err = rig.StartDendriteWith(ctx, sub("dendrite"), []string{w.Bridge.Registr}, Prefixed(w.Logs, "dendrite"), rig.DendriteOptions{Port: dendritePort}); err != nil {
		return err
	}
	if err := w.Bridge.Start(ctx); err != nil {
		return err
	}
	w.IDs = mapping.Identities{HomeserverDomain: "localhost", ComponentDomain: xmpp.ComponentDomain, BotLocalpart: "xmppbridge"}
	cli, err := w.Dendrite.RegisterUser(ctx, "alice", Password)
	if err != nil {
		return err
	}
	w.Alice = NewMatrixUser(context.Background(), cli)
	return nil
}

// Stop stops everything that was started.
func (w *World) Stop() {
	if w.Alice != nil {
		w.Alice.Close()
	}
	if w.Bridge != nil {
		_ = w.Bridge.Stop()
	}
	if w.Dendrite != nil {
		_ = w.Dendrite.Close()
	}
	if w.Server != nil {
		_ = w.Server.Close()
	}
}

// XMPP logs user in with resource and sends initial presence, so that the
// server routes bare-JID messages to this client.
func (w *World) XMPP(ctx context.Context, user, resource string) (*XMPPClient, error) {
	h := w.Server.Host()
	c, err := DialXMPP(ctx, h.Addr(), user, h.Domain, resource, Password)
	if err != nil {
		return nil, err
	}
	if err := c.SendRaw(ctx, "<presence/>"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Puppet is the XMPP address of Matrix user u.
func (w *World) Puppet(u id.UserID) string {
	j, err := w.IDs.Puppet(u)
	if err != nil {
		panic(err) // test users always have puppets
	}
	return j.String()
}

// Ghost is the Matrix user of the XMPP person with bare JID bare.
func (w *World) Ghost(bare string) id.UserID { return w.IDs.Ghost(jid.MustParse(bare)) }

// Prefixed stamps each write to out with the time and name.
func Prefixed(out io.Writer, name string) io.Writer {
	if out == nil {
		return nil
	}
	return &prefixWriter{out: out, prefix: name + ": "}
}

type prefixWriter struct {
	out    io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	_, _ = fmt.Fprintf(p.out, "%s %s%s", time.Now().Format("15:04:05.000"), p.prefix, b)
	return len(b), nil
}
