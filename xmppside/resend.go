package xmppside

import (
	"context"
	"time"

	"xmppbridge/mapping"
)

// XEP-0114 acknowledges nothing: a stanza the bridge wrote is one the
// server's socket took, not one the server read. When the server cuts the
// stream (Prosody restarting: it stops reading the component a few
// milliseconds before it closes it, and closes its users' sessions while
// messages to them are on their way), what it took and never handled is
// gone, and the send that wrote it counted it done. So the component keeps
// the messages it wrote in the last resendWindow on the live stream, and
// writes those of a stream that was cut again, first, on the next one: a
// message or receipt arrives at least once, a few of them twice, with the
// same stanza id (and origin-id) each time, which clients use to drop the
// second.

const (
	// resendWindow is how far before a cut what was written is written
	// again on the next stream.
	resendWindow = time.Second
	// resendMax bounds how many messages are kept for it.
	resendMax = 4096
)

// sentBatch is one Send's messages and when they were written.
type sentBatch struct {
	at   time.Time
	msgs []*mapping.OutMessage
}

// wrote keeps msgs, written just now on the stream of conn, for a resend
// should that stream be cut. The caller holds c.mu.
func (c *Component) wrote(msgs []*mapping.OutMessage, now time.Time) {
	c.sent = append(c.sent, sentBatch{at: now, msgs: msgs})
	c.sentCount += len(msgs)
	for len(c.sent) > 0 && (now.Sub(c.sent[0].at) > resendWindow || c.sentCount > resendMax) {
		c.sentCount -= len(c.sent[0].msgs)
		c.sent[0] = sentBatch{}
		c.sent = c.sent[1:]
	}
}

// cut takes what the ended stream wrote in its last resendWindow as owed
// to the next one. The caller holds c.mu.
func (c *Component) cut(now time.Time) {
	for _, b := range c.sent {
		if now.Sub(b.at) <= resendWindow {
			c.owed = append(c.owed, b.msgs...)
		}
	}
	if len(c.owed) > resendMax {
		c.owed = c.owed[len(c.owed)-resendMax:]
	}
	c.sent, c.sentCount = nil, 0
}

// resend writes what the last stream owed, on the new one, before anything
// else goes: counted (xmpp_link/resent), and kept owed if it fails.
func (c *Component) resend(ctx context.Context) {
	c.mu.Lock()
	owed := c.owed
	c.owed = nil
	c.mu.Unlock()
	if len(owed) == 0 {
		return
	}
	if err := c.Send(ctx, owed...); err != nil {
		c.mu.Lock()
		c.owed = append(owed, c.owed...)
		c.mu.Unlock()
		c.Log.Debug().Err(err).Int("messages", len(owed)).Msg("Failed to write again what the cut stream had taken")
		return
	}
	for range owed {
		c.Count("xmpp_link", "resent")
	}
	c.Log.Info().Int("messages", len(owed)).Dur("window", resendWindow).Msg("Wrote again what was written just before the stream was cut (the server may not have read it)")
}
