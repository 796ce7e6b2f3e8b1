package mapping

// The core's tests that run on the in-memory store (package memstore,
// which imports this one) are external tests, package mapping_test: an
// internal test may not import a package that imports its own. They import
// mapping with a dot, so that they read as they did inside it. This file,
// compiled with the tests only, exports to them the few unexported rules,
// constants and parts of a Bridge they check or set. The tests of the
// package's internals that need no store (intake_test.go, jobs_test.go,
// styling_test.go) stay internal.

import (
	"context"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// Config is b's configuration, for a test to change after New: the core
// reads it as each input comes.
func (b *Bridge) Config() *Config { return &b.cfg }

// SetIntake gives b a new intake (intake.go: the receipts from XMPP
// waiting to be recorded, and the strangers' budgets) of limits, on the
// clock now, logging to log.
func (b *Bridge) SetIntake(limits Limits, now func() time.Time, log zerolog.Logger) {
	b.in = newIntake(limits, now, log)
}

// SpendNewGhost spends one of domain's new ghosts, as a message from a
// person of domain without a ghost does.
func (b *Bridge) SpendNewGhost(domain string) Reason {
	return b.in.strangers.admit(ask{ghostsOfDomain, domain})
}

// EnsurePortal is the portal of mxid and peer, created if there is none,
// as the bot's `start` makes it.
func (b *Bridge) EnsurePortal(ctx context.Context, mxid id.UserID, peer jid.JID) (*Portal, error) {
	return b.messages.ensurePortal(ctx, mxid, peer)
}

// MayCross is the Matrix → XMPP rule of receipts (receipts.go).
func (b *Bridge) MayCross(rc Receipt, portal *Portal, msg *Message) (AckKind, Reason) {
	return b.receipts.mayCross(rc, portal, msg)
}

// MayAnswer is the XMPP → Matrix rule of receipts (receipts.go).
var MayAnswer = mayAnswer

// JobKinds is every job kind registered, sorted.
func JobKinds() []JobKind {
	kinds := make([]JobKind, 0, len(jobKinds))
	for k := range jobKinds {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	return kinds
}

// UserJob is a job of kind about the Matrix user (or ghost) mxid, with
// payload, in the lane its kind keeps.
func UserJob(kind JobKind, mxid id.UserID, payload []byte) *Job {
	return newJob(kind, about{mxid: mxid}, 0, payload)
}

// GhostProfileArgs is the payload of a JobGhostProfile (ghosts.go).
type GhostProfileArgs = ghostProfileArgs

// VCardJob is the job that fetches peer's vCard as mxid's puppet.
var VCardJob = vcardJob

// CommandWords are the commands the bot knows.
var CommandWords = commandWords

const (
	// ParkedPrefix starts the id of an inbox entry that is a parked
	// receipt handed back (early_receipts.go).
	ParkedPrefix = parkedPrefix
	// MaxGhostPhotoBytes bounds the vCard PHOTO the bridge uploads.
	MaxGhostPhotoBytes = maxGhostPhotoBytes
	// OverBudgetLogEvery is how often the intake's refusals are logged.
	OverBudgetLogEvery = overBudgetLogEvery
	// MaxOccupants bounds the occupants of one chat made members in a run.
	MaxOccupants = maxOccupants
)

// SetClock puts b's core on the clock now.
func (b *Bridge) SetClock(now func() time.Time) { b.core.now = now }

// MaxAliasQueries is how many alias queries may be under way at once
// (group_alias.go).
const MaxAliasQueries = maxAliasQueries

// AliasQueriesUnderWay is how many alias queries hold a place now.
func (b *Bridge) AliasQueriesUnderWay() int { return len(b.groups.aliasQueries) }

// SelfPing sends the XEP-0410 self-pings due now and waits for them.
func (b *Bridge) SelfPing(ctx context.Context) { b.groups.state.selfPing(ctx) }

// SelfPingAfter is how long a puppet goes without word from a chat before
// it asks whether it is still in.
const SelfPingAfter = selfPingAfter

// ReceiptJob is receiptJob: a receipt job as a burst from XMPP makes it.
func ReceiptJob(kind JobKind, room id.RoomID, msg *Message, by MemberID) *Job {
	return receiptJob(kind, room, msg, by)
}
