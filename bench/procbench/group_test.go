package main

import (
	"strings"
	"testing"
)

// The stand-in room answers a puppet's join (XEP-0045 §7.2.2-§7.2.3),
// however the stream cuts it: the occupants' presences with their
// occupant-ids, then the puppet's own with status 110, last; and nothing
// else the component sends.
func TestMUCRoomStandinAnswersJoins(t *testing.T) {
	m := mucAnswers(3)
	stream := `<presence from="g000@matrix.example.org" to="lounge@conference.xmpp.example/g000"><x xmlns="http://jabber.org/protocol/muc"><history maxstanzas="0"></history></x></presence>` +
		`<presence from="g001@matrix.example.org" to="lounge@conference.xmpp.example/g001" type="unavailable"></presence>` +
		`<presence from="g001@matrix.example.org" to="bob@xmpp.example"></presence>`
	for k := 0; k < len(stream); k += 7 {
		if _, err := m.Write([]byte(stream[k:min(k+7, len(stream))])); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.answers) != 1 {
		t.Fatalf("%d answers, want 1 (the join only)", len(m.answers))
	}
	a := <-m.answers
	if n := strings.Count(a, "<occupant-id "); n != 4 {
		t.Errorf("%d occupant-ids, want 3 occupants' and the puppet's:\n%s", n, a)
	}
	self := strings.LastIndex(a, "<presence ")
	if !strings.Contains(a[self:], "<status code='110'/>") || !strings.Contains(a[self:], "from='lounge@conference.xmpp.example/g000' to='g000@matrix.example.org'") {
		t.Errorf("the last presence is not the puppet's own with status 110:\n%s", a[self:])
	}
	if strings.Count(a, "to='g000@matrix.example.org'") != 4 {
		t.Errorf("not every presence is to the puppet:\n%s", a)
	}
}

// Each group receipt is about a message of its own, each reader's in
// the order of the room, and members read only occupants' messages.
func TestGroupReceipts(t *testing.T) {
	d := &driver{n: 50, history: 60, pacedSeconds: 1}
	for _, s := range d.groupScenarios() {
		rs := s.burst
		if rs == nil {
			rs = s.flood
		}
		last := map[int]int{}
		seen := map[int]bool{}
		for _, r := range rs {
			j := r.i - s.group.first
			if seen[r.i] {
				t.Fatalf("%s: message %d read twice", s.name(), r.i)
			}
			seen[r.i] = true
			if r.kind == groupRead && !fromOccupant(j) {
				t.Errorf("%s: a member reads message %d, a member's", s.name(), j)
			}
			if p, ok := last[r.room]; ok && p > r.i {
				t.Errorf("%s: reader %d goes back from %d to %d", s.name(), r.reader(), p, r.i)
			}
			last[r.room] = r.i
			if r.reader() < 0 || r.reader() >= s.group.members {
				t.Errorf("%s: reader %d of %d", s.name(), r.reader(), s.group.members)
			}
		}
		if len(rs) == 0 {
			t.Errorf("%s: no receipts", s.name())
		}
	}
}
