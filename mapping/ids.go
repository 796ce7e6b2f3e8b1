package mapping

import (
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// GhostPrefix starts the localpart of every Matrix ghost of an XMPP person.
const GhostPrefix = "_xmpp_"

// Identity errors callers branch on.
var (
	ErrNotGhost  = errors.New("not a ghost user ID of this bridge")
	ErrNotPuppet = errors.New("not a puppet JID of this bridge")
	// ErrNotGroupAlias: a room alias not of a chat's portal.
	ErrNotGroupAlias = errors.New("not a chat's room alias of this bridge")
)

// Identities maps people between the two networks. It is the one place that
// decides who is who; both mappings are bijective (the Fuzz tests of ids_test.go).
type Identities struct {
	// HomeserverDomain is the server name of the homeserver (example.org).
	HomeserverDomain string
	// ComponentDomain is the XMPP component's domain (matrix.example.org).
	ComponentDomain string
	// BotLocalpart is the localpart of the bridge bot.
	BotLocalpart string
}

// Bot is the bridge bot's Matrix user ID.
func (ids Identities) Bot() id.UserID {
	return id.NewUserID(ids.BotLocalpart, ids.HomeserverDomain)
}

// Ghost is the Matrix user standing for the XMPP person with bare JID j:
// "_xmpp_" + mautrix's localpart encoding of the bare JID.
func (ids Identities) Ghost(j jid.JID) id.UserID {
	return id.NewUserID(GhostPrefix+id.EncodeUserLocalpart(j.Bare().String()), ids.HomeserverDomain)
}

// GhostJID is the inverse of Ghost. It refuses user IDs outside the ghost
// namespace and encodings that Ghost would never have produced, so that one
// XMPP person has exactly one ghost.
func (ids Identities) GhostJID(u id.UserID) (jid.JID, error) {
	local, server, err := u.Parse()
	if err != nil {
		return jid.JID{}, fmt.Errorf("%w: %q", ErrNotGhost, u)
	}
	j, err := ids.decodeJID(local, server)
	if err != nil || j.Resourcepart() != "" {
		return jid.JID{}, fmt.Errorf("%w: %q does not encode a bare JID", ErrNotGhost, u)
	}
	return j, nil
}

// decodeJID is the JID the localpart local of server encodes in the
// bridge's namespace ("_xmpp_" + the localpart encoding of a JID), if
// server is the homeserver and the encoding the one the bridge would
// make of it (so that a JID has one name on Matrix).
func (ids Identities) decodeJID(local, server string) (jid.JID, error) {
	enc, ok := strings.CutPrefix(local, GhostPrefix)
	if server != ids.HomeserverDomain || !ok {
		return jid.JID{}, errors.New("outside the namespace")
	}
	dec, err := id.DecodeUserLocalpart(enc)
	if err != nil {
		return jid.JID{}, err
	}
	j, err := jid.Parse(dec)
	if err != nil || j.String() != dec || id.EncodeUserLocalpart(dec) != enc {
		return jid.JID{}, errors.New("not the encoding of a JID")
	}
	return j, nil
}

// GroupAlias is the room alias of the multi-user chat room's portal: "#"
// and the localpart its ghost would have were it a person
// (#_xmpp_lounge=40conference.example.org:example.org), in the alias
// namespace of the registration, so that a Matrix user joins the chat by
// its address (the Matrix application service API, "Querying room
// aliases").
func (ids Identities) GroupAlias(room jid.JID) id.RoomAlias {
	return id.NewRoomAlias(GhostPrefix+id.EncodeUserLocalpart(room.Bare().String()), ids.HomeserverDomain)
}

// AliasMUC is the inverse of GroupAlias: the chat whose portal alias
// names. It takes only what GroupAlias would produce, and only a chat's
// address: a localpart, no resource.
func (ids Identities) AliasMUC(alias id.RoomAlias) (jid.JID, error) {
	local, server, ok := strings.Cut(strings.TrimPrefix(string(alias), "#"), ":")
	if !ok || !strings.HasPrefix(string(alias), "#") {
		return jid.JID{}, fmt.Errorf("%w: %q", ErrNotGroupAlias, alias)
	}
	j, err := ids.decodeJID(local, server)
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
		return jid.JID{}, fmt.Errorf("%w: %q does not encode a chat's address", ErrNotGroupAlias, alias)
	}
	return j, nil
}

// IsGhost tells whether u is one of this bridge's ghosts: a person's
// (GhostJID) or an occupant's of a multi-user chat (OccupantOf).
func (ids Identities) IsGhost(u id.UserID) bool {
	if !strings.HasPrefix(string(u), "@"+GhostPrefix) {
		// Most users asked about are people, checked once a receipt:
		// no parse for them.
		return false
	}
	if _, err := ids.GhostJID(u); err == nil {
		return true
	}
	_, _, err := ids.OccupantOf(u)
	return err == nil
}

// OccupantGhost is the Matrix user standing for the occupant key of the
// multi-user chat room (XEP-0045), whose real JID the bridge does not
// know: "_xmpp_" + the localpart encoding of room/key, a full JID, which
// no person's ghost (always a bare JID) can be. The key is the
// occupant's XEP-0421 occupant-id where the room gives one (stable
// across nick changes and rejoins), else their nick.
func (ids Identities) OccupantGhost(room jid.JID, key string) (id.UserID, error) {
	full, err := room.Bare().WithResource(key)
	if err != nil {
		return "", fmt.Errorf("occupant %q of %s: %w", key, room, err)
	}
	return id.NewUserID(GhostPrefix+id.EncodeUserLocalpart(full.String()), ids.HomeserverDomain), nil
}

// OccupantOf is the inverse of OccupantGhost: the room and the occupant's
// key. Like GhostJID it takes only what OccupantGhost would produce.
func (ids Identities) OccupantOf(u id.UserID) (jid.JID, string, error) {
	local, server, err := u.Parse()
	if err != nil {
		return jid.JID{}, "", fmt.Errorf("%w: %q", ErrNotGhost, u)
	}
	j, err := ids.decodeJID(local, server)
	if err != nil || j.Resourcepart() == "" {
		return jid.JID{}, "", fmt.Errorf("%w: %q does not encode an occupant", ErrNotGhost, u)
	}
	return j.Bare(), j.Resourcepart(), nil
}

// Puppet is the XMPP address of the Matrix user u on the component: the user
// ID without its "@", XEP-0106-escaped, as the localpart. It fails for user
// IDs that cannot be a JID localpart (too long, or changed by PRECIS case
// mapping, such as historical upper-case localparts).
func (ids Identities) Puppet(u id.UserID) (jid.JID, error) {
	s := string(u)
	if !strings.HasPrefix(s, "@") || !strings.Contains(s, ":") {
		return jid.JID{}, fmt.Errorf("puppet for %q: not a Matrix user ID", u)
	}
	local := Escape(s[1:])
	j, err := jid.New(local, ids.ComponentDomain, "")
	if err != nil {
		return jid.JID{}, fmt.Errorf("puppet for %q: %w", u, err)
	}
	if j.Localpart() != local {
		return jid.JID{}, fmt.Errorf("puppet for %q: localpart would change under PRECIS", u)
	}
	return j, nil
}

// PuppetResource is the resource of every puppet: the one full JID it
// speaks from. An XMPP account's stanzas always come from a full JID, and
// clients rely on it: profanity addresses its receipts to the sender's
// full JID (with none, Prosody handed them back to their own sender) and
// shows no chat state from a bare JID; mcabber learns capabilities only
// from presence with a resource. "matrix" says in the client's contact
// list where the person is, as a resource names a client.
const PuppetResource = "matrix"

// PuppetFrom is the full JID the puppet of u speaks from: its messages,
// receipts, notifications, chat states and available presence.
// Subscription requests and answers come from the bare JID (RFC 6121
// §3.1.2: the server stamps them so).
func (ids Identities) PuppetFrom(u id.UserID) (jid.JID, error) {
	p, err := ids.Puppet(u)
	if err != nil {
		return jid.JID{}, err
	}
	return p.WithResource(PuppetResource)
}

// PuppetUser is the inverse of Puppet: the Matrix user a puppet JID stands
// for. Only canonical escapes are accepted, so each Matrix user has exactly
// one puppet.
func (ids Identities) PuppetUser(j jid.JID) (id.UserID, error) {
	if j.Domainpart() != ids.ComponentDomain || j.Localpart() == "" {
		return "", fmt.Errorf("%w: %s", ErrNotPuppet, j)
	}
	local := j.Localpart()
	raw, ok := Unescape(local)
	if !ok || Escape(raw) != local {
		return "", fmt.Errorf("%w: %s is not a canonical XEP-0106 escape", ErrNotPuppet, j)
	}
	u := id.UserID("@" + raw)
	if _, _, err := u.Parse(); err != nil || !strings.Contains(raw, ":") {
		return "", fmt.Errorf("%w: %s does not name a Matrix user", ErrNotPuppet, j)
	}
	return u, nil
}

// escapes lists XEP-0106 §3.2's characters and their escape sequences.
var escapes = map[byte]string{
	' ': `\20`, '"': `\22`, '&': `\26`, '\'': `\27`, '/': `\2f`,
	':': `\3a`, '<': `\3c`, '>': `\3e`, '@': `\40`, '\\': `\5c`,
}

// Escape applies XEP-0106 JID escaping to a would-be localpart. Unlike the
// XEP's lenient rule for "\", every backslash is escaped: that keeps the
// mapping bijective (Unescape(Escape(s)) == s for every s).
func Escape(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		if e, ok := escapes[s[i]]; ok {
			b.WriteString(e)
		} else {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// Unescape reverses XEP-0106 escaping (§4.3): every "\hh" that is one of the
// ten escape sequences becomes its character, anywhere in the string. ok is
// false when a character that must be escaped stands unescaped. mellium's
// jid.Unescape mishandles escapes after the second character, hence our own.
func Unescape(s string) (string, bool) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+2 < len(s) {
			if r, ok := unescapes[strings.ToLower(s[i:i+3])]; ok {
				b.WriteByte(r)
				i += 2
				continue
			}
		}
		if _, must := escapes[c]; must && c != '\\' {
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

var unescapes = func() map[string]byte {
	m := make(map[string]byte, len(escapes))
	for c, e := range escapes {
		m[e] = c
	}
	return m
}()
