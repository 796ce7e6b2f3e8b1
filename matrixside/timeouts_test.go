package matrixside

import (
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
