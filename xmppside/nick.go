// XEP-0172: User Nickname.

package xmppside

import (
	"strings"
	"unicode"

	"xmppbridge/mapping"
)

// NSNick is the namespace of XEP-0172.
const NSNick = "http://jabber.org/protocol/nick"

// maxNickRunes bounds a nickname the bridge takes: a name to show, not a
// place to store text.
const maxNickRunes = 64

// decodeNick reads the sender's <nick/> (§4.2: in a message to someone
// who may not have it), its spaces trimmed, tabs and newlines made
// spaces and other control characters dropped; "" if it has none or
// nothing is left.
func decodeNick(in *inMessage, m *mapping.XMPPMessage) {
	if in.Nick == nil {
		return
	}
	m.Nick = cleanNick(*in.Nick)
}

// cleanNick is nick as the bridge takes it (decodeNick).
func cleanNick(nick string) string {
	nick = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsSpace(r):
			return ' '
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, strings.TrimSpace(nick))
	if r := []rune(nick); len(r) > maxNickRunes {
		nick = string(r[:maxNickRunes])
	}
	return nick
}
