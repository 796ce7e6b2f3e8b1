package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/database"
)

// The relay is the physical limit of the path: per receipt it does what the
// bridge minimally must (decode the stanza or transaction, look the id up
// in a Go map, send one HTTP request or write one stanza) and nothing else:
// no store, no checks, no retries. It is this binary started with -relay,
// a process of its own like the bridge.

type relayEntry struct {
	room, event, peer, xmppID, ghost string
	group                            bool // of a group portal: peer is the chat
}

// relayMaps reads the id map the driver seeded into the SQLite file: the
// messages to XMPP by (bare peer, stanza id) and those from XMPP by event;
// in a group portal's chat, where a marker may name anyone's message by
// the room's stanza-id (XEP-0333 §3, "groupchat"), every message by (chat,
// stanza id) in toXMPP.
func relayMaps(ctx context.Context, path string) (toXMPP, fromXMPP map[string]relayEntry, err error) {
	db, err := database.Open(ctx, "sqlite3-fk-wal", path, zerolog.Nop())
	if err != nil {
		return nil, nil, err
	}
	defer db.Close()
	groups := map[string]bool{}
	grows, err := db.DB().Query(ctx, `SELECT jid FROM portal WHERE kind='group'`)
	if err != nil {
		return nil, nil, err
	}
	for grows.Next() {
		var j string
		if err := grows.Scan(&j); err != nil {
			grows.Close()
			return nil, nil, err
		}
		groups[j] = true
	}
	grows.Close()
	rows, err := db.DB().Query(ctx, `SELECT room_id, event_id, peer_jid, xmpp_id, direction FROM message`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	toXMPP, fromXMPP = map[string]relayEntry{}, map[string]relayEntry{}
	for rows.Next() {
		var e relayEntry
		var dir string
		if err := rows.Scan(&e.room, &e.event, &e.peer, &e.xmppID, &dir); err != nil {
			return nil, nil, err
		}
		if e.group = groups[e.peer]; e.group {
			toXMPP[e.peer+"\x00"+e.xmppID] = e
		}
		if dir == "matrix" {
			j, err := jid.Parse(e.peer)
			if err != nil {
				return nil, nil, err
			}
			e.ghost = string(ids.Ghost(j))
			toXMPP[e.peer+"\x00"+e.xmppID] = e
		} else {
			fromXMPP[e.event] = e
		}
	}
	return toXMPP, fromXMPP, rows.Err()
}

func runRelay(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ExitOnError)
	dbPath := fs.String("db", "", "the seeded SQLite file to read the id map from")
	hsURL := fs.String("hs", "", "the stand-in homeserver's URL")
	delivery := fs.String("delivery", deliveryFallback, "how delivery receipts reach Matrix (as the bridge's -delivery)")
	xmppAddr := fs.String("xmpp", "", "the stand-in XMPP server's component address")
	listen := fs.String("listen", "", "where to listen for transactions")
	matrix := fs.String("matrix", matrixPush, "how Matrix receipts arrive (as the bridge's -matrix)")
	_ = fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	toXMPP, fromXMPP, err := relayMaps(ctx, *dbPath)
	if err != nil {
		return fmt.Errorf("read id map: %w", err)
	}
	conn, r, err := componentHandshake(*xmppAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	out := &stanzaWriter{w: bufio.NewWriterSize(conn, 1<<16)}

	// XMPP → Matrix: decode, look up, 32 requests in flight, kept alive.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns, transport.MaxIdleConnsPerHost = 64, 64
	client := &http.Client{Transport: transport}
	jobs := make(chan relayRequest, 1<<16)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				req, err := http.NewRequest(j.method, j.url, strings.NewReader(j.body))
				if err != nil {
					fmt.Fprintln(os.Stderr, "relay:", err)
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					fmt.Fprintln(os.Stderr, "relay:", err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	// A file (XEP-0066): fetched and uploaded as it streams in, then
	// posted in the sender's room.
	roomOfPeer := map[string]string{}
	for _, e := range fromXMPP {
		roomOfPeer[e.peer] = e.room
	}
	files := make(chan relayMedia, 1<<16)
	relayMediaJobs(client, *hsURL, files, &wg)
	occupantGhosts := map[string]string{}
	go func() {
		defer close(jobs)
		defer close(files)
		dec := xml.NewDecoder(r)
		for {
			tok, err := dec.Token()
			if err != nil {
				return
			}
			se, ok := tok.(xml.StartElement)
			if !ok || se.Name.Local != "message" {
				continue
			}
			var m struct {
				From       string `xml:"from,attr"`
				OccupantID *struct {
					ID string `xml:"id,attr"`
				} `xml:"urn:xmpp:occupant-id:0 occupant-id"`
				Received *struct {
					ID string `xml:"id,attr"`
				} `xml:"urn:xmpp:receipts received"`
				Displayed *struct {
					ID string `xml:"id,attr"`
				} `xml:"urn:xmpp:chat-markers:0 displayed"`
				OOB *struct {
					URL string `xml:"url"`
				} `xml:"jabber:x:oob x"`
			}
			if err := dec.DecodeElement(&m, &se); err != nil {
				return
			}
			bare, _, _ := strings.Cut(m.From, "/")
			if m.OOB != nil {
				if room, ok := roomOfPeer[bare]; ok {
					files <- relayMedia{link: strings.TrimSpace(m.OOB.URL), room: room, ghost: relayGhost(bare)}
				}
				continue
			}
			kind, sid := "org.matrix.msc4089.delivery", ""
			if m.Received != nil {
				sid = m.Received.ID
			} else if m.Displayed != nil {
				kind, sid = "m.read", m.Displayed.ID
			}
			e, ok := toXMPP[bare+"\x00"+sid]
			if !ok {
				continue
			}
			if e.group {
				// An occupant's marker: their ghost's m.read.
				if m.OccupantID == nil {
					continue
				}
				if e.ghost, ok = occupantGhosts[bare+"/"+m.OccupantID.ID]; !ok {
					g, err := ids.OccupantGhost(jid.MustParse(bare), m.OccupantID.ID)
					if err != nil {
						continue
					}
					e.ghost = string(g)
					occupantGhosts[bare+"/"+m.OccupantID.ID] = e.ghost
				}
			}
			if kind != "m.read" && *delivery == deliveryFallback {
				// The bot's status event on the message, as the bridge
				// sends it where the homeserver has no MSC4089.
				jobs <- relayRequest{"PUT", fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/send/%s/dlv-%s?user_id=%s",
					*hsURL, url.PathEscape(e.room), statusEventType, url.PathEscape(e.event), url.QueryEscape(string(ids.Bot()))),
					fmt.Sprintf(`{"network":"xmpp","status":"SUCCESS","delivered_to_users":[%q],"m.relates_to":{"rel_type":"m.reference","event_id":%q}}`, e.ghost, e.event)}
				continue
			}
			jobs <- relayRequest{"POST", fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/receipt/%s/%s?user_id=%s",
				*hsURL, url.PathEscape(e.room), kind, url.PathEscape(e.event), url.QueryEscape(e.ghost)), "{}"}
		}
	}()

	// Matrix → XMPP: decode the transaction, look up, one stanza each.
	puppet := puppetOf(alice)
	var puppetsMu sync.Mutex
	puppets := map[string]string{}
	puppetOfUser := func(u string) string {
		puppetsMu.Lock()
		defer puppetsMu.Unlock()
		p, ok := puppets[u]
		if !ok {
			p = puppetOf(id.UserID(u))
			puppets[u] = p
		}
		return p
	}
	// stanzas writes the stanzas of a list of ephemeral events, pushed or
	// synced alike.
	stanzas := func(events []relayEphemeral) error {
		var b strings.Builder
		for _, ev := range events {
			if ev.Type != "m.receipt" {
				continue
			}
			for evID, byType := range ev.Content {
				e, ok := fromXMPP[evID]
				if !ok {
					continue
				}
				for typ, users := range byType {
					if e.group {
						// A member's m.read: one groupchat marker from
						// their puppet (XEP-0333 §3, "groupchat").
						for u := range users {
							if typ == "m.read" {
								fmt.Fprintf(&b, `<message from='%s' to='%s' type='groupchat'><displayed xmlns='urn:xmpp:chat-markers:0' id='%s'/></message>`, puppetOfUser(u), e.peer, e.xmppID)
							}
						}
						continue
					}
					switch typ {
					case "m.delivery", "org.matrix.msc4089.delivery":
						fmt.Fprintf(&b, `<message from='%s' to='%s'><received xmlns='urn:xmpp:receipts' id='%s'/></message>`, puppet, e.peer, e.xmppID)
					case "m.read":
						fmt.Fprintf(&b, `<message from='%s' to='%s'><displayed xmlns='urn:xmpp:chat-markers:0' id='%s'/></message>`, puppet, e.peer, e.xmppID)
					}
				}
			}
		}
		return out.write(b.String())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /_matrix/app/v1/transactions/{txn}", func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			Ephemeral []relayEphemeral `json:"ephemeral"`
		}
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := stanzas(body.Ephemeral); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, "{}")
	})
	if *matrix == matrixSync {
		// The bot's /sync, long-polled as the bridge does (one request
		// at a time, 30 s), in place of the pushes.
		go relaySync(ctx, client, *hsURL, stanzas)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux}
	go func() { <-ctx.Done(); _ = srv.Close(); conn.Close() }()
	fmt.Println("ready")
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	wg.Wait()
	return nil
}

// relayEphemeral is an ephemeral event as the relay reads it.
type relayEphemeral struct {
	Type    string                                           `json:"type"`
	Content map[string]map[string]map[string]json.RawMessage `json:"content"`
}

// relaySync long-polls the homeserver's /sync and hands each batch's
// ephemeral events to stanzas, until ctx ends.
func relaySync(ctx context.Context, client *http.Client, hsURL string, stanzas func([]relayEphemeral) error) {
	since := ""
	for ctx.Err() == nil {
		u := hsURL + "/_matrix/client/v3/sync?timeout=30000"
		if since != "" {
			u += "&since=" + url.QueryEscape(since)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "relay: sync:", err)
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		var body struct {
			NextBatch string `json:"next_batch"`
			Rooms     struct {
				Join map[string]struct {
					Ephemeral struct {
						Events []relayEphemeral `json:"events"`
					} `json:"ephemeral"`
				} `json:"join"`
			} `json:"rooms"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, "relay: sync:", err)
			continue
		}
		since = body.NextBatch
		for _, r := range body.Rooms.Join {
			if err := stanzas(r.Ephemeral.Events); err != nil {
				fmt.Fprintln(os.Stderr, "relay: sync:", err)
			}
		}
	}
}

type stanzaWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (s *stanzaWriter) write(stanzas string) error {
	if stanzas == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.WriteString(stanzas); err != nil {
		return err
	}
	return s.w.Flush()
}

var streamIDRe = regexp.MustCompile(`id=['"]([^'"]+)['"]`)

// componentHandshake opens an XEP-0114 stream to addr and authenticates;
// the reader it returns starts after <handshake/>.
func componentHandshake(addr string) (net.Conn, *bufio.Reader, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (net.Conn, *bufio.Reader, error) {
		conn.Close()
		return nil, nil, fmt.Errorf("component handshake with %s: %w", addr, err)
	}
	if _, err := fmt.Fprintf(conn, `<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='%s'>`, ids.ComponentDomain); err != nil {
		return fail(err)
	}
	r := bufio.NewReaderSize(conn, 1<<16)
	header, err := r.ReadString('>')
	if err != nil {
		return fail(err)
	}
	m := streamIDRe.FindStringSubmatch(header)
	if m == nil {
		return fail(fmt.Errorf("no stream id in %q", header))
	}
	sum := sha1.Sum([]byte(m[1] + secret))
	if _, err := fmt.Fprintf(conn, "<handshake>%s</handshake>", hex.EncodeToString(sum[:])); err != nil {
		return fail(err)
	}
	if answer, err := r.ReadString('>'); err != nil || !strings.Contains(answer, "<handshake") {
		return fail(fmt.Errorf("answer %q: %v", answer, err))
	}
	return conn, r, nil
}

// relayRequest is one request the relay makes of the homeserver.
type relayRequest struct{ method, url, body string }
