// Package config reads and checks the bridge's YAML configuration and its
// application service registration.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge"
	"xmppbridge/mapping"
	"xmppbridge/matrixside"
)

// Config is the whole configuration file.
type Config struct {
	Homeserver struct {
		Address string `yaml:"address"`
		Domain  string `yaml:"domain"`
	} `yaml:"homeserver"`
	AppService struct {
		Address  string `yaml:"address"`
		Hostname string `yaml:"hostname"`
		Port     int    `yaml:"port"`
		ID       string `yaml:"id"`
		Bot      struct {
			Username string `yaml:"username"`
		} `yaml:"bot"`
		ASToken  string `yaml:"as_token"`
		HSToken  string `yaml:"hs_token"`
		Database struct {
			Type string `yaml:"type"`
			URI  string `yaml:"uri"`
		} `yaml:"database"`
		Ephemeral string `yaml:"ephemeral"`
	} `yaml:"appservice"`
	XMPP struct {
		Address        string   `yaml:"address"`
		Domain         string   `yaml:"domain"`
		Secret         string   `yaml:"secret"`
		BlockedDomains []string `yaml:"blocked_domains"`
		ReceiptTo      string   `yaml:"receipt_to"`
		// A bool has no "unset": the embedded example gives the defaults.
		AutoSubscribe     bool `yaml:"auto_subscribe"`
		SubscribeOnPortal bool `yaml:"subscribe_on_portal"`
	} `yaml:"xmpp"`
	Bridge struct {
		Permissions map[string]string `yaml:"permissions"`
		EditMaxAge  time.Duration     `yaml:"edit_max_age"`
	} `yaml:"bridge"`
	Receipts struct {
		DeliveryFallback     string          `yaml:"delivery_fallback"`
		DeliverySpecVersion  string          `yaml:"delivery_spec_version"`
		SendToXMPP           bool            `yaml:"send_to_xmpp"`
		SendToXMPPUsers      map[string]bool `yaml:"send_to_xmpp_users"`
		MaxDisplayedPerRead  int             `yaml:"max_displayed_per_read"`
		ReadImpliesDelivered bool            `yaml:"read_implies_delivered"`
	} `yaml:"receipts"`
	Limits struct {
		PeerRate        float64 `yaml:"peer_rate"`
		PeerBurst       int     `yaml:"peer_burst"`
		PendingReceipts int     `yaml:"pending_receipts"`
		MemoryMiB       int     `yaml:"memory_mib"`
		MaxStanzaKiB    int     `yaml:"max_stanza_kib"`
		MaxTxnMiB       int     `yaml:"max_transaction_mib"`
		// What strangers may have the bridge create, an hour.
		JIDNewPortals       int `yaml:"jid_new_portals_per_hour"`
		DomainNewPortals    int `yaml:"domain_new_portals_per_hour"`
		DomainNewGhosts     int `yaml:"domain_new_ghosts_per_hour"`
		DomainSubscriptions int `yaml:"domain_subscriptions_per_hour"`
		MediaFetches        int `yaml:"media_fetches_per_hour"`
	} `yaml:"limits"`
	Media struct {
		Enabled       bool          `yaml:"enabled"`
		MaxFileMiB    int           `yaml:"max_file_mib"`
		FetchTimeout  time.Duration `yaml:"fetch_timeout"`
		AllowHTTP     bool          `yaml:"allow_http"`
		AllowNetworks []string      `yaml:"allow_networks"`
		UploadService string        `yaml:"upload_service"`
		ServerDomain  string        `yaml:"server_domain"`
		TempDir       string        `yaml:"temp_dir"`
		// How files from Matrix get a URL on XMPP: MediaUpload or
		// MediaServe, and what serving needs.
		ToXMPP      string        `yaml:"to_xmpp"`
		PublicURL   string        `yaml:"public_url"`
		ServeListen string        `yaml:"serve_listen"`
		ServeExpiry time.Duration `yaml:"serve_expiry"`
		SigningKey  string        `yaml:"signing_key"`
	} `yaml:"media"`
	// What one Matrix user may have the bridge join of XMPP chats.
	Groups struct {
		MaxRoomsPerUser     int `yaml:"max_rooms_per_user"`
		JoinsPerUserPerHour int `yaml:"joins_per_user_per_hour"`
	} `yaml:"groups"`
	Logging struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"logging"`
	Metrics struct {
		Enabled bool   `yaml:"enabled"`
		Listen  string `yaml:"listen"`
	} `yaml:"metrics"`

	// path is where the config was read from; relative SQLite paths are
	// next to it.
	path string
}

// Error is one problem with the configuration: the dotted key and what to do.
type Error struct {
	Key  string
	What string
}

func (e *Error) Error() string { return e.Key + ": " + e.What }

// Errors are all the problems found, so a newcomer fixes them in one go.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = "  " + e.Error()
	}
	return "the configuration has problems:\n" + strings.Join(lines, "\n")
}

// Load reads the config file at path on top of the embedded defaults,
// refusing unknown keys, and checks it.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.path = path
	return cfg, nil
}

// Parse reads a configuration from YAML on top of the embedded defaults.
func Parse(data []byte) (*Config, error) {
	defaults, err := exampleTree()
	if err != nil {
		return nil, fmt.Errorf("embedded defaults: %w", err)
	}
	cfg := &Config{}
	if err := defaults.Decode(cfg); err != nil {
		return nil, fmt.Errorf("embedded defaults: %w", err)
	}
	// The keys marked REQUIRED in the example have no default: the
	// example's values are illustrations, and a config that lacks one of
	// them must be refused, not quietly pointed at localhost.
	cfg.Homeserver.Address, cfg.Homeserver.Domain = "", ""
	cfg.AppService.Address, cfg.AppService.Hostname, cfg.AppService.Port = "", "", 0
	cfg.AppService.ID, cfg.AppService.Bot.Username = "", ""
	cfg.XMPP.Address, cfg.XMPP.Domain, cfg.XMPP.Secret = "", "", ""
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	var errs Errors
	if len(root.Content) > 0 {
		checkKeys(root.Content[0], reflect.TypeOf(*cfg), "", &errs)
		checkTypes(root.Content[0], reflect.TypeOf(*cfg), "", &errs)
		if len(errs) > 0 {
			return nil, errs
		}
		if err := root.Content[0].Decode(cfg); err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
	}
	if errs := cfg.validate(); len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// exampleTree is the embedded example, the defaults, read once: every
// Parse decodes it afresh into a new Config (so no two configs share a map
// or a slice), but scanning its 7 KB of YAML and comments each time was
// most of Parse's cost.
var exampleTree = sync.OnceValues(func() (*yaml.Node, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(xmppbridge.ExampleConfig, &root); err != nil {
		return nil, err
	}
	if len(root.Content) == 0 {
		return nil, errors.New("empty")
	}
	return root.Content[0], nil
})

// checkKeys names every key that the Config struct does not have, with its
// dotted path, and suggests the known key it was probably meant to be.
func checkKeys(n *yaml.Node, t reflect.Type, prefix string, errs *Errors) {
	if t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode {
		return
	}
	known := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := strings.Split(f.Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
			known[tag] = f.Type
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		ft, ok := known[key]
		if !ok {
			e := &Error{Key: prefix + key, What: fmt.Sprintf("unknown key (line %d)", n.Content[i].Line)}
			if s := closest(key, known); s != "" {
				e.What += fmt.Sprintf("; did you mean %q?", prefix+s)
			} else {
				e.What += "; see config.example.yaml for the keys there are"
			}
			*errs = append(*errs, e)
			continue
		}
		checkKeys(n.Content[i+1], ft, prefix+key+".", errs)
	}
}

// checkTypes names every value that is not of its key's type, with its
// dotted path and line: yaml.v3's own error names only the line and Go's
// type ("cannot unmarshal !!str `29340x` into int"). Each value is decoded
// alone into its field's type, as the whole Decode would decode it, so
// both agree on what is accepted. Unknown keys are checkKeys's.
func checkTypes(n *yaml.Node, t reflect.Type, key string, errs *Errors) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // no value: the default stays, and validate judges it
	}
	switch {
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			*errs = append(*errs, typeError(n, key, "a section of keys"))
			return
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
				fields[tag] = t.Field(i).Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if ft, ok := fields[n.Content[i].Value]; ok {
				checkTypes(n.Content[i+1], ft, join(key, n.Content[i].Value), errs)
			}
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			*errs = append(*errs, typeError(n, key, "a mapping of keys to values"))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkTypes(n.Content[i+1], t.Elem(), join(key, n.Content[i].Value), errs)
		}
	default:
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			*errs = append(*errs, typeError(n, key, typeName(t)))
		}
	}
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// typeError says that the value at n is not what key takes.
func typeError(n *yaml.Node, key, want string) *Error {
	var got string
	switch n.Kind {
	case yaml.MappingNode:
		got = "a section"
	case yaml.SequenceNode:
		got = "a list"
	default:
		got = strconv.Quote(n.Value)
	}
	return &Error{Key: key, What: fmt.Sprintf("%s is not %s (line %d)", got, want, n.Line)}
}

// typeName is what a value of t is called in a config error.
func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "a duration (such as 90s, 30m or 24h)"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "a whole number"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.String:
		return "a string"
	}
	return "a " + t.String()
}

// closest is the known key nearest to key by edit distance, if near enough.
func closest(key string, known map[string]reflect.Type) string {
	best, bestD := "", 3
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

const placeholderSecret = "CHANGE-ME"

// validate checks every value and says, for each problem, what to put there.
func (c *Config) validate() Errors {
	var errs Errors
	bad := func(key, what string) { errs = append(errs, &Error{Key: key, What: what}) }
	if u, err := url.Parse(c.Homeserver.Address); c.Homeserver.Address == "" || err != nil || u.Host == "" {
		bad("homeserver.address", "missing or not a URL; put the homeserver's client-server API URL, e.g. http://127.0.0.1:8008")
	}
	if c.Homeserver.Domain == "" {
		bad("homeserver.domain", "missing; put the homeserver's server name, the part after ':' in user IDs (example.org)")
	}
	if u, err := url.Parse(c.AppService.Address); c.AppService.Address == "" || err != nil || u.Host == "" {
		bad("appservice.address", "missing or not a URL; put the URL at which the homeserver reaches the bridge, e.g. http://127.0.0.1:29340")
	}
	if c.AppService.Hostname == "" {
		bad("appservice.hostname", "missing; put the address to listen on, e.g. 127.0.0.1 or 0.0.0.0")
	}
	if c.AppService.Port <= 0 || c.AppService.Port > 65535 {
		bad("appservice.port", "missing or out of range; put the TCP port to listen on, e.g. 29340")
	}
	if c.AppService.ID == "" {
		bad("appservice.id", "missing; put a unique id for the application service, e.g. xmpp")
	}
	if err := id.ValidateUserLocalpart(c.AppService.Bot.Username); err != nil {
		bad("appservice.bot.username", "missing or not a valid localpart; put the bot's localpart, e.g. xmppbridge")
	} else if strings.HasPrefix(c.AppService.Bot.Username, mapping.GhostPrefix) {
		bad("appservice.bot.username", "must not start with "+mapping.GhostPrefix+", which is the ghosts' namespace")
	}
	switch c.AppService.Database.Type {
	case "sqlite3-fk-wal", "postgres":
	default:
		bad("appservice.database.type", fmt.Sprintf("%q is not supported; put sqlite3-fk-wal (a file) or postgres", c.AppService.Database.Type))
	}
	if c.AppService.Database.URI == "" {
		bad("appservice.database.uri", "missing; put a file name for SQLite or a postgres:// URI")
	}
	if _, _, err := net.SplitHostPort(c.XMPP.Address); c.XMPP.Address == "" || err != nil {
		bad("xmpp.address", "missing or not host:port; put the XMPP server's component listener, e.g. 127.0.0.1:5347")
	}
	if d, err := jid.Parse(c.XMPP.Domain); c.XMPP.Domain == "" || err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		bad("xmpp.domain", "missing or not a domain; put the component's domain as declared on the XMPP server, e.g. matrix.example.org")
	}
	switch c.XMPP.Secret {
	case "":
		bad("xmpp.secret", "missing; put the component_secret from the XMPP server's Component block")
	case placeholderSecret:
		bad("xmpp.secret", "still the example's placeholder; put the component_secret from the XMPP server's Component block")
	}
	for k, v := range c.Bridge.Permissions {
		if v != mapping.PermUser && v != mapping.PermNone {
			bad("bridge.permissions."+k, fmt.Sprintf("%q is not a level; put user or none", v))
		}
	}
	switch c.AppService.Ephemeral {
	case matrixside.EphemeralAuto, matrixside.EphemeralPush, matrixside.EphemeralSync:
	default:
		bad("appservice.ephemeral", fmt.Sprintf("%q is not a way; put auto, push or sync", c.AppService.Ephemeral))
	}
	if c.XMPP.ReceiptTo != "bare" && c.XMPP.ReceiptTo != "full" {
		bad("xmpp.receipt_to", fmt.Sprintf("%q is not an addressing; put bare or full", c.XMPP.ReceiptTo))
	}
	if c.Bridge.EditMaxAge <= 0 {
		bad("bridge.edit_max_age", "must be more than 0; put how old a Matrix message may be for its edit to go as a XEP-0308 correction, e.g. 24h")
	}
	if c.Receipts.MaxDisplayedPerRead < 1 {
		bad("receipts.max_displayed_per_read", "must be at least 1; put how many <displayed/> one read may raise, e.g. 50")
	}
	for u := range c.Receipts.SendToXMPPUsers {
		if _, _, err := id.UserID(u).Parse(); err != nil {
			bad("receipts.send_to_xmpp_users."+u, "not a Matrix user ID; put one like @alice:example.org")
		}
	}
	switch c.Receipts.DeliveryFallback {
	case matrixside.FallbackMessageStatus, matrixside.FallbackNone:
	default:
		bad("receipts.delivery_fallback", fmt.Sprintf("%q is not a fallback; put message_status or none", c.Receipts.DeliveryFallback))
	}
	if v := c.Receipts.DeliverySpecVersion; v != "" {
		if _, err := mautrix.ParseSpecVersion(v); err != nil {
			bad("receipts.delivery_spec_version", fmt.Sprintf("%q is not a spec version; put one like v1.18, or leave it empty", v))
		}
	}
	if c.Limits.PeerRate <= 0 {
		bad("limits.peer_rate", "must be above 0; put how many receipts a second one XMPP person may send, e.g. 1000")
	}
	if c.Limits.PeerBurst < 1 {
		bad("limits.peer_burst", "must be at least 1; put how many receipts one XMPP person may send at once, e.g. 20000")
	}
	if c.Limits.PendingReceipts < 1 {
		bad("limits.pending_receipts", "must be at least 1; put how many receipts may wait to be recorded, e.g. 50000")
	}
	if c.Limits.MaxStanzaKiB < 64 {
		bad("limits.max_stanza_kib", "must be at least 64; put the KiB one XMPP stanza may take, e.g. 1024 (the XMPP server's own limit is lower)")
	}
	if c.Limits.MaxTxnMiB < 1 {
		bad("limits.max_transaction_mib", "must be at least 1; put the MiB one homeserver transaction may take, e.g. 64")
	}
	for _, l := range []struct {
		key, what string
		n         int
	}{
		{"jid_new_portals_per_hour", "chats one XMPP person may open with Matrix users by writing to them, e.g. 10", c.Limits.JIDNewPortals},
		{"domain_new_portals_per_hour", "chats the people of one XMPP domain may open together, e.g. 100", c.Limits.DomainNewPortals},
		{"domain_new_ghosts_per_hour", "new Matrix ghosts the people of one XMPP domain may have made, e.g. 50", c.Limits.DomainNewGhosts},
		{"domain_subscriptions_per_hour", "subscriptions the people of one XMPP domain without a chat may have approved, e.g. 50", c.Limits.DomainSubscriptions},
		{"media_fetches_per_hour", "files one XMPP person may have the bridge fetch, e.g. 60", c.Limits.MediaFetches},
	} {
		if l.n < 1 {
			bad("limits."+l.key, "must be at least 1; put how many "+l.what+" (xmpp.blocked_domains refuses a domain altogether)")
		}
	}
	if c.Groups.MaxRoomsPerUser < 1 {
		bad("groups.max_rooms_per_user", "must be at least 1; put how many XMPP chats one Matrix user's puppet may be in at once, e.g. 50")
	}
	if c.Groups.JoinsPerUserPerHour < 1 {
		bad("groups.joins_per_user_per_hour", "must be at least 1; put how many joins of XMPP chats one Matrix user may start an hour, e.g. 20")
	}
	if c.Limits.MemoryMiB < 0 {
		bad("limits.memory_mib", "must be 0 (no limit) or more; put the MiB the bridge's Go heap should stay under, e.g. 64")
	}
	if _, ok := levels[c.Logging.Level]; !ok {
		bad("logging.level", fmt.Sprintf("%q is not a level; put trace, debug, info, warn or error", c.Logging.Level))
	}
	if c.Logging.Format != "pretty" && c.Logging.Format != "json" {
		bad("logging.format", fmt.Sprintf("%q is not a format; put pretty or json", c.Logging.Format))
	}
	c.validateMedia(bad)
	if c.Metrics.Enabled {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			bad("metrics.listen", "not host:port; put the address to serve metrics on, e.g. 127.0.0.1:29341")
		}
	}
	return errs
}

// validateMedia checks media.*.
func (c *Config) validateMedia(bad func(key, what string)) {
	if c.Media.MaxFileMiB < 1 {
		bad("media.max_file_mib", "must be at least 1; put the MiB one file may have, e.g. 100")
	}
	if c.Media.FetchTimeout <= 0 {
		bad("media.fetch_timeout", "must be more than 0; put how long one file may take to fetch, e.g. 5m")
	}
	if _, err := c.MediaNetworks(); err != nil {
		bad("media.allow_networks", err.Error()+"; put networks such as 127.0.0.1/32 or 10.0.0.0/8, or addresses")
	}
	for key, v := range map[string]string{"media.upload_service": c.Media.UploadService, "media.server_domain": c.Media.ServerDomain} {
		if d, err := jid.Parse(v); v != "" && (err != nil || d.Localpart() != "" || d.Resourcepart() != "") {
			bad(key, fmt.Sprintf("%q is not a domain; put one such as upload.example.org, or leave it empty", v))
		}
	}
	switch c.Media.ToXMPP {
	case MediaUpload:
	case MediaServe:
		c.validateServe(bad)
	default:
		bad("media.to_xmpp", fmt.Sprintf("%q is neither %s nor %s", c.Media.ToXMPP, MediaUpload, MediaServe))
	}
}

// The ways a file from Matrix gets its URL on XMPP (media.to_xmpp): put on
// the XMPP server's upload service (XEP-0363) as the sender's puppet, or
// served by the bridge at signed, expiring URLs.
const (
	MediaUpload = "upload"
	MediaServe  = "serve"
)

// minSigningKey is the shortest media.signing_key: as many bytes as the
// HMAC-SHA256 it keys gives, so that the key is no easier to guess than a
// signature.
const minSigningKey = 32

// validateServe checks the keys media.to_xmpp: serve needs.
func (c *Config) validateServe(bad func(key, what string)) {
	if u, err := c.MediaPublicURL(); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		bad("media.public_url", fmt.Sprintf("%q is not an http(s) address without query; put where XMPP clients reach the bridge's files, e.g. https://bridge.example.org/media", c.Media.PublicURL))
	}
	if _, _, err := net.SplitHostPort(c.Media.ServeListen); err != nil {
		bad("media.serve_listen", fmt.Sprintf("%q is not a host:port; put where the bridge listens for the files' requests, e.g. 127.0.0.1:29342", c.Media.ServeListen))
	}
	if c.Media.ServeExpiry <= 0 {
		bad("media.serve_expiry", "must be more than 0; put how long a file's URL works, e.g. 720h")
	}
	if k := c.Media.SigningKey; k != "" && len(k) < minSigningKey {
		bad("media.signing_key", fmt.Sprintf("is %d characters, fewer than %d; put a long random string (openssl rand -base64 48), or leave it empty for one the bridge keeps in its database", len(k), minSigningKey))
	}
}

// MediaPublicURL is media.public_url parsed.
func (c *Config) MediaPublicURL() (*url.URL, error) { return url.Parse(c.Media.PublicURL) }

// MediaNetworks is media.allow_networks, each a network or an address
// (a network of one).
func (c *Config) MediaNetworks() ([]netip.Prefix, error) {
	var nets []netip.Prefix
	for _, s := range c.Media.AllowNetworks {
		if p, err := netip.ParsePrefix(s); err == nil {
			nets = append(nets, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			nets = append(nets, netip.PrefixFrom(a, a.BitLen()))
		} else {
			return nil, fmt.Errorf("%q is not a network or an address", s)
		}
	}
	return nets, nil
}

// MediaServerDomain is the XMPP server whose upload service the puppets
// use: media.server_domain, else the component's domain without its
// first label (matrix.example.org: example.org).
func (c *Config) MediaServerDomain() jid.JID {
	d := c.Media.ServerDomain
	if d == "" {
		d = c.XMPP.Domain
		if i := strings.IndexByte(d, '.'); i >= 0 {
			d = d[i+1:]
		}
	}
	j, _ := jid.Parse(d) // validated
	return j
}

var levels = map[string]struct{}{"trace": {}, "debug": {}, "info": {}, "warn": {}, "error": {}}

// ListenAddress is where the application service API listens.
func (c *Config) ListenAddress() string {
	return net.JoinHostPort(c.AppService.Hostname, strconv.Itoa(c.AppService.Port))
}

// DatabaseURI resolves a relative SQLite file next to the config file.
func (c *Config) DatabaseURI() string {
	uri := c.AppService.Database.URI
	if c.AppService.Database.Type != "sqlite3-fk-wal" || c.path == "" || filepath.IsAbs(uri) ||
		strings.HasPrefix(uri, "file:") || strings.HasPrefix(uri, ":memory:") {
		return uri
	}
	return filepath.Join(filepath.Dir(c.path), uri)
}

// Identities is the identity mapping this configuration defines.
func (c *Config) Identities() mapping.Identities {
	return mapping.Identities{
		HomeserverDomain: c.Homeserver.Domain,
		ComponentDomain:  c.XMPP.Domain,
		BotLocalpart:     c.AppService.Bot.Username,
	}
}

// Permissions returns bridge.permissions, or the default: the users of
// homeserver.domain and nobody else.
func (c *Config) Permissions() mapping.Permissions {
	if len(c.Bridge.Permissions) == 0 {
		return mapping.Permissions{c.Homeserver.Domain: mapping.PermUser}
	}
	return mapping.Permissions(c.Bridge.Permissions)
}

// registrationDomain is the homeserver domain the registration's ghost
// namespace was written for (ghostRegex), or "" if it has none of that
// shape.
func registrationDomain(reg *appservice.Registration) string {
	prefix := "^@" + regexp.QuoteMeta(mapping.GhostPrefix) + ".*:"
	for _, ns := range reg.Namespaces.UserIDs {
		quoted, hasPrefix := strings.CutPrefix(ns.Regex, prefix)
		quoted, hasSuffix := strings.CutSuffix(quoted, "$")
		if !hasPrefix || !hasSuffix || quoted == "" {
			continue
		}
		// Undo regexp.QuoteMeta: a domain has no backslash of its own.
		if domain := strings.ReplaceAll(quoted, `\`, ""); regexp.QuoteMeta(domain) == quoted {
			return domain
		}
	}
	return ""
}

// ghostRegex and botRegex are the registration's user namespaces.
func (c *Config) ghostRegex() string {
	return "^@" + regexp.QuoteMeta(mapping.GhostPrefix) + ".*:" + regexp.QuoteMeta(c.Homeserver.Domain) + "$"
}

// aliasRegex is the registration's alias namespace: the chats' portals,
// #_xmpp_ and the chat's address as a ghost's localpart has it
// (mapping.Identities.GroupAlias), which the homeserver asks the bridge
// about (the application service API, "Querying room aliases").
func (c *Config) aliasRegex() string {
	return "^#" + regexp.QuoteMeta(mapping.GhostPrefix) + ".*:" + regexp.QuoteMeta(c.Homeserver.Domain) + "$"
}

func (c *Config) botRegex() string {
	return "^" + regexp.QuoteMeta(string(c.Identities().Bot())) + "$"
}

// NewRegistration makes a registration for this configuration with fresh
// random tokens, and stores the tokens in c.
func (c *Config) NewRegistration() *appservice.Registration {
	reg := appservice.CreateRegistration()
	c.AppService.ASToken, c.AppService.HSToken = reg.AppToken, reg.ServerToken
	reg.ID = c.AppService.ID
	reg.URL = c.AppService.Address
	reg.SenderLocalpart = c.AppService.Bot.Username
	f := false
	reg.RateLimited = &f
	reg.Namespaces.UserIDs.Register(regexp.MustCompile(c.botRegex()), true)
	reg.Namespaces.UserIDs.Register(regexp.MustCompile(c.ghostRegex()), true)
	reg.Namespaces.RoomAliases.Register(regexp.MustCompile(c.aliasRegex()), true)
	// Both names: receive_ephemeral is the stable one (MSC2409 merged),
	// Synapse before 1.115 reads only the unstable one.
	reg.EphemeralEvents = true
	reg.SoruEphemeralEvents = true
	return reg
}

// SaveTokens writes the tokens of c into the config file at path, keeping
// its comments and layout.
func (c *Config) SaveTokens(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil || len(root.Content) == 0 {
		return fmt.Errorf("parse config %s: %v", path, err)
	}
	as := mapChild(root.Content[0], "appservice")
	setScalar(as, "as_token", c.AppService.ASToken)
	setScalar(as, "hs_token", c.AppService.HSToken)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(4)
	if err := enc.Encode(&root); err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	return writeFileAtomic(path, buf.Bytes(), 0o600)
}

func mapChild(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	child := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, child)
	return child
}

func setScalar(n *yaml.Node, key, value string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			n.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Value: value, Tag: "!!str"}
			return
		}
	}
	n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, &yaml.Node{Kind: yaml.ScalarNode, Value: value, Tag: "!!str"})
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// SaveRegistration writes reg to path.
func SaveRegistration(reg *appservice.Registration, path string) error {
	out, err := reg.YAML()
	if err != nil {
		return fmt.Errorf("encode registration: %w", err)
	}
	return writeFileAtomic(path, []byte(out), 0o600)
}

// ErrPlaceholderRegistration means the example registration was used as is.
var ErrPlaceholderRegistration = errors.New("the registration still has placeholder tokens")

// CheckRegistration loads the registration at path and refuses it when it
// is the example's, or disagrees with the configuration in anything the
// homeserver and the bridge must agree on.
func (c *Config) CheckRegistration(path string) (*appservice.Registration, error) {
	reg, err := appservice.LoadRegistration(path)
	if err != nil {
		return nil, fmt.Errorf("read registration %s: %w (write one with: bridge -g -c CONFIG -r %s)", path, err, path)
	}
	fix := fmt.Sprintf("regenerate it with: bridge -g -c CONFIG -r %s, and give it to the homeserver again", path)
	if strings.Contains(reg.AppToken, "PLACEHOLDER") || strings.Contains(reg.ServerToken, "PLACEHOLDER") || reg.AppToken == "" || reg.ServerToken == "" {
		return nil, fmt.Errorf("%s: %w; %s", path, ErrPlaceholderRegistration, fix)
	}
	var errs Errors
	bad := func(key, what string) { errs = append(errs, &Error{Key: key, What: what}) }
	if c.AppService.ASToken == "" || c.AppService.HSToken == "" {
		bad("appservice.as_token", "empty; "+fix+" (it writes the tokens into the config)")
	} else {
		if reg.AppToken != c.AppService.ASToken {
			bad("appservice.as_token", "differs from as_token in "+path+"; "+fix)
		}
		if reg.ServerToken != c.AppService.HSToken {
			bad("appservice.hs_token", "differs from hs_token in "+path+"; "+fix)
		}
	}
	if reg.ID != c.AppService.ID {
		bad("appservice.id", fmt.Sprintf("is %q but the registration's id is %q; %s", c.AppService.ID, reg.ID, fix))
	}
	if reg.SenderLocalpart != c.AppService.Bot.Username {
		bad("appservice.bot.username", fmt.Sprintf("is %q but the registration's sender_localpart is %q; %s", c.AppService.Bot.Username, reg.SenderLocalpart, fix))
	}
	if reg.URL != c.AppService.Address {
		bad("appservice.address", fmt.Sprintf("is %q but the registration's url is %q; %s", c.AppService.Address, reg.URL, fix))
	}
	if domain := registrationDomain(reg); domain != "" && domain != c.Homeserver.Domain {
		// One cause, said once: both namespaces name the other domain.
		bad("homeserver.domain", fmt.Sprintf("is %q but the registration's user namespaces are for %q. homeserver.domain must be the homeserver's server name, the part after ':' in its user IDs: if %q is a typo, correct it in the config; if the server name really is %q, write the registration again for it (bridge -g -c CONFIG -r %s) and give it to the homeserver", c.Homeserver.Domain, domain, c.Homeserver.Domain, c.Homeserver.Domain, path))
	} else {
		for _, want := range []string{c.ghostRegex(), c.botRegex()} {
			if !hasExclusive(reg.Namespaces.UserIDs, want) {
				bad("homeserver.domain", fmt.Sprintf("the registration has no exclusive user namespace %q; %s", want, fix))
			}
		}
		if !hasExclusive(reg.Namespaces.RoomAliases, c.aliasRegex()) {
			// A registration written before chats were joined by alias:
			// the homeserver would never ask the bridge about them.
			bad("homeserver.domain", fmt.Sprintf("the registration has no exclusive alias namespace %q (the chats' room aliases; a registration written before they came lacks it); %s", c.aliasRegex(), fix))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s disagrees with the configuration: %w", path, errs)
	}
	return reg, nil
}

// hasExclusive tells whether list has the exclusive namespace regex.
func hasExclusive(list appservice.NamespaceList, regex string) bool {
	for _, ns := range list {
		if ns.Exclusive && ns.Regex == regex {
			return true
		}
	}
	return false
}

// ReceiptPolicy is the receipts.* part the core reads.
func (c *Config) ReceiptPolicy() mapping.ReceiptPolicy {
	p := mapping.ReceiptPolicy{
		MaxDisplayedPerRead:  c.Receipts.MaxDisplayedPerRead,
		ReadImpliesDelivered: c.Receipts.ReadImpliesDelivered,
		SendToXMPP:           c.Receipts.SendToXMPP,
		Overrides:            map[id.UserID]bool{},
		ToFullJID:            c.XMPP.ReceiptTo == "full",
	}
	for u, v := range c.Receipts.SendToXMPPUsers {
		p.Overrides[id.UserID(u)] = v
	}
	return p
}

// CoreLimits is limits.*, as the core reads it.
func (c *Config) CoreLimits() mapping.Limits {
	return mapping.Limits{
		PeerRate: c.Limits.PeerRate, PeerBurst: c.Limits.PeerBurst, Pending: c.Limits.PendingReceipts,
		JIDPortals: c.Limits.JIDNewPortals, DomainPortals: c.Limits.DomainNewPortals,
		DomainGhosts: c.Limits.DomainNewGhosts, DomainSubscriptions: c.Limits.DomainSubscriptions,
		MediaFetches: c.Limits.MediaFetches,
	}
}

// GroupLimits is groups.*, as the core reads it.
func (c *Config) GroupLimits() mapping.GroupLimits {
	return mapping.GroupLimits{MaxRoomsPerUser: c.Groups.MaxRoomsPerUser, JoinsPerHour: c.Groups.JoinsPerUserPerHour}
}

// PresencePolicy is the part of xmpp.* that rules the puppets' presence
// subscriptions.
func (c *Config) PresencePolicy() mapping.PresencePolicy {
	return mapping.PresencePolicy{AutoSubscribe: c.XMPP.AutoSubscribe, SubscribeOnPortal: c.XMPP.SubscribeOnPortal}
}
