// XEP-0409: IM Routing-NG.

package xmppside

// NSIMNG is the namespace of XEP-0409 (§5), its element and its feature.
const NSIMNG = "urn:xmpp:im-ng:0"
