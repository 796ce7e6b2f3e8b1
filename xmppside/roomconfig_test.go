package xmppside

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// XEP-0045 §10.1.2, Example 155: the owner of a room its join made
// accepts the default configuration, an instant room, with an empty form
// of type submit in a muc#owner query, set to the room's bare JID; a
// result unlocks it, an error answer (§10.1.2: Prosody answers
// <forbidden/> to one not its owner) is the room's final word.
func TestInstantRoomIsTheSpecExample(t *testing.T) {
	r := newLinkRig(t)
	pup, room := jid.MustParse(pupFull), jid.MustParse("coven@chat.shakespeare.lit/thirdwitch")
	sent := regexp.MustCompile(`<iq [^>]*>.*?</iq>`)
	id := regexp.MustCompile(`\bid="([^"]+)"`)
	from := 0
	for _, c := range []struct {
		answer string
		want   string // the condition of the error; "" for none
	}{
		{answer: ``},
		{answer: `<error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`, want: "forbidden"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		got := make(chan error, 1)
		go func() { got <- r.c.InstantRoom(ctx, pup, room) }()
		var subs []string
		subs, from = r.out.wait(t, sent, from)
		iq := subs[0]
		for _, part := range []string{`type="set"`, `to="coven@chat.shakespeare.lit"`, `from="` + pupFull + `"`,
			`<query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="submit"></x></query>`} {
			if !strings.Contains(iq, part) {
				t.Errorf("the request %s lacks %s", iq, part)
			}
		}
		typ := "result"
		if c.want != "" {
			typ = "error"
		}
		if err := r.srv.Write(`<iq type='` + typ + `' id='` + id.FindStringSubmatch(iq)[1] + `' from='coven@chat.shakespeare.lit' to='` + pupFull + `'>` + c.answer + `</iq>`); err != nil {
			t.Fatal(err)
		}
		err := <-got
		cancel()
		var se *mapping.StanzaError
		switch {
		case c.want == "" && err != nil:
			t.Errorf("a result: %v", err)
		case c.want != "" && (!errors.Is(err, mapping.ErrPermanent) || !errors.As(err, &se) || se.Condition != c.want):
			t.Errorf("an error answer: %v, want a permanent %s", err, c.want)
		}
	}
}
