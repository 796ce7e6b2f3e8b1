package xmppside

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"mellium.im/xmpp/jid"

	"xmppbridge/internal/standin"
	"xmppbridge/mapping"
)

// linkRig is a component connected over a socket to the stand-in XMPP
// server and read by its own loop (Run), as in production: what the
// server writes arrives through mellium's session, and what the
// component writes is in out.
type linkRig struct {
	*streamRig
	srv    *standin.XMPPServer
	out    *tapBuffer
	logs   *tapBuffer // the component's log
	counts *lockedCounts
}

func newLinkRig(t *testing.T) *linkRig {
	t.Helper()
	r := &linkRig{streamRig: newStreamRig(t, mapping.PresencePolicy{AutoSubscribe: true}), out: &tapBuffer{}, logs: &tapBuffer{}, counts: &lockedCounts{m: map[string]int{}}}
	r.core.SetSides(&recMatrix{}, r.c)
	srv, err := standin.NewXMPPServer("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	r.srv = srv
	srv.Tap = func() io.WriteCloser { return r.out }
	r.c.Address, r.c.Secret, r.c.Count, r.c.Log = srv.Addr, "s3cret", r.counts.count, zerolog.New(r.logs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.c.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	if err := srv.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !r.c.Connected(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the component never connected to the stand-in server")
		}
	}
	return r
}

// lockedCounts is a Counter the component's loop and the test share.
type lockedCounts struct {
	mu sync.Mutex
	m  map[string]int
	// panicOn makes counting this key panic, as a bug in a handler would:
	// an explicit panic for an xmpp_iq key, a runtime error for others.
	panicOn string
}

func (l *lockedCounts) count(what, reason string) {
	l.mu.Lock()
	key := what + "/" + reason
	l.m[key]++
	bomb := key == l.panicOn
	l.mu.Unlock()
	switch {
	case bomb && what == "xmpp_iq":
		panic("counting " + key)
	case bomb:
		var never map[string]int
		never[key]++ // a runtime error, at another place
	}
}

func (l *lockedCounts) get(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[key]
}

// tapBuffer keeps what the component sent the server.
type tapBuffer struct {
	mu   sync.Mutex
	sent []byte
}

func (b *tapBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.sent = append(b.sent, p...)
	b.mu.Unlock()
	return len(p), nil
}

func (b *tapBuffer) Close() error { return nil }

// wait returns the first submatches of re in what the component sent
// after byte from, and where that match ends.
func (b *tapBuffer) wait(t *testing.T, re *regexp.Regexp, from int) ([]string, int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b.mu.Lock()
		s := string(b.sent)
		b.mu.Unlock()
		if loc := re.FindStringSubmatchIndex(s[from:]); loc != nil {
			var subs []string
			for i := 0; i < len(loc); i += 2 {
				subs = append(subs, s[from+loc[i]:from+loc[i+1]])
			}
			return subs, from + loc[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the component never sent %s; it sent:\n%s", re, s[from:])
		}
	}
}

var sentIQ = regexp.MustCompile(`<iq [^>]*\bid="([^"]+)"`)

// A remote server's answer to the bridge's vCard request is read whatever
// XML it is, and nothing in it stops the bridge. RFC 6120 §8.2.3 puts "zero
// or one" payload child in a result, and XML lets character data stand
// beside it: text (or whitespace) before the vCard is skipped. XEP-0054
// §3.1 answers "an IQ-result containing an empty <vCard/> element" or an
// error (item-not-found) when there is no vCard: an answer that carries
// no vCard (no element at all, only CDATA, an element of another kind) is
// garbage, and that fetch fails for good (ErrPermanent), as after an
// error answer. No answer within the wait is not the entity's final word: an
// ordinary error, tried again later.
func TestAskReadsWhateverTheAnswerIs(t *testing.T) {
	r := newLinkRig(t)
	pup, juliet := jid.MustParse(pupFull), jid.MustParse("juliet@capulet.lit")
	cases := []struct {
		name, payload string
		noAnswer      bool
		fn            string
		permanent     bool // else no error, unless noAnswer
	}{
		{name: "text before the vCard", payload: `x<vCard xmlns='vcard-temp'/>`},
		{name: "text before a filled vCard", payload: `some text<vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN></vCard>`, fn: "Juliet Capulet"},
		{name: "pretty-printed", payload: "\n  <vCard xmlns='vcard-temp'>\n    <FN>Juliet</FN>\n  </vCard>\n", fn: "Juliet"},
		{name: "CDATA only", payload: `<![CDATA[<vCard xmlns='vcard-temp'/>]]>`, permanent: true},
		{name: "no payload", payload: ``, permanent: true},
		{name: "another element", payload: `<query xmlns='jabber:iq:version'><name>x</name></query>`, permanent: true},
		{name: "an error", payload: `<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`, permanent: true},
		{name: "no answer", noAnswer: true},
	}
	from := 0
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		if c.noAnswer {
			cancel()
			ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
		}
		type result struct {
			card *mapping.VCard
			err  error
		}
		got := make(chan result, 1)
		go func() {
			card, err := r.c.FetchVCard(ctx, pup, juliet)
			got <- result{card, err}
		}()
		var subs []string
		subs, from = r.out.wait(t, sentIQ, from)
		if !c.noAnswer {
			typ := "result"
			if strings.HasPrefix(c.payload, "<error") {
				typ = "error"
			}
			answer := `<iq type='` + typ + `' id='` + subs[1] + `' from='juliet@capulet.lit' to='` + pupFull + `'>` + c.payload + `</iq>`
			if err := r.srv.Write(answer); err != nil {
				t.Fatal(err)
			}
		}
		res := <-got
		cancel()
		switch {
		case c.noAnswer && (res.err == nil || errors.Is(res.err, mapping.ErrPermanent)):
			t.Errorf("%s: %v, want an error that is not permanent", c.name, res.err)
		case c.permanent && !errors.Is(res.err, mapping.ErrPermanent):
			t.Errorf("%s: %v, want a permanent error", c.name, res.err)
		case !c.permanent && !c.noAnswer && res.err != nil:
			t.Errorf("%s: %v", c.name, res.err)
		case !c.permanent && !c.noAnswer && res.card.FN != c.fn:
			t.Errorf("%s: FN %q, want %q", c.name, res.card.FN, c.fn)
		}
	}
	// The loop still reads: a disco#info is answered.
	if err := r.srv.Write(`<iq type='get' id='after' from='juliet@capulet.lit/balcony' to='matrix.example.org'><query xmlns='` + NSDiscoInfo + `'/></iq>`); err != nil {
		t.Fatal(err)
	}
	r.out.wait(t, regexp.MustCompile(`<iq [^>]*id="after"[^>]*type="result"`), from)
}

// A stanza whose handling panics (here: the counter, standing for any bug
// on the way) costs that stanza only: the panic is counted and logged,
// with its stack the first time at that place, an IQ get is answered
// internal-server-error (RFC 6120 §8.3.3.8; §8.2.3: a get or set is always
// answered), and the same stream goes on to the next stanza.
func TestAPanickingHandlerLeavesTheStreamServing(t *testing.T) {
	r := newLinkRig(t)
	unsupported := func(id string) string {
		return `<iq type='get' id='` + id + `' from='juliet@capulet.lit/balcony' to='matrix.example.org'><query xmlns='jabber:iq:last'/></iq>`
	}
	steps := []struct {
		name, panicOn, stanza, answer string // answer: a regexp; "" for none
	}{
		{"an IQ get", "xmpp_iq/unsupported", unsupported("p1"),
			`<iq xmlns="jabber:component:accept" id="p1" from="matrix.example.org" to="juliet@capulet.lit/balcony" type="error"><error type="cancel"><internal-server-error xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"></internal-server-error></error></iq>`},
		{"the same again", "xmpp_iq/unsupported", unsupported("p2"), `<iq [^>]*id="p2"[^>]*type="error"><error type="cancel"><internal-server-error `},
		{"a message", "xmpp_message/malformed", `<message from='not a jid@@' to='` + pupBare + `' id='m1'><body>hi</body></message>`, ""},
	}
	from := 0
	for i, s := range steps {
		r.counts.mu.Lock()
		r.counts.panicOn = s.panicOn
		r.counts.mu.Unlock()
		if err := r.srv.Write(s.stanza); err != nil {
			t.Fatal(err)
		}
		if s.answer != "" {
			_, from = r.out.wait(t, regexp.MustCompile(s.answer), from)
		}
		for deadline := time.Now().Add(10 * time.Second); r.counts.get("panic/xmpp_stanza") != i+1; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d panics counted, want %d", s.name, r.counts.get("panic/xmpp_stanza"), i+1)
			}
		}
	}
	r.counts.mu.Lock()
	r.counts.panicOn = ""
	r.counts.mu.Unlock()
	if err := r.srv.Write(`<iq type='get' id='after' from='juliet@capulet.lit/balcony' to='matrix.example.org'><query xmlns='` + NSDiscoInfo + `'/></iq>`); err != nil {
		t.Fatal(err)
	}
	r.out.wait(t, regexp.MustCompile(`<iq [^>]*id="after"[^>]*type="result"`), from)
	if n := r.srv.Connections(); n != 1 || !r.c.Connected() {
		t.Errorf("%d connections (connected: %v), want the first one still serving", n, r.c.Connected())
	}
	r.logs.mu.Lock()
	logged := string(r.logs.sent)
	r.logs.mu.Unlock()
	if n := strings.Count(logged, `"stack":`); n != 2 {
		t.Errorf("%d stacks logged for 3 panics at 2 places, want 2:\n%s", n, logged)
	}
	r.out.mu.Lock()
	sent := string(r.out.sent)
	r.out.mu.Unlock()
	if n := strings.Count(sent, `id="p1"`); n != 1 {
		t.Errorf("p1 answered %d times, want once:\n%s", n, sent)
	}
}
