package peers

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// What the end-to-end tests and the demo do with multi-user chats
// (XEP-0045) and the bridge's group portals.

// JoinMUC has c join the chat muc as nick (XEP-0045 §7.2.1, no history,
// §7.2.15) and waits for the room's own presence of it (status 110,
// §7.2.2), configuring the room as an instant room (§10.1.2) if the join
// made it.
func (c *XMPPClient) JoinMUC(ctx context.Context, timeout time.Duration, muc, nick string) error {
	if err := c.SendRaw(ctx, `<presence to='`+XMLEscape(muc+"/"+nick)+`'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`); err != nil {
		return err
	}
	self, err := c.Wait(ctx, timeout, func(s *Stanza) bool {
		return s.Name == "presence" && s.From == muc+"/"+nick && s.Has(`code="110"`)
	})
	if err != nil {
		return fmt.Errorf("%s's join of %s (XEP-0045 §7.2.2): %w", nick, muc, err)
	}
	if !self.Has(`code="201"`) {
		return nil
	}
	if err := c.SendRaw(ctx, `<iq type='set' id='inst-`+XMLEscape(nick)+`' to='`+XMLEscape(muc)+`'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`); err != nil {
		return err
	}
	if _, err := c.Wait(ctx, timeout, func(s *Stanza) bool { return s.Name == "iq" && s.ID == "inst-"+nick }); err != nil {
		return fmt.Errorf("configuring %s as an instant room: %w", muc, err)
	}
	return nil
}

// JoinGroup has u tell the bot `join muc` (and more: a nick, a password)
// in a room of its own with u, and join the room the bot invites u to,
// the chat's portal.
func (u *MatrixUser) JoinGroup(ctx context.Context, timeout time.Duration, bot id.UserID, muc string, more ...string) (id.RoomID, error) {
	mgmt, err := u.CreateDM(ctx, bot)
	if err != nil {
		return "", err
	}
	if _, err := u.Wait(ctx, timeout, IsMembership(mgmt, bot, event.MembershipJoin)); err != nil {
		return "", fmt.Errorf("the bot never joined its DM: %w", err)
	}
	mark := u.Mark()
	if _, err := u.SendText(ctx, mgmt, strings.Join(append([]string{"join", muc}, more...), " ")); err != nil {
		return "", err
	}
	if _, err := u.WaitSince(ctx, mark, timeout, func(e *event.Event) bool {
		return e.RoomID == mgmt && e.Sender == bot && strings.Contains(e.Content.AsMessage().Body, "Opened the chat "+muc)
	}); err != nil {
		return "", fmt.Errorf("the bot did not answer the join: %w", err)
	}
	invite, err := u.WaitSince(ctx, mark, timeout, func(e *event.Event) bool {
		return e.RoomID != mgmt && e.Type == event.StateMember && e.GetStateKey() == string(u.Client.UserID) &&
			e.Content.AsMember().Membership == event.MembershipInvite && e.Sender == bot
	})
	if err != nil {
		return "", fmt.Errorf("no invite into the chat's room: %w", err)
	}
	if _, err := u.Client.JoinRoomByID(ctx, invite.RoomID); err != nil {
		return "", err
	}
	return invite.RoomID, nil
}

var (
	stanzaIDRe = regexp.MustCompile(`<stanza-id [^>]*>`)
	idAttrRe   = regexp.MustCompile(`id="([^"]+)"`)
)

// RoomStanzaID is the XEP-0359 stanza-id the room muc stamped s with, ""
// if none.
func (s *Stanza) RoomStanzaID(muc string) string {
	for _, el := range stanzaIDRe.FindAllString(s.XML, -1) {
		if strings.Contains(el, `by="`+muc+`"`) {
			if m := idAttrRe.FindStringSubmatch(el); m != nil {
				return m[1]
			}
		}
	}
	return ""
}
