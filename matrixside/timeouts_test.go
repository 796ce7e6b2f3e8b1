package matrixside

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The API server bounds how long a connection may take to send its request
// and may sit idle, and its write timeout (counted from the end of the
// headers) outlasts reading the largest body and holding the answer while
// the store is away: a held transaction must get its answer, not a cut
// connection.
func TestAPIServerTimeouts(t *testing.T) {
	for _, hold := range []time.Duration{0, 45 * time.Second} {
		s := NewServer("hs-secret", nil, nil, func(string, string) {}, zerolog.Nop())
		s.HoldFor = hold
		srv := s.httpServer()
		if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 {
			t.Errorf("hold %s: read header %s, read %s, idle %s; want each bounded", hold, srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout)
		}
		if srv.WriteTimeout <= srv.ReadTimeout+s.holdFor() {
			t.Errorf("hold %s: write timeout %s, want more than the read (%s) and the hold (%s)", hold, srv.WriteTimeout, srv.ReadTimeout, s.holdFor())
		}
	}
}

// A transaction whose body does not arrive whole (the homeserver went away,
// or the read timed out) is not stored, so not acknowledged: the answer
// says the body could not be read (408), not that it was too large, and
// the homeserver sends it again.
func TestTransactionBodyCutOff(t *testing.T) {
	s, db, ts := newServer(t)
	counts := map[string]int{}
	s.Count = func(what, reason string) { counts[what+"/"+reason]++ }
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "PUT " + txnPath + "cut HTTP/1.1\r\nHost: bridge\r\nAuthorization: Bearer hs-secret\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n" + `{"events":[`
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || counts["as_txn/unread"] != 1 || counts["as_txn/too_large"] != 0 {
		t.Errorf("answered %d, counts %v; want 408 and as_txn/unread", resp.StatusCode, counts)
	}
	if txns, _ := db.PendingTxns(t.Context(), 0, 0); len(txns) != 0 {
		t.Errorf("stored %d transactions, want none", len(txns))
	}
}
