package mapping

import (
	"strings"
	"testing"
)

// Every kind the outbox runs is declared, on the side its name says.
func TestJobKindsDeclared(t *testing.T) {
	for _, k := range []JobKind{
		JobSendToMatrix, JobSendToXMPP, JobJoin, JobLeave, JobNotice, JobGhostName,
		JobMatrixDelivery, JobMatrixRead, JobMatrixStatus,
		JobSendStanzas, JobSubscribe, JobReplayReceipt,
	} {
		kind, ok := jobKinds[k]
		if !ok {
			t.Errorf("%s is not declared in jobKinds", k)
			continue
		}
		if !strings.HasPrefix(string(k), kind.side+".") {
			t.Errorf("%s is declared on side %q", k, kind.side)
		}
	}
}

// A job's lane is what its kind orders it by, whatever the stored Lane
// says for the kinds that need none or one per side.
func TestJobOrder(t *testing.T) {
	a := about{room: "!dm:example.org", mxid: alice, peer: julietBareID}
	for _, tc := range []struct {
		job  *Job
		want string
	}{
		{newJob(JobSendToMatrix, a, 0, nil), pairLane(alice, julietBareID)},
		{newJob(JobReplayReceipt, a, 0, nil), pairLane(alice, julietBareID)},
		{argsJob(JobJoin, jobArgs{Room: "!dm:example.org"}), "!dm:example.org"},
		// Per event: spread over the room's lanes by id.
		{&Job{ID: 9, Kind: JobMatrixDelivery, Lane: "!dm:example.org"}, "!dm:example.org#1"},
		{&Job{ID: 10, Kind: JobMatrixStatus, Lane: "!dm:example.org"}, "!dm:example.org#2"},
		{newJob(JobSendToXMPP, a, 0, nil), SideXMPP},
		{&Job{Kind: JobSendToXMPP}, SideXMPP}, // stored before lanes were declared
		{newJob(JobSendStanzas, about{}, 0, nil), SideXMPP},
		{newJob(JobSubscribe, a, 0, nil), ""},
		{&Job{Kind: JobSubscribe, Lane: "stale"}, ""},
	} {
		if got := tc.job.Order(); got != tc.want {
			t.Errorf("%s: order %q, want %q", tc.job.Kind, got, tc.want)
		}
	}
}
