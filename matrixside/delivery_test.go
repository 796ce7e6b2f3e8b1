package matrixside

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// standIn is a recording stand-in homeserver: it answers /versions as told
// and records every other request (method, path, as whom).
type standIn struct {
	versions string
	// refuse answers 400 M_UNRECOGNIZED to receipts of this type.
	refuse string
	// forbid answers 403 M_FORBIDDEN to the next forbid sends of events,
	// as a homeserver does to a user no longer in the room.
	forbid int

	mu   sync.Mutex
	reqs []string
}

func (s *standIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	path := r.URL.EscapedPath()
	if path == "/_matrix/client/versions" {
		_, _ = io.WriteString(w, s.versions)
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Method+" "+path+" as "+r.URL.Query().Get("user_id")+" "+string(body))
	forbidden := s.forbid > 0 && strings.Contains(path, "/send/")
	if forbidden {
		s.forbid--
	}
	s.mu.Unlock()
	switch {
	case forbidden:
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"errcode":"M_FORBIDDEN","error":"User not in room"}`)
	case s.refuse != "" && strings.Contains(path, "/receipt/"+s.refuse+"/"):
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"errcode":"M_UNRECOGNIZED","error":"Unknown receipt type"}`)
	case strings.HasSuffix(path, "/register"):
		_, _ = io.WriteString(w, `{}`)
	case strings.Contains(path, "/join/"):
		_, _ = io.WriteString(w, `{"room_id":"!dm:example.org"}`)
	case strings.Contains(path, "/send/"):
		_, _ = io.WriteString(w, `{"event_id":"$status"}`)
	default:
		_, _ = io.WriteString(w, `{}`)
	}
}

func (s *standIn) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

func newStandInHomeserver(t testing.TB, si http.Handler, d Delivery) *Homeserver {
	t.Helper()
	ts := httptest.NewServer(si)
	t.Cleanup(ts.Close)
	reg := &appservice.Registration{ID: "xmpp", AppToken: "as", ServerToken: "hs", SenderLocalpart: "xmppbridge"}
	as, err := appservice.CreateFull(appservice.CreateOpts{Registration: reg, HomeserverDomain: "example.org", HomeserverURL: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	as.Log = zerolog.Nop()
	return &Homeserver{AS: as, IDs: ids, Delivery: d}
}

var deliveryGhost = ids.Ghost(jid.MustParse("juliet@capulet.lit"))

func receiptRequests(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		if strings.Contains(r, "/receipt/") || strings.Contains(r, "/send/") {
			out = append(out, r)
		}
	}
	return out
}

// MSC4089, "Unstable prefix": a homeserver with org.matrix.msc4089 in
// /versions gets org.matrix.msc4089.delivery, sent as the ghost.
func TestDeliveryUnstableFeature(t *testing.T) {
	si := &standIn{versions: `{"versions":["v1.11"],"unstable_features":{"org.matrix.msc4089":true}}`}
	h := newStandInHomeserver(t, si, Delivery{Fallback: FallbackMessageStatus})
	if way, err := h.Detect(context.Background()); err != nil || way != DeliveryWay(mapping.ReceiptDeliveryUnstable) {
		t.Fatalf("Detect = %q, %v", way, err)
	}
	if err := h.SendDelivery(context.Background(), "!dm:example.org", deliveryGhost, "$ev"); err != nil {
		t.Fatal(err)
	}
	got := receiptRequests(si.requests())
	want := "POST /_matrix/client/v3/rooms/%21dm:example.org/receipt/org.matrix.msc4089.delivery/$ev as " + string(deliveryGhost) + " {}"
	if len(got) != 1 || got[0] != want {
		t.Errorf("requests %q, want [%q]", got, want)
	}
}

// Once a spec version defines m.delivery, a homeserver advertising it gets
// the stable type.
func TestDeliveryStableSpecVersion(t *testing.T) {
	si := &standIn{versions: `{"versions":["v1.11","v1.99"],"unstable_features":{"org.matrix.msc4089":true}}`}
	h := newStandInHomeserver(t, si, Delivery{Fallback: FallbackMessageStatus, SpecVersion: "v1.99"})
	if err := h.SendDelivery(context.Background(), "!dm:example.org", deliveryGhost, "$ev"); err != nil {
		t.Fatal(err)
	}
	got := receiptRequests(si.requests())
	if len(got) != 1 || !strings.Contains(got[0], "/receipt/m.delivery/$ev as "+string(deliveryGhost)) {
		t.Errorf("requests %q, want one m.delivery as the ghost", got)
	}
}

// A homeserver that advertises MSC4089 but answers 400 (as Synapse,
// Dendrite, Tuwunel and continuwuity do for unknown receipt types) makes
// the bridge fall back to the bot's message status, for good.
func TestDeliveryFallsBackOn400(t *testing.T) {
	si := &standIn{versions: `{"versions":["v1.11"],"unstable_features":{"org.matrix.msc4089":true}}`, refuse: string(mapping.ReceiptDeliveryUnstable)}
	h := newStandInHomeserver(t, si, Delivery{Fallback: FallbackMessageStatus})
	for _, ev := range []id.EventID{"$one", "$two"} {
		if err := h.SendDelivery(context.Background(), "!dm:example.org", deliveryGhost, ev); err != nil {
			t.Fatal(err)
		}
	}
	got := receiptRequests(si.requests())
	// One refused receipt, then status events only.
	if len(got) != 3 || !strings.Contains(got[0], "/receipt/org.matrix.msc4089.delivery/$one") {
		t.Fatalf("requests %q", got)
	}
	for i, ev := range []string{"$one", "$two"} {
		r := got[i+1]
		if !strings.Contains(r, "/send/com.beeper.message_send_status/dlv-"+ev) || !strings.Contains(r, " as @xmppbridge:example.org ") {
			t.Errorf("request %q: want a status event by the bot for %s", r, ev)
		}
		var content map[string]any
		_ = json.Unmarshal([]byte(r[strings.Index(r, "{"):]), &content)
		rel, _ := content["m.relates_to"].(map[string]any)
		users, _ := content["delivered_to_users"].([]any)
		if content["status"] != "SUCCESS" || rel["rel_type"] != "m.reference" || rel["event_id"] != ev || len(users) != 1 || users[0] != string(deliveryGhost) {
			t.Errorf("status content %v", content)
		}
	}
}

// Without MSC4089 and with delivery_fallback: none, nothing is sent.
func TestDeliveryFallbackNone(t *testing.T) {
	si := &standIn{versions: `{"versions":["v1.11"]}`}
	h := newStandInHomeserver(t, si, Delivery{Fallback: FallbackNone})
	if err := h.SendDelivery(context.Background(), "!dm:example.org", deliveryGhost, "$ev"); err != nil {
		t.Fatal(err)
	}
	if got := receiptRequests(si.requests()); len(got) != 0 {
		t.Errorf("requests %q, want none", got)
	}
}

// On the fallback the bot joins a portal once: later status events there
// cost the one send each (no join, no question to the state store). A
// send the homeserver forbids (the bot was removed) fails, and the next
// joins the bot again before it sends.
func TestDeliveryFallbackBotJoinsOnce(t *testing.T) {
	si := &standIn{versions: `{"versions":["v1.11"]}`}
	h := newStandInHomeserver(t, si, Delivery{Fallback: FallbackMessageStatus})
	ctx := context.Background()
	for _, ev := range []id.EventID{"$one", "$two"} {
		if err := h.SendDelivery(ctx, "!dm:example.org", deliveryGhost, ev); err != nil {
			t.Fatal(err)
		}
	}
	si.mu.Lock()
	si.forbid = 1
	si.mu.Unlock()
	if err := h.SendDelivery(ctx, "!dm:example.org", deliveryGhost, "$three"); err == nil {
		t.Fatal("a forbidden status event succeeded")
	}
	if err := h.SendDelivery(ctx, "!dm:example.org", deliveryGhost, "$three"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range si.requests() {
		switch {
		case strings.Contains(r, "/join "):
			got = append(got, "join")
		case strings.Contains(r, "/send/"):
			got = append(got, "send "+r[strings.Index(r, "dlv-")+4:strings.Index(r, " as ")])
		}
	}
	want := []string{"join", "send $one", "send $two", "send $three", "join", "send $three"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("requests %q, want %q", got, want)
	}
}
