// XEP-0085: Chat State Notifications.

package xmppside

import (
	"encoding/xml"
	"slices"

	"xmppbridge/mapping"
)

// NSChatStates is the namespace of XEP-0085.
const NSChatStates = "http://jabber.org/protocol/chatstates"

var _ = register(&xep{
	namespaces: []string{NSChatStates},
	decode:     decodeChatState,
	encode:     []encodeStep{{at: wireState, write: encodeChatState}},
	features:   []discoFeature{{at: discoMessages + 5, ns: NSChatStates, on: onBoth}},
})

// chatStates are XEP-0085's states (§5.1), at most one of which is
// meaningful in a message: of several, the first in this list wins,
// wherever it is in the message.
var chatStates = []string{"composing", "paused", "active", "inactive", "gone"}

// decodeChatState reads XEP-0085's part of a message: its chat state.
func decodeChatState(in *inMessage, start xml.StartElement) error {
	if i := slices.Index(chatStates, start.Name.Local); i >= 0 {
		if had := slices.Index(chatStates, in.m.ChatState); had < 0 || i < had {
			in.m.ChatState = chatStates[i]
		}
	}
	return in.skip()
}

// encodeChatState writes m's chat state, if it has one (§5).
func encodeChatState(t *tokens, m *mapping.OutMessage) {
	if m.ChatState != "" {
		t.empty(NSChatStates, m.ChatState)
	}
}
