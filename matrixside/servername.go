package matrixside

import (
	"context"
	"errors"
	"fmt"

	"maunium.net/go/mautrix"
)

// ErrWrongServerName means that homeserver.domain is not the homeserver's
// server name: every user ID the bridge makes (its bot's, its ghosts')
// names a server the homeserver is not, so the homeserver refuses them
// all, whatever registration it holds. Giving it the registration again
// would change nothing.
var ErrWrongServerName = errors.New("homeserver.domain is not the homeserver's server name")

// ServerNameError is ErrWrongServerName with both names.
type ServerNameError struct {
	Configured, Actual string
	Bot                string // the user ID the homeserver says the bridge's token is
}

func (e *ServerNameError) Error() string {
	return fmt.Sprintf("homeserver.domain is %q but the homeserver's server name is %q (it knows the bridge's token as %s): correct homeserver.domain in the config, write the registration again (bridge -g) and give it to the homeserver, restart it, then start the bridge again",
		e.Configured, e.Actual, e.Bot)
}

func (e *ServerNameError) Is(target error) bool { return target == ErrWrongServerName }

// wrongServerName tells, after the homeserver refused the bot's token,
// whether the refusal is a misnamed server rather than an unknown token:
// asked whoami with the as_token alone (no user_id to masquerade as), a
// homeserver answers with the registration's sender on its own server
// name (the application service API, "Identity assertion"). An answer on
// another domain than homeserver.domain is a ServerNameError; no answer
// leaves the refusal as it was (nil).
func (h *Homeserver) wrongServerName(ctx context.Context) error {
	cli := h.AS.NewMautrixClient("")
	cli.SetAppServiceUserID = false
	resp, err := cli.Whoami(ownFailures(context.WithValue(ctx, mautrix.MaxAttemptsContextKey, 1), *h.log(ctx)))
	if err != nil {
		return nil
	}
	if server := resp.UserID.Homeserver(); server != "" && server != h.IDs.HomeserverDomain {
		return &ServerNameError{Configured: h.IDs.HomeserverDomain, Actual: server, Bot: string(resp.UserID)}
	}
	return nil
}
