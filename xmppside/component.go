// XEP-0114: Jabber Component Protocol.

// Package xmppside connects the bridge to an XMPP server as a component
// (XEP-0114) and turns stanzas into the core's values and back. One file per
// protocol: component.go (XEP-0114), receipts.go (XEP-0184), events.go
// (XEP-0022), markers.go (XEP-0333), sid.go (XEP-0359), chatstates.go
// (XEP-0085), imng.go (XEP-0409), disco.go (XEP-0030), presence.go
// (RFC 6121 presence and subscriptions), caps.go (XEP-0115).
package xmppside

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	xmppstream "mellium.im/xmpp/stream"

	"xmppbridge/internal/retry"
	"xmppbridge/internal/safely"
	"xmppbridge/mapping"
)

// Counter counts refusals by reason, like mapping.Counter.
type Counter = mapping.Counter

// Core is what the component asks of the bridge's core (*mapping.Bridge),
// declared by its user so that the XMPP side depends on these calls and
// nothing else of the core (docs/architecture.md, "The packages").
type Core interface {
	// HandleXMPPMessage takes a <message/> from XMPP; the answer, if any,
	// goes back to its sender.
	HandleXMPPMessage(ctx context.Context, m *mapping.XMPPMessage) (*mapping.OutMessage, error)
	// HandleXMPPPresence takes a <presence/> and returns the answers.
	HandleXMPPPresence(ctx context.Context, p *mapping.XMPPPresence) ([]*mapping.OutPresence, error)
	// SubscriberPresence is the puppets' presence to their subscribers,
	// sent when the link comes up (available) or goes down.
	SubscriberPresence(ctx context.Context, available bool) ([]*mapping.OutPresence, error)
	// ResolvePuppet is the Matrix user a puppet's JID stands for, or why
	// it stands for none (disco, vCard).
	ResolvePuppet(to jid.JID) (id.UserID, mapping.Reason)
	// PuppetCard is what a puppet's vCard says, as asker may see it.
	PuppetCard(ctx context.Context, mxid id.UserID, asker jid.JID) (mapping.Profile, error)
	Identities() mapping.Identities
	// Wake has the core's outbox try every side again: the link is up.
	Wake()
	// Rejoin has the puppets join their multi-user chats again: the link
	// is up, and the rooms may have forgotten them.
	Rejoin(ctx context.Context) error
}

// Component is the bridge's XEP-0114 connection. It redials by itself.
type Component struct {
	Address string  // host:port of the server's component listener
	Domain  jid.JID // the component's domain
	Secret  string
	Core    Core
	Count   Counter
	Log     zerolog.Logger
	// MaxBackoff caps the wait between reconnection attempts.
	MaxBackoff time.Duration
	// MaxStanzaBytes bounds what is read of one stanza (limits.go);
	// zero: DefaultMaxStanzaBytes.
	MaxStanzaBytes int

	mu   sync.Mutex
	sess *xmpp.Session
	conn net.Conn // sess's connection, for write deadlines
	// upSince is when the session in progress was negotiated; zero
	// before it was.
	upSince time.Time
	// roster is what each server granted this session of the rosters of
	// its users, by domain (XEP-0356, privilege.go).
	roster map[string]string
	// guard runs each stanza's handler: a panic costs that stanza.
	guard safely.Guard
	// refused and away are the link's outages, a secret refused and a
	// server out of reach, said once and summarised (say); Run's own.
	refused, away retry.Outage
	// outageGrace and outageEvery replace the package's defaults when
	// set (tests).
	outageGrace, outageEvery time.Duration
	// sent is what Send wrote on the live stream lately (sentCount
	// messages), owed what a cut stream had written just before its cut
	// (resend.go).
	sent      []sentBatch
	sentCount int
	owed      []*mapping.OutMessage
}

// Run keeps the component connected until ctx ends. It never gives up on a
// network fault or a refused secret: it says why once, tries again with
// backoff, and summarises now and then while it lasts (say).
func (c *Component) Run(ctx context.Context) {
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	backoff := retry.Backoff{First: min(time.Second, c.MaxBackoff), Max: c.MaxBackoff}
	grace, every := c.outageGrace, c.outageEvery
	if grace == 0 {
		grace = outageGrace
	}
	if every == 0 {
		every = outageSummaryEvery
	}
	c.refused = retry.Outage{Every: every}
	c.away = retry.Outage{Grace: grace, Every: every}
	for ctx.Err() == nil {
		c.mu.Lock()
		c.upSince = time.Time{}
		c.mu.Unlock()
		err := c.serveOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		up := c.upSince
		c.mu.Unlock()
		var held time.Duration
		if !up.IsZero() {
			held = time.Since(up)
		}
		// A session that lasted as long as the wait before it ended in a
		// fresh failure (the server restarted): the next try comes a
		// second later, not after the backoff of old failures (the crash
		// drill cuts the stream every few seconds; each second away, the
		// server bounces receipts). One dropped sooner (a name conflict, a
		// server that takes the handshake and then falls over) backs off.
		wait := backoff.After(held)
		c.say(err, !up.IsZero(), wait)
		c.Count("xmpp_reconnect", reasonOf(err))
		if !retry.Wait(ctx, wait) {
			return
		}
	}
}

// How the link's troubles are said: a server away for less than
// outageGrace is restarting and says nothing worse than info; one away
// longer, or refusing the secret, is said once and then summarised every
// outageSummaryEvery.
const (
	outageGrace        = 30 * time.Second
	outageSummaryEvery = 10 * time.Minute
)

// say logs why a session ended, or why none began, at the level it
// deserves: a stream the server closed (it stopped or restarted) is info;
// a refused secret is an error, said once with what to fix; a server that
// cannot be reached is said once it has been away outageGrace. Each is
// then repeated at debug only, with a summary now and then.
func (c *Component) say(err error, held bool, wait time.Duration) {
	log := c.Log.With().Str("address", c.Address).Dur("retry_in", wait).Logger()
	switch {
	case held && serverClosed(err):
		log.Info().AnErr("why", err).Msg("The XMPP server closed the stream; reconnecting")
	case held:
		log.Warn().Err(err).Msg("XMPP component stream ended with an error; reconnecting")
	case errors.Is(err, xmppstream.NotAuthorized):
		c.sayRefused(log, err, "The XMPP server refused the component's secret: xmpp.secret in the bridge's config must be the component_secret of the Component block of this domain in the XMPP server's config (on ejabberd, the password of its ejabberd_service listener); trying again with backoff",
			"The XMPP server still refuses the component's secret; check xmpp.secret")
	case errors.Is(err, xmppstream.HostUnknown):
		// The server answers, so the port is right: it has no component
		// of this name (RFC 6120 §4.9.3.6).
		c.sayRefused(log, err, "The XMPP server has no component of this domain: xmpp.domain in the bridge's config must be the name of a Component block in the XMPP server's config (on ejabberd, the hosts of its ejabberd_service listener); trying again with backoff",
			"The XMPP server still has no component of this domain; check xmpp.domain")
	default:
		now := time.Now()
		switch c.away.Fail(now) {
		case retry.First:
			log.Warn().Err(err).Dur("for", now.Sub(c.away.Since())).Msg("Cannot connect to the XMPP server's component port; trying again with backoff")
		case retry.Summary:
			log.Warn().Err(err).Int("tries", c.away.Tries()).Dur("for", now.Sub(c.away.Since())).
				Msg("The XMPP server is still unreachable")
		default:
			// The first try of each outage is worth an info line (a
			// server restarting, or not started yet); not the others.
			ev := log.Debug()
			if c.away.Tries() == 1 {
				ev = log.Info()
			}
			ev.AnErr("why", err).Msg("Cannot connect to the XMPP server yet; trying again")
		}
	}
}

// sayRefused says a refusal of the component's configuration (its secret,
// its domain) once at error level with what to fix, then a summary now
// and then, and the tries between at debug.
func (c *Component) sayRefused(log zerolog.Logger, err error, first, summary string) {
	now := time.Now()
	switch c.refused.Fail(now) {
	case retry.First:
		log.Error().Err(err).Str("domain", c.Domain.String()).Msg(first)
	case retry.Summary:
		log.Error().Int("tries", c.refused.Tries()).Dur("for", now.Sub(c.refused.Since())).Msg(summary)
	default:
		log.Debug().Err(err).Msg("The XMPP server refused the component again")
	}
}

// serverClosed tells whether err is how a session ends when the server
// closes it in order: Prosody stopping closes the connection without a
// </stream:stream>, which mellium reads as an XML syntax error "unexpected
// EOF"; a </stream:stream> ends the session without an error; a server
// may say <system-shutdown/> first (RFC 6120 §4.9.3.22).
func serverClosed(err error) bool {
	var syntax *xml.SyntaxError
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, xmppstream.SystemShutdown):
		return true
	case errors.As(err, &syntax):
		return syntax.Msg == "unexpected EOF"
	}
	return false
}

// connected says that the session is up, and if an outage that was said
// is over, how long it lasted.
func (c *Component) connected() {
	log := c.Log.Info().Str("address", c.Address).Str("domain", c.Domain.String())
	refusedSaid, refusedTries, refusedSince := c.refused.End()
	awaySaid, awayTries, awaySince := c.away.End()
	switch {
	case refusedSaid:
		log.Int("tries", refusedTries).Dur("after", time.Since(refusedSince)).Msg("XMPP component connected: the server takes its secret now")
	case awaySaid:
		log.Int("tries", awayTries).Dur("after", time.Since(awaySince)).Msg("XMPP component connected: the server is back")
	default:
		log.Msg("XMPP component connected")
	}
}

func reasonOf(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne):
		return "network"
	case err == nil:
		return "closed"
	}
	return "stream"
}

// serveOnce dials, negotiates and serves one session until it ends.
func (c *Component) serveOnce(ctx context.Context) error {
	dialer := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	conn, err := dialer.DialContext(ctx, "tcp", c.Address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", c.Address, err)
	}
	// Session.Close does not close the connection; we always do.
	defer conn.Close()
	negCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	sess, err := component.NewSession(negCtx, c.Domain, []byte(c.Secret), conn)
	cancel()
	if err != nil {
		return fmt.Errorf("negotiate component stream as %s: %w", c.Domain, err)
	}
	c.connected()
	c.Count("xmpp_link", "connected") // each (re)connection
	c.mu.Lock()
	c.sess, c.conn, c.upSince, c.roster = sess, conn, time.Now(), nil
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.sess, c.conn = nil, nil
		if ctx.Err() == nil {
			c.cut(time.Now()) // not when the bridge itself stops
		}
		c.mu.Unlock()
	}()
	c.resend(ctx)
	c.Core.Wake() // flush what waited for us
	if err := c.Core.Rejoin(ctx); err != nil {
		// The joins are the rooms' only: the stream goes on, and the
		// next connection tries again.
		c.Log.Err(err).Msg("Failed to have the puppets rejoin their chats")
	}
	sessCtx, endSession := context.WithCancel(ctx)
	defer endSession()
	go c.announce(sessCtx, true)

	stop := context.AfterFunc(ctx, func() {
		// Stopping: the puppets go offline before the stream closes.
		bye, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		c.announce(bye, false)
		cancel()
		_ = sess.Close()
		_ = conn.Close()
	})
	defer stop()
	return sess.Serve(xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		return c.handleSafely(ctx, t, start)
	}))
}

// Connected tells whether the component has a session with the server.
func (c *Component) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess != nil
}

// Send implements mapping.XMPPSide: the messages go out in one write.
func (c *Component) Send(ctx context.Context, msgs ...*mapping.OutMessage) error {
	c.mu.Lock()
	sess, conn := c.sess, c.conn
	c.mu.Unlock()
	if sess == nil {
		return mapping.ErrNotConnected
	}
	// Holding the stream's writer keeps other writes out until Close, which
	// flushes. ctx bounds the write as mellium's own Encode does: a past
	// deadline makes a blocked write fail.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetWriteDeadline(time.Unix(1, 0)) })
	w := sess.TokenWriter()
	var err error
	for _, m := range msgs {
		if err = writeMessage(w, m); err != nil {
			break
		}
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if !stop() {
		_ = conn.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		return fmt.Errorf("%w: %w", mapping.ErrNotConnected, err)
	}
	c.mu.Lock()
	if c.conn == conn {
		c.wrote(msgs, time.Now())
	}
	c.mu.Unlock()
	return nil
}

// announce sends every puppet's presence, available or not, to the people
// subscribed to it (mapping.SubscriberPresence).
func (c *Component) announce(ctx context.Context, available bool) {
	ps, err := c.Core.SubscriberPresence(ctx, available)
	if err != nil {
		if ctx.Err() == nil {
			c.Log.Warn().Err(err).Msg("Failed to list the presence owed to the puppets' subscribers")
		}
		return
	}
	for _, p := range ps {
		if err := c.SendPresence(ctx, p); err != nil {
			c.Log.Debug().Err(err).Msg("Stopped announcing the puppets' presence")
			return
		}
	}
	c.Log.Debug().Int("subscribers", len(ps)).Bool("available", available).Msg("Announced the puppets' presence")
}

// SendPresence implements mapping.XMPPSide.
func (c *Component) SendPresence(ctx context.Context, p *mapping.OutPresence) error {
	return c.encode(ctx, encodePresence(p))
}

// encode sends one stanza on the live session.
func (c *Component) encode(ctx context.Context, stanza any) error {
	c.mu.Lock()
	sess := c.sess
	c.mu.Unlock()
	if sess == nil {
		return mapping.ErrNotConnected
	}
	if err := sess.Encode(ctx, stanza); err != nil {
		return fmt.Errorf("%w: %w", mapping.ErrNotConnected, err)
	}
	return nil
}

// holdFor is how long a message that cannot be stored (the database is
// away) is tried again before it is given up, and holdRetry how often.
const (
	holdFor   = 5 * time.Minute
	holdRetry = time.Second
)

// handleMessage hands m to the core, and while the core cannot store it,
// tries again every holdRetry for up to holdFor, holding the stream
// meanwhile: XEP-0114 acknowledges nothing, so a message dropped here is
// lost for good, while a stream not read holds the server back (the
// stanzas behind this one wait in its queue and the TCP window). It is
// said once when messages wait and once when they go on.
func (c *Component) handleMessage(ctx context.Context, m *mapping.XMPPMessage) (*mapping.OutMessage, error) {
	var reply *mapping.OutMessage
	var held retry.Outage
	err := retry.Hold(ctx, holdFor, holdRetry, func() error {
		var err error
		if reply, err = c.Core.HandleXMPPMessage(ctx, m); err != nil && held.Fail(time.Now()) == retry.First {
			c.Log.Warn().Err(err).Dur("retry_every", holdRetry).Msg("A message from XMPP cannot be stored; holding the XMPP stream and trying again")
			c.Count("xmpp_message", "held")
		}
		return err
	})
	if said, _, _ := held.End(); err == nil && said {
		c.Log.Info().Msg("Messages from XMPP are stored again; the stream goes on")
	}
	return reply, err
}

// handleSafely is handle under a recover: one stanza that trips a bug
// costs that stanza, not the stream of everyone's stanzas (the process
// would die, and come back to the same stanza if the server resends it).
// An IQ get or set is answered internal-server-error (RFC 6120 §8.3.3.8);
// mellium then skips the rest of the stanza and reads the next.
func (c *Component) handleSafely(ctx context.Context, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	log := c.Log.With().Str("element", start.Name.Local).Logger()
	err := c.guard.Run(&log, c.Count, "xmpp_stanza", func() error { return c.handle(ctx, t, start) })
	if errors.Is(err, safely.ErrPanic) {
		return answerInternalError(t, start)
	}
	return err
}

// answerInternalError answers start with internal-server-error if it is an
// IQ that wants an answer (RFC 6120 §8.2.3); other stanzas get none.
func answerInternalError(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Local != "iq" {
		return nil
	}
	var id, from, to, typ string
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "id":
			id = a.Value
		case "from":
			from = a.Value
		case "to":
			to = a.Value
		case "type":
			typ = a.Value
		}
	}
	if typ != "get" && typ != "set" {
		return nil
	}
	reply := &outIQ{ID: id, From: to, To: from}
	reply.fail("cancel", "internal-server-error")
	return t.Encode(reply)
}

// handle routes one top-level stanza. mellium's mux matches message types
// literally and calls a handler once per matching child, while receipts
// often come without a type: one decode here and the core decides.
func (c *Component) handle(ctx context.Context, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	limit := &stanzaLimit{r: t, left: c.maxStanza()}
	d := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), limit))
	tok, err := d.Token() // the start element again, for DecodeElement
	if err != nil {
		return nil
	}
	defer func() {
		if limit.left < 0 {
			// Read no further into memory than needed to find its end;
			// the stream goes on with the next stanza.
			c.Count("xmpp_stanza", "too_large")
			c.Log.Warn().Str("element", start.Name.Local).Int("limit_bytes", c.maxStanza()).Msg("Dropped a stanza over limits.max_stanza_kib")
			for {
				if _, err := t.Token(); err != nil {
					break // the stanza's end (t reads only the stanza)
				}
			}
		}
	}()
	se := tok.(xml.StartElement)
	switch se.Name.Local {
	case "message":
		in, m, err := decodeInMessage(d, &se)
		if err != nil && limit.left < 0 {
			return nil // counted as too large
		} else if err != nil {
			c.Log.Debug().Err(err).Msg("Dropped malformed message")
			c.Count("xmpp_message", "malformed")
			return nil
		}
		if grant := grantOf(in); grant != nil {
			c.notePrivilege(grant, m.From)
			return nil
		}
		reply, err := c.handleMessage(ctx, m)
		if err != nil {
			c.Log.Err(err).Msg("Failed to handle message")
			c.Count("xmpp_message", "internal_error")
			return nil
		}
		if reply != nil {
			return writeMessage(t, reply)
		}
	case "iq":
		return c.handleIQ(ctx, d, &se, t)
	case "presence":
		return c.handlePresence(ctx, d, &se, t)
	default:
		c.Count("xmpp_stanza", "unknown")
	}
	return nil
}
