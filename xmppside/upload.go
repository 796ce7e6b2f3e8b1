// XEP-0363: HTTP File Upload, as the puppets' client: a file from Matrix
// is put on the XMPP server's upload service (Prosody's
// mod_http_file_share, ejabberd's mod_http_upload) as the puppet of its
// sender, and its GET URL is what the XMPP person opens.

package xmppside

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"xmppbridge/mapping"
)

// NSUpload is the namespace of XEP-0363 (§3, §4).
const NSUpload = "urn:xmpp:http:upload:0"

// Uploader puts files on the upload service of the XMPP server. Make it
// with the component it asks through; Service, if set, names the upload
// service, else it is found by disco#items of ServerDomain (§3).
type Uploader struct {
	Component    *Component
	ServerDomain jid.JID
	Service      jid.JID
	// Client makes the PUT (§6); its timeout bounds the whole upload.
	Client *http.Client

	mu    sync.Mutex
	found jid.JID // the service discovered, until an upload to it fails
	max   int64   // its max-file-size (§3), 0 if it gives none
}

// UploadSlot is the answer to a slot request (§4); the end-to-end
// tests' client reads it too.
type UploadSlot struct {
	XMLName xml.Name `xml:"urn:xmpp:http:upload:0 slot"`
	Put     struct {
		URL     string `xml:"url,attr"`
		Headers []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:",chardata"`
		} `xml:"header"`
	} `xml:"put"`
	Get struct {
		URL string `xml:"url,attr"`
	} `xml:"get"`
}

// Upload implements what package media asks of the XMPP side: a slot for
// the file (§4) requested as from, then the file PUT there (§6). It
// returns the GET URL. An error wrapping ErrPermanent: the service
// refuses the file (too large, not allowed) or there is none;
// ErrNotConnected: no stream.
func (u *Uploader) Upload(ctx context.Context, from jid.JID, name string, size int64, typ string, body io.Reader) (string, error) {
	service, max, err := u.service(ctx, from)
	if err != nil {
		return "", err
	}
	if max > 0 && size > max {
		return "", fmt.Errorf("%w: %d bytes is over the %d the upload service %s takes", mapping.ErrPermanent, size, max, service)
	}
	req := xml.StartElement{Name: xml.Name{Space: NSUpload, Local: "request"}, Attr: []xml.Attr{
		{Name: xml.Name{Local: "filename"}, Value: name},
		{Name: xml.Name{Local: "size"}, Value: strconv.FormatInt(size, 10)},
		{Name: xml.Name{Local: "content-type"}, Value: typ},
	}}
	var slot UploadSlot
	if err := u.Component.ask(ctx, stanza.IQ{From: from, To: service, Type: stanza.GetIQ}, xmlstream.Wrap(nil, req), &slot, "upload slot"); err != nil {
		u.forget(err)
		return "", err
	}
	if !httpURL(slot.Put.URL) || !httpURL(slot.Get.URL) {
		return "", fmt.Errorf("%w: the upload service %s gave a slot without http(s) URLs", mapping.ErrPermanent, service)
	}
	put, err := http.NewRequestWithContext(ctx, http.MethodPut, slot.Put.URL, body)
	if err != nil {
		return "", fmt.Errorf("%w: %w", mapping.ErrPermanent, err)
	}
	put.ContentLength = size
	put.Header.Set("Content-Type", typ)
	for _, h := range slot.Put.Headers {
		// §4: only these three; §8: no newlines in them.
		switch http.CanonicalHeaderKey(h.Name) {
		case "Authorization", "Cookie", "Expires":
			put.Header.Set(h.Name, strings.NewReplacer("\r", "", "\n", "").Replace(h.Value))
		}
	}
	resp, err := u.Client.Do(put)
	if err != nil {
		return "", fmt.Errorf("put the file on %s: %w", service, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		return slot.Get.URL, nil
	case resp.StatusCode >= 500:
		return "", fmt.Errorf("put the file on %s: HTTP %d", service, resp.StatusCode)
	}
	return "", fmt.Errorf("%w: put the file on %s: HTTP %d", mapping.ErrPermanent, service, resp.StatusCode)
}

func httpURL(s string) bool {
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")
}

// forget drops the service discovered when it answered a slot request
// with an error: the next upload looks again.
func (u *Uploader) forget(err error) {
	var se *mapping.StanzaError
	if errors.As(err, &se) {
		u.mu.Lock()
		u.found = jid.JID{}
		u.mu.Unlock()
	}
}

// service is the upload service, the configured one or the first item of
// the server's disco#items whose disco#info has NSUpload (§3, Example 1-4),
// with its max-file-size.
func (u *Uploader) service(ctx context.Context, from jid.JID) (jid.JID, int64, error) {
	u.mu.Lock()
	found, max := u.found, u.max
	u.mu.Unlock()
	if !found.Equal(jid.JID{}) {
		return found, max, nil
	}
	candidates := []jid.JID{u.Service}
	if u.Service.Equal(jid.JID{}) {
		var items discoItemList
		query := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: NSDiscoItems, Local: "query"}})
		if err := u.Component.ask(ctx, stanza.IQ{From: from, To: u.ServerDomain, Type: stanza.GetIQ}, query, &items, "disco#items"); err != nil {
			return jid.JID{}, 0, err
		}
		candidates = candidates[:0]
		for _, it := range items.Items {
			if j, err := jid.Parse(it.JID); err == nil {
				candidates = append(candidates, j)
			}
		}
	}
	for _, c := range candidates {
		var info uploadInfo
		query := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: NSDiscoInfo, Local: "query"}})
		if err := u.Component.ask(ctx, stanza.IQ{From: from, To: c, Type: stanza.GetIQ}, query, &info, "disco#info"); err != nil {
			if errors.Is(err, mapping.ErrNotConnected) {
				return jid.JID{}, 0, err
			}
			continue
		}
		if !info.has(NSUpload) {
			continue
		}
		max := info.maxFileSize()
		u.mu.Lock()
		u.found, u.max = c, max
		u.mu.Unlock()
		return c, max, nil
	}
	return jid.JID{}, 0, fmt.Errorf("%w: no XEP-0363 upload service on %s", mapping.ErrPermanent, u.ServerDomain)
}

// discoItemList is a disco#items result (XEP-0030 §4.2).
type discoItemList struct {
	XMLName xml.Name `xml:"http://jabber.org/protocol/disco#items query"`
	Items   []struct {
		JID string `xml:"jid,attr"`
	} `xml:"item"`
}

// uploadInfo is a disco#info result with its XEP-0128 forms, where
// XEP-0363 §3 puts max-file-size.
type uploadInfo struct {
	XMLName  xml.Name  `xml:"http://jabber.org/protocol/disco#info query"`
	Features []feature `xml:"feature"`
	Forms    []struct {
		Fields []struct {
			Var    string   `xml:"var,attr"`
			Values []string `xml:"value"`
		} `xml:"field"`
	} `xml:"jabber:x:data x"`
}

func (i *uploadInfo) has(ns string) bool {
	for _, f := range i.Features {
		if f.Var == ns {
			return true
		}
	}
	return false
}

// maxFileSize is the max-file-size of the form of FORM_TYPE NSUpload, 0
// if none.
func (i *uploadInfo) maxFileSize() int64 {
	for _, form := range i.Forms {
		isUpload, max := false, int64(0)
		for _, f := range form.Fields {
			if len(f.Values) == 0 {
				continue
			}
			switch f.Var {
			case "FORM_TYPE":
				isUpload = strings.TrimSpace(f.Values[0]) == NSUpload
			case "max-file-size":
				max, _ = strconv.ParseInt(strings.TrimSpace(f.Values[0]), 10, 64)
			}
		}
		if isUpload && max > 0 {
			return max
		}
	}
	return 0
}

// DefaultUploadTimeout bounds one PUT to the upload service.
const DefaultUploadTimeout = 10 * time.Minute
