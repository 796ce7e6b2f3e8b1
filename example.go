// Package xmppbridge holds what the bridge embeds from the top of the
// repository: the commented example configuration.
package xmppbridge

import _ "embed"

// ExampleConfig is config.example.yaml: the defaults, and what -e prints.
//
//go:embed config.example.yaml
var ExampleConfig []byte
