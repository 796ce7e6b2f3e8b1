// XEP-0085: Chat State Notifications.

package xmppside

// NSChatStates is the namespace of XEP-0085.
const NSChatStates = "http://jabber.org/protocol/chatstates"
