package main

import (
	"testing"
	"time"
)

// The drill's rule for XMPP → Matrix losses (unrecordedTails): XEP-0114
// §3 has no acknowledgement of what the server writes to the component, so
// a dead connection loses the tail of each person's stream the bridge had
// not recorded, and nothing else.
func TestUnrecordedTails(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	// Two people (i%2): receipts 0..7 on connection 1, killed at 4 s;
	// 8 refused while down; 9..11 on connection 2, up to the end.
	conn := []int64{1, 1, 1, 1, 1, 1, 1, 1, 0, 2, 2, 2}
	written := []time.Time{at(0), at(0.5), at(1), at(1.5), at(2), at(2.5), at(3), at(3.5), {}, at(5), at(5.5), at(6)}
	lost := map[int]bool{
		2: true, // person 0: lost, but person 0's receipt 4 arrived after it: the bridge's doing
		5: true, // person 1: lost, and none of theirs after it arrived on connection 1: a tail
		6: true, // person 0: a tail (4 arrived before it)
		7: true, // person 1: a tail
		9: true, // connection 2 was never cut: nothing on it is excused
	}
	excused, longest := unrecordedTails(conn, written, 2, 2, func(i int) bool { return !lost[i] }, map[int64]time.Time{1: at(4)})
	want := map[int]bool{5: true, 6: true, 7: true}
	for i := range conn {
		if excused[i] != want[i] {
			t.Errorf("receipt %d: excused %v, want %v", i, excused[i], want[i])
		}
	}
	// The oldest excused receipt, 5, was written 1.5 s before the kill.
	if longest != 1500*time.Millisecond {
		t.Errorf("longest tail %v, want 1.5s", longest)
	}
}
