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
// Run, and core, what every concern shares). The Bridge is the front: its
// methods hand each call to one of the concerns, each a type owning its
// handlers, its job kinds and its state (docs/architecture.md lists
// them): messages, the intake each way and the message sends —
// fromxmpp.go (HandleXMPPMessage, everything a <message/> from XMPP can
// be), frommatrix.go (HandleMatrixTxns, a homeserver's transactions) and
// sends.go; receipts, with a file each way: xmpp_receipts.go (XMPP →
// Matrix: FlushReceipts) and matrix_receipts.go (Matrix → XMPP: the
// m.read "up to" expansion), their rules in receipts.go (mayAnswer,
// mayCross); relations (relations_rules.go); people (people.go: profiles,
// presence, roster, ghosts); bot (commands.go). Each job kind is
// registered (register) beside its handler, in the file that owns it,
// with its side and order; jobs.go holds what they share and
// Bridge.RunJob, which looks a job's kind up and runs its handler.
// store.go is the Store the database implements.
// docs/architecture.md walks a receipt through all of it each way, and
// docs/protocols.md is the table these rules follow.
package mapping
