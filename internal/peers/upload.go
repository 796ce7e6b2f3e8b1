package peers

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"strings"
	"time"

	"xmppbridge/xmppside"
)

// Upload puts data on the XEP-0363 service as c does it, as Conversations
// or Gajim do before they send a file: a slot asked of service (§4), the
// bytes PUT with the slot's headers (§6). It returns the GET URL.
func (c *XMPPClient) Upload(ctx context.Context, timeout time.Duration, service, name, typ string, data []byte) (string, error) {
	id := fmt.Sprintf("slot-%d", time.Now().UnixNano())
	if err := c.SendRaw(ctx, fmt.Sprintf(`<iq type='get' id='%s' to='%s'><request xmlns='urn:xmpp:http:upload:0' filename='%s' size='%d' content-type='%s'/></iq>`,
		id, xmlEscape(service), xmlEscape(name), len(data), xmlEscape(typ))); err != nil {
		return "", err
	}
	slot, err := c.Wait(ctx, timeout, func(s *Stanza) bool { return s.Name == "iq" && s.ID == id })
	if err != nil {
		return "", fmt.Errorf("ask %s for a slot: %w", service, err)
	}
	if slot.Type != "result" {
		return "", fmt.Errorf("%s gave no slot: %s", service, slot.XML)
	}
	var answer struct {
		Slot xmppside.UploadSlot `xml:"slot"`
	}
	if err := xml.Unmarshal([]byte(slot.XML), &answer); err != nil {
		return "", fmt.Errorf("read the slot %s: %w", slot.XML, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, answer.Slot.Put.URL, bytes.NewReader(data))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", typ)
	for _, h := range answer.Slot.Put.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("PUT %s: %w", answer.Slot.Put.URL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("PUT %s: %s", answer.Slot.Put.URL, resp.Status)
	}
	return answer.Slot.Get.URL, nil
}

// Download GETs url (an upload service's GET URL, as a client fetches a
// file it was sent) and returns its bytes.
func Download(ctx context.Context, timeout time.Duration, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSpace(url), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// PNG is a w×h picture, different for each seed, as a PNG file.
func PNG(w, h int, seed uint8) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := 0; x < w; x++ {
		for y := 0; y < h; y++ {
			img.Set(x, y, color.RGBA{uint8(x) ^ seed, uint8(y), seed, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err) // encoding to memory fails only on a bad image
	}
	return b.Bytes()
}
