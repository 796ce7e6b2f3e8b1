package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"maunium.net/go/mautrix/appservice"
)

// Generated is what Generate did, for -g to tell the operator.
type Generated struct {
	RegistrationPath, ConfigPath string
	// Existed: a registration with tokens of its own was at
	// RegistrationPath before.
	Existed bool
	// NewTokens: the tokens are new, so the homeserver does not know them;
	// with Existed, they replaced the old ones.
	NewTokens bool
	// Changed: the registration file is not what it was.
	Changed bool
}

// Generate writes the registration for this configuration at regPath, and
// its tokens into the configuration file. The tokens of a registration
// already there are kept unless newTokens: -g is run again to pick up a
// changed namespace, address or bot name, and new tokens then would break
// the link to a homeserver that knows the old ones, which it reads only
// when it starts, losing nothing but needing an operator who knows to give
// it the new file. The example's placeholder tokens are never kept. A
// registration that cannot be read is left alone unless newTokens.
func (c *Config) Generate(regPath string, newTokens bool) (*Generated, error) {
	g := &Generated{RegistrationPath: regPath, ConfigPath: c.path}
	before, err := os.ReadFile(regPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read registration %s: %w", regPath, err)
	}
	var old *appservice.Registration
	if err == nil {
		old, err = appservice.LoadRegistration(regPath)
		if err != nil && !newTokens {
			return nil, fmt.Errorf("read registration %s to keep its tokens: %w (mend or move it, or write one with new tokens: bridge -g -new-tokens)", regPath, err)
		}
		g.Existed = err == nil && hasTokens(old)
	}
	asToken, hsToken := c.AppService.ASToken, c.AppService.HSToken
	reg := c.NewRegistration() // fresh tokens, in c too
	g.NewTokens = newTokens || !g.Existed
	if !g.NewTokens {
		reg.AppToken, reg.ServerToken = old.AppToken, old.ServerToken
		c.AppService.ASToken, c.AppService.HSToken = old.AppToken, old.ServerToken
	}
	after, err := reg.YAML()
	if err != nil {
		return nil, fmt.Errorf("encode registration: %w", err)
	}
	g.Changed = !bytes.Equal(before, []byte(after))
	if g.Changed {
		if err := writeFileAtomic(regPath, []byte(after), 0o600); err != nil {
			return nil, fmt.Errorf("write registration %s: %w", regPath, err)
		}
	}
	if c.AppService.ASToken == asToken && c.AppService.HSToken == hsToken {
		return g, nil // the config has them: its layout stays as it is
	}
	if err := c.SaveTokens(c.path); err != nil {
		return nil, fmt.Errorf("write the tokens into %s: %w", c.path, err)
	}
	return g, nil
}

// hasTokens tells a registration with tokens of its own from an empty
// one or the example's.
func hasTokens(reg *appservice.Registration) bool {
	return reg.AppToken != "" && reg.ServerToken != "" &&
		!strings.Contains(reg.AppToken, "PLACEHOLDER") && !strings.Contains(reg.ServerToken, "PLACEHOLDER")
}

// Message says what was done and what the operator must do now: a
// homeserver reads its registrations only when it starts.
func (g *Generated) Message() string {
	give := fmt.Sprintf("give %s to the homeserver (Synapse: app_service_config_files; Dendrite: app_service_api.config_files) and restart the homeserver", g.RegistrationPath)
	switch {
	case g.NewTokens && g.Existed:
		return fmt.Sprintf("REPLACED the tokens of %s with new ones, and wrote them into %s. The homeserver knows only the old ones: %s before you start the bridge, or the bridge will refuse to start.", g.RegistrationPath, g.ConfigPath, give)
	case g.NewTokens:
		return fmt.Sprintf("Wrote %s with new tokens, and the tokens into %s. The homeserver does not know them yet: %s before you start the bridge, or the bridge will refuse to start.", g.RegistrationPath, g.ConfigPath, give)
	case g.Changed:
		return fmt.Sprintf("Kept the tokens of %s and wrote the rest anew from %s. The homeserver reads the registration only when it starts: %s. (For new tokens: bridge -g -new-tokens.)", g.RegistrationPath, g.ConfigPath, give)
	default:
		return fmt.Sprintf("%s already matches %s (tokens kept): nothing changed, the homeserver need not be told.", g.RegistrationPath, g.ConfigPath)
	}
}
