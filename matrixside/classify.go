package matrixside

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"maunium.net/go/mautrix"

	"xmppbridge/mapping"
)

// classify sorts the homeserver's failures for the outbox, each answer
// decided on purpose:
//   - ErrNotConnected holds the whole Matrix side, with backoff, until it
//     answers again: for what is wrong with every request alike. The
//     homeserver cannot be reached at all; its proxy says it is away (502,
//     503, 504); it refuses the bridge's token or registration
//     (TokenRefusedError, refusesToken); it has hit a resource limit its
//     administrator must lift (M_RESOURCE_LIMIT_EXCEEDED, client-server
//     API "Server notices").
//   - A plain error is that send's own trouble, retried in its lane with
//     backoff while the other lanes go on: rate limiting (429
//     M_LIMIT_EXCEEDED), a 408 from a proxy that gave up waiting, a 500 or
//     any other 5xx about one request, no answer in time.
//   - ErrPermanent drops the send, and the core tells the sender of a
//     message (mapping's sendToMatrix): the request is wrong and will be
//     the same next time. 400 (M_BAD_JSON, M_NOT_JSON, M_INVALID_PARAM,
//     M_UNKNOWN: what was sent), 403 about a room (M_FORBIDDEN: the ghost
//     is not in it or may not post; M_USER_DEACTIVATED), 401
//     M_USER_LOCKED (one user locked by an administrator), 404
//     (M_NOT_FOUND, M_UNRECOGNIZED), 405, 409 and any other 4xx, and 501
//     (the homeserver does not implement the request). 413, or
//     M_TOO_LARGE, is ErrTooLarge too: its sender is told to send less.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) && httpErr.Response != nil {
		code, errcode := httpErr.Response.StatusCode, ""
		if httpErr.RespError != nil {
			errcode = httpErr.RespError.ErrCode
		}
		switch {
		case refusesToken(code, httpErr.RespError):
			return &TokenRefusedError{Cause: err}
		case code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
			return fmt.Errorf("%w: %w", mapping.ErrNotConnected, err)
		case errcode == "M_RESOURCE_LIMIT_EXCEEDED":
			return fmt.Errorf("%w: the homeserver is over a limit its administrator set: %w", mapping.ErrNotConnected, err)
		case code == http.StatusRequestEntityTooLarge || errcode == "M_TOO_LARGE":
			// Too large for the homeserver (Dendrite: 413 M_BAD_JSON;
			// Synapse: 413 M_TOO_LARGE): the core tells the sender.
			return fmt.Errorf("%w: %w: %w", mapping.ErrTooLarge, mapping.ErrPermanent, err)
		case code == http.StatusTooManyRequests || errcode == "M_LIMIT_EXCEEDED", code == http.StatusRequestTimeout:
			return err
		case code >= 400 && code < 500, code == http.StatusNotImplemented:
			return fmt.Errorf("%w: %w", mapping.ErrPermanent, err)
		}
		return err
	}
	if unreachable(err) {
		return fmt.Errorf("%w: %w", mapping.ErrNotConnected, err)
	}
	return err
}

// unreachable tells a request that never got an answer because the
// homeserver could not be reached (refused, reset, closed, no route) from
// one that ran out of time or was cancelled, which says nothing about the
// other requests.
func unreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return false
	}
	var opErr *net.OpError
	var urlErr *url.Error
	return errors.As(err, &opErr) || errors.As(err, &urlErr)
}
