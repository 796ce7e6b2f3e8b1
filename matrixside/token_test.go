package matrixside

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"xmppbridge/mapping"
)

// forgetful is a homeserver that knows the bridge's as_token only while
// known is set: otherwise it answers every authenticated request 401
// M_UNKNOWN_TOKEN, as Dendrite and Synapse do to a token no registration
// they loaded has (client-server API, "Using access tokens").
type forgetful struct {
	known atomic.Bool
	sends atomic.Int32 // messages it took
}

func (f *forgetful) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	if !f.known.Load() {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown token"}`)
		return
	}
	switch path := r.URL.Path; {
	case strings.HasSuffix(path, "/account/whoami"):
		_, _ = io.WriteString(w, `{"user_id":"`+r.URL.Query().Get("user_id")+`"}`)
	case strings.Contains(path, "/send/"):
		f.sends.Add(1)
		_, _ = io.WriteString(w, `{"event_id":"$ev"}`)
	default:
		_, _ = io.WriteString(w, `{}`)
	}
}

// logLines are the lines of a JSON log at level that contain text.
func logLines(log *bytes.Buffer, level, text string) int {
	n := 0
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, `"level":"`+level+`"`) && strings.Contains(l, text) {
			n++
		}
	}
	return n
}

func newForgetfulHomeserver(t *testing.T, f *forgetful, log io.Writer) *Homeserver {
	t.Helper()
	h := newStandInHomeserver(t, f, Delivery{Fallback: FallbackMessageStatus})
	h.AS.Log = zerolog.New(zerolog.SyncWriter(log))
	h.AS.DefaultHTTPRetries = 0
	h.token.changed = make(chan struct{}, 1)
	h.RegistrationPath = "/etc/xmppbridge/registration.yaml"
	return h
}

// A homeserver that does not know the bridge's token (a registration
// regenerated and not given to it, or given and not restarted) refuses
// every request alike. Such a refusal is never a permanent failure of the
// message: the send is held (mapping.ErrNotConnected: the outbox holds the
// whole Matrix side and tries again with backoff, the job stays), said
// once at error level with what to do, whatever the number of sends
// refused; readiness says so; once the homeserver knows the token again,
// WatchToken wakes the held sends, the next send goes through, and that
// is said once too.
func TestTokenRefusedHoldsTheSide(t *testing.T) {
	ctx := context.Background()
	f := &forgetful{}
	var log bytes.Buffer
	h := newForgetfulHomeserver(t, f, &log)
	const hint = "give it the registration file and restart it"

	for i := range 3 {
		_, err := h.SendMessage(ctx, "!dm:example.org", deliveryGhost, &mapping.OutMatrix{Body: "hello"}, "txn1")
		if err == nil {
			t.Fatal("the send went through a homeserver that refuses the token")
		}
		if !errors.Is(err, mapping.ErrNotConnected) || errors.Is(err, mapping.ErrPermanent) || !errors.Is(err, ErrTokenRefused) {
			t.Fatalf("send %d: %v: want the side held (ErrNotConnected, ErrTokenRefused), not the message dropped", i, err)
		}
		if !strings.Contains(err.Error(), hint) || !strings.Contains(err.Error(), "M_UNKNOWN_TOKEN") {
			t.Errorf("error %q does not say what to do and what the homeserver said", err)
		}
	}
	if err := h.CheckToken(ctx); !errors.Is(err, ErrTokenRefused) {
		t.Errorf("CheckToken = %v, want ErrTokenRefused", err)
	}
	if n := logLines(&log, "error", hint); n != 1 {
		t.Errorf("%d error lines with the hint for 3 refused sends and a check, want 1:\n%s", n, log.String())
	}
	if n := logLines(&log, "error", h.RegistrationPath); n != 1 {
		t.Errorf("the error line does not name the registration file %s:\n%s", h.RegistrationPath, log.String())
	}

	woken := make(chan struct{}, 1)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go h.WatchToken(wctx, 10*time.Millisecond, func() { woken <- struct{}{} })
	f.known.Store(true)
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("WatchToken did not wake the held sends once the homeserver knew the token")
	}
	if _, err := h.SendMessage(ctx, "!dm:example.org", deliveryGhost, &mapping.OutMatrix{Body: "hello"}, "txn1"); err != nil {
		t.Fatalf("send after the fix: %v", err)
	}
	if f.sends.Load() != 1 {
		t.Errorf("the homeserver took %d messages, want 1", f.sends.Load())
	}
	if n := logLines(&log, "info", "accepts the bridge's token again"); n != 1 {
		t.Errorf("%d lines saying the token is accepted again, want 1:\n%s", n, log.String())
	}
	if n := logLines(&log, "error", hint); n != 1 {
		t.Errorf("%d error lines with the hint, want still 1", n)
	}
}

// At start the bridge asks whoami as its bot: a token the homeserver does
// not know, or that it says is someone else's, is a TokenRefusedError;
// the bot's own is nil.
func TestWhoami(t *testing.T) {
	ctx := context.Background()
	f := &forgetful{}
	h := newForgetfulHomeserver(t, f, io.Discard)
	if err := h.Whoami(ctx); !errors.Is(err, ErrTokenRefused) {
		t.Errorf("unknown token: Whoami = %v, want ErrTokenRefused", err)
	}
	f.known.Store(true)
	if err := h.Whoami(ctx); err != nil {
		t.Errorf("known token: Whoami = %v", err)
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"user_id":"@someone:example.org"}`)
	}))
	defer other.Close()
	h2 := newForgetfulHomeserver(t, f, io.Discard)
	h2.AS.BotClient().HomeserverURL.Host = strings.TrimPrefix(other.URL, "http://")
	if err := h2.Whoami(ctx); !errors.Is(err, ErrTokenRefused) || !strings.Contains(err.Error(), "@someone:example.org") {
		t.Errorf("someone else's token: Whoami = %v, want ErrTokenRefused naming them", err)
	}
}
