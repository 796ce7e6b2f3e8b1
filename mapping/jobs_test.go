package mapping

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
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
