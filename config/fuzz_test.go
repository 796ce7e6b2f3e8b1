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
	f.Add(strings.Replace(string(xmppbridge.ExampleConfig), "secret: CHANGE-ME", "secret: real", 1))
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
