package config

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// media.* has its defaults, takes networks and addresses, and names what
// it refuses.
func TestMediaConfig(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Media.Enabled || cfg.Media.MaxFileMiB != 100 || cfg.Media.FetchTimeout != 5*time.Minute || cfg.Media.AllowHTTP || cfg.Limits.MediaFetches != 60 {
		t.Errorf("defaults %+v, media_fetches_per_hour %d", cfg.Media, cfg.Limits.MediaFetches)
	}
	if d := cfg.MediaServerDomain(); d.String() != "example.org" { // matrix.example.org
		t.Errorf("server domain %s, want xmpp.domain without its first label", d)
	}
	cfg, err = Parse([]byte(edit(minimal, "+media:\n    allow_networks: [10.0.0.0/8, 127.0.0.1, \"::1\"]\n    server_domain: xmpp.example.net\n")))
	if err != nil {
		t.Fatal(err)
	}
	nets, _ := cfg.MediaNetworks()
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	if !slices.Equal(nets, want) || cfg.MediaServerDomain().String() != "xmpp.example.net" {
		t.Errorf("networks %v server %s", nets, cfg.MediaServerDomain())
	}
	for key, e := range map[string]string{
		"media.max_file_mib":            "+media:\n    max_file_mib: 0\n",
		"media.fetch_timeout":           "+media:\n    fetch_timeout: 0s\n",
		"media.allow_networks":          "+media:\n    allow_networks: [intranet]\n",
		"media.upload_service":          "+media:\n    upload_service: user@upload.example.org\n",
		"limits.media_fetches_per_hour": "+limits:\n    media_fetches_per_hour: 0\n",
	} {
		_, err := Parse([]byte(edit(minimal, e)))
		named(t, err, key, "")
	}
}
