package mapping_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	. "xmppbridge/mapping"
)

// fakeMedia moves files by a table: a URL it knows becomes that file, any
// other fails with fail (ErrPermanent if nil).
type fakeMedia struct {
	mu      sync.Mutex
	files   map[string]*MediaFile
	fail    error
	fetched []string // "ghost url" of each ToMatrix, "from url" of each ToXMPP
}

func (f *fakeMedia) move(who, url string) (*MediaFile, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetched = append(f.fetched, who+" "+url)
	if file, ok := f.files[url]; ok {
		c := *file
		return &c, nil
	}
	if f.fail != nil {
		return nil, f.fail
	}
	return nil, fmt.Errorf("%w: 404", ErrPermanent)
}

func (f *fakeMedia) ToMatrix(_ context.Context, ghost id.UserID, url string) (*MediaFile, error) {
	return f.move(string(ghost), url)
}

func (f *fakeMedia) ToXMPP(_ context.Context, from jid.JID, src MediaFile) (*MediaFile, error) {
	return f.move(from.String(), src.URL)
}

// XEP-0066 §3's example: "Yeah, but do you have a license to Jabber?"
// with the URL of an image in <x xmlns='jabber:x:oob'/>.
const (
	oobExampleURL  = "http://www.jabber.org/images/psa-license.jpg"
	oobExampleBody = "Yeah, but do you have a license to Jabber?"
)

func withOOB(id, body, url string) *XMPPMessage {
	m := chat(id, body)
	m.OOB = &OOB{URL: url}
	return m
}

func mediaHarness(t *testing.T) (*harness, *fakeMedia) {
	t.Helper()
	h := newHarness(t)
	m := &fakeMedia{files: map[string]*MediaFile{
		oobExampleURL:              {URL: "mxc://example.org/license", Name: "psa-license.jpg", Type: "image/jpeg", Size: 1234, Width: 10, Height: 8},
		sfsExampleURL:              {URL: "mxc://example.org/summit", Name: "4a771ac1.jpg", Type: "image/jpeg", Size: 3032449, Width: 4096, Height: 2160},
		"mxc://example.org/sonnet": {URL: "https://upload.capulet.lit/abc/sonnet.pdf", Name: "sonnet.pdf", Type: "application/pdf", Size: 99},
	}}
	h.b.SetMedia(m)
	return h, m
}

// XEP-0447 §3.1, Example 1 (as xmppside decodes it): summit.jpg shared
// with a url-data and a jinglepub source, and its XEP-0446 metadata.
const sfsExampleURL = "https://download.montague.lit/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/summit.jpg"

func withSFS(id, body string, shared SharedFile) *XMPPMessage {
	m := chat(id, body)
	m.Shared = &shared
	return m
}

// XEP-0447 §3.1-3.2: a shared file's http(s) url-data source is fetched
// as a XEP-0066 URL is, its metadata's name the file's name and its
// <desc/> the caption, with no body (Example 1) or with the fallback
// body and <x/> of Example 2, which say nothing more; its jinglepub
// source is ignored and counted. A share with no source the bridge can
// use goes as its fallback body, and without one, nothing goes.
func TestMediaSharedFromXMPP(t *testing.T) {
	h, m := mediaHarness(t)
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	summit := SharedFile{URL: sfsExampleURL, Ignored: 1, Name: "summit.jpg", Desc: "Photo from the summit."}
	fallback := withSFS("s2", "Photo from the summit: "+sfsExampleURL, summit)
	fallback.OOB = &OOB{URL: sfsExampleURL}
	jingle := SharedFile{Ignored: 1, Name: "summit.jpg"}
	for _, msg := range []*XMPPMessage{withSFS("s1", "", summit), fallback, withSFS("s3", "summit.jpg (by jingle)", jingle), withSFS("s4", "", jingle)} {
		if _, err := h.b.HandleXMPPMessage(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	h.drain(t)
	text := "!dm:example.org " + string(julietGhost) + " summit.jpg (by jingle) "
	picture := "!dm:example.org " + string(julietGhost) + " m.image mxc://example.org/summit Photo from the summit. filename=summit.jpg "
	if len(h.matrix.texts) != 3 || !strings.HasPrefix(h.matrix.texts[0], text) || !strings.HasPrefix(h.matrix.texts[1], picture) || !strings.HasPrefix(h.matrix.texts[2], picture) {
		t.Errorf("posted %q,\nwant the text %q, then the picture twice: %q", h.matrix.texts, text, picture)
	}
	if len(m.fetched) != 2 || m.fetched[0] != string(julietGhost)+" "+sfsExampleURL {
		t.Errorf("fetched %q, want the url-data twice as the ghost", m.fetched)
	}
	if h.counts["media_fetch/sfs_source_ignored"] != 4 || h.counts["media_fetch/not_fetched"] != 1 || h.counts["media_fetch/uploaded"] != 2 {
		t.Errorf("counts %v", h.counts)
	}
}

// A message with a file from XMPP is fetched as the ghost and posted as
// the msgtype its type says, the sender's words as its caption and the
// file's name as filename (client-server API v1.10, media captions); the
// URL alone as body (what Conversations sends) is no caption.
func TestMediaFromXMPPPosted(t *testing.T) {
	h, m := mediaHarness(t)
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	for _, msg := range []*XMPPMessage{withOOB("m1", oobExampleBody+" "+oobExampleURL, oobExampleURL), withOOB("m2", oobExampleURL, oobExampleURL)} {
		if _, err := h.b.HandleXMPPMessage(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	h.drain(t)
	want := []string{
		"!dm:example.org " + string(julietGhost) + " m.image mxc://example.org/license " + oobExampleBody + " filename=psa-license.jpg",
		"!dm:example.org " + string(julietGhost) + " m.image mxc://example.org/license psa-license.jpg filename=psa-license.jpg",
	}
	if len(h.matrix.texts) != 2 {
		t.Fatalf("posted %q", h.matrix.texts)
	}
	for i, w := range want {
		if !strings.HasPrefix(h.matrix.texts[i], w+" ") {
			t.Errorf("posted %q, want %q", h.matrix.texts[i], w)
		}
	}
	if len(m.fetched) != 2 || m.fetched[0] != string(julietGhost)+" "+oobExampleURL {
		t.Errorf("fetched %q, want the URL twice as the ghost", m.fetched)
	}
	if h.counts["media_fetch/uploaded"] != 2 {
		t.Errorf("counts %v", h.counts)
	}
}

// What cannot be fetched, what the bridge does not fetch (XEP-0454's
// aesgcm://, whose key is in the fragment), and what is past the
// person's budget of fetches (limits.media_fetches_per_hour) goes as the
// message's text: nothing is dropped.
func TestMediaFromXMPPAsLink(t *testing.T) {
	h, m := mediaHarness(t)
	h.b.SetIntake(Limits{MediaFetches: 1}, time.Now, zerolog.Nop())
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	gone, aes := "https://upload.capulet.lit/gone.png", "aesgcm://upload.capulet.lit/x.png#00112233"
	for _, msg := range []*XMPPMessage{withOOB("g", gone, gone), withOOB("a", aes, aes), withOOB("b", oobExampleURL, oobExampleURL)} {
		if _, err := h.b.HandleXMPPMessage(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	h.drain(t)
	if len(h.matrix.texts) != 3 {
		t.Fatalf("posted %q", h.matrix.texts)
	}
	// The one fetched is posted after its fetch, behind what came after it.
	for _, body := range []string{gone, aes, oobExampleURL} {
		want := "!dm:example.org " + string(julietGhost) + " " + body + " "
		if !slices.ContainsFunc(h.matrix.texts, func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("posted %q, want the text %q", h.matrix.texts, body)
		}
	}
	if len(m.fetched) != 1 {
		t.Errorf("fetched %q, want the first only", m.fetched)
	}
	for _, c := range []string{"media_fetch/failed", "media_fetch/not_fetched", "media_fetch/" + string(ReasonMediaBudget)} {
		if h.counts[c] != 1 {
			t.Errorf("%s counted %d times, want 1: %v", c, h.counts[c], h.counts)
		}
	}
}

// A fetch that fails for a reason that may pass is tried again, and after
// its last try the message goes as its text.
func TestMediaFromXMPPRetriedThenLink(t *testing.T) {
	h, m := mediaHarness(t)
	m.fail = fmt.Errorf("timeout")
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	link := "https://upload.capulet.lit/slow.png"
	if _, err := h.b.HandleXMPPMessage(ctx, withOOB("s", link, link)); err != nil {
		t.Fatal(err)
	}
	for range AskTries {
		h.drain(t) // one try a drain: a failed job waits for the next
	}
	if len(m.fetched) != AskTries || len(h.matrix.texts) != 1 || !strings.Contains(h.matrix.texts[0], " "+link+" ") {
		t.Errorf("fetched %d times, posted %q: want %d tries, then the link", len(m.fetched), h.matrix.texts, AskTries)
	}
}

// A file from Matrix goes up as the sender's puppet and reaches XMPP with
// its URL as the body and in XEP-0066's <x/> (§3), the caption as
// <desc/>, in the message row that receipts name; an encrypted one gets a
// failure status.
func TestMediaFromMatrix(t *testing.T) {
	h, m := mediaHarness(t)
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	pdf := textEvent("$pdf", alice, "!dm:example.org", "my sonnet")
	pdf.MsgType, pdf.File = MsgFile, &MatrixFile{URL: "mxc://example.org/sonnet", Name: "sonnet.pdf", Type: "application/pdf", Size: 99, Caption: "my sonnet"}
	enc := textEvent("$enc", alice, "!dm:example.org", "secret.png")
	enc.MsgType, enc.File = MsgImage, &MatrixFile{URL: "mxc://example.org/enc", Encrypted: true, Name: "secret.png"}
	if err := h.handleTxn(ctx, MatrixTxn{ID: "t1", Events: []MatrixEvent{pdf, enc}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.sent) != 1 {
		t.Fatalf("sent %d stanzas", len(h.xmpp.sent))
	}
	out := h.xmpp.sent[0]
	url := "https://upload.capulet.lit/abc/sonnet.pdf"
	if out.Body != url || out.OOB == nil || out.OOB.URL != url || out.OOB.Desc != "my sonnet" || !out.Request.Markable {
		t.Errorf("sent body %q oob %+v requests %+v: want the URL in both, the caption as desc, markable", out.Body, out.OOB, out.Request)
	}
	if len(m.fetched) != 1 || m.fetched[0] != aliceFrom+" mxc://example.org/sonnet" {
		t.Errorf("moved %q, want the PDF as Alice's puppet", m.fetched)
	}
	row, err := h.store.MessageByXMPPID(ctx, jid.MustParse(julietJID), out.ID, FromMatrix)
	if err != nil || row.EventID != "$pdf" {
		t.Errorf("the stanza's id %s names %+v (%v), want the event $pdf", out.ID, row, err)
	}
	if len(h.matrix.failures) != 1 || !strings.HasPrefix(h.matrix.failures[0], "!dm:example.org $enc ") {
		t.Errorf("failures %q, want one for the encrypted file", h.matrix.failures)
	}
}

// Nothing is fetched for a person whose domain was blocked after the
// message came (mayReach is judged when the job runs): the send refuses
// the message as it refuses any.
func TestMediaNotFetchedForBlocked(t *testing.T) {
	h, m := mediaHarness(t)
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	if _, err := h.b.HandleXMPPMessage(ctx, withOOB("b1", oobExampleURL, oobExampleURL)); err != nil {
		t.Fatal(err)
	}
	h.b.Config().BlockedDomains = append(h.b.Config().BlockedDomains, "capulet.lit")
	h.drain(t)
	if len(m.fetched) != 0 || len(h.matrix.texts) != 0 {
		t.Errorf("fetched %q, posted %q: want nothing", m.fetched, h.matrix.texts)
	}
	if h.counts["send_refused/"+string(ReasonBlockedDomain)] != 1 {
		t.Errorf("counts %v, want one send refused", h.counts)
	}
}

// A file sent in reply crosses as a file (without the reply's quote). An
// edit of a file's caption (m.replace whose m.new_content is the file
// with its new caption: client-server API, "Event replacements", v1.10
// "Media captions") is a XEP-0308 §3 correction of the stanza the file
// became that carries the file again as its first message did: the URL
// as the body and in XEP-0066 <x/> (§3), the new caption as <desc/>.
// An edit that takes the caption away leaves the <x/> without <desc/>;
// one to an encrypted file gets a failure status.
func TestMediaRelationsFromMatrix(t *testing.T) {
	h, _ := mediaHarness(t)
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	first := textEvent("$t", alice, "!dm:example.org", "look")
	reply := textEvent("$r", alice, "!dm:example.org", "sonnet.pdf")
	reply.MsgType, reply.File = MsgFile, &MatrixFile{URL: "mxc://example.org/sonnet", Name: "sonnet.pdf", Type: "application/pdf", Size: 99}
	reply.Rel.ReplyTo = "$t"
	edit := func(evID, caption string, f MatrixFile) MatrixEvent {
		e := textEvent(evID, alice, "!dm:example.org", "* "+caption)
		e.MsgType, e.File, e.Rel = MsgFile, &f, MatrixRelation{Type: RelTypeReplace, Event: "$r", NewBody: caption, NewMsgType: MsgFile}
		return e
	}
	pdf := MatrixFile{URL: "mxc://example.org/sonnet", Name: "sonnet.pdf", Type: "application/pdf", Size: 99}
	captioned, plain, secret := pdf, pdf, pdf
	captioned.Caption = "new caption"
	secret.Encrypted = true
	if err := h.handleTxn(ctx, MatrixTxn{ID: "t1", Events: []MatrixEvent{first, reply}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.xmpp.sent) != 2 || h.xmpp.sent[1].OOB == nil || h.xmpp.sent[1].Body != "https://upload.capulet.lit/abc/sonnet.pdf" || h.xmpp.sent[1].Reply != nil {
		t.Fatalf("sent %d stanzas; the second %+v: want the text, then the file without a reply", len(h.xmpp.sent), h.xmpp.sent[len(h.xmpp.sent)-1])
	}
	original := h.xmpp.sent[1]
	h.matrixEvents(t, edit("$e1", "new caption", captioned))
	h.matrixEvents(t, edit("$e2", "sonnet.pdf", plain))
	h.matrixEvents(t, edit("$e3", "hidden", secret))
	if len(h.xmpp.sent) != 4 {
		t.Fatalf("sent %d stanzas, want the two corrections after the file", len(h.xmpp.sent))
	}
	url := "https://upload.capulet.lit/abc/sonnet.pdf"
	for i, desc := range []string{"new caption", ""} {
		c := h.xmpp.sent[2+i]
		if c.Replace != original.ID || c.Body != url || c.OOB == nil || c.OOB.URL != url || c.OOB.Desc != desc || c.Request != original.Request {
			t.Errorf("correction %d: replace %q body %q oob %+v requests %+v; want of %s, the URL in both, desc %q, a message's requests", i, c.Replace, c.Body, c.OOB, c.Request, original.ID, desc)
		}
	}
	if len(h.matrix.failures) != 1 || !strings.HasPrefix(h.matrix.failures[0], "!dm:example.org $e3 ") {
		t.Errorf("failures %q, want one for the encrypted file's edit", h.matrix.failures)
	}
	if h.counts["matrix_reply/file"] != 1 || h.counts["matrix_replace/accepted"] != 2 {
		t.Errorf("counts %v", h.counts)
	}
}

// With media.enabled false (no mover set), a file from XMPP goes as its
// link, and one from Matrix gets a failure status saying the bridge does
// not carry files.
func TestMediaDisabled(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_ = h.store.PutPortal(ctx, DirectPortal("!dm:example.org", alice, jid.MustParse(julietJID), time.Time{}))
	if _, err := h.b.HandleXMPPMessage(ctx, withOOB("d1", oobExampleURL, oobExampleURL)); err != nil {
		t.Fatal(err)
	}
	img := textEvent("$img", alice, "!dm:example.org", "cat.png")
	img.MsgType, img.File = MsgImage, &MatrixFile{URL: "mxc://example.org/cat", Name: "cat.png"}
	if err := h.handleTxn(ctx, MatrixTxn{ID: "t1", Events: []MatrixEvent{img}}); err != nil {
		t.Fatal(err)
	}
	h.drain(t)
	if len(h.matrix.texts) != 1 || !strings.Contains(h.matrix.texts[0], " "+oobExampleURL+" ") {
		t.Errorf("posted %q, want the link", h.matrix.texts)
	}
	if len(h.xmpp.sent) != 0 || len(h.matrix.failures) != 1 || h.counts["media_upload/no_media"] != 1 {
		t.Errorf("sent %d, failures %q, counts %v: want one failure", len(h.xmpp.sent), h.matrix.failures, h.counts)
	}
}
