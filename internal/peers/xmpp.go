// Package peers holds the real clients of the end-to-end tests and the
// demo: an XMPP client (mellium, over c2s), a Matrix user (mautrix), and the
// bridge binary run as a separate process.
package peers

import (
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
)

// Stanza is one stanza an XMPP client received: its raw XML, and the parts
// tests look at most.
type Stanza struct {
	Name     string // message, presence, iq
	ID       string `xml:"id,attr"`
	From     string `xml:"from,attr"`
	To       string `xml:"to,attr"`
	Type     string `xml:"type,attr"`
	Body     string `xml:"body"`
	XML      string
	Received time.Time
}

// Has tells whether the stanza contains s (a substring of its XML).
func (s *Stanza) Has(sub string) bool { return strings.Contains(s.XML, sub) }

// XMPPClient is a real XMPP client session to the server's c2s port.
type XMPPClient struct {
	JID  jid.JID
	sess *xmpp.Session
	conn net.Conn

	mu       sync.Mutex
	stanzas  []*Stanza
	arrived  chan struct{}
	serveErr chan error
}

// DialXMPP logs in as user@domain/resource on the c2s address. It skips
// TLS (the test servers listen on loopback only) by starting the session
// as already secure, which mellium requires before SASL.
func DialXMPP(ctx context.Context, addr, user, domain, resource, password string) (*XMPPClient, error) {
	me, err := jid.New(user, domain, resource)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	negCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	sess, err := xmpp.NewSession(negCtx, me.Domain(), me, conn, xmpp.Secure, xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
		return xmpp.StreamConfig{Features: []xmpp.StreamFeature{
			xmpp.SASL("", password, sasl.ScramSha256, sasl.ScramSha1, sasl.Plain),
			xmpp.BindResource(),
		}}
	}))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("log in as %s: %w", me, err)
	}
	c := &XMPPClient{JID: sess.LocalAddr(), sess: sess, conn: conn, arrived: make(chan struct{}, 1), serveErr: make(chan error, 1)}
	go func() {
		c.serveErr <- sess.Serve(xmpp.HandlerFunc(c.handle))
	}()
	return c, nil
}

func (c *XMPPClient) handle(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	var buf strings.Builder
	enc := xml.NewEncoder(&buf)
	r := xmlstream.MultiReader(xmlstream.Token(*start), t)
	for {
		tok, err := r.Token()
		if err != nil {
			break
		}
		// encoding/xml repeats a namespace it was given both as the
		// name's Space and as an xmlns attribute; keep the Space only.
		if se, ok := tok.(xml.StartElement); ok {
			attrs := se.Attr[:0:0]
			for _, a := range se.Attr {
				if a.Name.Space != "" || a.Name.Local != "xmlns" {
					attrs = append(attrs, a)
				}
			}
			se.Attr = attrs
			tok = se
		}
		if err := enc.EncodeToken(tok); err != nil {
			break
		}
	}
	_ = enc.Flush()
	raw := buf.String()
	st := &Stanza{}
	_ = xml.Unmarshal([]byte(raw), st)
	st.Name, st.XML, st.Received = start.Name.Local, raw, time.Now()
	c.mu.Lock()
	c.stanzas = append(c.stanzas, st)
	c.mu.Unlock()
	select {
	case c.arrived <- struct{}{}:
	default:
	}
	// Answer IQs we do not know with an error, as a client must.
	if st.Name == "iq" && (st.Type == "get" || st.Type == "set") {
		return c.SendRaw(context.Background(), fmt.Sprintf(
			`<iq type='error' id='%s' to='%s'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
			xmlEscape(st.ID), xmlEscape(st.From)))
	}
	return nil
}

// SendRaw sends one stanza given as XML.
func (c *XMPPClient) SendRaw(ctx context.Context, stanza string) error {
	return c.sess.Send(ctx, xml.NewDecoder(strings.NewReader(stanza)))
}

// Wait returns the first stanza received (at any time since Dial) for which
// match is true, or an error after timeout.
func (c *XMPPClient) Wait(ctx context.Context, timeout time.Duration, match func(*Stanza) bool) (*Stanza, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for _, s := range c.stanzas {
			if match(s) {
				c.mu.Unlock()
				return s, nil
			}
		}
		c.mu.Unlock()
		select {
		case <-c.arrived:
		case <-deadline.C:
			return nil, fmt.Errorf("%s: no matching stanza within %s; received %d stanzas", c.JID, timeout, c.Count(func(*Stanza) bool { return true }))
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-c.serveErr:
			return nil, fmt.Errorf("%s: session ended: %v", c.JID, err)
		}
	}
}

// Count is how many received stanzas match.
func (c *XMPPClient) Count(match func(*Stanza) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.stanzas {
		if match(s) {
			n++
		}
	}
	return n
}

// Stanzas returns a copy of everything received so far.
func (c *XMPPClient) Stanzas() []*Stanza {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Stanza(nil), c.stanzas...)
}

// Close ends the session and the connection.
func (c *XMPPClient) Close() error {
	_ = c.sess.Close()
	return c.conn.Close()
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// XMLEscape escapes s for use in an attribute or text of a raw stanza.
func XMLEscape(s string) string { return xmlEscape(s) }
