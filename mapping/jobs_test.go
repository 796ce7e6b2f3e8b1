package mapping

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// Every JobKind constant of the package is registered, with a handler,
// on the side its name says. The constants are read from the source, so
// that a kind added without its registration fails here, not in the
// outbox as an unknown kind.
func TestJobKindsRegistered(t *testing.T) {
	kinds := jobKindConstants(t)
	if len(kinds) < len(jobKinds) {
		t.Errorf("%d JobKind constants found in the source, %d kinds registered", len(kinds), len(jobKinds))
	}
	for name, k := range kinds {
		kind, ok := jobKinds[k]
		if !ok {
			t.Errorf("%s (%s) is not registered", name, k)
			continue
		}
		if kind.run == nil {
			t.Errorf("%s (%s) has no handler", name, k)
		}
		if !strings.HasPrefix(string(k), kind.side+".") {
			t.Errorf("%s is declared on side %q", k, kind.side)
		}
	}
}

// jobKindConstants is every constant of type JobKind in the package's
// own (non-test) files, by name.
func jobKindConstants(t *testing.T) map[string]JobKind {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]JobKind{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.CONST {
				continue
			}
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				if typ, ok := vs.Type.(*ast.Ident); !ok || typ.Name != "JobKind" {
					continue
				}
				for i, n := range vs.Names {
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok {
						t.Fatalf("%s: %s is not a string literal", fset.Position(n.Pos()), n.Name)
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					kinds[n.Name] = JobKind(v)
				}
			}
		}
	}
	return kinds
}

// A kind registered twice, or without a handler, stops the bridge at
// start-up.
func TestRegisterRefuses(t *testing.T) {
	for name, reg := range map[string]func(){
		"twice":      func() { register(JobSendToMatrix, jobKinds[JobSendToMatrix]) },
		"no handler": func() { register("matrix.none", jobKind{side: SideMatrix}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			reg()
		}()
	}
	if _, ok := jobKinds["matrix.none"]; ok {
		t.Error("a kind without a handler was registered")
	}
}

// A job's lane is what its kind orders it by, whatever the stored Lane
// says for the kinds that need none or one per side.
func TestJobOrder(t *testing.T) {
	alice, julietBareID := id.UserID("@alice:example.org"), jid.MustParse("juliet@capulet.lit")
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

// A JobSendStanzas stored by a version before receipts were XMPPAcks
// (its receipt in "received", "displayed" or the events of "event")
// sends, after an upgrade, the stanzas it was stored for; and one stored
// now reads back as it was made.
func TestStanzaJobsOfTheVersionBefore(t *testing.T) {
	from, to := jid.MustParse("alice\\3aexample.org@matrix.example.org/bridge"), jid.MustParse("juliet@capulet.lit")
	old := `[{"id":"s1","from":"x","to":"y","type":"chat","received":"m1"},
		{"id":"s2","from":"x","to":"y","type":"chat","event":{"ID":"m2","Offline":false,"Delivered":true,"Displayed":false,"Composing":false}},
		{"id":"s3","from":"x","to":"y","type":"chat","event":{"ID":"m3","Offline":false,"Delivered":false,"Displayed":true,"Composing":false}},
		{"id":"s4","from":"x","to":"y","type":"chat","displayed":"m4"},
		{"id":"s5","from":"x","to":"y","type":"chat","event":{"ID":"m5","Offline":true,"Delivered":false,"Displayed":false,"Composing":false}},
		{"id":"s6","from":"x","to":"y","type":"chat","event":{"ID":"m6","Offline":false,"Delivered":false,"Displayed":false,"Composing":true}},
		{"id":"s7","from":"x","to":"y","type":"chat","event":{"ID":"m7","Offline":false,"Delivered":false,"Displayed":false,"Composing":false}}]`
	var js []stanzaJob
	if err := json.Unmarshal([]byte(old), &js); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		acks  []XMPPAck
		event *EventNotice
	}{
		{acks: []XMPPAck{{WireReceived, "m1"}}},
		{acks: []XMPPAck{{WireEventDelivered, "m2"}}},
		{acks: []XMPPAck{{WireEventDisplayed, "m3"}}},
		{acks: []XMPPAck{{WireMarkerDisplayed, "m4"}}},
		{acks: []XMPPAck{{WireEventOffline, "m5"}}},
		{event: &EventNotice{ID: "m6", Composing: true}},
		{event: &EventNotice{ID: "m7"}}, // XEP-0022 §3.2.4: cancels composing
	}
	for i, s := range js {
		m := s.out(from, to)
		if !slices.Equal(m.Acks, want[i].acks) || !reflect.DeepEqual(m.Event, want[i].event) {
			t.Errorf("%s: acks %v, event %+v; want %v, %+v", s.ID, m.Acks, m.Event, want[i].acks, want[i].event)
		}
	}
	made := []*OutMessage{ackStanza(from, to, TypeChat, WireEventDelivered, "m2"), {ID: "c", From: from, To: to, Type: TypeChat, Event: &EventNotice{ID: "m6", Composing: true}}}
	var back []stanzaJob
	if err := json.Unmarshal(stanzasJob(made).Payload, &back); err != nil {
		t.Fatal(err)
	}
	for i, s := range back {
		if m := s.out(from, to); !slices.Equal(m.Acks, made[i].Acks) || !reflect.DeepEqual(m.Event, made[i].Event) {
			t.Errorf("stanza %d read back as %+v, made as %+v", i, m, made[i])
		}
	}
}
