package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"xmppbridge"
)

// minimal is the smallest configuration the bridge accepts.
const minimal = `
homeserver:
    address: http://127.0.0.1:8008
    domain: example.org
appservice:
    address: http://127.0.0.1:29340
    hostname: 127.0.0.1
    port: 29340
    id: xmpp
    bot:
        username: xmppbridge
xmpp:
    address: 127.0.0.1:5347
    domain: matrix.example.org
    secret: s3cret
`

func TestMinimalConfigGetsDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AppService.Database.Type != "sqlite3-fk-wal" || cfg.AppService.Database.URI != "xmppbridge.db" || cfg.Logging.Level != "info" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if !cfg.Permissions().Allowed("@alice:example.org") || cfg.Permissions().Allowed("@eve:evil.example") {
		t.Error("default permissions should be the users of homeserver.domain only")
	}
}

// The example with its secret filled in is a working configuration.
func TestExampleIsValidOnceFilledIn(t *testing.T) {
	data := strings.Replace(string(xmppbridge.ExampleConfig), "secret: CHANGE-ME", "secret: real", 1)
	if _, err := Parse([]byte(data)); err != nil {
		t.Fatal(err)
	}
}

// Each refusal names the key and says what to put there.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, edit, key, says string
	}{
		{"misspelled key", "s/    domain: matrix.example.org/    domian: matrix.example.org/", "xmpp.domian", `did you mean "xmpp.domain"`},
		{"unknown section", "+bogus:\n    x: 1\n", "bogus", "unknown key"},
		{"missing secret", "-    secret: s3cret", "xmpp.secret", "component_secret"},
		{"placeholder secret", "s/s3cret/CHANGE-ME/", "xmpp.secret", "placeholder"},
		{"missing domain", "-    domain: example.org", "homeserver.domain", "server name"},
		{"missing hs address", "-    address: http://127.0.0.1:8008", "homeserver.address", "client-server API URL"},
		{"missing as address", "-    address: http://127.0.0.1:29340", "appservice.address", "reaches the bridge"},
		{"missing hostname", "-    hostname: 127.0.0.1", "appservice.hostname", "address to listen on"},
		{"missing port", "-    port: 29340", "appservice.port", "TCP port"},
		{"missing id", "-    id: xmpp", "appservice.id", "unique id"},
		{"missing bot", "-        username: xmppbridge", "appservice.bot.username", "localpart"},
		{"missing xmpp address", "-    address: 127.0.0.1:5347", "xmpp.address", "component listener"},
		{"bad xmpp domain", "s/matrix.example.org/a@b/", "xmpp.domain", "component's domain"},
		{"bad database", "+    database:\n        type: mysql\n", "appservice.database.type", "sqlite3-fk-wal"},
		{"bad level", "+logging:\n    level: loud\n", "logging.level", "trace, debug"},
		{"negative memory", "+limits:\n    memory_mib: -1\n", "limits.memory_mib", "e.g. 64"},
		{"bad permission", "+bridge:\n    permissions:\n        example.org: admin\n", "bridge.permissions.example.org", "user or none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(edit(minimal, tc.edit)))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want config Errors", err)
			}
			for _, e := range errs {
				if e.Key == tc.key && strings.Contains(e.What, tc.says) {
					return
				}
			}
			t.Errorf("errors %q do not name %s with %q", err, tc.key, tc.says)
		})
	}
}

// edit applies "s/old/new/", "-line" (delete the first such line) or
// "+text" (append; database lines go under appservice).
func edit(s, e string) string {
	switch e[0] {
	case 's':
		parts := strings.Split(e[2:len(e)-1], "/")
		return strings.Replace(s, parts[0], parts[1], 1)
	case '-':
		return strings.Replace(s, e[1:]+"\n", "", 1)
	}
	add := e[1:]
	if strings.HasPrefix(add, "    database") {
		return strings.Replace(s, "    bot:\n", add+"    bot:\n", 1)
	}
	return s + add
}

func writeConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("# my bridge\n"+minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// -g writes a registration with fresh tokens, an exclusive namespace for
// the bot and the ghosts, receive_ephemeral and no rate limit, and the
// tokens into the config; the bridge then accepts the pair.
func TestGenerateRegistration(t *testing.T) {
	cfgPath := writeConfig(t)
	regPath := filepath.Join(filepath.Dir(cfgPath), "registration.yaml")
	cfg, _ := Load(cfgPath)
	reg := cfg.NewRegistration()
	if err := SaveRegistration(reg, regPath); err != nil {
		t.Fatal(err)
	}
	if err := cfg.SaveTokens(cfgPath); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(regPath)
	for _, want := range []string{"receive_ephemeral: true", "rate_limited: false", `regex: ^@_xmpp_.*:example\.org$`, `regex: ^@xmppbridge:example\.org$`, "aliases:\n        - regex: ^#_xmpp_.*:example\\.org$\n          exclusive: true", "exclusive: true", "sender_localpart: xmppbridge"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("registration lacks %q:\n%s", want, data)
		}
	}
	again, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if again.AppService.ASToken != reg.AppToken || len(reg.AppToken) < 32 || reg.AppToken == reg.ServerToken {
		t.Errorf("tokens: config %q, registration %q/%q", again.AppService.ASToken, reg.AppToken, reg.ServerToken)
	}
	cfgData, _ := os.ReadFile(cfgPath)
	if !strings.Contains(string(cfgData), "# my bridge") {
		t.Error("SaveTokens lost the config's comments")
	}
	if _, err := again.CheckRegistration(regPath); err != nil {
		t.Fatalf("generated pair refused: %v", err)
	}
	// Each new registration has new tokens (-g keeps those of the file
	// unless -new-tokens: TestGenerateKeepsTokensUnlessAsked).
	if reg2 := again.NewRegistration(); reg2.AppToken == reg.AppToken {
		t.Error("tokens were not fresh")
	}
}

func TestRegistrationRefusals(t *testing.T) {
	cfgPath := writeConfig(t)
	dir := filepath.Dir(cfgPath)
	cfg, _ := Load(cfgPath)
	regPath := filepath.Join(dir, "registration.yaml")
	_ = SaveRegistration(cfg.NewRegistration(), regPath)

	// The checked-in example registration has placeholder tokens.
	if _, err := cfg.CheckRegistration("../registration.yaml"); !errors.Is(err, ErrPlaceholderRegistration) {
		t.Errorf("example registration: %v, want ErrPlaceholderRegistration", err)
	}
	for _, tc := range []struct {
		name, key string
		change    func(c *Config)
	}{
		{"as_token", "appservice.as_token", func(c *Config) { c.AppService.ASToken = "other" }},
		{"hs_token", "appservice.hs_token", func(c *Config) { c.AppService.HSToken = "other" }},
		{"id", "appservice.id", func(c *Config) { c.AppService.ID = "other" }},
		{"bot", "appservice.bot.username", func(c *Config) { c.AppService.Bot.Username = "otherbot" }},
		{"url", "appservice.address", func(c *Config) { c.AppService.Address = "http://10.0.0.1:1" }},
		{"namespace", "homeserver.domain", func(c *Config) { c.Homeserver.Domain = "other.org" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *cfg
			tc.change(&c)
			_, err := c.CheckRegistration(regPath)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v", err)
			}
			for _, e := range errs {
				if e.Key == tc.key && strings.Contains(e.What, "bridge -g") {
					return
				}
			}
			t.Errorf("%v does not name %s with the fix", err, tc.key)
		})
	}
}

// The Matrix AS API, "Querying room aliases": the homeserver asks the
// bridge about an alias only in the registration's alias namespace, so a
// registration written before the chats' aliases (users' namespaces
// only) is refused at start-up, naming the namespace and the fix, as a
// missing user namespace is.
func TestRegistrationWithoutAliasNamespace(t *testing.T) {
	cfgPath := writeConfig(t)
	cfg, _ := Load(cfgPath)
	regPath := filepath.Join(filepath.Dir(cfgPath), "registration.yaml")
	reg := cfg.NewRegistration()
	if len(reg.Namespaces.RoomAliases) != 1 || !reg.Namespaces.RoomAliases[0].Exclusive {
		t.Fatalf("alias namespaces %+v, want one exclusive", reg.Namespaces.RoomAliases)
	}
	if re := regexp.MustCompile(reg.Namespaces.RoomAliases[0].Regex); !re.MatchString("#_xmpp_lounge=40conference.example.org:example.org") || re.MatchString("#lounge:example.org") || re.MatchString("#_xmpp_lounge=40conference.example.org:other.org") {
		t.Errorf("alias namespace %q matches the wrong aliases", re)
	}
	reg.Namespaces.RoomAliases = nil // as -g wrote it before
	if err := SaveRegistration(reg, regPath); err != nil {
		t.Fatal(err)
	}
	_, err := cfg.CheckRegistration(regPath)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || !strings.Contains(errs[0].What, "alias namespace") || !strings.Contains(errs[0].What, "bridge -g") {
		t.Fatalf("old registration: %v, want one error naming the alias namespace and bridge -g", err)
	}
}

func TestSQLiteFileNextToConfig(t *testing.T) {
	cfg, _ := Load(writeConfig(t))
	if got := cfg.DatabaseURI(); filepath.Dir(got) != filepath.Dir(cfg.path) || filepath.Base(got) != "xmppbridge.db" {
		t.Errorf("DatabaseURI = %s", got)
	}
}

// xmpp.auto_subscribe and xmpp.subscribe_on_portal are on unless turned off.
func TestPresencePolicy(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.PresencePolicy(); !p.AutoSubscribe || !p.SubscribeOnPortal {
		t.Errorf("defaults %+v, want both on", p)
	}
	off := strings.Replace(minimal, "    secret: s3cret\n", "    secret: s3cret\n    auto_subscribe: false\n    subscribe_on_portal: false\n", 1)
	if cfg, err = Parse([]byte(off)); err != nil {
		t.Fatal(err)
	}
	if p := cfg.PresencePolicy(); p.AutoSubscribe || p.SubscribeOnPortal {
		t.Errorf("turned off: %+v, want both off", p)
	}
	// A misspelling is refused, not read as false.
	_, err = Parse([]byte(strings.Replace(minimal, "    secret: s3cret\n", "    secret: s3cret\n    auto_subscibe: false\n", 1)))
	var errs Errors
	if !errors.As(err, &errs) || errs[0].Key != "xmpp.auto_subscibe" || !strings.Contains(errs[0].What, `"xmpp.auto_subscribe"`) {
		t.Errorf("misspelled key: %v", err)
	}
}
