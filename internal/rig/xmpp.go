package rig

import (
	"context"
	"net"
	"strconv"
)

// XMPPServer is what the rig's XMPP servers (Prosody, ejabberd) share, so
// that a world and its tests run on either: a host for users, a XEP-0114
// component for the bridge, a multi-user chat service, accounts, and a
// life cycle.
type XMPPServer interface {
	// Host is the server's names, secret and ports.
	Host() *XMPPHost
	// Register creates an account on Host().Domain (or resets its
	// password).
	Register(user, pass string) error
	// Start starts a stopped server again, on the same ports and data.
	Start(ctx context.Context) error
	// Restart stops the server and starts it again.
	Restart(ctx context.Context) error
	// Stop stops the server; Start brings it back.
	Stop() error
	// Close stops the server for good and removes what the rig created.
	Close() error
}

// XMPPHost is what the bridge and the tests need to know of an XMPP
// server the rig runs.
type XMPPHost struct {
	// Software is the server's name as people know it ("Prosody",
	// "ejabberd").
	Software        string
	Domain          string // "localhost", the users' host
	ComponentDomain string // "matrix.localhost", the bridge's
	ComponentSecret string
	// MUCDomain is the server's multi-user chat service (XEP-0045), set
	// up so that each room stamps every message with its own XEP-0359
	// stanza-id, which markers and relations in groups refer to.
	MUCDomain     string // "conference.localhost"
	C2SPort       int
	ComponentPort int
}

// Host is h itself: a server embeds its XMPPHost.
func (h *XMPPHost) Host() *XMPPHost { return h }

// Addr is the c2s address, host:port.
func (h *XMPPHost) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.C2SPort))
}

// ComponentAddr is the XEP-0114 component address, host:port.
func (h *XMPPHost) ComponentAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.ComponentPort))
}

// JID is user's bare JID on Domain.
func (h *XMPPHost) JID(user string) string {
	return user + "@" + h.Domain
}

// The names every server of the rig uses: the tests' worlds each have a
// server of their own, so they need not differ.
func defaultHost(software, secret string) XMPPHost {
	if secret == "" {
		secret = randomToken()
	}
	return XMPPHost{
		Software:        software,
		Domain:          "localhost",
		ComponentDomain: "matrix.localhost",
		ComponentSecret: secret,
		MUCDomain:       "conference.localhost",
	}
}

var (
	_ XMPPServer = (*Prosody)(nil)
	_ XMPPServer = (*Ejabberd)(nil)
)
