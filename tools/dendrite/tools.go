//go:build tools

// Package tools pins Dendrite v0.15.2, the homeserver the end-to-end tests
// run against. The Go module proxy lists no versions of it, so `go install
// …@v0.15.2` is refused; requiring it from this module and building its
// commands from here works.
package tools

import (
	_ "github.com/element-hq/dendrite/cmd/dendrite"
	_ "github.com/element-hq/dendrite/cmd/generate-config"
	_ "github.com/element-hq/dendrite/cmd/generate-keys"
)
