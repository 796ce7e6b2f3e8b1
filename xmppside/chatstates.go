// XEP-0085: Chat State Notifications.

package xmppside

import "xmppbridge/mapping"

// NSChatStates is the namespace of XEP-0085.
const NSChatStates = "http://jabber.org/protocol/chatstates"

// chatStates are XEP-0085's states (§5.1), at most one of which is
// meaningful in a message: the first found wins.
var chatStates = []string{"composing", "paused", "active", "inactive", "gone"}

// decodeChatState reads XEP-0085's part of a message: its chat state.
func decodeChatState(in *inMessage, m *mapping.XMPPMessage) {
	for i, el := range []*struct{}{in.Composing, in.Paused, in.Active, in.Inactive, in.Gone} {
		if el != nil {
			m.ChatState = chatStates[i]
			return
		}
	}
}

// encodeChatState writes m's chat state, if it has one (§5).
func encodeChatState(t *tokens, m *mapping.OutMessage) {
	if m.ChatState != "" {
		t.empty(NSChatStates, m.ChatState)
	}
}
