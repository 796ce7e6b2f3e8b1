// XEP-0092: Software Version, and XEP-0100's jabber:iq:gateway (finding
// the puppet of a Matrix user).

package xmppside

import (
	"encoding/xml"
	"runtime/debug"
	"strings"

	"maunium.net/go/mautrix/id"
)

// NSVersion is the namespace of XEP-0092.
const NSVersion = "jabber:iq:version"

// NSGateway is the namespace of XEP-0100's address translation
// (jabber:iq:gateway).
const NSGateway = "jabber:iq:gateway"

var _ = register(&xep{features: []discoFeature{
	{at: discoServices + 2, ns: NSVersion, on: onBoth},
	{at: discoServices + 4, ns: NSGateway, on: onDomain},
}})

// softwareName is the bridge's name as XEP-0092 gives it.
const softwareName = "xmppbridge"

// versionInfo is XEP-0092's answer: the name and version of the software.
// The operating system is left out (§5: it may help an attacker).
type versionInfo struct {
	XMLName xml.Name `xml:"jabber:iq:version query"`
	Name    string   `xml:"name"`
	Version string   `xml:"version"`
}

// SoftwareVersion is the version of the bridge's main module as Go built
// it: a module version, or for a build from a checkout "(devel)" and the
// commit it was built from. XEP-0092 answers and `bridge -version` say it.
func SoftwareVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 && v == "(devel)" {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// gatewayPrompt is what the component asks for (XEP-0100: a get returns
// a description and a prompt).
type gatewayPrompt struct {
	XMLName xml.Name `xml:"jabber:iq:gateway query"`
	Desc    string   `xml:"desc"`
	Prompt  string   `xml:"prompt"`
}

// gatewayJID is the answer to a set: the JID for the address given.
type gatewayJID struct {
	XMLName xml.Name `xml:"jabber:iq:gateway query"`
	JID     string   `xml:"jid"`
}

// gatewayAsk is the prompt of a set, the Matrix user ID to translate.
const gatewayAsk = "Matrix user ID (@alice:example.org)"

// matrixUserOf reads a prompt as a Matrix user ID: "@alice:example.org",
// or without its "@" as people type it.
func matrixUserOf(prompt string) (id.UserID, bool) {
	s := strings.TrimSpace(prompt)
	if s != "" && !strings.HasPrefix(s, "@") {
		s = "@" + s
	}
	u := id.UserID(s)
	if _, _, err := u.Parse(); err != nil || !strings.Contains(s, ":") {
		return "", false
	}
	return u, true
}
