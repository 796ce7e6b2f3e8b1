package matrixside

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// sendEvent sends content as an event of type typ to room, as cli, under
// transaction ID txnID: mautrix's SendMessageEvent without its request
// machinery (URL building, the request's own JSON and log fields, reading
// the answer into a struct), which cost a delivery status more than the
// rest of its send on the path every homeserver takes (a status event a
// delivery receipt; no homeserver has MSC4089). Its failures are
// mautrix's own errors (mautrix.HTTPError, with the homeserver's
// RespError), so that classify, and errors.Is with mautrix's codes, read
// them alike. It does not retry: the outbox does.
func sendEvent(ctx context.Context, cli *mautrix.Client, room id.RoomID, typ event.Type, txnID string, content any) error {
	body, err := json.Marshal(content)
	if err != nil {
		return err
	}
	var u strings.Builder
	u.WriteString(strings.TrimSuffix(cli.HomeserverURL.String(), "/"))
	u.WriteString("/_matrix/client/v3/rooms/")
	u.WriteString(url.PathEscape(string(room)))
	u.WriteString("/send/")
	u.WriteString(url.PathEscape(typ.Type))
	u.WriteByte('/')
	u.WriteString(url.PathEscape(txnID))
	if cli.SetAppServiceUserID {
		u.WriteString("?user_id=")
		u.WriteString(url.QueryEscape(string(cli.UserID)))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cli.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	if cli.UserAgent != "" {
		req.Header.Set("User-Agent", cli.UserAgent)
	}
	resp, err := cli.Client.Do(req)
	if err != nil {
		return mautrix.HTTPError{Request: req, WrappedError: err, Message: "request error"}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, err := mautrix.ParseErrorResponse(req, resp) // closes the body
		return err
	}
	// Drained, so that the connection is used again.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return nil
}
