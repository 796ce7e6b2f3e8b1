package matrixside

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"

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
}

// ChooseMode resolves "auto" by asking the homeserver what it is (the
// federation version endpoint, which every homeserver serves): Synapse and
// Tuwunel push ephemeral events, the others are synced.
func ChooseMode(ctx context.Context, as *appservice.AppService, mode string, log zerolog.Logger) string {
	if mode != EphemeralAuto {
		log.Info().Str("ephemeral", mode).Msg("Matrix receipts: as configured")
		return mode
	}
	name, err := serverName(ctx, as)
	chosen := EphemeralSync
	switch strings.ToLower(name) {
	case "synapse", "tuwunel":
		chosen = EphemeralPush
	}
	log.Info().Str("server", name).AnErr("error", err).Str("ephemeral", chosen).
		Msg("Matrix receipts: chose how to get them from what the homeserver is")
	return chosen
}

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

// Run syncs until ctx ends, resuming from the stored token.
func (s *Syncer) Run(ctx context.Context) {
	bot := s.AS.BotClient()
	var filterID string
	since, _ := s.KV.GetKV(ctx, syncTokenKey)
	backoff := retry.Backoff{First: time.Second, Max: time.Minute}
	for ctx.Err() == nil {
		err := s.syncOnce(ctx, bot, &filterID, &since)
		if err == nil {
			backoff.Reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		wait := backoff.Next()
		s.Log.Warn().Err(err).Dur("retry_in", wait).Msg("Sync for receipts failed")
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
	resp, err := bot.FullSyncRequest(ctx, mautrix.ReqSync{Timeout: 30000, Since: *since, FilterID: *filterID, SetPresence: event.PresenceOffline})
	if err != nil {
		return err
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
		if _, err := s.Store.PutTxn(ctx, txn); err != nil {
			return fmt.Errorf("store synced receipts: %w", err)
		}
		s.Server.Enqueue(id)
	}
	if err := s.KV.SetKV(ctx, syncTokenKey, resp.NextBatch); err != nil {
		return fmt.Errorf("store sync token: %w", err)
	}
	*since = resp.NextBatch
	return nil
}

// decodeSynced reads the ephemeral events and the redactions of a /sync
// response into the core's values, by the decoders of pushed ones
// (decodeEphemeral, decodeList), so that they are stored as those are:
// the same inbox, the same path. A redaction the homeserver also pushed
// is translated once: its event id is in the id map.
func (s *Server) decodeSynced(resp *mautrix.RespSync) mapping.MatrixTxn {
	var raws, events []json.RawMessage
	for room, r := range resp.Rooms.Join {
		if r == nil {
			continue
		}
		for _, evt := range r.Timeline.Events {
			if evt == nil || evt.Type != event.EventRedaction {
				continue
			}
			evt.RoomID = room
			if raw, err := json.Marshal(evt); err == nil {
				events = append(events, raw)
			}
		}
		for _, evt := range r.Ephemeral.Events {
			if evt == nil {
				continue
			}
			evt.RoomID = room
			if raw, err := json.Marshal(evt); err == nil {
				raws = append(raws, raw)
			}
		}
	}
	var out mapping.MatrixTxn
	s.decodeEphemeral(mapping.SyncedPrefix+resp.NextBatch, raws, &out)
	if len(events) > 0 {
		out.Events = s.decodeList(mapping.SyncedPrefix+resp.NextBatch, events)
	}
	return out
}
