package matrixside

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix"

	"xmppbridge/internal/retry"
	"xmppbridge/mapping"
)

// ErrTokenRefused marks a request the homeserver refused because it does
// not know the bridge's as_token, or knows a registration other than the
// bridge's (its namespaces do not cover the bridge's users): the
// homeserver was not given the registration file the bridge uses, or not
// restarted since. Every request fails the same way until an operator
// acts, so it is never a permanent failure of the message: the errors
// that carry it (TokenRefusedError) are mapping.ErrNotConnected too, and
// the outbox holds the whole Matrix side.
var ErrTokenRefused = errors.New("the homeserver does not know the bridge's token")

// TokenHint is what the operator must do about ErrTokenRefused.
const TokenHint = "give it the registration file and restart it"

// TokenRefusedError is a refusal of the bridge's token: the homeserver's
// answer in Cause.
type TokenRefusedError struct{ Cause error }

func (e *TokenRefusedError) Error() string {
	return ErrTokenRefused.Error() + ": " + TokenHint + ": " + e.Cause.Error()
}

// Is makes the refusal ErrTokenRefused, and ErrNotConnected for the
// outbox: the side is held, not the message dropped.
func (e *TokenRefusedError) Is(target error) bool {
	return target == ErrTokenRefused || target == mapping.ErrNotConnected
}

func (e *TokenRefusedError) Unwrap() error { return e.Cause }

// refusesToken tells an answer that is about the bridge's token or
// registration rather than about the request:
//   - 401 is the client-server API's answer to a token it does not know
//     (M_UNKNOWN_TOKEN) or a request without one (M_MISSING_TOKEN)
//     ("Using access tokens"; the application service API says an invalid
//     as_token gets the same). Any 401 is about authentication (RFC 9110
//     §15.5.2), except M_USER_LOCKED, an administrator's lock on one user.
//   - M_EXCLUSIVE: the application service API's answer to an
//     application service that acts on a user outside its namespaces
//     ("Server admin style permissions"): the homeserver holds another
//     registration than the bridge's.
//   - 403 M_FORBIDDEN is also what a room answers a member without the
//     power to send; only the wording tells that it is about the
//     application service itself: Synapse's "Application service cannot
//     masquerade as this user" and "Application service has not
//     registered this user", Dendrite's "appservice has not registered
//     this user" (the spec's identity assertion: the user must be in one
//     of the application service's namespaces). A homeserver that words
//     it otherwise has it taken as a refusal about the room: permanent
//     for that send, and its sender is told.
func refusesToken(code int, resp *mautrix.RespError) bool {
	errcode, text := "", ""
	if resp != nil {
		errcode, text = resp.ErrCode, strings.ToLower(resp.Err)
	}
	switch {
	case code == http.StatusUnauthorized:
		return errcode != "M_USER_LOCKED"
	case errcode == "M_EXCLUSIVE":
		return true
	case code == http.StatusForbidden && errcode == "M_FORBIDDEN":
		return strings.Contains(text, "application service") || strings.Contains(text, "appservice")
	}
	return false
}

// tokenCacheFor is how long CheckToken's answer stands: a readiness probe
// every second costs the homeserver one request every few.
const tokenCacheFor = 5 * time.Second

// TokenRecheck is how often WatchToken should ask again while the token
// is refused, so that held sends go soon after the homeserver is fixed.
const TokenRecheck = 5 * time.Second

// tokenState is what the bridge knows of its token's standing with the
// homeserver: refused or not, said once per refusal, and CheckToken's
// last yes.
type tokenState struct {
	// refused is read without the lock by every request that went
	// through; it changes only under it.
	refused atomic.Bool
	mu      sync.Mutex
	since   time.Time
	okAt    time.Time // the last time Whoami said yes, for CheckToken
	// changed is signalled when the token turns refused, for WatchToken.
	changed chan struct{}
}

// Whoami asks the homeserver whose the bridge's token is, once (no
// retries): nil if it is the bot's; a ServerNameError if it refuses the
// bot because homeserver.domain is not its server name; a
// TokenRefusedError if it refuses the token or names someone else; any
// other error (the homeserver cannot be reached, a 5xx) as it came.
func (h *Homeserver) Whoami(ctx context.Context) error {
	bot := h.AS.BotClient()
	resp, err := bot.Whoami(context.WithValue(ctx, mautrix.MaxAttemptsContextKey, 1))
	if err = classify(err); errors.Is(err, ErrTokenRefused) {
		if wrong := h.wrongServerName(ctx); wrong != nil {
			return wrong
		}
		return err
	} else if err != nil {
		return fmt.Errorf("ask the homeserver whose the bridge's token is: %w", err)
	}
	if resp.UserID != bot.UserID {
		return &TokenRefusedError{Cause: fmt.Errorf("the homeserver says the token is %s's, not the bot %s's", resp.UserID, bot.UserID)}
	}
	return nil
}

// CheckToken is Whoami, noted (noteToken): for /health/ready and
// WatchToken. A yes stands for tokenCacheFor, so that frequent probes cost
// the homeserver little; anything else is asked again each time, to see
// the end of a refusal or an outage at once.
func (h *Homeserver) CheckToken(ctx context.Context) error {
	t := &h.token
	t.mu.Lock()
	fresh := !t.okAt.IsZero() && time.Since(t.okAt) < tokenCacheFor
	t.mu.Unlock()
	if fresh {
		return nil
	}
	err := h.Whoami(ctx)
	if err == nil {
		t.mu.Lock()
		t.okAt = time.Now()
		t.mu.Unlock()
	}
	h.noteToken(ctx, err)
	return err
}

// noteToken learns from the outcome of a request: a refusal of the token
// is logged once, at error level, with what to do, until a request goes
// through again, which is logged once too. Any other failure says nothing
// about the token.
func (h *Homeserver) noteToken(ctx context.Context, err error) {
	refused := errors.Is(err, ErrTokenRefused)
	t := &h.token
	if (err != nil && !refused) || t.refused.Load() == refused {
		return
	}
	t.mu.Lock()
	if t.refused.Load() == refused {
		t.mu.Unlock()
		return
	}
	t.refused.Store(refused)
	since := t.since
	t.since = time.Now()
	if refused {
		t.okAt = time.Time{} // a cached yes is stale
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}
	t.mu.Unlock()
	log := h.log(ctx).With().Str("registration", h.RegistrationPath).Logger()
	if refused {
		log.Error().Err(err).Msg("The homeserver does not know the bridge's token: give it the registration file and restart it. Sends to Matrix are held until it does")
	} else {
		log.Info().Dur("after", time.Since(since)).Msg("The homeserver accepts the bridge's token again; held sends go on")
	}
}

// classify is the package's classify, noted (noteToken): every request of
// the Homeserver ends here.
func (h *Homeserver) classify(ctx context.Context, err error) error {
	err = classify(err)
	h.noteToken(ctx, err)
	return err
}

// WatchToken asks the homeserver every so often (TokenRecheck), while it
// refuses the bridge's token, whether it knows it now, and calls wake once
// it does, so that the sends held meanwhile go at once rather than after
// the outbox's backoff. It returns when ctx ends.
func (h *Homeserver) WatchToken(ctx context.Context, every time.Duration, wake func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.token.changed:
		}
		for retry.Wait(ctx, every) {
			if h.CheckToken(ctx) == nil {
				wake()
				break
			}
		}
	}
}
