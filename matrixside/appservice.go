// Package matrixside is the bridge's Matrix application service: it takes
// the homeserver's transactions (storing each before answering), and acts
// for the ghosts and the bot through mautrix's intents.
package matrixside

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/internal/retry"
	"xmppbridge/internal/safely"
	"xmppbridge/mapping"
)

// DefaultMaxTxnBytes bounds a transaction body (limits.max_transaction_mib);
// Synapse sends at most 100 PDUs and 100 EDUs per transaction, far below
// this.
const DefaultMaxTxnBytes = 64 << 20

// Inbox is where the Server keeps the homeserver's transactions until the
// core has processed them.
type Inbox interface {
	// PutTxn stores a transaction; false if its id was seen before.
	PutTxn(ctx context.Context, txn *mapping.Txn) (bool, error)
	// PendingTxns returns the oldest limit transactions not processed yet
	// (all if limit is not positive), in arrival order, stopping early
	// once their bodies reach maxBytes (if positive; at least one).
	PendingTxns(ctx context.Context, limit, maxBytes int) ([]*mapping.Txn, error)
}

// Core is what the Server asks of the bridge's core (*mapping.Bridge),
// declared by its user so that the Matrix side depends on these calls and
// nothing else of the core (docs/architecture.md, "The packages").
type Core interface {
	// HandleMatrixTxns processes stored transactions as one.
	HandleMatrixTxns(ctx context.Context, txns []mapping.MatrixTxn) error
	// CannotSucceed tells whether err, from HandleMatrixTxns, can never
	// succeed however often it is tried, and why.
	CannotSucceed(err error) (mapping.Reason, bool)
	// SetAsideTxn sets aside for good a transaction that cannot succeed,
	// for reason, and marks it done.
	SetAsideTxn(ctx context.Context, txnID string, reason mapping.Reason, cause error) error
	Identities() mapping.Identities
	// QueryAlias tells whether a room alias in the bridge's namespace
	// exists, its room made if it may be.
	QueryAlias(ctx context.Context, alias id.RoomAlias) (bool, error)
}

// Server answers the homeserver's application service API.
type Server struct {
	HSToken string
	Store   Inbox
	Core    Core
	Count   mapping.Counter
	Log     zerolog.Logger
	guard   safely.Guard // a panic in processing fails that work only

	queue chan string
	// MaxTxnBytes bounds a transaction's body (zero: DefaultMaxTxnBytes).
	MaxTxnBytes int64
	// HoldFor is how long a transaction that cannot be stored is tried
	// again before it is answered 500 (zero: DefaultHoldFor).
	HoldFor time.Duration
	// holding: transactions are being held (said once per outage), under
	// holdMu: requests store their transactions side by side.
	holdMu  sync.Mutex
	holding retry.Outage
	// readFailing: the processor cannot read the inbox (Run's only).
	readFailing retry.Outage
	// handleTxns stands in for Core.HandleMatrixTxns in tests, if set.
	handleTxns func(ctx context.Context, txns []mapping.MatrixTxn) error
	// decoded keeps what putTransaction decoded of a new transaction (and
	// the syncer of a batch) until the processor takes it (decode), so that
	// a body is parsed once on its way in; a transaction read back from the
	// store without an entry here (after a restart) is decoded from its
	// body. An entry is made before the transaction is stored, and the
	// processor that finds the transaction before its decoding is done
	// waits for it instead of parsing the body a second time.
	decodedMu sync.Mutex
	decoded   map[string]*keptTxn
}

// keptTxn is a transaction's decoded form, once done is closed; ok false
// if there is none (its store failed, or it was seen before).
type keptTxn struct {
	done chan struct{}
	txn  mapping.MatrixTxn
	ok   bool
}

// settle hands k its decoded form (ok) or none, once.
func (k *keptTxn) settle(txn mapping.MatrixTxn, ok bool) {
	if k == nil {
		return
	}
	k.txn, k.ok = txn, ok
	close(k.done)
}

// maxDecoded bounds Server.decoded: past it, transactions are decoded
// from their stored bodies, as after a restart.
const maxDecoded = 1024

// DefaultHoldFor keeps a transaction the database cannot take yet (it
// restarts, the disk is full) waiting in its request, within the 30 s
// Dendrite gives a request, rather than answer 500 at once: Dendrite v0.15.2
// takes a 500 as a failed batch and, by the time it resends it, has lost
// the events that came behind it (seen with PostgreSQL restarted under
// load: 20 of 30 messages never pushed again).
const DefaultHoldFor = 20 * time.Second

// holdRetry is how often a held transaction is tried again.
const holdRetry = 250 * time.Millisecond

// NewServer makes the application service API server.
func NewServer(hsToken string, store Inbox, core Core, count mapping.Counter, log zerolog.Logger) *Server {
	return &Server{HSToken: hsToken, Store: store, Core: core, Count: count, Log: log, queue: make(chan string, 1024)}
}

// txnBody is the JSON of a transaction (application service API, PUT
// /transactions). Ephemeral events come under the stable name or MSC2409's.
type txnBody struct {
	Events          []json.RawMessage `json:"events"`
	Ephemeral       []json.RawMessage `json:"ephemeral"`
	MSC2409Ephemera []json.RawMessage `json:"de.sorunome.msc2409.ephemeral"`
}

// Handler is the HTTP handler of the application service API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, prefix := range []string{"/_matrix/app/v1", ""} { // "" is the legacy path
		mux.HandleFunc("PUT "+prefix+"/transactions/{txnID}", s.putTransaction)
		mux.HandleFunc("GET "+prefix+"/users/{userID}", s.queryUser)
		mux.HandleFunc("GET "+prefix+"/rooms/{alias}", s.queryAlias)
	}
	mux.HandleFunc("POST /_matrix/app/v1/ping", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, struct{}{}) })
	return s.authenticate(mux)
}

// authenticate puts the spec's answers in front of everything: no token is
// 401 M_UNAUTHORIZED, a wrong one 403 M_FORBIDDEN (mautrix's own check would
// say 401 M_UNKNOWN_TOKEN), an unknown route 404 M_UNRECOGNIZED.
func (s *Server) authenticate(next *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := next.Handler(r); pattern == "" {
			writeError(w, http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
			return
		}
		token := r.URL.Query().Get("access_token")
		if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
			token = strings.TrimPrefix(auth, "Bearer ")
		}
		switch {
		case token == "":
			s.Count("as_request", "no_token")
			writeError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "Missing access token")
		case subtle.ConstantTimeCompare([]byte(token), []byte(s.HSToken)) != 1:
			s.Count("as_request", "bad_token")
			s.Log.Warn().Str("remote", r.RemoteAddr).Msg("Refused a request with a wrong hs_token")
			writeError(w, http.StatusForbidden, "M_FORBIDDEN", "Bad hs_token")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// putTransaction makes the transaction durable, then answers 200; only then
// is it processed, so a crash at any instant loses nothing the homeserver
// believes delivered, and a re-sent transaction is processed once.
func (s *Server) putTransaction(w http.ResponseWriter, r *http.Request) {
	txnID := r.PathValue("txnID")
	if ct := r.Header.Get("Content-Type"); ct != "" {
		// The application service API's bodies are JSON; a homeserver
		// never labels one otherwise (one without a label is read).
		if typ, _, err := mime.ParseMediaType(ct); err != nil || typ != "application/json" {
			s.Count("as_txn", "wrong_content_type")
			s.Log.Warn().Str("txn_id", txnID).Str("content_type", ct).Msg("Refused a transaction that is not labelled JSON")
			writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Transaction body must be application/json, not "+ct)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxTxn()))
	var tooLarge *http.MaxBytesError
	if err != nil && !errors.As(err, &tooLarge) {
		// Cut off (apiReadTimeout) or gone: not stored, so not
		// acknowledged, and the homeserver sends it again.
		s.Count("as_txn", "unread")
		s.Log.Warn().Err(err).Str("txn_id", txnID).Msg("Could not read a transaction's body")
		writeError(w, http.StatusRequestTimeout, "M_UNKNOWN", "Could not read the transaction body in time")
		return
	} else if err != nil {
		s.Count("as_txn", "too_large")
		s.Log.Warn().Str("txn_id", txnID).Int64("limit_bytes", s.maxTxn()).Msg("Refused a transaction over limits.max_transaction_mib")
		writeError(w, http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "Transaction too large")
		return
	}
	var parsed txnBody
	if err := json.Unmarshal(body, &parsed); err != nil {
		s.Count("as_txn", "bad_json")
		s.Log.Warn().Err(err).Str("txn_id", txnID).Msg("Refused a transaction that is not valid JSON")
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Transaction body is not valid JSON: "+err.Error())
		return
	}
	kept := s.expectDecoded(txnID) // before it can be found stored
	isNew, err := s.storeTxn(r.Context(), &mapping.Txn{ID: txnID, Body: body})
	if !isNew || err != nil {
		kept.settle(mapping.MatrixTxn{}, false)
	}
	if err != nil {
		// Not stored, so not acknowledged: the homeserver will retry.
		s.Log.Err(err).Str("txn_id", txnID).Msg("Failed to store transaction")
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "Failed to store transaction")
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
	if isNew {
		s.Count("as_txn", "accepted")
	} else {
		s.Count("as_txn", "duplicate")
	}
	if isNew {
		// Decoded once, here, off the request (the homeserver sends the
		// next transaction when it has this one's answer), and kept for the
		// processor, which it then wakes. Should the processor find the
		// transaction first, it waits for this (takeDecoded).
		go func() {
			var txn mapping.MatrixTxn
			defer func() { kept.settle(txn, txn.ID != "") }() // a panic settles too: the body is read again
			txn = s.decodeBody(txnID, parsed)
			if kept == nil {
				s.keepDecoded(txn)
			}
			s.Enqueue(txnID)
		}()
		return
	}
	// Even a transaction seen before: a store that failed as it answered
	// may have kept it (seen before, then, by the retry that stored it),
	// and it is pending; the processor finds nothing to do for one done.
	s.Enqueue(txnID)
}

func (s *Server) maxTxn() int64 {
	if s.MaxTxnBytes > 0 {
		return s.MaxTxnBytes
	}
	return DefaultMaxTxnBytes
}

// storeTxn stores txn, trying again every holdRetry for up to HoldFor
// while the store fails (and the homeserver still waits for the answer).
func (s *Server) storeTxn(ctx context.Context, txn *mapping.Txn) (bool, error) {
	hold := s.holdFor()
	var isNew bool
	err := retry.Hold(ctx, hold, holdRetry, func() error {
		var err error
		if isNew, err = s.Store.PutTxn(ctx, txn); err != nil && s.holdFailed() {
			s.Log.Warn().Err(err).Dur("for_up_to", hold).Msg("Cannot store transactions; holding the homeserver's requests until the database takes them")
		}
		return err
	})
	if err == nil && s.holdEnded() {
		s.Log.Info().Msg("Transactions are stored again")
	}
	return isNew, err
}

// holdFailed notes a failed try to store a transaction: true if it is the
// first of an outage, to be said.
func (s *Server) holdFailed() bool {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	return s.holding.Fail(time.Now()) == retry.First
}

// holdEnded notes a transaction stored: true if it ends an outage that
// was said.
func (s *Server) holdEnded() bool {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	said, _, _ := s.holding.End()
	return said
}

func (s *Server) holdFor() time.Duration {
	if s.HoldFor > 0 {
		return s.HoldFor
	}
	return DefaultHoldFor
}

// Enqueue tells the processor that a stored transaction waits.
func (s *Server) Enqueue(txnID string) {
	select {
	case s.queue <- txnID:
	default:
		// The processor is behind; it rereads pending transactions anyway.
	}
}

// queryUser answers the homeserver's question whether a user in our
// namespace exists: every ghost does.
func (s *Server) queryUser(w http.ResponseWriter, r *http.Request) {
	if s.Core.Identities().IsGhost(id.UserID(r.PathValue("userID"))) {
		writeJSON(w, http.StatusOK, struct{}{})
		return
	}
	writeError(w, http.StatusNotFound, "M_NOT_FOUND", "No such user")
}

// queryAlias answers the homeserver's question whether a room alias in
// our namespace exists (application service API, "Querying room
// aliases"): 200 once the room has it, 404 if the bridge will not make
// it; the core bounds how long it takes and how many are under way.
func (s *Server) queryAlias(w http.ResponseWriter, r *http.Request) {
	alias := id.RoomAlias(r.PathValue("alias"))
	exists, err := s.Core.QueryAlias(r.Context(), alias)
	switch {
	case err != nil:
		s.Count("alias_query", "failed")
		s.Log.Err(err).Str("alias", string(alias)).Msg("Failed to make the room of an alias")
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "Could not make the room")
	case exists:
		writeJSON(w, http.StatusOK, struct{}{})
	default:
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "No such room alias")
	}
}

// Run processes stored transactions in order until ctx ends: first those a
// previous run left unfinished, then each new one as it arrives.
func (s *Server) Run(ctx context.Context) {
	for {
		// Pending transactions are looked at every 5 s anyway, and a
		// second after a round that failed (the database was away).
		wait := 5 * time.Second
		if !s.processPending(ctx) {
			wait = time.Second
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-s.queue:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// maxTxnGroup is how many decoded transactions are handled as one at most.
const maxTxnGroup = 16

// pendingBatch is how many stored transactions are read at once, and
// pendingBytes how many bytes of them: after an outage thousands may be
// pending, of up to DefaultMaxTxnBytes each, and memory must not grow with them
// (64 of the largest would be 4 GiB; this way a batch holds at most
// pendingBytes and one more transaction).
const (
	pendingBatch = 64
	pendingBytes = DefaultMaxTxnBytes
)

// processPending handles the stored transactions not processed yet, oldest
// first, a batch at a time, until none is left; false if a round failed
// (they stay pending). A database that is away is said once, not once per
// round.
func (s *Server) processPending(ctx context.Context) bool {
	for ctx.Err() == nil {
		txns, err := s.Store.PendingTxns(ctx, pendingBatch, pendingBytes)
		if err != nil {
			if s.readFailing.Fail(time.Now()) == retry.First && ctx.Err() == nil {
				s.Log.Err(err).Msg("Failed to read pending transactions; trying again every second")
			}
			return false
		}
		if said, _, _ := s.readFailing.End(); said {
			s.Log.Info().Msg("Pending transactions are read again")
		}
		if !s.processBatch(ctx, txns) {
			return false
		}
		if len(txns) == 0 {
			// Nothing pending: what is still kept decoded was processed
			// from its body, or was never stored.
			s.forgetDecoded()
			return true
		}
	}
	return true
}

// processBatch handles txns in order; false if one failed (it and those
// after it stay pending for the next round).
func (s *Server) processBatch(ctx context.Context, txns []*mapping.Txn) bool {
	// Decoding runs ahead of handling, on another goroutine: the two are
	// the bulk of the work and independent. Transactions are handled in
	// order, those decoded already together (the core records their
	// receipts at once).
	ahead := make(chan mapping.MatrixTxn, maxTxnGroup)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for _, txn := range txns {
			select {
			case ahead <- s.decode(txn):
			case <-stop:
				return
			}
		}
	}()
	for left := len(txns); left > 0; {
		group := []mapping.MatrixTxn{<-ahead}
	more:
		for len(group) < min(left, maxTxnGroup) {
			select {
			case t := <-ahead:
				group = append(group, t)
			default:
				break more
			}
		}
		left -= len(group)
		err := s.handle(ctx, group)
		if reason, ok := s.Core.CannotSucceed(err); ok && len(group) == 1 {
			err = s.Core.SetAsideTxn(ctx, group[0].ID, reason, err)
		} else if ok {
			// The core sets aside an event that fails for its data; this
			// failure it could not pin on one. One by one, the transaction
			// that fails alone is set aside, and the others go on.
			err = s.handleEach(ctx, group)
		}
		if err != nil {
			// Left pending: retried on the next round, nothing lost.
			if ctx.Err() == nil {
				s.Log.Err(err).Str("txn_id", group[0].ID).Int("transactions", len(group)).Msg("Failed to process transactions; will retry")
			}
			return false
		}
	}
	return true
}

// handle has the core process group, a panic included: it fails the
// group, not the bridge.
func (s *Server) handle(ctx context.Context, group []mapping.MatrixTxn) error {
	return s.guard.Run(&s.Log, s.Count, "matrix_transactions", func() error {
		if s.handleTxns != nil {
			return s.handleTxns(ctx, group)
		}
		return s.Core.HandleMatrixTxns(ctx, group)
	})
}

// handleEach processes group's transactions one at a time, setting aside
// each one that fails for its data; it stops at the first failure of the
// store (that transaction and those after it stay pending).
func (s *Server) handleEach(ctx context.Context, group []mapping.MatrixTxn) error {
	for _, txn := range group {
		err := s.handle(ctx, []mapping.MatrixTxn{txn})
		if reason, ok := s.Core.CannotSucceed(err); ok {
			err = s.Core.SetAsideTxn(ctx, txn.ID, reason, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decode reads a stored transaction: a homeserver's (decodeEvents), or an
// entry the bridge wrote itself, already decoded (receipts the core parked
// and handed back, receipts and typing read by /sync: mapping.DecodedTxn).
func (s *Server) decode(txn *mapping.Txn) mapping.MatrixTxn {
	if kept, ok := s.takeDecoded(txn.ID); ok {
		return kept
	}
	decoded, ok, err := mapping.DecodedTxn(txn)
	if err != nil {
		s.Count("as_txn", "bad_json")
		s.Log.Warn().Err(err).Str("txn_id", txn.ID).Msg("Dropped an inbox entry that cannot be read")
	}
	if ok {
		decoded.ID = txn.ID
		return decoded
	}
	return s.decodeEvents(txn)
}

// decodeEvents reads a homeserver's transaction: its events, and its
// ephemeral events (under the stable name or MSC2409's) as receipts and
// typing. A bad event is counted and skipped: the rest of the transaction
// still counts.
func (s *Server) decodeEvents(txn *mapping.Txn) mapping.MatrixTxn {
	var body txnBody
	if err := json.Unmarshal(txn.Body, &body); err != nil {
		s.Count("as_txn", "bad_json")
		return mapping.MatrixTxn{ID: txn.ID}
	}
	return s.decodeBody(txn.ID, body)
}

// decodeBody is decodeEvents of a body already parsed.
func (s *Server) decodeBody(txnID string, body txnBody) mapping.MatrixTxn {
	out := mapping.MatrixTxn{ID: txnID}
	out.Events = s.decodeList(txnID, "", body.Events)
	s.decodeEphemeral(txnID, "", body.Ephemeral, &out)
	s.decodeEphemeral(txnID, "", body.MSC2409Ephemera, &out)
	return out
}

// expectDecoded makes txnID's entry in Server.decoded, to be settled
// with its decoded form; nil (nothing to settle) if one is there already
// or the map is full.
func (s *Server) expectDecoded(txnID string) *keptTxn {
	s.decodedMu.Lock()
	defer s.decodedMu.Unlock()
	if s.decoded == nil {
		s.decoded = map[string]*keptTxn{}
	}
	if _, ok := s.decoded[txnID]; ok || len(s.decoded) >= maxDecoded {
		return nil
	}
	k := &keptTxn{done: make(chan struct{})}
	s.decoded[txnID] = k
	return k
}

// keepDecoded keeps txn, decoded, for the processor (Server.decoded).
func (s *Server) keepDecoded(txn mapping.MatrixTxn) {
	s.expectDecoded(txn.ID).settle(txn, true)
}

// takeDecoded hands over what was kept of txnID, once, waiting for its
// decoding if it is under way.
func (s *Server) takeDecoded(txnID string) (mapping.MatrixTxn, bool) {
	s.decodedMu.Lock()
	k := s.decoded[txnID]
	delete(s.decoded, txnID)
	s.decodedMu.Unlock()
	if k == nil {
		return mapping.MatrixTxn{}, false
	}
	<-k.done
	return k.txn, k.ok
}

// forgetDecoded drops what is kept.
func (s *Server) forgetDecoded() {
	s.decodedMu.Lock()
	defer s.decodedMu.Unlock()
	clear(s.decoded)
}

// ephemeralEvent is what the bridge reads of an ephemeral event.
type ephemeralEvent struct {
	Type    string          `json:"type"`
	RoomID  id.RoomID       `json:"room_id"`
	Content json.RawMessage `json:"content"`
}

// receiptContent is an m.receipt's content (receipts module): event id →
// receipt type → user → the receipt, of which the bridge reads the thread
// and the ts (when the homeserver took it).
type receiptContent map[id.EventID]map[mapping.ReceiptType]map[id.UserID]struct {
	ThreadID string `json:"thread_id"`
	TS       int64  `json:"ts"`
}

// decodeEphemeral reads the receipts and typing of a transaction into
// out; other types are skipped, as the core ignores them. A room, if
// given, is every event's (a synced one names none).
func (s *Server) decodeEphemeral(txnID string, room id.RoomID, raws []json.RawMessage, out *mapping.MatrixTxn) {
	for _, raw := range raws {
		raw = storableJSON(raw)
		var e ephemeralEvent
		if err := json.Unmarshal(raw, &e); err != nil || e.Type == "" {
			s.Count("matrix_event", "malformed")
			s.Log.Debug().Err(err).Str("txn_id", txnID).Msg("Skipped a malformed ephemeral event")
			continue
		}
		if room != "" {
			e.RoomID = room
		}
		var err error
		switch e.Type {
		case event.EphemeralEventReceipt.Type:
			var rc receiptContent
			if err = json.Unmarshal(e.Content, &rc); err == nil {
				for ev, byType := range rc {
					for typ, byUser := range byType {
						for user, r := range byUser {
							rc := mapping.Receipt{Room: e.RoomID, Event: ev, Type: typ, User: user, Thread: r.ThreadID}
							if r.TS > 0 {
								rc.TS = time.UnixMilli(r.TS).UTC() // UTC: as it reads back from the inbox
							}
							out.Receipts = append(out.Receipts, rc)
						}
					}
				}
			}
		case event.EphemeralEventTyping.Type:
			var tc struct {
				UserIDs []id.UserID `json:"user_ids"`
			}
			if err = json.Unmarshal(e.Content, &tc); err == nil {
				out.Typing = append(out.Typing, mapping.Typing{Room: e.RoomID, Users: tc.UserIDs})
			}
		default:
			s.Count("matrix_event", "unsupported_ephemeral")
			continue
		}
		if err != nil {
			s.Count("matrix_event", "malformed_content")
			s.Log.Debug().Err(err).Str("txn_id", txnID).Str("type", e.Type).Msg("Skipped an ephemeral event with malformed content")
		}
	}
}

// decodeList reads a transaction's room events (through mautrix's event
// types, which know every content) into what the core reads of them; a
// room, if given, is every event's (a synced one names none).
func (s *Server) decodeList(txnID string, room id.RoomID, raws []json.RawMessage) []mapping.MatrixEvent {
	evts := make([]mapping.MatrixEvent, 0, len(raws))
	for _, raw := range raws {
		raw = storableJSON(raw)
		evt := &event.Event{}
		if err := json.Unmarshal(raw, evt); err != nil || evt.Type.Type == "" {
			s.Count("matrix_event", "malformed")
			s.Log.Debug().Err(err).Str("txn_id", txnID).Msg("Skipped a malformed event")
			continue
		}
		if room != "" {
			evt.RoomID = room
		}
		// As mautrix's appservice does: the class follows the state key.
		if evt.StateKey != nil {
			evt.Type.Class = event.StateEventType
		} else {
			evt.Type.Class = event.MessageEventType
		}
		if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrContentAlreadyParsed) {
			if !errors.Is(err, event.ErrUnsupportedContentType) {
				s.Count("matrix_event", "malformed_content")
				continue
			}
		}
		evts = append(evts, coreEvent(evt))
	}
	return evts
}

// storableJSON is raw with every string in it (keys too) made storable
// (mapping.StorableText): a body, an edit, a reaction key, a display name
// or an id holding U+0000 is bridged without it, where PostgreSQL would
// refuse it (and with it the event) forever. Raw JSON holds U+0000 only
// as an escape, so most events pass with one scan; one that may hold it is
// decoded, cleaned and encoded again (numbers kept as they were).
func storableJSON(raw json.RawMessage) json.RawMessage {
	if !bytes.Contains(raw, []byte(`\u0000`)) {
		return raw
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return raw // the caller reports it as malformed
	}
	out, err := json.Marshal(storableValue(v))
	if err != nil {
		return raw
	}
	return out
}

func storableValue(v any) any {
	switch v := v.(type) {
	case string:
		return mapping.StorableText(v)
	case []any:
		for i := range v {
			v[i] = storableValue(v[i])
		}
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[mapping.StorableText(k)] = storableValue(x)
		}
		return out
	}
	return v
}

// coreEvent is what the core reads of a room event.
func coreEvent(evt *event.Event) mapping.MatrixEvent {
	out := mapping.MatrixEvent{ID: evt.ID, Room: evt.RoomID, Sender: evt.Sender, Type: evt.Type.Type}
	if evt.Timestamp > 0 {
		out.TS = time.UnixMilli(evt.Timestamp)
	}
	switch evt.Type {
	case event.EventMessage, event.EventSticker:
		out.Kind = mapping.EventMessage
		if c := evt.Content.AsMessage(); c != nil {
			out.MsgType, out.Body = string(c.MsgType), c.Body
			if evt.Type == event.EventSticker {
				// A sticker is an image of its own event type (client-server
				// API, m.sticker), carried as a file.
				out.MsgType = mapping.MsgSticker
			}
			switch out.MsgType {
			case mapping.MsgImage, mapping.MsgVideo, mapping.MsgAudio, mapping.MsgFile, mapping.MsgSticker:
				out.File = fileOf(c)
			}
			if c.Format == event.FormatHTML {
				out.HTML = c.FormattedBody
			}
			if r := c.RelatesTo; r != nil {
				out.Rel.Type, out.Rel.Event, out.Rel.Key = string(r.Type), r.EventID, r.Key
				if r.InReplyTo != nil {
					out.Rel.ReplyTo = r.InReplyTo.EventID
				}
			}
			if n := c.NewContent; n != nil {
				out.Rel.NewBody, out.Rel.NewMsgType = n.Body, string(n.MsgType)
				switch out.Rel.NewMsgType {
				case mapping.MsgImage, mapping.MsgVideo, mapping.MsgAudio, mapping.MsgFile:
					// An edit of a file: the file and caption are
					// m.new_content's, the content's "* " body a fallback.
					out.File = fileOf(n)
				}
				if n.Format == event.FormatHTML {
					out.Rel.NewHTML = n.FormattedBody
				}
			}
		}
	case event.EventReaction:
		out.Kind = mapping.EventReaction
		if c := evt.Content.AsReaction(); c != nil {
			out.Rel.Type, out.Rel.Event, out.Rel.Key = string(c.RelatesTo.Type), c.RelatesTo.EventID, c.RelatesTo.Key
		}
	case event.EventRedaction:
		// Before room version 11 the target is the event's "redacts",
		// since then its content's.
		out.Kind, out.Redacts = mapping.EventRedaction, evt.Redacts
		if c := evt.Content.AsRedaction(); c != nil {
			if c.Redacts != "" {
				out.Redacts = c.Redacts
			}
			out.Body = c.Reason
		}
	case event.EventEncrypted:
		out.Kind = mapping.EventEncrypted
	case event.StateTopic:
		out.Kind = mapping.EventTopic
		if c := evt.Content.AsTopic(); c != nil {
			out.Body = c.Topic
		}
	case event.StateRoomName:
		out.Kind = mapping.EventRoomName
		if c := evt.Content.AsRoomName(); c != nil {
			out.Body = c.Name
		}
	case event.StateMember:
		out.Kind = mapping.EventMember
		if evt.StateKey != nil {
			out.Target = id.UserID(*evt.StateKey)
		}
		member := evt.Content.AsMember()
		out.Membership = string(member.Membership)
		out.DisplayName, out.AvatarURL = member.Displayname, string(member.AvatarURL)
		for _, st := range evt.Unsigned.InviteRoomState {
			if st != nil && st.Type.Type == event.StateJoinRules.Type {
				if rule, ok := st.Content.Raw["join_rule"].(string); ok {
					out.JoinRule = rule
				}
			}
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, struct {
		ErrCode string `json:"errcode"`
		Err     string `json:"error"`
	}{code, msg})
}

// The application service API's timeouts. A connection that sends its
// request slowly, or opens and idles, holds a goroutine and a socket: these
// bound that. A homeserver pushes a transaction in one go, mostly well under
// a MiB (Synapse: at most 100 PDUs and 100 EDUs), at most MaxTxnBytes;
// apiReadTimeout gives the largest a minute, 64 MiB at about 9 Mbit/s, and
// a homeserver gives up on a request sooner (Dendrite after 30 s). The
// answer may wait for the store up to HoldFor after the body is read, so
// the write timeout, counted from the end of the headers, is the read's
// and the hold's together, and a margin for the store's last try.
// Homeservers keep connections open between transactions: two idle
// minutes.
const (
	apiReadHeaderTimeout = 10 * time.Second
	apiReadTimeout       = time.Minute
	apiIdleTimeout       = 2 * time.Minute
	apiWriteMargin       = 10 * time.Second
)

func (s *Server) httpServer() *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: apiReadHeaderTimeout,
		ReadTimeout:       apiReadTimeout,
		WriteTimeout:      apiReadTimeout + s.holdFor() + apiWriteMargin,
		IdleTimeout:       apiIdleTimeout,
	}
}

// Listen serves the API on addr until ctx ends.
func (s *Server) Listen(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := s.httpServer()
	go func() {
		<-ctx.Done()
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
	}()
	s.Log.Info().Str("address", addr).Msg("Application service listening")
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
