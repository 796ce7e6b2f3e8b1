package config

import (
	"strings"
	"testing"

	"xmppbridge"
)

// FuzzParse: no configuration file crashes the parser, and one it accepts
// gives the rest of the bridge what it reads without a crash either: the
// identities, the permissions, the registration, the policies.
func FuzzParse(f *testing.F) {
	f.Add(minimal)
	// The example, every key with its default, without its comments: the
	// fuzzer mutates a seed's bytes, and 7 KB of comments made each input
	// cost ten times what its keys do.
	var keys []string
	for _, line := range strings.Split(string(xmppbridge.ExampleConfig), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			keys = append(keys, line)
		}
	}
	f.Add(strings.Replace(strings.Join(keys, "\n"), "secret: CHANGE-ME", "secret: real", 1))
	f.Add(strings.Replace(minimal, "xmpp:\n", "xmpp:\n    blocked_domains: [evil.example]\n", 1) +
		"bridge: {permissions: {'*': none, 'example.org': user, '@alice:example.org': user}}\n" +
		"receipts: {send_to_xmpp_users: {'@bob:example.org': false}}\n")
	f.Add("homeserver: [1, 2]\nxmpp: {domain: 7}\n")
	f.Add("a: &a [*a]\n")
	f.Fuzz(func(t *testing.T, data string) {
		cfg, err := Parse([]byte(data))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("a refusal that says nothing")
			}
			return
		}
		ids := cfg.Identities()
		_ = ids.Bot()
		_ = cfg.Permissions().Allowed("@alice:example.org")
		_ = cfg.NewRegistration()
		_ = cfg.ReceiptPolicy()
		_ = cfg.PresencePolicy()
		_ = cfg.CoreLimits()
		_ = cfg.ListenAddress()
		_ = cfg.DatabaseURI()
	})
}
