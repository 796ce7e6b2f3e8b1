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
	if cfg.Media.ToXMPP != MediaUpload || cfg.Media.ServeExpiry != 720*time.Hour || cfg.Media.ServeListen != "127.0.0.1:29342" {
		t.Errorf("to_xmpp %q serve_expiry %s serve_listen %q: want upload, 720h, 127.0.0.1:29342", cfg.Media.ToXMPP, cfg.Media.ServeExpiry, cfg.Media.ServeListen)
	}
	serve := "+media:\n    to_xmpp: serve\n    public_url: https://bridge.example.org/media\n"
	if cfg, err := Parse([]byte(edit(minimal, serve))); err != nil || cfg.Media.ToXMPP != MediaServe {
		t.Errorf("serve with a public_url: %v", err)
	}
	for key, e := range map[string]string{
		"media.to_xmpp":                 "+media:\n    to_xmpp: link\n",
		"media.public_url":              "+media:\n    to_xmpp: serve\n",
		"media.serve_listen":            serve + "    serve_listen: localhost\n",
		"media.serve_expiry":            serve + "    serve_expiry: 0s\n",
		"media.signing_key":             serve + "    signing_key: short\n",
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
