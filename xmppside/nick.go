// XEP-0172: User Nickname.

package xmppside

import (
	"encoding/xml"
	"strings"
	"unicode"
)

// NSNick is the namespace of XEP-0172.
const NSNick = "http://jabber.org/protocol/nick"

// maxNickRunes bounds a nickname the bridge takes: a name to show, not a
// place to store text.
const maxNickRunes = 64

var _ = register(&xep{
	namespaces: []string{NSNick},
	decode:     decodeNick,
})

// decodeNick reads the sender's <nick/> (§4.2: in a message to someone
// who may not have it), its spaces trimmed, tabs and newlines made
// spaces and other control characters dropped; "" if nothing is left.
// Of several, the last.
func decodeNick(in *inMessage, start xml.StartElement) error {
	if start.Name.Local != "nick" {
		return in.skip()
	}
	nick, err := in.text()
	in.m.Nick = cleanNick(nick)
	return err
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
