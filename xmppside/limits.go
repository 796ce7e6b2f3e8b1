package xmppside

import (
	"encoding/xml"
	"errors"
)

// DefaultMaxStanzaBytes bounds what the component reads of one stanza
// (limits.max_stanza_kib): above what any server passes on (Prosody
// refuses c2s stanzas over 256 KiB and s2s over 512 KiB), so that it only
// ever cuts a stanza a server should not have sent.
const DefaultMaxStanzaBytes = 1 << 20

// errStanzaTooLarge stops the decoding of a stanza over the limit.
var errStanzaTooLarge = errors.New("stanza over limits.max_stanza_kib")

// stanzaLimit reads the tokens of one stanza and fails once their text
// (names, attribute values, character data) passes max bytes: what is
// past the limit is never decoded into a value, stored or sent on.
type stanzaLimit struct {
	r    xml.TokenReader
	left int
}

func (l *stanzaLimit) Token() (xml.Token, error) {
	tok, err := l.r.Token()
	switch t := tok.(type) {
	case xml.StartElement:
		// Local names only: a Space is the decoder's translation of a
		// prefix or xmlns attribute, which is counted where it is written.
		l.left -= len(t.Name.Local)
		for _, a := range t.Attr {
			l.left -= len(a.Name.Local) + len(a.Value)
		}
	case xml.CharData:
		l.left -= len(t)
	case xml.Comment:
		l.left -= len(t)
	}
	if l.left < 0 {
		return nil, errStanzaTooLarge
	}
	return tok, err
}

// maxStanza is the limit in force.
func (c *Component) maxStanza() int {
	if c.MaxStanzaBytes > 0 {
		return c.MaxStanzaBytes
	}
	return DefaultMaxStanzaBytes
}
