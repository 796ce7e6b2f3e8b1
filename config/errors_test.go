package config

import (
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A value of the wrong type is named by its key, with what the key takes
// and the line, as an unknown key is: yaml.v3's own message names only a
// line and a Go type ("cannot unmarshal !!str `29340x` into int").
func TestTypeErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, edit, key, says string
	}{
		{"not a number", "+limits:\n    max_stanza_kib: 29340x\n", "limits.max_stanza_kib", `"29340x" is not a whole number (line 17)`},
		{"a port in words", "s/port: 29340/port: twenty/", "appservice.port", `"twenty" is not a whole number (line 8)`},
		{"a rate in words", "+limits:\n    peer_rate: fast\n", "limits.peer_rate", `"fast" is not a number`},
		{"not a duration", "+bridge:\n    edit_max_age: 3 days\n", "bridge.edit_max_age", `"3 days" is not a duration`},
		{"not a boolean", "s/    secret: s3cret/    secret: s3cret\n    auto_subscribe: maybe/", "xmpp.auto_subscribe", `"maybe" is not true or false`},
		{"a word for a list", "+    blocked_domains: evil.example\n", "xmpp.blocked_domains", `"evil.example" is not a list`},
		{"a word for a section", "+logging: loud\n", "logging", `"loud" is not a section of keys`},
		{"in a map", "+receipts:\n    send_to_xmpp_users:\n        \"@alice:example.org\": maybe\n", "receipts.send_to_xmpp_users.@alice:example.org", `"maybe" is not true or false`},
		{"a list for a word", "+logging:\n    level: [debug]\n", "logging.level", `a list is not a string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(edit(minimal, tc.edit)))
			if e := named(t, err, tc.key, tc.says); e != nil && !strings.Contains(err.Error(), "\n  "+tc.key+": "+e.What) {
				t.Errorf("the message %q does not say %q", err, tc.key+": "+e.What)
			}
		})
	}
}

// named is the error of errs that names key and says says; the test
// fails without one.
func named(t *testing.T, err error, key, says string) *Error {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v, want config Errors", err)
	}
	for _, e := range errs {
		if e.Key == key && strings.Contains(e.What, says) {
			return e
		}
	}
	t.Errorf("errors %q do not name %s with %q", err, key, says)
	return nil
}

// Every value of the wrong type is named in one go, beside unknown keys.
func TestTypeErrorsAllAtOnce(t *testing.T) {
	cfg := edit(minimal, "+limits:\n    max_stanza_kib: big\n    peer_burst: many\n    peer_rat: 3\n")
	_, err := Parse([]byte(cfg))
	for _, want := range []string{"limits.max_stanza_kib: \"big\"", "limits.peer_burst: \"many\"", "limits.peer_rat: unknown key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v does not say %q", err, want)
		}
	}
}

// A homeserver.domain that differs from the domain the registration was
// written for says so, both domains named, and what to do in either case:
// correct a typo, or regenerate the registration for a domain that really
// changed. Before, it said only to regenerate the registration, which
// would have carried the typo into it.
func TestDomainTypoSaysWhichDomain(t *testing.T) {
	cfgPath := writeConfig(t)
	cfg, _ := Load(cfgPath)
	regPath := filepath.Join(filepath.Dir(cfgPath), "registration.yaml")
	if err := SaveRegistration(cfg.NewRegistration(), regPath); err != nil {
		t.Fatal(err)
	}
	typo := *cfg
	typo.Homeserver.Domain = "exmaple.org"
	_, err := typo.CheckRegistration(regPath)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v, want config Errors", err)
	}
	if len(errs) != 1 || errs[0].Key != "homeserver.domain" {
		t.Fatalf("errors %q, want one about homeserver.domain", err)
	}
	for _, want := range []string{`is "exmaple.org"`, `namespaces are for "example.org"`, "server name", "typo, correct it in the config", "bridge -g"} {
		if !strings.Contains(errs[0].What, want) {
			t.Errorf("%q does not say %q", errs[0].What, want)
		}
	}
}

// registrationDomain reads back the domain ghostRegex quoted, whatever its
// dots and dashes, and nothing from a namespace of another shape.
func TestRegistrationDomain(t *testing.T) {
	for _, domain := range []string{"example.org", "matrix-1.example.co.uk", "localhost", "[::1]:8448"} {
		c := &Config{}
		c.Homeserver.Domain = domain
		c.AppService.Bot.Username = "xmppbridge"
		if got := registrationDomain(c.NewRegistration()); got != domain {
			t.Errorf("registrationDomain = %q, want %q", got, domain)
		}
	}
	reg := (&Config{}).NewRegistration()
	reg.Namespaces.UserIDs = nil
	reg.Namespaces.UserIDs.Register(regexp.MustCompile(`^@irc_.*:example\.org$`), true)
	if got := registrationDomain(reg); got != "" {
		t.Errorf("registrationDomain of another bridge's namespace = %q, want none", got)
	}
}
