package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix/appservice"
)

// -g run again keeps the registration's tokens, so that picking up a
// changed namespace does not silently cut the bridge off from a homeserver
// that knows them; -g -new-tokens replaces them and says the homeserver
// must be given the file; each run says what it did. The bridge accepts
// the pair after every run.
func TestGenerateKeepsTokensUnlessAsked(t *testing.T) {
	cfgPath := writeConfig(t)
	regPath := filepath.Join(filepath.Dir(cfgPath), "registration.yaml")
	tokens := func() (string, string) {
		t.Helper()
		reg, err := appservice.LoadRegistration(regPath)
		if err != nil {
			t.Fatal(err)
		}
		return reg.AppToken, reg.ServerToken
	}
	var prevAS, prevHS string
	for _, step := range []struct {
		name      string
		edit      func(cfg string) string // of the config file before the run
		newTokens bool
		kept      bool // the tokens are the previous run's
		changed   bool
		says      []string
	}{
		{name: "first run", changed: true, says: []string{"new tokens", "restart the homeserver", "app_service_config_files"}},
		{name: "again, nothing changed", kept: true, says: []string{"nothing changed", "need not be told"}},
		{name: "again, a new homeserver domain", edit: func(cfg string) string {
			return strings.Replace(cfg, "domain: example.org", "domain: example.net", 1)
		}, kept: true, changed: true, says: []string{"Kept the tokens", "restart the homeserver", "-new-tokens"}},
		{name: "-new-tokens", newTokens: true, changed: true, says: []string{"REPLACED the tokens", "restart the homeserver", "refuse to start"}},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.edit != nil {
				data, _ := os.ReadFile(cfgPath)
				if err := os.WriteFile(cfgPath, []byte(step.edit(string(data))), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := Load(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			g, err := cfg.Generate(regPath, step.newTokens)
			if err != nil {
				t.Fatal(err)
			}
			as, hs := tokens()
			if kept := as == prevAS && hs == prevHS; kept != step.kept {
				t.Errorf("tokens kept = %v, want %v", kept, step.kept)
			}
			prevAS, prevHS = as, hs
			if g.Changed != step.changed || g.NewTokens == step.kept {
				t.Errorf("Generated %+v, want changed %v, new tokens %v", g, step.changed, !step.kept)
			}
			msg := g.Message()
			for _, want := range step.says {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not say %q", msg, want)
				}
			}
			again, err := Load(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := again.CheckRegistration(regPath); err != nil {
				t.Errorf("the bridge refuses what -g wrote: %v", err)
			}
		})
	}
}

// The example registration's placeholder tokens are never kept, and a
// registration that cannot be read is left alone unless new tokens are
// asked for.
func TestGenerateOverPlaceholderOrGarbage(t *testing.T) {
	cfgPath := writeConfig(t)
	regPath := filepath.Join(filepath.Dir(cfgPath), "registration.yaml")
	example, err := os.ReadFile("../registration.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(regPath, example, 0o600)
	cfg, _ := Load(cfgPath)
	g, err := cfg.Generate(regPath, false)
	if err != nil || !g.NewTokens || g.Existed {
		t.Fatalf("over the example: %+v, %v; want new tokens", g, err)
	}
	if data, _ := os.ReadFile(regPath); strings.Contains(string(data), "PLACEHOLDER") {
		t.Error("placeholder tokens kept")
	}

	_ = os.WriteFile(regPath, []byte("as_token: [unclosed\n"), 0o600)
	cfg, _ = Load(cfgPath)
	if _, err := cfg.Generate(regPath, false); err == nil || !strings.Contains(err.Error(), "-new-tokens") {
		t.Errorf("over garbage: %v, want a refusal naming -new-tokens", err)
	}
	if data, _ := os.ReadFile(regPath); string(data) != "as_token: [unclosed\n" {
		t.Error("the unreadable registration was overwritten")
	}
	if g, err := cfg.Generate(regPath, true); err != nil || !g.NewTokens {
		t.Errorf("over garbage with new tokens: %+v, %v", g, err)
	}
}
