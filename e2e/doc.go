// Package e2e runs the bridge binary between a real Prosody and a real
// Dendrite on loopback (and, for the group tests, in a second world on a
// real ejabberd: TestEjabberdGroups), driven by real clients: mellium for
// the XMPP people
// (and slixmpp where a third-party client's own rules matter), mautrix for
// the Matrix ones. Its tests build only with the e2e tag; run with: go test
// -tags e2e ./e2e/ (internal/rig starts the servers, internal/peers the
// clients and the bridge).
package e2e
