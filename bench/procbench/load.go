package main

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"xmppbridge/internal/standin"
)

// tracker keeps, for every receipt the driver sends that must come out at
// the other end, when it was written and when its result was seen. A
// receipt is message i's (its index in roomOf); results name the message
// by its event id ($e<i>) or stanza id (m<i>). An "up to" result (m.read,
// a XEP-0333 marker: the bridge coalesces them) settles every receipt of
// its room up to it; any other settles its own.
type tracker struct {
	mu      sync.Mutex
	roomOf  []int
	sent    []time.Time
	arrived []time.Time
	tracked []bool
	upTo    bool
	pending map[int][]int // room -> tracked indexes not settled yet, oldest first
	want    int
	got     atomic.Int64
	others  atomic.Int64 // results about untracked messages (a flood's)
	results atomic.Int64 // every result seen (an m.read settles many)
	last    atomic.Int64 // unix nanos of the last result
}

func newTracker(roomOf []int, track []int, upTo bool) *tracker {
	t := &tracker{roomOf: roomOf, sent: make([]time.Time, len(roomOf)), arrived: make([]time.Time, len(roomOf)),
		tracked: make([]bool, len(roomOf)), upTo: upTo, pending: map[int][]int{}, want: len(track)}
	for _, i := range track {
		t.tracked[i] = true
		t.pending[roomOf[i]] = append(t.pending[roomOf[i]], i)
	}
	for _, p := range t.pending {
		slices.Sort(p)
	}
	return t
}

func (t *tracker) markSent(idx []int, at time.Time) {
	t.mu.Lock()
	for _, i := range idx {
		t.sent[i] = at
	}
	t.mu.Unlock()
}

func (t *tracker) seen(i int) {
	now := time.Now()
	t.last.Store(now.UnixNano())
	t.results.Add(1)
	if i < 0 || i >= len(t.roomOf) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.tracked[i] {
		t.others.Add(1)
		return
	}
	if !t.upTo {
		if t.arrived[i].IsZero() {
			t.arrived[i] = now
			t.got.Add(1)
		}
		return
	}
	r := t.roomOf[i]
	p := t.pending[r]
	n := 0
	for n < len(p) && p[n] <= i {
		t.arrived[p[n]] = now
		n++
	}
	t.pending[r] = p[n:]
	t.got.Add(int64(n))
}

// latencies are the settled receipts' times from written to seen, sorted.
func (t *tracker) latencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lat []time.Duration
	for i, a := range t.arrived {
		if t.tracked[i] && !a.IsZero() && !t.sent[i].IsZero() {
			lat = append(lat, a.Sub(t.sent[i]))
		}
	}
	slices.Sort(lat)
	return lat
}

func percentile(lat []time.Duration, p int) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)-1, len(lat)*p/100)]
}

// wait waits until every tracked receipt is settled; it gives up after
// timeout, or when nothing has come for stall: a stall is a result.
func (t *tracker) wait(timeout, stall time.Duration) (stalled bool) {
	start := time.Now()
	t.last.Store(start.UnixNano())
	for int(t.got.Load()) < t.want {
		now := time.Now()
		if now.Sub(start) > timeout || now.Sub(time.Unix(0, t.last.Load())) > stall {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// xmppTap reads what reaches the stand-in XMPP server for <received id/>
// and XEP-0333 <displayed id/> about m<i>, across chunk boundaries.
type xmppTap struct {
	buf  []byte
	seen func(i int)
}

var (
	tapReceived  = []byte("<received ")
	tapDisplayed = []byte("<displayed ")
)

// Write takes the next chunk of the stream.
func (x *xmppTap) Write(b []byte) (int, error) {
	x.buf = append(x.buf, b...)
	off := 0
	for {
		rest := x.buf[off:]
		k := bytes.Index(rest, tapReceived)
		if d := bytes.Index(rest, tapDisplayed); d >= 0 && (k < 0 || d < k) {
			k = d
		}
		if k < 0 {
			// Keep what could be the start of a match cut by the chunk end.
			off = max(off, len(x.buf)-len(tapDisplayed))
			break
		}
		end := bytes.IndexByte(rest[k:], '>')
		if end < 0 {
			off += k
			break
		}
		x.element(rest[k : k+end])
		off += k + end
	}
	x.buf = append(x.buf[:0], x.buf[off:]...)
	return len(b), nil
}

func (x *xmppTap) Close() error { return nil }

func (x *xmppTap) element(e []byte) {
	a := bytes.Index(e, []byte(" id="))
	if a < 0 || a+5 >= len(e) {
		return
	}
	v := e[a+5:]
	q := bytes.IndexByte(v, e[a+4])
	if q < 0 || len(v) < 2 || v[0] != 'm' {
		return
	}
	if i, err := strconv.Atoi(string(v[1:q])); err == nil {
		x.seen(i)
	}
}

// The receipts the driver sends.
type receiptKind int

const (
	xmppReceived  receiptKind = iota // XEP-0184 <received/>
	xmppDisplayed                    // XEP-0333 <displayed/>
	xmppUnknown                      // <received/> about an id nobody knows
	matrixDelivery
	matrixRead
	matrixUnknown  // m.delivery about an event nobody knows
	groupDisplayed // an occupant's XEP-0333 <displayed/> in the group's chat
	groupRead      // a member's m.read in the group's room
)

type receipt struct {
	i    int // message index; for unknown ones a number of its own
	room int
	kind receiptKind
}

// xmppStanza is what an XMPP person's client sends for r.
func xmppStanza(b *strings.Builder, r receipt, puppet string) {
	switch r.kind {
	case xmppReceived:
		fmt.Fprintf(b, `<message from='%s/res' to='%s'><received xmlns='urn:xmpp:receipts' id='m%d'/></message>`, peer(r.room), puppet, r.i)
	case xmppDisplayed:
		fmt.Fprintf(b, `<message from='%s/res' to='%s'><displayed xmlns='urn:xmpp:chat-markers:0' id='m%d'/></message>`, peer(r.room), puppet, r.i)
	case xmppUnknown:
		fmt.Fprintf(b, `<message from='%s/res' to='%s'><received xmlns='urn:xmpp:receipts' id='u%d'/></message>`, peer(r.room), puppet, r.i)
	case groupDisplayed:
		groupStanza(b, r)
	}
}

// xmppSender writes receipts to the stand-in XMPP server, 32 KiB a write.
type xmppSender struct {
	xs     *standin.XMPPServer
	t      *tracker
	puppet string
}

func (s *xmppSender) send(rs []receipt) error {
	var b strings.Builder
	var idx []int
	for n, r := range rs {
		xmppStanza(&b, r, s.puppet)
		if r.kind != xmppUnknown {
			idx = append(idx, r.i)
		}
		if b.Len() > 32<<10 || n == len(rs)-1 {
			s.t.markSent(idx, time.Now())
			if err := s.xs.Write(b.String()); err != nil {
				return err
			}
			b.Reset()
			idx = idx[:0]
		}
	}
	return nil
}

// pusher is the stand-in homeserver's side of the application service
// API: like a homeserver, it pushes one transaction at a time, with up to
// 100 of the receipts queued since the last one.
type pusher struct {
	url, token string
	t          atomic.Pointer[tracker]
	client     *http.Client
	mu         sync.Mutex
	queue      []receipt
	wake       chan struct{}
	txn        int
	errs       atomic.Int64
	lastErr    atomic.Value
}

func newPusher(url, token string) *pusher {
	return &pusher{url: url, token: token, client: &http.Client{Timeout: 30 * time.Second}, wake: make(chan struct{}, 1)}
}

func (p *pusher) enqueue(rs ...receipt) {
	p.mu.Lock()
	p.queue = append(p.queue, rs...)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run pushes until done is closed and the queue is empty.
func (p *pusher) run(done <-chan struct{}) {
	for {
		p.mu.Lock()
		n := min(len(p.queue), 100)
		batch := slices.Clone(p.queue[:n])
		p.queue = p.queue[n:]
		p.mu.Unlock()
		if n == 0 {
			select {
			case <-p.wake:
				continue
			case <-done:
				p.mu.Lock()
				empty := len(p.queue) == 0
				p.mu.Unlock()
				if empty {
					return
				}
				continue
			}
		}
		p.push(batch)
	}
}

func (p *pusher) push(batch []receipt) {
	var b strings.Builder
	var idx []int
	b.WriteString(`{"events":[],"ephemeral":[`)
	for n, r := range batch {
		if n > 0 {
			b.WriteByte(',')
		}
		typ, ev, rm, user := "m.delivery", eventID(r.i), room(r.room), alice
		switch r.kind {
		case matrixRead:
			typ = "m.read"
		case matrixUnknown:
			ev = fmt.Sprintf("$u%d", r.i)
		case groupRead:
			typ, rm, user = "m.read", groupRoom, groupMember(r.reader())
		}
		if r.kind != matrixUnknown {
			idx = append(idx, r.i)
		}
		fmt.Fprintf(&b, `{"type":"m.receipt","room_id":"%s","content":{"%s":{"%s":{"%s":{"ts":%d}}}}}`,
			rm, ev, typ, user, time.Now().UnixMilli())
	}
	b.WriteString("]}")
	p.txn++
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/_matrix/app/v1/transactions/bench%d", p.url, p.txn), strings.NewReader(b.String()))
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	p.t.Load().markSent(idx, time.Now())
	resp, err := p.client.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("transaction answered %s", resp.Status)
		}
	}
	if err != nil {
		p.errs.Add(1)
		p.lastErr.Store(err.Error())
	}
}

// paced calls each(i) for i < n at rate per second, on an absolute
// schedule, so that one late tick does not shift the rest.
func paced(n, rate int, each func(i int)) {
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d)
		}
		each(i)
	}
}
