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
	counts *lockedCounts
}

func newLinkRig(t *testing.T) *linkRig {
	t.Helper()
	r := &linkRig{streamRig: newStreamRig(t, mapping.PresencePolicy{AutoSubscribe: true}), out: &tapBuffer{}, counts: &lockedCounts{m: map[string]int{}}}
	r.c.Core.SetSides(&recMatrix{}, r.c)
	srv, err := standin.NewXMPPServer("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	r.srv = srv
	srv.Tap = func() io.WriteCloser { return r.out }
	r.c.Address, r.c.Secret, r.c.Count = srv.Addr, "s3cret", r.counts.count
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
	// panicOn makes counting this key panic, as a bug in a handler would.
	panicOn string
}

func (l *lockedCounts) count(what, reason string) {
	l.mu.Lock()
	key := what + "/" + reason
	l.m[key]++
	bomb := key == l.panicOn
	l.mu.Unlock()
	if bomb {
		panic("counting " + key)
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
