// Package standin has do-nothing stand-ins for both servers, for measuring
// the bridge's own cost: an XMPP server that accepts one XEP-0114
// component and a homeserver that answers every request at once. They are
// for benchmarks only; the tests prove features against real servers.
package standin

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotConnected is Write's error while no component is connected.
var ErrNotConnected = errors.New("standin: no component connected")

// XMPPServer accepts component connections (XEP-0114 handshake), lets
// the caller write stanzas to it, and counts the stanzas it receives. It
// answers nothing the component sends, IQs included: to the component,
// every entity behind it is a server that never answers (the load bench's
// dead contacts rely on it).
type XMPPServer struct {
	Addr   string
	Secret string
	// Domain, if set, is the only component domain the server knows: a
	// stream to another is refused with <host-unknown/>, as Prosody does.
	Domain string
	ln     net.Listener

	mu       sync.Mutex
	conn     net.Conn
	w        *bufio.Writer
	seq      int64 // which connection conn is (Connections when it came)
	ready    chan struct{}
	received atomic.Int64
	// Match is what Received counts in the component's output.
	Match string
	// Tap, if set before the component connects, is called as each
	// component connection is accepted; what it returns is written
	// everything that connection sends, in order, as it is read (chunks
	// cut anywhere), and closed when the connection ends. One sink a
	// connection: a connection cut by a crash ends mid-stanza, may still
	// be read after the next one started, and the next starts a stream
	// of its own.
	Tap   func() io.WriteCloser
	conns atomic.Int64 // component connections accepted
}

// toRe finds the domain a component's stream header asks for.
var toRe = regexp.MustCompile(`\sto=['"]([^'"]+)['"]`)

// NewXMPPServer listens on a loopback port.
func NewXMPPServer(secret string) (*XMPPServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &XMPPServer{Addr: ln.Addr().String(), Secret: secret, ln: ln, ready: make(chan struct{})}
	go s.accept()
	return s, nil
}

var handshakeRe = regexp.MustCompile(`<handshake>([0-9a-f]+)</handshake>`)

func (s *XMPPServer) accept() {
	first := true
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		if s.serve(conn) && first {
			first = false
			close(s.ready)
		}
	}
}

// serve handles one component connection until it ends: the handshake,
// then what it sends. It tells whether the handshake succeeded, once it
// has. A component that reconnects (after a crash) is accepted again.
func (s *XMPPServer) serve(conn net.Conn) bool {
	r := bufio.NewReaderSize(conn, 1<<16)
	// The component's stream header, then ours with a stream id.
	first, err := r.ReadString('>') // <?xml ...?> or <stream:stream ...>
	if err != nil {
		conn.Close()
		return false
	}
	const streamID = "standin"
	fmt.Fprintf(conn, `<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='component' id='%s'>`, streamID)
	var buf strings.Builder
	if s.Domain != "" {
		header := first
		if strings.HasPrefix(strings.TrimSpace(first), "<?xml") {
			header, err = r.ReadString('>')
		}
		if m := toRe.FindStringSubmatch(header); err != nil || m == nil || m[1] != s.Domain {
			fmt.Fprint(conn, `<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>`)
			conn.Close()
			return false
		}
	}
	for !strings.Contains(buf.String(), "</handshake>") {
		b, err := r.ReadByte()
		if err != nil {
			conn.Close()
			return false
		}
		buf.WriteByte(b)
	}
	sum := sha1.Sum([]byte(streamID + s.Secret))
	if m := handshakeRe.FindStringSubmatch(buf.String()); m == nil || m[1] != hex.EncodeToString(sum[:]) {
		fmt.Fprint(conn, `<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>`)
		conn.Close()
		return false
	}
	var tap io.WriteCloser
	if s.Tap != nil {
		tap = s.Tap()
	}
	fmt.Fprint(conn, `<handshake/>`)
	s.mu.Lock()
	s.conn, s.w, s.seq = conn, bufio.NewWriterSize(conn, 1<<16), s.conns.Add(1)
	s.mu.Unlock()
	go func() {
		s.count(r, tap)
		s.mu.Lock()
		if s.conn == conn {
			s.conn, s.w = nil, nil
		}
		s.mu.Unlock()
		conn.Close()
	}()
	return true
}

// Drop cuts the component's connection, as a server that restarts does.
func (s *XMPPServer) Drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn, s.w = nil, nil
	}
}

// Connections is how many component connections were accepted so far.
func (s *XMPPServer) Connections() int64 { return s.conns.Load() }

// count reads what the component sends and counts the occurrences of
// Match ("<message" unless set): one per stanza of that kind.
func (s *XMPPServer) count(r *bufio.Reader, tap io.WriteCloser) {
	if tap != nil {
		defer tap.Close()
	}
	match := s.Match
	if match == "" {
		match = "<message"
	}
	buf := make([]byte, 1<<16)
	var tail string
	for {
		n, err := r.Read(buf)
		if n > 0 && tap != nil {
			_, _ = tap.Write(buf[:n])
		}
		if n > 0 {
			chunk := tail + string(buf[:n])
			s.received.Add(int64(strings.Count(chunk, match)))
			// Keep what could be the start of a match cut by the chunk end.
			keep := min(len(match)-1, len(chunk))
			tail = chunk[len(chunk)-keep:]
			if strings.Contains(tail, match) {
				tail = ""
			}
		}
		if err != nil {
			return
		}
	}
}

// Ready waits for the component to be connected.
func (s *XMPPServer) Ready(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Write sends raw stanzas to the component.
func (s *XMPPServer) Write(stanzas string) error {
	_, err := s.WriteConn(stanzas)
	return err
}

// WriteConn sends raw stanzas to the component and tells which of its
// connections (1 for the first accepted, as Connections counts) took them.
func (s *XMPPServer) WriteConn(stanzas string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		// As a server bounces what is addressed to a component that is
		// not connected.
		return 0, ErrNotConnected
	}
	if _, err := io.WriteString(s.w, stanzas); err != nil {
		return 0, err
	}
	return s.seq, s.w.Flush()
}

// Received is how many (matching) stanzas the component sent.
func (s *XMPPServer) Received() int64 { return s.received.Load() }

// Close stops the server.
func (s *XMPPServer) Close() {
	s.ln.Close()
	s.mu.Lock()
	if s.conn != nil {
		s.conn.Close()
	}
	s.mu.Unlock()
}

// Homeserver answers every client-server request at once and counts them
// by kind (the path segment after the room, e.g. "receipt" or "send", or
// "createRoom"). It takes any token as the appservice's. Each room it
// creates and each event it is sent gets an id of its own, as the bridge
// stores them under unique keys.
type Homeserver struct {
	*httptest.Server
	Versions string
	counts   sync.Map // string -> *atomic.Int64
	ids      atomic.Int64
	bytes    atomic.Int64 // request bodies read
	// Latency is added to every request, to model a real round trip.
	Latency time.Duration
	// Seen, if set, is called with each request's path as it arrives.
	Seen func(path string)
	// Sync, if set, answers the bot's /sync (the bench's receipts read
	// through /sync); without it /sync gets an empty batch at once.
	Sync http.HandlerFunc
}

// NewHomeserver starts a stand-in homeserver.
func NewHomeserver() *Homeserver {
	h := &Homeserver{Versions: `{"versions":["v1.11"]}`}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	return h
}

func (h *Homeserver) serve(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	h.bytes.Add(n)
	if h.Seen != nil {
		h.Seen(r.URL.Path)
	}
	if h.Latency > 0 {
		time.Sleep(h.Latency)
	}
	path := r.URL.Path
	kind := "other"
	for _, k := range []string{"/receipt/", "/send/", "/typing/", "/join", "/register", "/versions", "/createRoom", "/whoami", "/filter", "/sync"} {
		if strings.Contains(path, k) {
			kind = strings.Trim(k, "/")
		}
	}
	// The media repository's upload, by its path before and after
	// authenticated media (v1.11 left upload at v3; some servers take it
	// under /client/v1 too): the bytes are read and dropped.
	if strings.HasPrefix(path, "/_matrix/media/v3/upload") || strings.HasPrefix(path, "/_matrix/client/v1/media/upload") {
		kind = "upload"
	}
	c, _ := h.counts.LoadOrStore(kind, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	w.Header().Set("Content-Type", "application/json")
	switch kind {
	case "versions":
		_, _ = io.WriteString(w, h.Versions)
	case "send":
		fmt.Fprintf(w, `{"event_id":"$standin%d"}`, h.ids.Add(1))
	case "whoami":
		// Whoever the appservice masquerades as: its token is good.
		_ = json.NewEncoder(w).Encode(map[string]string{"user_id": r.URL.Query().Get("user_id")})
	case "upload":
		fmt.Fprintf(w, `{"content_uri":"mxc://example.org/standin%d"}`, h.ids.Add(1))
	case "createRoom":
		fmt.Fprintf(w, `{"room_id":"!standin%d:example.org"}`, h.ids.Add(1))
	case "join":
		_, _ = io.WriteString(w, `{"room_id":"!standin:example.org"}`)
	case "filter":
		_, _ = io.WriteString(w, `{"filter_id":"standin"}`)
	case "sync":
		if h.Sync != nil {
			h.Sync(w, r)
			return
		}
		_, _ = io.WriteString(w, `{"next_batch":"standin"}`)
	default:
		_, _ = io.WriteString(w, `{}`)
	}
}

// Count is how many requests of kind arrived.
func (h *Homeserver) Count(kind string) int64 {
	if c, ok := h.counts.Load(kind); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// Bytes is how many bytes of request bodies arrived (uploads, mostly).
func (h *Homeserver) Bytes() int64 { return h.bytes.Load() }
