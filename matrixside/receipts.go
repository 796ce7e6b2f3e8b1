package matrixside

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"xmppbridge/mapping"
)

// FeatureMSC4089 is the /versions feature flag behind which a homeserver
// takes MSC4089's receipt under its unstable name
// (mapping.ReceiptDeliveryUnstable).
const FeatureMSC4089 = "org.matrix.msc4089"

// Delivery fallbacks (receipts.delivery_fallback) for a homeserver without
// MSC4089, which today is every homeserver.
const (
	FallbackMessageStatus = "message_status"
	FallbackNone          = "none"
)

// DeliveryWay is how delivery receipts reach Matrix; Homeserver decides it
// from /versions.
type DeliveryWay string

// Delivery is the configuration of the way delivery is told.
type Delivery struct {
	// Fallback is used when the homeserver has no MSC4089.
	Fallback string
	// SpecVersion is the first Matrix spec version that defines m.delivery
	// ("" while none does).
	SpecVersion string
}

// DeliveryChosen is the way delivery receipts reach Matrix, "" before the
// homeserver was asked.
func (h *Homeserver) DeliveryChosen() DeliveryWay {
	h.delivery.mu.Lock()
	defer h.delivery.mu.Unlock()
	if !h.delivery.detected {
		return ""
	}
	return h.delivery.way
}

// deliveryState is the way chosen, until the next detection.
type deliveryState struct {
	mu       sync.Mutex
	way      DeliveryWay
	detected bool
}

// Detect reads /versions and chooses the way, logging the choice.
func (h *Homeserver) Detect(ctx context.Context) (DeliveryWay, error) {
	resp, err := h.AS.BotClient().Versions(ctx)
	if err != nil {
		return "", fmt.Errorf("read the homeserver's /versions: %w", err)
	}
	d := &h.delivery
	way := DeliveryWay(h.Delivery.Fallback)
	switch {
	case h.Delivery.SpecVersion != "" && resp.ContainsGreaterOrEqual(mautrix.MustParseSpecVersion(h.Delivery.SpecVersion)):
		way = DeliveryWay(mapping.ReceiptDelivery)
	case resp.UnstableFeatures[FeatureMSC4089]:
		way = DeliveryWay(mapping.ReceiptDeliveryUnstable)
	}
	d.mu.Lock()
	changed := !d.detected || d.way != way
	d.way, d.detected = way, true
	d.mu.Unlock()
	if changed {
		h.log(ctx).Info().Str("delivery_receipts", string(way)).Strs("versions", versionStrings(resp)).
			Bool(FeatureMSC4089, resp.UnstableFeatures[FeatureMSC4089]).Msg("Chose how delivery receipts reach Matrix")
	}
	return way, nil
}

func versionStrings(resp *mautrix.RespVersions) []string {
	out := make([]string, len(resp.Versions))
	for i, v := range resp.Versions {
		out[i] = v.String()
	}
	return out
}

func (h *Homeserver) deliveryWay(ctx context.Context) (DeliveryWay, error) {
	h.delivery.mu.Lock()
	way, ok := h.delivery.way, h.delivery.detected
	h.delivery.mu.Unlock()
	if ok {
		return way, nil
	}
	return h.Detect(ctx)
}

// fallBack abandons a receipt type the homeserver advertised but refused,
// once, and says so.
func (h *Homeserver) fallBack(ctx context.Context, refused DeliveryWay, err error) DeliveryWay {
	d := &h.delivery
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.way == refused {
		d.way = DeliveryWay(h.Delivery.Fallback)
		h.log(ctx).Warn().Err(err).Str("refused", string(refused)).Str("now", h.Delivery.Fallback).
			Msg("The homeserver refused a receipt type it advertises; falling back")
	}
	return d.way
}

func (h *Homeserver) log(ctx context.Context) *zerolog.Logger {
	if l := zerolog.Ctx(ctx); l.GetLevel() != zerolog.Disabled {
		return l
	}
	return &h.AS.Log
}

// SendDelivery implements mapping.MatrixSide: MSC4089 receipts where the
// homeserver has them, else the configured fallback.
func (h *Homeserver) SendDelivery(ctx context.Context, room id.RoomID, ghost id.UserID, ev id.EventID) error {
	way, err := h.deliveryWay(ctx)
	if err != nil {
		return err
	}
	if way == DeliveryWay(mapping.ReceiptDelivery) || way == DeliveryWay(mapping.ReceiptDeliveryUnstable) {
		intent, err := h.intent(ctx, ghost)
		if err != nil {
			return err
		}
		err = intent.SendReceipt(ctx, room, ev, event.ReceiptType(way), struct{}{})
		if isBadRequest(err) {
			way = h.fallBack(ctx, way, err)
		} else {
			return h.transient(h.classify(ctx, err))
		}
	}
	switch way {
	case FallbackMessageStatus:
		delivered := []id.UserID{ghost}
		return h.sendStatus(ctx, room, ev, &event.BeeperMessageStatusEventContent{
			Status: event.MessageStatusSuccess, DeliveredToUsers: &delivered,
		}, "dlv")
	default:
		return nil // receipts.delivery_fallback: none
	}
}

// SendRead implements mapping.MatrixSide.
func (h *Homeserver) SendRead(ctx context.Context, room id.RoomID, user id.UserID, ev id.EventID) error {
	intent, err := h.intent(ctx, user)
	if err != nil {
		return err
	}
	return h.transient(h.classify(ctx, intent.SendReceipt(ctx, room, ev, event.ReceiptTypeRead, struct{}{})))
}

// SendFailure implements mapping.MatrixSide: the bot marks ev as failed,
// as the mautrix bridges do (com.beeper.message_send_status).
func (h *Homeserver) SendFailure(ctx context.Context, room id.RoomID, ev id.EventID, st mapping.StatusArgs) error {
	status := event.MessageStatusFail
	if st.Retriable {
		status = event.MessageStatusRetriable
	}
	msg := "The XMPP side answered: " + st.Condition
	if st.ByBridge {
		msg = "Not sent: " + st.Condition
	}
	if st.Text != "" {
		msg += " (" + st.Text + ")"
	}
	return h.sendStatus(ctx, room, ev, &event.BeeperMessageStatusEventContent{
		Status: status, Reason: event.MessageStatusReason(st.Condition), Message: msg,
	}, "fail")
}

func (h *Homeserver) sendStatus(ctx context.Context, room id.RoomID, ev id.EventID, content *event.BeeperMessageStatusEventContent, kind string) error {
	content.Network = "xmpp"
	content.RelatesTo = event.RelatesTo{Type: event.RelReference, EventID: ev}
	if _, ok := h.botIn.Load(room); !ok {
		if err := h.botJoin(ctx, room); err != nil {
			return err
		}
		h.botIn.Store(room, true)
	}
	// One status per (event, kind): a retry is the same transaction. Not
	// the intent's send, which would ask the state store again whether
	// the bot is in the room (sendEvent).
	err := sendEvent(ctx, h.AS.BotClient(), room, event.BeeperMessageStatus, kind+"-"+string(ev), content)
	if errors.Is(err, mautrix.MForbidden) {
		// The bot is no longer in the room (it left, or was removed): the
		// retry joins it again, whatever the state store last heard.
		h.botIn.Delete(room)
		if serr := h.AS.StateStore.SetMembership(ctx, room, h.AS.BotMXID(), event.MembershipLeave); serr != nil {
			h.log(ctx).Warn().Err(serr).Msg("Failed to note that the bot is out of a room")
		}
	}
	return h.transient(h.classify(ctx, err))
}

// botJoin puts the bot into a portal, invited by the ghost there if it must
// be: the status events are the bot's.
func (h *Homeserver) botJoin(ctx context.Context, room id.RoomID) error {
	var override *mautrix.Client
	if members, err := h.AS.StateStore.GetRoomJoinedOrInvitedMembers(ctx, room); err == nil {
		for _, m := range members {
			if h.IDs.IsGhost(m) {
				override = h.AS.Intent(m).Client
				break
			}
		}
	}
	return h.botJoinVia(ctx, room, override)
}

// botJoinVia joins the bot to room, invited by inviter if it must be.
func (h *Homeserver) botJoinVia(ctx context.Context, room id.RoomID, override *mautrix.Client) error {
	bot := h.AS.BotIntent()
	if h.AS.StateStore.IsInRoom(ctx, room, bot.UserID) {
		return nil
	}
	if err := bot.EnsureJoined(ctx, room, appservice.EnsureJoinedParams{BotOverride: override}); err != nil {
		return h.classify(ctx, fmt.Errorf("bring the bot into %s: %w", room, err))
	}
	return nil
}

// transient makes the next send re-read /versions after a network fault:
// the homeserver may have been upgraded while it was away.
func (h *Homeserver) transient(err error) error {
	if err != nil && !errors.Is(err, mapping.ErrPermanent) {
		var httpErr mautrix.HTTPError
		if !errors.As(err, &httpErr) || httpErr.Response == nil {
			h.delivery.mu.Lock()
			h.delivery.detected = false
			h.delivery.mu.Unlock()
		}
	}
	return err
}

func isBadRequest(err error) bool {
	var httpErr mautrix.HTTPError
	return errors.As(err, &httpErr) && httpErr.Response != nil && httpErr.Response.StatusCode == http.StatusBadRequest
}

// Offline implements mapping.MatrixSide: only a user the homeserver has
// seen (last_active_ago set) and knows to be offline counts; a homeserver
// with presence disabled answers "offline" for everyone, which says
// nothing.
func (h *Homeserver) Offline(ctx context.Context, user id.UserID) (bool, error) {
	resp, err := h.AS.BotClient().GetPresence(ctx, user)
	if err != nil {
		return false, err
	}
	return resp.Presence == event.PresenceOffline && resp.LastActiveAgo > 0, nil
}
