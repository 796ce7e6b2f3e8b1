package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbridge/internal/peers"
	"xmppbridge/internal/standin"
	"xmppbridge/mapping"
)

// The media shape: XMPP people send pictures all at once, each a message
// whose body and XEP-0066 <x xmlns='jabber:x:oob'><url/></x> (§3) name a
// file on a stand-in HTTP file server in this process, as Conversations
// sends after a XEP-0363 upload. The bridge, allowed that server by
// media.allow_http and media.allow_networks, fetches each, spools it,
// uploads it to the stand-in homeserver's media repository (whose bytes
// are read and dropped) and posts the ghost's m.image; the relay fetches
// each and uploads it as it streams in, 4 at once as the bridge's pool of
// jobs that wait on remote parties, then posts. The bar is the bridge's
// peak RSS: under limits.memory_mib (mediaMemoryMiB) and a small constant,
// whatever the number of files in flight and their size. So three runs:
// BENCH_MEDIA_FILES (200) files of BENCH_MEDIA_KIB (1024), a tenth as many,
// and an eighth as many of eight times the size (the same bytes).

// mediaShape is one run of the media shape.
type mediaShape struct{ files, kib int }

// mediaPortals is how many people send the files, round-robin: each sends
// fewer than limits.media_fetches_per_hour, so none is refused.
const mediaPortals = 100

// mediaMemoryMiB is the bridge's limits.memory_mib in the media shape.
const mediaMemoryMiB = 64

// mediaRelayJobs is how many files the relay moves at once: as many as
// the bridge's pool of jobs that wait on remote parties.
const mediaRelayJobs = 4

func (d *driver) mediaScenarios() []*scenario {
	var out []*scenario
	for _, m := range []mediaShape{{d.mediaFiles, d.mediaKiB}, {max(1, d.mediaFiles/10), d.mediaKiB}, {max(1, d.mediaFiles/8), 8 * d.mediaKiB}} {
		s := &scenario{shape: "media", dir: fmt.Sprintf("x2m-%dx%dkib", m.files, m.kib), portals: mediaPortals, media: &m}
		for r := range mediaPortals {
			s.roomOf = append(s.roomOf, r)
		}
		s.seedDir, s.seedReq = mapping.FromXMPP, mapping.Requests{}
		out = append(out, s)
	}
	return out
}

// bridgeExtra is the YAML the bridge's config needs for the scenario.
func (s *scenario) bridgeExtra(dir string) string {
	if s.media == nil {
		return ""
	}
	return fmt.Sprintf("limits:\n    memory_mib: %d\nmedia:\n    allow_http: true\n    allow_networks: [127.0.0.1]\n    temp_dir: %q\n", mediaMemoryMiB, dir)
}

// mediaFile is a picture of kib KiB: a small PNG (whose header gives
// its type and size) followed by noise to the size, as no compression
// shrinks a photograph's bytes.
func mediaFile(kib int) []byte {
	b := peers.PNG(64, 48, 9)
	rng := rand.New(rand.NewPCG(1, 2))
	for len(b) < kib<<10 {
		b = append(b, byte(rng.Uint32()))
	}
	return b[:kib<<10]
}

// mediaServer is the stand-in file server: every path is the same file.
type mediaServer struct {
	*httptest.Server
	gets atomic.Int64
}

func newMediaServer(data []byte) *mediaServer {
	m := &mediaServer{}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.gets.Add(1)
		w.Header().Set("Content-Type", "image/png")
		http.ServeContent(w, r, path.Base(r.URL.Path), time.Time{}, bytes.NewReader(data))
	}))
	return m
}

// mediaCount is what the stand-in homeserver saw of the files: their
// uploads and, per post of an m.room.message, the time since the start.
type mediaCount struct {
	start   atomic.Int64 // unix nanoseconds of the write
	uploads atomic.Int64
	last    atomic.Int64 // unix nanoseconds of the latest request seen
	mu      sync.Mutex
	posted  []time.Duration
}

func (m *mediaCount) seen(p string) {
	m.last.Store(time.Now().UnixNano())
	switch {
	case strings.Contains(p, "/send/m.room.message/"):
		m.mu.Lock()
		m.posted = append(m.posted, time.Since(time.Unix(0, m.start.Load())))
		m.mu.Unlock()
	case strings.Contains(p, "/upload"):
		m.uploads.Add(1)
	}
}

func (m *mediaCount) got() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.posted)
}

// runMedia writes the shape's messages to the component at once and
// waits for every file's post, or until timeout, or until nothing has
// arrived for stall.
func runMedia(s *scenario, xs *standin.XMPPServer, mc *mediaCount, files *mediaServer, res *run, timeout, stall time.Duration) {
	var b strings.Builder
	for i := range s.media.files {
		link := fmt.Sprintf("%s/f/pic%d.png", files.URL, i)
		fmt.Fprintf(&b, `<message from='%s/phone' to='%s' type='chat' id='pic%d'><body>%s</body><x xmlns='jabber:x:oob'><url>%s</url></x></message>`,
			peer(i%s.portals), puppetOf(alice), i, link, link)
	}
	start := time.Now()
	mc.start.Store(start.UnixNano())
	mc.last.Store(start.UnixNano())
	if err := xs.Write(b.String()); err != nil {
		res.errs = "writing to the component: " + err.Error()
	}
	res.sent, res.want = s.media.files, s.media.files
	for mc.got() < res.want {
		now := time.Now()
		if now.Sub(start) > timeout || now.Sub(time.Unix(0, mc.last.Load())) > stall {
			res.stalled = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mc.mu.Lock()
	lat := append([]time.Duration(nil), mc.posted...)
	mc.mu.Unlock()
	res.got, res.results = len(lat), mc.uploads.Load()
	if len(lat) > 0 {
		res.dur = lat[len(lat)-1]
	}
	if res.stalled {
		res.dur = time.Since(start)
	}
	slices.Sort(lat)
	res.p50, res.p99 = percentile(lat, 50), percentile(lat, 99)
}

// mediaNote says what a media run moved and the bridge's peak RSS against
// its memory limit: the figure the shape is for.
func mediaNote(r row) string {
	m, b, l := r.s.media, r.bridge, r.relay
	mb := func(x *run) string {
		if x.dur <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(x.got)*float64(m.kib)/1024/x.dur.Seconds())
	}
	return fmt.Sprintf("%s: %d files of %d KiB, all written at once; files posted: bridge %d, relay %d; MiB/s: bridge %s, relay %s; CPU ms per file: bridge %s, relay %s; peak RSS: bridge %.0f MiB (limits.memory_mib %d), relay %.0f MiB",
		r.s.name(), m.files, m.kib, b.got, l.got, mb(b), mb(l), perFile(b), perFile(l), float64(b.rss)/1024, mediaMemoryMiB, float64(l.rss)/1024)
}

func perFile(x *run) string {
	if x.got == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(x.cpu.Microseconds())/1000/float64(x.got))
}

// relayMedia is one file the relay moves: fetched from its link and
// uploaded as it streams in, then posted as the ghost's m.image.
type relayMedia struct{ link, room, ghost string }

// relayMediaJobs moves the files of jobs, mediaRelayJobs at once, until
// jobs is closed.
func relayMediaJobs(client *http.Client, hsURL string, jobs <-chan relayMedia, wg *sync.WaitGroup) {
	for range mediaRelayJobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := relayOneFile(client, hsURL, j); err != nil {
					fmt.Fprintln(os.Stderr, "relay: media:", err)
				}
			}
		}()
	}
}

func relayOneFile(client *http.Client, hsURL string, j relayMedia) error {
	resp, err := client.Get(j.link)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	name := path.Base(j.link)
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/_matrix/media/v3/upload?filename=%s&user_id=%s", hsURL, url.QueryEscape(name), url.QueryEscape(j.ghost)), resp.Body)
	if err != nil {
		return err
	}
	req.ContentLength = resp.ContentLength
	req.Header.Set("Content-Type", resp.Header.Get("Content-Type"))
	up, err := client.Do(req)
	if err != nil {
		return err
	}
	var uploaded struct {
		ContentURI string `json:"content_uri"`
	}
	err = json.NewDecoder(up.Body).Decode(&uploaded)
	up.Body.Close()
	if err != nil {
		return err
	}
	content, _ := json.Marshal(map[string]any{"msgtype": "m.image", "body": name, "url": uploaded.ContentURI,
		"info": map[string]any{"mimetype": "image/png", "size": resp.ContentLength}})
	post, err := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/send/m.room.message/%s?user_id=%s",
		hsURL, url.PathEscape(j.room), url.PathEscape(name), url.QueryEscape(j.ghost)), bytes.NewReader(content))
	if err != nil {
		return err
	}
	sent, err := client.Do(post)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, sent.Body)
	return sent.Body.Close()
}

// relayGhost is the ghost of a bare JID, for the relay's posts.
func relayGhost(bare string) string {
	j, err := jid.Parse(bare)
	if err != nil {
		return ""
	}
	return string(ids.Ghost(j))
}
