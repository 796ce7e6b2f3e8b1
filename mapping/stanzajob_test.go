package mapping

import (
	"reflect"
	"testing"

	"mellium.im/xmpp/jid"
)

// A JobSendStanzas hands its stanzas to the send as they were made; read
// back from the store after a restart (no Made), its payload gives the
// same stanzas.
func TestStanzasJobReadBackIsTheSame(t *testing.T) {
	from, to := jid.MustParse("alice\\40example.org@matrix.example.org/matrix"), jid.MustParse("juliet@capulet.example/balcony")
	made := []*OutMessage{
		ackStanza(from, to, TypeChat, WireReceived, "m1"),
		ackStanza(from, to, TypeChat, WireEventDisplayed, "m2"),
		{ID: "m3", From: from, To: to, Type: TypeChat, Event: &EventNotice{ID: "m3", Composing: true}},
	}
	job := stanzasJob(made)
	stored := &Job{Kind: job.Kind, Payload: job.Payload, Lane: job.Lane}
	back, err := storedStanzas(stored)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, job.Made) {
		t.Fatalf("read back %+v, made %+v", back, job.Made)
	}
}
