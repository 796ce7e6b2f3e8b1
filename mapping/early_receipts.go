package mapping

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Receipts that outrun their event's id.
//
// A message from XMPP becomes a Matrix event in two steps: the homeserver
// takes the event and answers with its id, then the bridge stores the id.
// In between, the homeserver may already have shown the event to the Matrix
// user's client and handed the bridge that client's receipt for it (an
// MSC4089 client sends m.delivery as soon as it syncs an event; Dendrite
// hands events to /sync before it answers the sender). The id map cannot
// yet say which message the receipt is about, and a delivery receipt is
// per event: nothing later would make up for dropping it.
//
// So when a receipt names an unknown event in a portal that still owes
// Matrix a message, the receipt is parked: a job stored with its
// transaction, in the lane of the pair's sends, so it runs after the send
// that was on its way. By then the id is stored, and the receipt goes back
// to the inbox, as the receipt it is (DecodedTxn), to be handled in
// turn with the transactions, by the one processor of them. If the event
// is still unknown then, it was not one of ours (or its send failed for
// good), and the receipt is dropped as unknown.

// JobReplayReceipt re-delivers a parked Matrix receipt to the inbox.
const JobReplayReceipt JobKind = "matrix.replay_receipt"

// Counted reasons of this file.
const (
	ReceiptParked   = "parked"
	ReceiptReplayed = "replayed"
)

// parkedPrefix starts the id of an inbox entry that is a parked receipt
// handed back, not a homeserver's transaction.
const parkedPrefix = "replay:"

// SyncedPrefix starts the id of an inbox entry of receipts and typing the
// Matrix side read by /sync (its batch token follows).
const SyncedPrefix = "sync:"

// decodedBody is the body of an inbox entry the bridge wrote itself:
// already decoded, in the core's own values.
type decodedBody struct {
	Receipts []Receipt `json:"receipts,omitempty"`
	Typing   []Typing  `json:"typing,omitempty"`
	// Events are room events read by /sync: redactions, which Dendrite
	// does not push to application services.
	Events []MatrixEvent `json:"events,omitempty"`
}

// NewDecodedTxn is the inbox entry id of what the bridge itself read
// (id starting with SyncedPrefix, or parkedPrefix).
func NewDecodedTxn(id string, t MatrixTxn) (*Txn, error) {
	body, err := json.Marshal(decodedBody{Receipts: t.Receipts, Typing: t.Typing, Events: t.Events})
	if err != nil {
		return nil, fmt.Errorf("encode inbox entry %s: %w", id, err)
	}
	return &Txn{ID: id, Body: body}, nil
}

// DecodedTxn reads an inbox entry the bridge wrote itself (false if txn
// is a homeserver's transaction, to be decoded as one).
func DecodedTxn(txn *Txn) (MatrixTxn, bool, error) {
	if !strings.HasPrefix(txn.ID, parkedPrefix) && !strings.HasPrefix(txn.ID, SyncedPrefix) {
		return MatrixTxn{}, false, nil
	}
	var b decodedBody
	if err := json.Unmarshal(txn.Body, &b); err != nil {
		return MatrixTxn{}, true, fmt.Errorf("inbox entry %s: %w", txn.ID, err)
	}
	if len(b.Receipts) == 0 && len(b.Typing) == 0 && len(b.Events) == 0 {
		// Stored by an earlier version, in the shape of a pushed
		// transaction: read as one.
		return MatrixTxn{}, false, nil
	}
	return MatrixTxn{ID: txn.ID, Receipts: b.Receipts, Typing: b.Typing, Events: b.Events}, true, nil
}

// Inbox is where a replayed receipt is announced once stored: the
// transaction processor (matrixside.Server.Enqueue).
type Inbox func(txnID string)

// SetInbox connects the core to the transaction processor. Without it,
// replayed receipts wait for the processor's next look at the store.
func (b *Bridge) SetInbox(enqueue Inbox) { b.inbox = enqueue }

// parkUnknown handles a receipt of the portal's user about ev, which the
// id map does not know.
func (b *receipts) parkUnknown(ctx context.Context, plan *receiptPlan, portal *Portal, rc Receipt) error {
	unsent, ok := plan.unsent[portal.RoomID]
	if !ok {
		var err error
		if unsent, err = b.store.HasUnsentToMatrix(ctx, portal.User(), portal.JID); err != nil {
			return fmt.Errorf("look for messages on their way to %s: %w", portal.RoomID, err)
		}
		plan.unsent[portal.RoomID] = unsent
	}
	if !unsent {
		b.count("matrix_receipt", ReasonUnknownEvent)
		return nil
	}
	payload, err := json.Marshal(rc)
	if err != nil {
		return fmt.Errorf("park receipt on %s: %w", rc.Event, err)
	}
	plan.jobs = append(plan.jobs, newJob(JobReplayReceipt, about{room: portal.RoomID, mxid: portal.User(), peer: portal.JID}, 0, payload))
	b.count("matrix_receipt", ReceiptParked)
	return nil
}

// Behind the send it outran, in the pair's lane.
var _ = register(JobReplayReceipt, jobKind{side: SideMatrix, order: byPair, payload: Receipt{}, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.receipts.replayReceipt(ctx, job) }})

// replayReceipt carries out a JobReplayReceipt.
func (b *receipts) replayReceipt(ctx context.Context, job *Job) error {
	rc, err := payloadOf[Receipt](job)
	if err != nil {
		return err
	}
	if _, err := b.store.MessageByEventID(ctx, rc.Event); isNotFound(err) {
		b.count("matrix_receipt", ReasonUnknownEvent)
		return nil
	} else if err != nil {
		return fmt.Errorf("look up parked receipt's event %s: %w", rc.Event, err)
	}
	// Job ids are never reused, so the id is the job's: a rerun after a
	// crash stores nothing new.
	txnID := parkedPrefix + strconv.FormatInt(job.ID, 10)
	txn, err := NewDecodedTxn(txnID, MatrixTxn{Receipts: []Receipt{rc}})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	if _, err := b.store.PutTxn(ctx, txn); err != nil {
		return fmt.Errorf("store parked receipt on %s: %w", rc.Event, err)
	}
	if b.inbox != nil {
		b.inbox(txnID)
	}
	b.count("matrix_receipt", ReceiptReplayed)
	return nil
}
