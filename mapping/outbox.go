package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
)

// The kinds of sends the outbox carries out.
const (
	JobSendToMatrix JobKind = "matrix.send"   // a FromXMPP message, by row
	JobSendToXMPP   JobKind = "xmpp.send"     // a FromMatrix message, by row
	JobJoin         JobKind = "matrix.join"   // a ghost accepts an invite
	JobLeave        JobKind = "matrix.leave"  // a ghost declines or leaves
	JobNotice       JobKind = "matrix.notice" // a ghost explains something
)

// jobArgs is the payload of the jobs that are not about one message row.
type jobArgs struct {
	Room   id.RoomID `json:"room"`
	User   id.UserID `json:"user"`
	Reason string    `json:"reason,omitempty"`
	Body   string    `json:"body,omitempty"`
}

func newJob(kind JobKind, args jobArgs) *Job {
	payload, _ := json.Marshal(args) // cannot fail: strings only
	return &Job{Kind: kind, Payload: payload, Lane: string(args.Room)}
}

func (k JobKind) side() string {
	if k == JobSendToXMPP || k == JobSendStanzas || k == JobSubscribe {
		return "xmpp"
	}
	return "matrix"
}

// RunOutbox carries out the owed sends until ctx ends. Jobs of one side run
// in the order they were stored; when a side fails, its remaining jobs wait
// (so order is kept) with a capped backoff, while the other side goes on.
func (b *Bridge) RunOutbox(ctx context.Context) {
	pauseUntil := map[string]time.Time{}
	backoff := map[string]time.Duration{}
	for {
		next, worked := b.runDue(ctx, pauseUntil, backoff)
		if worked && ctx.Err() == nil {
			continue // more may be due already: no waiting between rounds
		}
		wait := time.Second
		if !next.IsZero() {
			if d := time.Until(next); d < wait {
				wait = max(d, 10*time.Millisecond)
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-b.wake:
			// A reconnect or new work: try paused sides again now.
			clear(pauseUntil)
		case <-timer.C:
		}
		timer.Stop()
	}
}

// maxLanes is how many lanes of jobs run at once. Sends to the homeserver
// are round trips: one at a time they would cap the bridge far below what
// the servers can take.
const maxLanes = 32

// lane is the order a job must keep: jobs of one lane run one after the
// other, in the order they were stored; lanes run side by side.
func (j *Job) lane() string {
	if j.Lane != "" {
		return j.Kind.side() + ":" + j.Lane
	}
	return j.Kind.side()
}

// runDue runs the due jobs once, lanes in parallel; it returns when the
// earliest paused side may be tried again (zero if none), and whether any
// job was done.
func (b *Bridge) runDue(ctx context.Context, pauseUntil map[string]time.Time, backoff map[string]time.Duration) (time.Time, bool) {
	b.flushReceipts(ctx)
	jobs, err := b.store.DueJobs(ctx, b.now(), 1000)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Err(err).Msg("Failed to read the outbox")
		}
		return time.Time{}, false
	}
	var order []string
	lanes := map[string][]*Job{}
	for _, job := range jobs {
		if b.now().Before(pauseUntil[job.Kind.side()]) {
			continue
		}
		l := job.lane()
		if _, ok := lanes[l]; !ok {
			order = append(order, l)
		}
		lanes[l] = append(lanes[l], job)
	}
	var (
		mu   sync.Mutex
		done []int64
		wg   sync.WaitGroup
		sem  = make(chan struct{}, maxLanes)
	)
	for _, l := range order {
		wg.Add(1)
		sem <- struct{}{}
		go func(lane []*Job) {
			defer func() { <-sem; wg.Done() }()
			for _, job := range lane {
				if ctx.Err() != nil {
					return
				}
				side := job.Kind.side()
				mu.Lock()
				paused := b.now().Before(pauseUntil[side])
				mu.Unlock()
				if paused {
					return
				}
				err := b.runJob(ctx, job)
				log := b.log.With().Int64("job", job.ID).Str("kind", string(job.Kind)).Int64("message_row", job.MessageID).Logger()
				mu.Lock()
				switch {
				case err == nil:
					delete(backoff, side)
					done = append(done, job.ID)
					b.count("job_done", string(job.Kind))
				case errors.Is(err, ErrPermanent):
					log.Err(err).Msg("Send failed permanently; dropping it")
					b.count("job_failed", string(job.Kind))
					done = append(done, job.ID)
				default:
					d := min(max(backoff[side]*2, 500*time.Millisecond), time.Minute)
					backoff[side] = d
					pauseUntil[side] = b.now().Add(d)
					mu.Unlock()
					if !errors.Is(err, ErrNotConnected) || job.Attempts%10 == 0 {
						log.Warn().Err(err).Dur("retry_in", d).Msg("Send failed; will retry")
					}
					if err := b.store.RetryJob(ctx, job.ID, b.now(), err.Error()); err != nil {
						log.Err(err).Msg("Failed to note a failed job")
					}
					b.count("job_retry", string(job.Kind))
					return // the rest of the lane waits, so order is kept
				}
				mu.Unlock()
			}
		}(lanes[l])
	}
	wg.Wait()
	if len(done) > 0 {
		// One write for the round: a job done but not yet removed when the
		// bridge stops runs again, which every handler tolerates.
		if err := b.store.DeleteJobs(ctx, done...); err != nil {
			b.log.Err(err).Msg("Failed to remove finished jobs; they will run again")
		}
	}
	var next time.Time
	for _, t := range pauseUntil {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next, len(done) > 0
}

func (b *Bridge) runJob(ctx context.Context, job *Job) error {
	switch job.Kind {
	case JobSendToMatrix:
		return b.sendToMatrix(ctx, job.MessageID)
	case JobSendToXMPP:
		return b.sendToXMPP(ctx, job.MessageID)
	case JobMatrixDelivery, JobMatrixRead, JobMatrixStatus:
		return b.receiptToMatrix(ctx, job)
	case JobSendStanzas:
		return b.sendStanzas(ctx, job)
	case JobSubscribe:
		return b.sendSubscribe(ctx, job)
	}
	var args jobArgs
	if err := json.Unmarshal(job.Payload, &args); err != nil {
		return fmt.Errorf("%w: bad payload: %v", ErrPermanent, err)
	}
	switch job.Kind {
	case JobJoin:
		return b.matrix.Join(ctx, args.Room, args.User)
	case JobLeave:
		return b.matrix.Leave(ctx, args.Room, args.User, args.Reason)
	case JobNotice:
		return b.matrix.SendNotice(ctx, args.Room, args.User, args.Body, "notice-"+strconv.FormatInt(job.ID, 10))
	}
	return fmt.Errorf("%w: unknown job kind %q", ErrPermanent, job.Kind)
}

// sendToMatrix posts a message from XMPP into its portal, creating the
// portal first if this is the pair's first message.
func (b *Bridge) sendToMatrix(ctx context.Context, row int64) error {
	msg, err := b.store.MessageByRow(ctx, row)
	if err != nil {
		return fmt.Errorf("load message %d: %w", row, err)
	}
	if msg.EventID != "" {
		return nil // sent before a crash, noted, job not yet removed
	}
	mxid := msg.MXID
	ghost := b.cfg.Identities.Ghost(msg.PeerJID)
	portal, err := b.ensurePortal(ctx, mxid, msg)
	if err != nil {
		return err
	}
	// The transaction id is the row: a retry after a crash between the
	// send and SetMessageEventID yields the same event, not a second one.
	ev, err := b.matrix.SendText(ctx, portal.RoomID, ghost, msg.Body, "xmpp-"+strconv.FormatInt(row, 10))
	if err != nil {
		return fmt.Errorf("send message %d to %s: %w", row, portal.RoomID, err)
	}
	if err := b.store.SetMessageEventID(ctx, row, portal.RoomID, ev); err != nil {
		return fmt.Errorf("note event %s of message %d: %w", ev, row, err)
	}
	b.count("bridged", "to_matrix")
	if msg.Requests.Offline {
		b.offlineEvent(ctx, msg)
	}
	return nil
}

func (b *Bridge) ensurePortal(ctx context.Context, mxid id.UserID, msg *Message) (*Portal, error) {
	p, err := b.store.PortalByPair(ctx, mxid, msg.PeerJID)
	if err == nil {
		return p, nil
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("look up portal: %w", err)
	}
	room, err := b.matrix.CreateDM(ctx, b.cfg.Identities.Ghost(msg.PeerJID), mxid)
	if err != nil {
		return nil, fmt.Errorf("create portal for %s and %s: %w", mxid, msg.PeerJID, err)
	}
	// Before the portal: a crash in between asks twice, which is harmless.
	if jobs := b.subscribeJobs(mxid, msg.PeerJID); jobs != nil {
		if err := b.store.AddJobs(ctx, jobs...); err != nil {
			return nil, fmt.Errorf("queue subscription request to %s: %w", msg.PeerJID, err)
		}
	}
	p = &Portal{RoomID: room, MXID: mxid, JID: msg.PeerJID, CreatedAt: b.now()}
	if err := b.store.PutPortal(ctx, p); err != nil {
		return nil, fmt.Errorf("store portal %s: %w", room, err)
	}
	b.log.Info().Str("room", string(room)).Str("mxid", string(mxid)).Str("jid", msg.PeerJID.String()).Msg("Created portal")
	return p, nil
}

// sendToXMPP sends a message from Matrix to its XMPP peer, asking for every
// kind of receipt the bridge can translate.
func (b *Bridge) sendToXMPP(ctx context.Context, row int64) error {
	msg, err := b.store.MessageByRow(ctx, row)
	if err != nil {
		return fmt.Errorf("load message %d: %w", row, err)
	}
	from, err := b.cfg.Identities.Puppet(msg.MXID)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPermanent, err)
	}
	out := &OutMessage{
		ID: msg.XMPPID, From: from, To: msg.PeerJID, Type: TypeChat,
		Body: msg.Body, OriginID: msg.XMPPID, Request: msg.Requests,
	}
	if err := b.xmpp.Send(ctx, out); err != nil {
		return fmt.Errorf("send message %d to %s: %w", row, msg.PeerJID, err)
	}
	b.count("bridged", "to_xmpp")
	return nil
}
