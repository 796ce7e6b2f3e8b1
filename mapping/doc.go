// Package mapping is the bridge's core: the rules of what every input
// from either server means and what must be sent for it, with no network
// and no SQL. The sides (xmppside, matrixside) decode the wire into this
// package's values (XMPPMessage, MatrixTxn) and hand them to a Bridge;
// the Bridge checks them against its rules, records them with the sends
// they owe (Job) in one write to a Store (package database), and hands
// those jobs to an Outbox (package outbox), which runs them back through
// Bridge.RunJob and the sides (MatrixSide, XMPPSide).
//
// Where to start reading: bridge.go (the Bridge, the two side interfaces,
// Run), then fromxmpp.go (HandleXMPPMessage, everything a <message/>
// from XMPP can be) and frommatrix.go (HandleMatrixTxns, a homeserver's
// transactions). Receipts have a file each way: xmpp_receipts.go (XMPP →
// Matrix: mayAnswer, FlushReceipts) and matrix_receipts.go (Matrix → XMPP:
// mayCross, the m.read "up to" expansion). Each job kind is registered
// (register) beside its handler, in the file that owns it, with its side
// and order; jobs.go holds what they share and Bridge.RunJob, which looks
// a job's kind up and runs its handler. store.go is the Store the
// database implements.
// docs/architecture.md walks a receipt through all of it each way, and
// docs/protocols.md is the table these rules follow.
package mapping
