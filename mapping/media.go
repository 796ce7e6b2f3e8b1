package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// Media: pictures and files, one message kind on both sides. From XMPP, a
// message with a XEP-0066 <x xmlns='jabber:x:oob'><url/></x> (what
// Conversations, Gajim, Dino and Monal send after a XEP-0363 upload, with
// the same URL as the body), or a XEP-0447 <file-sharing/> with an
// http(s) source, becomes an m.image, m.video, m.audio or
// m.file whose file the bridge fetched and put in the media repository as
// the ghost. From Matrix, those and m.sticker become a message whose body
// is a URL on the XMPP server's upload service (XEP-0363, uploaded as the
// puppet) and whose XEP-0066 <x/> carries the same URL. Each is one row of
// the id map like any message, stored before its file moves, so receipts,
// corrections, replies, reactions and retractions find it as they find
// text. The file moves in a job of the pool of jobs that wait on a remote
// party (jobKind.asks), so that a slow server holds no place that messages
// and receipts need; what follows the file (the post) goes in the pair's,
// the room's or the side's order like any message, after those sent while
// the file moved.

// NSOOB is the namespace of XEP-0066's <x/> in a message (§3).
const NSOOB = "jabber:x:oob"

// OOB is a XEP-0066 <x xmlns='jabber:x:oob'/>: the URL of a file and its
// description (§3: <url/> required, <desc/> optional).
type OOB struct {
	URL  string `json:"url"`
	Desc string `json:"desc,omitempty"`
}

// NSSFS is the namespace of XEP-0447's <file-sharing/> in a message, and
// NSFileMetadata that of its XEP-0446 <file/>.
const (
	NSSFS          = "urn:xmpp:sfs:0"
	NSFileMetadata = "urn:xmpp:file:metadata:0"
)

// SharedFile is a XEP-0447 <file-sharing/> (§3.1): the first of its
// sources that is a XEP-0103 <url-data/> with an http(s) target (""
// for none), how many sources the bridge cannot use (XEP-0358 jingle,
// other schemes), and its XEP-0446 <file/>'s name and description, the
// file's name and caption on Matrix. The type, size and pixels it
// claims are not kept: the bytes say them, as for any file.
type SharedFile struct {
	URL     string
	Ignored int
	Name    string
	Desc    string
}

// MediaFile is a file the bridge moved: where it is now (an mxc:// URI in
// the media repository, or the URL of the XMPP upload service), its name,
// its MIME type as its bytes tell it, its size, and an image's pixels (0
// when not known).
type MediaFile struct {
	URL    string `json:"url"`
	Name   string `json:"name"`
	Type   string `json:"type"`
	Size   int64  `json:"size"`
	Width  int    `json:"w,omitempty"`
	Height int    `json:"h,omitempty"`
	// MsgType is the msgtype it is posted as on Matrix (mediaMsgType).
	MsgType string `json:"msgtype,omitempty"`
	// Caption is what the sender said with it, "" for nothing.
	Caption string `json:"caption,omitempty"`
	// Thumbnail is a large picture's scaled-down copy in the media
	// repository (m.image's info.thumbnail_url), nil for none.
	Thumbnail *MediaThumbnail `json:"thumbnail,omitempty"`
}

// MediaThumbnail is a thumbnail in the media repository: its mxc:// URI
// and its thumbnail_info.
type MediaThumbnail struct {
	URL    string `json:"url"`
	Type   string `json:"type"`
	Size   int64  `json:"size"`
	Width  int    `json:"w"`
	Height int    `json:"h"`
}

// Media moves files between the two sides; package media implements it
// with the fetcher of remote URLs and both sides' uploads.
type Media interface {
	// ToMatrix fetches url, which an XMPP person sent, and puts it in
	// the media repository as ghost. An error wrapping ErrPermanent: it
	// will never be fetched (refused, too large, gone); ErrNotConnected:
	// the homeserver is away.
	ToMatrix(ctx context.Context, ghost id.UserID, url string) (*MediaFile, error)
	// ToXMPP downloads src (an mxc:// URI) from the homeserver and puts
	// it on the XMPP server's upload service as from, returning the file
	// with its URL there. Errors as ToMatrix's; ErrNotConnected only for
	// the XMPP side.
	ToXMPP(ctx context.Context, from jid.JID, src MediaFile) (*MediaFile, error)
}

// SetMedia connects the core to what moves files. Without it (nil), a
// message with a file crosses as its text and link.
func (b *Bridge) SetMedia(m Media) { b.media = m }

// The msgtypes of files (client-server API, m.room.message msgtypes), and
// the sticker's event type, which the Matrix side hands in as a msgtype.
const (
	MsgImage   = "m.image"
	MsgVideo   = "m.video"
	MsgAudio   = "m.audio"
	MsgFile    = "m.file"
	MsgSticker = "m.sticker"
)

// mediaMsgType is the msgtype of a file of MIME type typ.
func mediaMsgType(typ string) string {
	switch {
	case strings.HasPrefix(typ, "image/"):
		return MsgImage
	case strings.HasPrefix(typ, "video/"):
		return MsgVideo
	case strings.HasPrefix(typ, "audio/"):
		return MsgAudio
	}
	return MsgFile
}

// isMediaMsgType tells whether a Matrix message of msgtype t carries a
// file.
func isMediaMsgType(t string) bool {
	switch t {
	case MsgImage, MsgVideo, MsgAudio, MsgFile, MsgSticker:
		return true
	}
	return false
}

// oobToFetch is the URL of m's file the bridge fetches, the caption to
// go with it and its name ("": the URL's). From a XEP-0447
// <file-sharing/> with an http(s) source: its <desc/> and <name/> (§3.1:
// the body is a fallback that says nothing more). Else from XEP-0066's
// <x/>: the sender's own words when the body is more than the URL
// (clients send the URL as the body for those without XEP-0066), else
// the <desc/>. "" if there is nothing to fetch: neither, or a URL that is
// not http(s) (XEP-0454's aesgcm:// is an encrypted file whose key is in
// the fragment, which the bridge cannot show on Matrix and passes on as
// the text it is).
func oobToFetch(m *XMPPMessage) (link, caption, name string) {
	if s := m.Shared; s != nil && IsHTTPURL(s.URL) {
		return s.URL, strings.TrimSpace(s.Desc), fileName(s.Name)
	}
	if m.OOB == nil || !IsHTTPURL(m.OOB.URL) {
		return "", "", ""
	}
	body := strings.TrimSpace(m.Body)
	if body == "" || body == m.OOB.URL {
		return m.OOB.URL, strings.TrimSpace(m.OOB.Desc), ""
	}
	return m.OOB.URL, strings.TrimSpace(strings.ReplaceAll(body, m.OOB.URL, "")), ""
}

// IsHTTPURL tells whether link is an http(s) URL with a host: one the
// bridge may fetch.
func IsHTTPURL(link string) bool {
	u, err := url.Parse(link)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// maxFileName bounds a file name a sender gives (most file systems'
// 255 bytes).
const maxFileName = 255

// fileName is name, which a remote sender gave, as a file's name: what
// follows its last / or \ (XEP-0446 §3: a name must not pass for a
// path), "" for nothing usable or one longer than maxFileName.
func fileName(name string) string {
	name = strings.TrimSpace(name[strings.LastIndexAny(name, `/\`)+1:])
	if name == "." || name == ".." || len(name) > maxFileName || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return ""
	}
	return name
}

// JobMediaFromXMPP fetches the file of a message from XMPP and puts it in
// the media repository; JobMediaToMatrix posts it.
const (
	JobMediaFromXMPP JobKind = "matrix.media_fetch"
	JobMediaToMatrix JobKind = "matrix.media_send"
)

// mediaFetchArgs is the payload of a JobMediaFromXMPP: the URL, the
// caption, and the file's name if the sender gave one.
type mediaFetchArgs struct {
	URL     string `json:"url"`
	Caption string `json:"caption,omitempty"`
	Name    string `json:"name,omitempty"`
}

// fetched completes file, fetched for args: its msgtype by its type,
// the caption, and the name the sender gave (else the URL's).
func (args mediaFetchArgs) fetched(file *MediaFile) {
	file.MsgType, file.Caption = mediaMsgType(file.Type), args.Caption
	if args.Name != "" {
		file.Name = args.Name
	}
}

// toFetch is the fetch of the file m's <x/> or <file-sharing/> names, from who (a person's
// bare JID, or a chat's occupant), if the URL is one to fetch, a media
// mover is set and who's budget of fetches (limits.media_fetches_per_hour)
// lets it; false to send the message as its text.
func (b *core) toFetch(log zerolog.Logger, m *XMPPMessage, who string) (mediaFetchArgs, bool) {
	link, caption, name := oobToFetch(m)
	if link == "" || b.media == nil {
		if m.OOB != nil || m.Shared != nil {
			b.count("media_fetch", "not_fetched")
		}
		return mediaFetchArgs{}, false
	}
	if reason := b.in.strangers.admit(ask{mediaOfJID, who}); reason != "" {
		log.Info().Str("from", who).Msg("An XMPP person sent more files than limits.media_fetches_per_hour; this one goes as its link")
		b.count("media_fetch", reason)
		return mediaFetchArgs{}, false
	}
	return mediaFetchArgs{URL: link, Caption: caption, Name: name}, true
}

// mediaJobs are the jobs that carry a message of peer to mxid whose <x/>
// names a file to fetch (toFetch): the fetch, which queues the post;
// nil to send it as text.
func (b *core) mediaJobs(log zerolog.Logger, m *XMPPMessage, mxid id.UserID, peer jid.JID) []*Job {
	args, ok := b.toFetch(log, m, peer.String())
	if !ok {
		return nil
	}
	payload, _ := json.Marshal(args) // strings only
	return []*Job{newJob(JobMediaFromXMPP, about{mxid: mxid, peer: peer}, 0, payload)}
}

// The fetch waits on a remote server: in the pool of such jobs, one
// after the other for a pair. Its side is the homeserver's, which it
// uploads to: while that is away, it waits with the rest.
var _ = register(JobMediaFromXMPP, jobKind{side: SideMatrix, order: byPair, payload: mediaFetchArgs{}, asks: true,
	run: withPayload(func(b *Bridge, ctx context.Context, job *Job, args mediaFetchArgs) error {
		return b.messages.fetchFromXMPP(ctx, job, args)
	})})

// fetchFromXMPP runs a JobMediaFromXMPP: the file fetched and uploaded,
// then the message posted with it (JobMediaToMatrix), in the pair's
// order. A file that cannot be had leaves the message as what it is, its
// text and link (JobSendToMatrix), counted and logged; one whose fetch
// failed for a reason that may pass is tried again, up to AskTries, and
// then goes as text too: nothing is dropped.
func (b *messages) fetchFromXMPP(ctx context.Context, job *Job, args mediaFetchArgs) error {
	msg, err := b.store.MessageByRow(ctx, job.MessageID)
	if err != nil {
		return fmt.Errorf("load message %d: %w", job.MessageID, err)
	}
	if msg.EventID != "" {
		return nil // posted before a crash
	}
	if b.mayReach(msg.MXID, msg.PeerJID) != "" {
		// Nothing fetched for whom nothing may go: the send refuses it,
		// and answers its sender, as for any message.
		return b.follow(ctx, msg, JobSendToMatrix, nil)
	}
	log := b.log.With().Int64("row", msg.RowID).Str("jid", msg.PeerJID.String()).Str("url", args.URL).Logger()
	file, err := b.media.ToMatrix(ctx, b.cfg.Identities.Ghost(msg.PeerJID), args.URL)
	if mayPass(err, job) {
		return fmt.Errorf("fetch the file of message %d: %w", msg.RowID, err)
	} else if err != nil {
		log.Info().Err(err).Msg("Could not fetch the file an XMPP person sent; it goes to Matrix as its link")
		b.count("media_fetch", "failed")
		return b.follow(ctx, msg, JobSendToMatrix, nil)
	}
	args.fetched(file)
	log.Debug().Str("mxc", file.URL).Str("type", file.Type).Int64("size", file.Size).Msg("Fetched the file of a message from XMPP")
	b.count("media_fetch", "uploaded")
	return b.follow(ctx, msg, JobMediaToMatrix, file)
}

// mayPass tells whether err, of a job that moves a file, may pass if
// the job is tried again: a side that is away (the outbox waits for it),
// or any failure not ErrPermanent while the job has tries left (AskTries;
// after the last one it would be given up, and the message with it).
func mayPass(err error, job *Job) bool {
	return errors.Is(err, ErrNotConnected) || (err != nil && !errors.Is(err, ErrPermanent) && job.Attempts+1 < AskTries)
}

// follow stores and queues the job of kind that sends msg once its file
// has moved (file, its payload) or will not (nil: the row alone).
func (b *messages) follow(ctx context.Context, msg *Message, kind JobKind, file *MediaFile) error {
	var payload []byte
	if file != nil {
		payload, _ = json.Marshal(file) // strings and numbers only
	}
	next := newJob(kind, about{room: msg.RoomID, mxid: msg.MXID, peer: msg.PeerJID}, msg.RowID, payload)
	if err := b.store.AddJobs(ctx, next); err != nil {
		return fmt.Errorf("queue the send of message %d: %w", msg.RowID, err)
	}
	b.queue(next)
	return nil
}

var _ = register(JobMediaToMatrix, jobKind{side: SideMatrix, order: byPair, payload: MediaFile{},
	run: withPayload(func(b *Bridge, ctx context.Context, job *Job, file MediaFile) error {
		return b.messages.sendToMatrix(ctx, job.MessageID, &file)
	})})

// JobGroupMediaFetch fetches the file of an occupant's message in a chat
// as their ghost; JobGroupToMatrix posts it.
const JobGroupMediaFetch JobKind = "matrix.group_media_fetch"

// A room's files are fetched one after the other, in the pool of jobs
// that wait on a remote party.
var _ = register(JobGroupMediaFetch, jobKind{side: SideMatrix, order: byRoom, payload: groupArgs{}, asks: true,
	run: withPayload(func(b *Bridge, ctx context.Context, job *Job, args groupArgs) error {
		return b.groups.fetchFromMUC(ctx, job, args)
	})})

// fetchFromMUC runs a JobGroupMediaFetch: as fetchFromXMPP, for an
// occupant of a chat, whose message is then posted by JobGroupToMatrix
// with the file, or as its text.
func (g *groups) fetchFromMUC(ctx context.Context, job *Job, args groupArgs) error {
	if args.Fetch == nil {
		return fmt.Errorf("%w: no file to fetch", ErrPermanent)
	}
	fetch := *args.Fetch
	args.Fetch = nil
	send := groupJob(JobGroupToMatrix, args.Room, job.MessageID, args)
	if muc, err := jid.Parse(args.MUC); err != nil || g.mayReach("", muc) != "" {
		return g.queueStored(ctx, send) // which refuses it
	}
	ghost, err := g.ghostOf(args.Member)
	if err != nil {
		return err
	}
	file, err := g.media.ToMatrix(ctx, ghost, fetch.URL)
	if mayPass(err, job) {
		return fmt.Errorf("fetch the file of message %d: %w", job.MessageID, err)
	} else if err != nil {
		g.log.Info().Err(err).Int64("row", job.MessageID).Str("url", fetch.URL).Msg("Could not fetch the file an occupant sent; it goes to Matrix as its link")
		g.count("media_fetch", "failed")
	} else {
		fetch.fetched(file)
		args.File = file
		send = groupJob(JobGroupToMatrix, args.Room, job.MessageID, args)
		g.count("media_fetch", "uploaded")
	}
	return g.queueStored(ctx, send)
}

// mediaOut is the Matrix message of file: its name as the body, or,
// with a caption, the caption as the body and the name as filename
// (client-server API v1.10, "Media captions").
func mediaOut(file *MediaFile) *OutMatrix {
	out := &OutMatrix{Body: file.Name, Media: file}
	if file.Caption != "" {
		out.Body = file.Caption
	}
	return out
}

// JobMediaFromMatrix puts the file of a message from Matrix on the XMPP
// upload service; JobMediaToXMPP sends the message with its URL.
const (
	JobMediaFromMatrix JobKind = "xmpp.media_upload"
	JobMediaToXMPP     JobKind = "xmpp.media_send"
)

// A room's files go up one after the other, in the pool of jobs that
// wait on a remote party; the XMPP side's, which it uploads to.
var _ = register(JobMediaFromMatrix, jobKind{side: SideXMPP, order: byRoom, payload: MediaFile{}, asks: true,
	run: withPayload(func(b *Bridge, ctx context.Context, job *Job, src MediaFile) error {
		return b.messages.uploadToXMPP(ctx, job, src)
	})})

// uploadToXMPP runs a JobMediaFromMatrix: the file uploaded as the
// sender's puppet, then the message sent with its URL (JobMediaToXMPP),
// in the side's order. A file that can never go up (too large, no upload
// service, refused) is marked failed for its sender, saying why; one
// whose upload failed for a reason that may pass is tried again, up to
// AskTries.
func (b *messages) uploadToXMPP(ctx context.Context, job *Job, src MediaFile) error {
	msg, err := b.store.MessageByRow(ctx, job.MessageID)
	if err != nil {
		return fmt.Errorf("load message %d: %w", job.MessageID, err)
	}
	if err := b.unreachable(msg.MXID, msg.PeerJID); err != nil {
		return b.notCarried(ctx, msg, err)
	}
	from, err := b.cfg.Identities.PuppetFrom(msg.MXID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	file, err := b.media.ToXMPP(ctx, from, src)
	if mayPass(err, job) {
		return fmt.Errorf("upload the file of message %d: %w", msg.RowID, err)
	} else if err != nil {
		b.log.Info().Err(err).Int64("row", msg.RowID).Str("mxc", src.URL).Msg("Could not put a file from Matrix on the XMPP upload service")
		b.count("media_upload", "failed")
		return b.failMedia(ctx, msg, "the bridge could not upload this file to XMPP: "+err.Error())
	}
	file.Caption = src.Caption
	b.count("media_upload", "uploaded")
	return b.follow(ctx, msg, JobMediaToXMPP, file)
}

// The message with its URL keeps the side's order, as every message to
// XMPP does.
var _ = register(JobMediaToXMPP, jobKind{side: SideXMPP, order: bySide, payload: MediaFile{},
	run: withPayload(func(b *Bridge, ctx context.Context, job *Job, file MediaFile) error {
		return b.messages.sendToXMPP(ctx, job.MessageID, &file)
	})})

// mediaStanza makes out the message of file: its URL as the body (what
// clients without XEP-0066 show, and what those with it recognise as a
// file to show inline when it is the whole body) and in XEP-0066's <x/>
// (§3), the caption as its <desc/>.
func mediaStanza(out *OutMessage, file *MediaFile) {
	out.Body = file.URL
	out.OOB = &OOB{URL: file.URL, Desc: file.Caption}
}

// outgoing is what a Matrix message evt of a portal with peer goes to
// XMPP as: its row's body and the job that sends it (text: the send
// itself; a file: its upload first, the body being its caption, else its
// name). ok false for one that does not go, with the jobs that say so to
// its sender: a failure status for an encrypted file (its "file" instead
// of "url", which the bridge cannot decrypt) or a file with no media mover
// set, none (counted) for a msgtype the bridge does not carry.
func (b *core) outgoing(evt MatrixEvent, peer jid.JID) (body string, job *Job, refused []*Job, ok bool) {
	if body, ok := textOf(evt); ok {
		return body, newJob(JobSendToXMPP, about{room: evt.Room, mxid: evt.Sender, peer: peer}, 0, nil), nil, true
	}
	f := evt.File
	fail := ""
	switch {
	case f == nil || !isMediaMsgType(evt.MsgType):
		b.count("matrix_event", ReasonMsgType)
		return "", nil, nil, false
	case f.Encrypted:
		b.count("media_upload", "encrypted")
		fail = "encrypted files cannot reach XMPP: this bridge does not take part in end-to-end encryption"
	case b.media == nil:
		b.count("media_upload", "no_media")
		fail = "this bridge does not carry files"
	}
	if fail != "" {
		payload, _ := json.Marshal(StatusArgs{Condition: string(ReasonMsgType), ByBridge: true, Room: evt.Room, Event: evt.ID, Text: fail}) // strings only
		return "", nil, []*Job{newJob(JobMatrixStatus, about{room: evt.Room}, 0, payload)}, false
	}
	src := MediaFile{URL: f.URL, Name: f.Name, Type: f.Type, Size: f.Size, Caption: f.Caption}
	payload, _ := json.Marshal(src) // strings and numbers only
	body = f.Caption
	if body == "" {
		body = f.Name
	}
	return body, newJob(JobMediaFromMatrix, about{room: evt.Room}, 0, payload), nil, true
}

// fileEdit is what an m.replace of a file (evt, whose m.new_content is a
// file msgtype) goes to XMPP as, as outgoing's: a XEP-0308 correction
// that carries the file again, the URL as its body and in XEP-0066 <x/>
// with the new caption as <desc/>, as the file's first message did;
// words alone in the correction would replace what XMPP clients show
// as the file. The file goes up again (or gets a new signed URL): the
// id map keeps no file's URL on XMPP, and m.new_content may name
// another file.
func (b *core) fileEdit(evt MatrixEvent, peer jid.JID) (body string, job *Job, refused []*Job, ok bool) {
	return b.outgoing(MatrixEvent{ID: evt.ID, Room: evt.Room, Sender: evt.Sender, MsgType: evt.Rel.NewMsgType, File: evt.File}, peer)
}

// addJobs stores jobs and queues them.
func (b *core) addJobs(ctx context.Context, jobs []*Job) error {
	if len(jobs) == 0 {
		return nil
	}
	if err := b.store.AddJobs(ctx, jobs...); err != nil {
		return fmt.Errorf("queue %d jobs: %w", len(jobs), err)
	}
	b.queue(jobs...)
	return nil
}

// failMedia marks msg, a file from Matrix that cannot reach XMPP, failed
// for its sender, saying why: the send is dropped after.
func (b *core) failMedia(ctx context.Context, msg *Message, text string) error {
	payload, _ := json.Marshal(StatusArgs{Condition: string(ReasonUndeliverable), ByBridge: true, Room: msg.RoomID, Event: msg.EventID, Text: text}) // strings only
	if err := b.addJobs(ctx, []*Job{newJob(JobMatrixStatus, about{room: msg.RoomID}, 0, payload)}); err != nil {
		return fmt.Errorf("mark a file that cannot reach XMPP failed: %w", err)
	}
	return nil
}

// MatrixFile is the file of a Matrix message (m.image, m.video, m.audio,
// m.file, m.sticker): its mxc:// URI, or Encrypted for one given as an
// encrypted "file" (client-server API, "Sending encrypted attachments"),
// its name (the filename, else the body), the MIME type and size its
// info claims, and the caption (the body, where a filename differs from
// it).
type MatrixFile struct {
	URL       string
	Encrypted bool
	Name      string
	Type      string
	Size      int64
	Caption   string
}
