package matrixside

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/retry"
	"xmppbridge/internal/safely"
	"xmppbridge/mapping"
)

// Ways Matrix receipts reach the bridge (appservice.ephemeral).
const (
	EphemeralPush = "push" // pushed in transactions (MSC2409)
	EphemeralSync = "sync" // read by the bot's own /sync
	EphemeralAuto = "auto" // decided from what the homeserver is
)

// KV is where the sync token is kept.
type KV interface {
	GetKV(ctx context.Context, key string) (string, error)
	SetKV(ctx context.Context, key, value string) error
}

const syncTokenKey = "sync.next_batch"

// Syncer reads m.receipt and m.typing of the portals with the bot's /sync,
// for homeservers that push no ephemeral events to application services
// (Dendrite, continuwuity). What it reads takes the transactions' way: it
// is stored in the inbox as a transaction of its own, then processed by
// Server.Run, so that a receipt seen both pushed and synced, or replayed
// after a crash, is translated once.
type Syncer struct {
	AS     *appservice.AppService
	Store  Inbox
	KV     KV
	Server *Server
	Log    zerolog.Logger
	guard  safely.Guard // a response that panics its decoder is skipped
	// retryFirst, outageGrace and outageEvery replace the first wait
	// after a failure and how an outage is said (Run) when set (tests).
	retryFirst, outageGrace, outageEvery time.Duration
}

// ChooseMode resolves "auto" by asking the homeserver what it is (the
// federation version endpoint): Synapse and Tuwunel push ephemeral events,
// the others are synced. A homeserver that does not answer it (federation
// off, or its federation API served elsewhere) is synced too, which works
// on every homeserver: an expected fallback, said at info with the reason.
func ChooseMode(ctx context.Context, as *appservice.AppService, mode string, log zerolog.Logger) string {
	if mode != EphemeralAuto {
		log.Info().Str("ephemeral", mode).Msg("Matrix receipts: as configured")
		return mode
	}
	name, err := serverName(ownFailures(ctx, log), as)
	var answered mautrix.HTTPError
	switch {
	case err == nil && pushes(name):
		log.Info().Str("server", name).Str("ephemeral", EphemeralPush).
			Msg("Matrix receipts: this homeserver pushes them to application services; ephemeral: auto chose push")
		return EphemeralPush
	case err == nil:
		log.Info().Str("server", name).Str("ephemeral", EphemeralSync).
			Msg("Matrix receipts: this homeserver pushes none to application services; ephemeral: auto chose sync, the bot reads them with /sync")
	case errors.As(err, &answered) && answered.Response != nil:
		log.Info().Str("probe", federationVersion).Str("answer", err.Error()).Str("ephemeral", EphemeralSync).
			Msg("Matrix receipts: the homeserver does not say what it is (no federation API here, as with federation off); ephemeral: auto chose sync, which works on every homeserver (set appservice.ephemeral: push for one that pushes them)")
	default:
		log.Warn().Err(err).Str("probe", federationVersion).Str("ephemeral", EphemeralSync).
			Msg("Matrix receipts: could not ask the homeserver what it is; ephemeral: auto chose sync, which works on every homeserver")
	}
	return EphemeralSync
}

// pushes tells whether a homeserver of this name pushes ephemeral events
// to application services (MSC2409).
func pushes(name string) bool {
	switch strings.ToLower(name) {
	case "synapse", "tuwunel":
		return true
	}
	return false
}

const federationVersion = "/_matrix/federation/v1/version"

func serverName(ctx context.Context, as *appservice.AppService) (string, error) {
	var resp struct {
		Server struct {
			Name string `json:"name"`
		} `json:"server"`
	}
	cli := as.BotClient()
	u := cli.BuildURL(mautrix.BaseURLPath{"_matrix", "federation", "v1", "version"})
	_, err := cli.MakeFullRequest(ctx, mautrix.FullRequest{Method: http.MethodGet, URL: u, ResponseJSON: &resp, MaxAttempts: 1})
	if err != nil {
		return "", err
	}
	return resp.Server.Name, nil
}

// ownFailures is ctx with log for mautrix's requests, less mautrix's own
// line for a request that failed (at error level) or was cancelled (at
// warn): the caller says what the failure means, once. A /sync cut by
// the bridge's stop means nothing, and a probe that finds no federation
// API is an expected answer.
func ownFailures(ctx context.Context, log zerolog.Logger) context.Context {
	return log.Hook(zerolog.HookFunc(func(e *zerolog.Event, _ zerolog.Level, msg string) {
		if msg == "Request failed" || msg == "Request canceled" {
			e.Discard()
		}
	})).WithContext(ctx)
}

// How the sync's troubles are said: failures for less than syncGrace (a
// homeserver restarting) at debug; longer, once at warn, then a summary
// every syncSummaryEvery, and its end at info.
const (
	syncGrace        = 30 * time.Second
	syncSummaryEvery = 10 * time.Minute
)

// Run syncs until ctx ends, resuming from the stored token.
func (s *Syncer) Run(ctx context.Context) {
	bot := s.AS.BotClient()
	var filterID string
	since, _ := s.KV.GetKV(ctx, syncTokenKey)
	first := s.retryFirst
	if first == 0 {
		first = time.Second
	}
	backoff := retry.Backoff{First: first, Max: max(first, time.Minute)}
	grace, every := syncGrace, syncSummaryEvery
	if s.outageEvery != 0 {
		grace, every = s.outageGrace, s.outageEvery
	}
	outage := retry.Outage{Grace: grace, Every: every}
	reqCtx := ownFailures(ctx, s.Log)
	for ctx.Err() == nil {
		err := s.syncOnce(reqCtx, bot, &filterID, &since)
		if err == nil {
			if said, tries, from := outage.End(); said {
				s.Log.Info().Int("tries", tries).Dur("after", time.Since(from)).Msg("Sync for receipts works again")
			}
			backoff.Reset()
			continue
		}
		if ctx.Err() != nil {
			return // stopping: a request cut short is no failure
		}
		wait := backoff.Next()
		now := time.Now()
		switch outage.Fail(now) {
		case retry.First:
			s.Log.Warn().Err(err).Dur("retry_in", wait).Dur("for", now.Sub(outage.Since())).Msg("Sync for receipts fails; trying again with backoff")
		case retry.Summary:
			s.Log.Warn().Err(err).Int("tries", outage.Tries()).Dur("for", now.Sub(outage.Since())).Msg("Sync for receipts still fails")
		default:
			// The first try of each outage is worth an info line (a
			// homeserver restarting); not the others.
			ev := s.Log.Debug()
			if outage.Tries() == 1 {
				ev = s.Log.Info()
			}
			ev.AnErr("why", err).Dur("retry_in", wait).Msg("Sync for receipts failed; trying again")
		}
		if !retry.Wait(ctx, wait) {
			return
		}
	}
}

func (s *Syncer) syncOnce(ctx context.Context, bot *mautrix.Client, filterID, since *string) error {
	if *filterID == "" {
		// Ephemeral events of the rooms, and of their timelines only the
		// redactions (Dendrite pushes every other room event, but drops
		// redactions before its application service stream); no state,
		// account data or presence.
		none := &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}}
		redactions := &mautrix.FilterPart{Types: []event.Type{event.EventRedaction}, Limit: 100}
		resp, err := bot.CreateFilter(ctx, &mautrix.Filter{
			AccountData: none, Presence: none,
			Room: &mautrix.RoomFilter{
				AccountData: none, State: none, Timeline: redactions,
				Ephemeral: &mautrix.FilterPart{Types: []event.Type{event.EphemeralEventReceipt, event.EphemeralEventTyping}},
			},
		})
		if err != nil {
			return fmt.Errorf("create sync filter: %w", err)
		}
		*filterID = resp.FilterID
	}
	// Read into syncResponse, not mautrix's RespSync: the events are
	// decoded once, by the decoders of pushed ones, instead of into
	// mautrix's types, back into JSON and again (a burst of receipts
	// through /sync cost three times the CPU of the same pushed).
	req := mautrix.ReqSync{Timeout: 30000, Since: *since, FilterID: *filterID, SetPresence: event.PresenceOffline}
	var resp *syncResponse
	if _, err := bot.MakeFullRequest(ctx, mautrix.FullRequest{
		Method:       http.MethodGet,
		URL:          bot.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, req.BuildQuery()),
		ResponseJSON: &resp,
		MaxAttempts:  1, // Run's backoff retries
	}); err != nil {
		return err
	}
	if resp == nil {
		return fmt.Errorf("sync: an empty answer")
	}
	// A response that panics its decoder would do so again after every
	// restart, the token never passing it: its receipts are given up
	// (counted, logged) and the sync goes on past it.
	var out mapping.MatrixTxn
	if err := s.guard.Run(&s.Log, s.Server.Count, "sync_decode", func() error { out = s.Server.decodeSynced(resp); return nil }); err != nil {
		out = mapping.MatrixTxn{}
	}
	if len(out.Receipts) > 0 || len(out.Typing) > 0 || len(out.Events) > 0 {
		// The batch token names the batch: a replay after a crash stores
		// the same id, which the inbox recognises.
		id := mapping.SyncedPrefix + resp.NextBatch
		txn, err := mapping.NewDecodedTxn(id, out)
		if err != nil {
			return err
		}
		// Kept decoded for the processor, as a pushed transaction is
		// (Server.decoded), unless it holds redactions: an event's stored
		// form, read back, is what the processor takes.
		var kept *keptTxn
		if len(out.Events) == 0 {
			kept = s.Server.expectDecoded(id)
		}
		isNew, err := s.Store.PutTxn(ctx, txn)
		if err != nil {
			kept.settle(mapping.MatrixTxn{}, false)
			return fmt.Errorf("store synced receipts: %w", err)
		}
		out.ID = id
		kept.settle(out, isNew)
		s.Log.Debug().Str("txn", id).Int("receipts", len(out.Receipts)).Int("typing", len(out.Typing)).Int("events", len(out.Events)).Msg("Synced")
		s.Server.Enqueue(id)
	}
	if err := s.KV.SetKV(ctx, syncTokenKey, resp.NextBatch); err != nil {
		return fmt.Errorf("store sync token: %w", err)
	}
	*since = resp.NextBatch
	return nil
}

// syncResponse is what the bridge reads of a /sync response: the batch
// token, and each joined room's ephemeral events and timeline (only the
// redactions pass the filter), left as JSON for the decoders.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[id.RoomID]*struct {
			Timeline struct {
				Events []json.RawMessage `json:"events"`
			} `json:"timeline"`
			Ephemeral struct {
				Events []json.RawMessage `json:"events"`
			} `json:"ephemeral"`
		} `json:"join"`
	} `json:"rooms"`
}

// decodeSynced reads the ephemeral events and the redactions of a /sync
// response into the core's values, by the decoders of pushed ones
// (decodeEphemeral, decodeList), told each event's room (a synced event
// has none of its own), so that they are stored as those are: the same
// inbox, the same path. A redaction the homeserver also pushed is
// translated once: its event id is in the id map.
func (s *Server) decodeSynced(resp *syncResponse) mapping.MatrixTxn {
	var out mapping.MatrixTxn
	txnID := mapping.SyncedPrefix + resp.NextBatch
	for room, r := range resp.Rooms.Join {
		if r == nil {
			continue
		}
		s.decodeEphemeral(txnID, room, r.Ephemeral.Events, &out)
		if len(r.Timeline.Events) > 0 {
			// The filter lets only redactions through; anything else a
			// homeserver sends anyway is dropped here, as before.
			for _, ev := range s.decodeList(txnID, room, r.Timeline.Events) {
				if ev.Type == event.EventRedaction.Type {
					out.Events = append(out.Events, ev)
				}
			}
		}
	}
	return out
}
