package xmppside

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// The specifications' own examples of what points at a message, decoded.
func TestDecodeRelationSpecExamples(t *testing.T) {
	const reacted = "744f6e18-a57a-11e9-a656-4889e7820c76"
	for _, tc := range []struct {
		file, body string
		want       mapping.XMPPMessage // of it, only the relation fields
	}{
		// XEP-0308 §3, Example 2: "User corrects the message and sends".
		{"xep0308-example2-correction.xml", "But soft, what light through yonder window breaks?",
			mapping.XMPPMessage{Replace: "bad1"}},
		// XEP-0461 §3, Example 3: "Max replies to Anna's message".
		{"xep0461-example3-reply.xml", "Great idea!",
			mapping.XMPPMessage{Reply: &mapping.XMPPReply{To: "anna@example.com/tablet", ID: "message-id1"}}},
		// XEP-0461 §3.1, Example 4: a reply with its fallback, in the
		// namespace the example spells it with.
		{"xep0461-example4-fallback.xml", "Great idea!",
			mapping.XMPPMessage{Reply: &mapping.XMPPReply{To: "anna@example.com/laptop", ID: "message-id1", Fallback: "> Anna wrote:\n> We should bake a cake\n"}}},
		// XEP-0428 §2.2, Example 1: the same with urn:xmpp:fallback:0.
		{"xep0428-example1-reply.xml", "Great",
			mapping.XMPPMessage{Reply: &mapping.XMPPReply{To: "anna@example.com", ID: "message-id1", Fallback: "> Anna wrote:\n> Hi, how are you?\n"}}},
		// XEP-0444 §3.1, Example 5: "Juliet sends a 👋 reaction".
		{"xep0444-example5-reaction.xml", "",
			mapping.XMPPMessage{Reactions: &mapping.XMPPReactions{ID: reacted, Keys: []string{"👋"}}}},
		// XEP-0444 §3.2, Example 6: "Juliet adds a 🐢 reaction": the whole set.
		{"xep0444-example6-add.xml", "",
			mapping.XMPPMessage{Reactions: &mapping.XMPPReactions{ID: reacted, Keys: []string{"👋", "🐢"}}}},
		// XEP-0444 §3.2, Example 7: "Juliet removes all reactions".
		{"xep0444-example7-remove-all.xml", "",
			mapping.XMPPMessage{Reactions: &mapping.XMPPReactions{ID: reacted}}},
		// XEP-0424 §3, Example 4: a retraction; its fallback body stays.
		{"xep0424-example4-retract.xml", retractFallbackBody,
			mapping.XMPPMessage{Retract: "origin-id-1"}},
		// XEP-0424 0.3 §3, Example 4: the older form, in XEP-0422's <apply-to/>.
		{"xep0424-v0.3-example4-apply-to.xml", "This person attempted to retract a previous message, but it's unsupported by your client.",
			mapping.XMPPMessage{Retract: "origin-id-1"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			m := decodeFile(t, tc.file)
			if m.Body != tc.body {
				t.Errorf("body %q, want %q", m.Body, tc.body)
			}
			if got := relationsOf(m); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("decoded %s,\nwant    %s", show(got), show(tc.want))
			}
		})
	}
}

// relationsOf is the part of m this file is about.
func relationsOf(m *mapping.XMPPMessage) mapping.XMPPMessage {
	return mapping.XMPPMessage{Replace: m.Replace, Reply: m.Reply, Reactions: m.Reactions, Retract: m.Retract}
}

func show(m mapping.XMPPMessage) string {
	s := fmt.Sprintf("replace %q retract %q", m.Replace, m.Retract)
	if m.Reply != nil {
		s += fmt.Sprintf(" reply %+v", *m.Reply)
	}
	if m.Reactions != nil {
		s += fmt.Sprintf(" reactions %q %q", m.Reactions.ID, m.Reactions.Keys)
	}
	return s
}

// replyWith is a reply whose body is body, with the XML of its fallbacks.
func replyWith(body, fallbacks string) string {
	esc := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	return `<message from='max@example.com/phone' to='anna@example.com' id='r1' type='chat'><body>` + esc.Replace(body) + `</body>` +
		`<reply xmlns='urn:xmpp:reply:0' to='anna@example.com' id='message-id1'/>` + fallbacks + `</message>`
}

func fallbackFor(ns string, ranges ...string) string {
	return `<fallback xmlns='urn:xmpp:fallback:0' for='` + ns + `'>` + strings.Join(ranges, "") + `</fallback>`
}

func rng(start, end string) string { return `<body start='` + start + `' end='` + end + `'/>` }

// XEP-0428 §2.2: the ranges of a fallback count what XEP-0426 §2 counts,
// Unicode code points (not bytes, not UTF-16 units, not graphemes), from
// the first character of a range to the one after its last (§3). The
// marked text is cut out of a reply's body and kept as its fallback; a
// fallback that is malformed in any way leaves the body whole.
func TestReplyFallbackCut(t *testing.T) {
	// XEP-0426 §2's own example: 5 graphemes, 43 UTF-8 bytes, 21 UTF-16
	// units, 13 code points.
	const emoji = "🧛🏾 👨‍👨‍👦‍👦 🇺🇳"
	for _, tc := range []struct {
		name, body, fallbacks string
		wantBody, wantCut     string
	}{
		{"emoji before the range", "🎂🎂> q\nhi", fallbackFor(mapping.NSReply, rng("2", "6")), "🎂🎂hi", "> q\n"},
		{"emoji in the range", "> 👋🏽 hi\nok", fallbackFor(mapping.NSReply, rng("0", "8")), "ok", "> 👋🏽 hi\n"},
		{"XEP-0426's table", emoji + "\nreply", fallbackFor(mapping.NSReply, rng("0", "14")), "reply", emoji + "\n"},
		{"a range splitting a grapheme (XEP-0426 §2.1)", "👋🏽x", fallbackFor(mapping.NSReply, rng("0", "1")), "🏽x", "👋"},
		{"two ranges", "A> x\nB> y\nC", fallbackFor(mapping.NSReply, rng("6", "10"), rng("1", "5")), "ABC", "> x\n> y\n"},
		{"two fallbacks", "A> x\nB> y\nC", fallbackFor(mapping.NSReply, rng("1", "5")) + fallbackFor(mapping.NSReply, rng("6", "10")), "ABC", "> x\n> y\n"},
		{"overlapping ranges", "> abc\nd", fallbackFor(mapping.NSReply, rng("0", "4"), rng("2", "6")), "d", "> abc\n"},
		{"an empty range", "abc", fallbackFor(mapping.NSReply, rng("1", "1")), "abc", ""},
		{"the whole body, end included", "abc", fallbackFor(mapping.NSReply, rng("0", "3")), "", "abc"},
		{"&amp; counts as one (XEP-0426 §2)", "&> x\ny", fallbackFor(mapping.NSReply, rng("1", "5")), "&y", "> x\n"},
		{"no child: the whole body", "> x\ny", fallbackFor(mapping.NSReply), "", "> x\ny"},
		{"a <body/> without range: the whole body", "> x\ny", fallbackFor(mapping.NSReply, `<body/>`), "", "> x\ny"},
		{"only the subject", "> x\ny", fallbackFor(mapping.NSReply, `<subject start='0' end='1'/>`), "> x\ny", ""},
		{"another XEP's fallback", "> x\ny", fallbackFor(mapping.NSReactions, rng("0", "4")), "> x\ny", ""},
		{"XEP-0461's spelling", "> x\ny", `<fallback xmlns='urn:xmpp:feature-fallback:0' for='urn:xmpp:reply:0'><body start='0' end='4'/></fallback>`, "y", "> x\n"},
		// Malformed: the body is kept whole, nothing is the fallback.
		{"end past the body", "> x\ny", fallbackFor(mapping.NSReply, rng("0", "6")), "> x\ny", ""},
		{"end past the body, in code points", "🎂🎂", fallbackFor(mapping.NSReply, rng("0", "3")), "🎂🎂", ""},
		{"a huge end", "> x\ny", fallbackFor(mapping.NSReply, rng("0", "99999999999999999999999999")), "> x\ny", ""},
		{"the largest int", "> x\ny", fallbackFor(mapping.NSReply, rng("9223372036854775807", "9223372036854775807")), "> x\ny", ""},
		{"a negative start", "> x\ny", fallbackFor(mapping.NSReply, rng("-1", "4")), "> x\ny", ""},
		{"start after end", "> x\ny", fallbackFor(mapping.NSReply, rng("4", "0")), "> x\ny", ""},
		{"not a number", "> x\ny", fallbackFor(mapping.NSReply, rng("zero", "4")), "> x\ny", ""},
		{"a start without end", "> x\ny", fallbackFor(mapping.NSReply, `<body start='0'/>`), "> x\ny", ""},
		{"one bad range of two", "A> x\nB", fallbackFor(mapping.NSReply, rng("1", "5"), rng("5", "99")), "A> x\nB", ""},
		{"too many ranges", strings.Repeat("ab", 20), fallbackFor(mapping.NSReply, slices.Repeat([]string{rng("0", "1")}, maxFallbackRanges+1)...), strings.Repeat("ab", 20), ""},
		{"10,000 ranges", "ab", fallbackFor(mapping.NSReply, slices.Repeat([]string{rng("0", "1")}, 10000)...), "ab", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decodeString(replyWith(tc.body, tc.fallbacks))
			if err != nil {
				t.Fatal(err)
			}
			if m.Reply == nil || m.Body != tc.wantBody || m.Reply.Fallback != tc.wantCut || !m.HasBody {
				t.Errorf("body %q, reply %+v; want body %q, fallback %q", m.Body, m.Reply, tc.wantBody, tc.wantCut)
			}
		})
	}
	// A fallback for a reply in a message that is none is not cut.
	m, err := decodeString(`<message from='max@example.com/phone' to='anna@example.com' id='r1'><body>> x
y</body>` + fallbackFor(mapping.NSReply, rng("0", "4")) + `</message>`)
	if err != nil || m.Reply != nil || m.Body != "> x\ny" {
		t.Errorf("without <reply/>: %+v, %v", m, err)
	}
}

// Encoded, and decoded again: what the core asked for comes back.
func TestEncodeRelations(t *testing.T) {
	from, to := jid.MustParse(`alice\3aexample.org@matrix.example.org`), jid.MustParse("juliet@capulet.lit")
	head := func(id string) string {
		return `<message id="` + id + `" from="alice\3aexample.org@matrix.example.org" to="juliet@capulet.lit" type="chat">`
	}
	// 40 code points, 43 bytes: XEP-0428 counts the first.
	quote := "> Anna wrote:\n> We should bake a cake 🎂\n"
	for _, tc := range []struct {
		name     string
		m        mapping.OutMessage
		want     string // after the head
		wantBody string // decoded
		back     mapping.XMPPMessage
	}{
		{"XEP-0308 §3 correction", mapping.OutMessage{ID: "good1", Body: "But soft, what light through yonder window breaks?", Replace: "bad1"},
			`<body>But soft, what light through yonder window breaks?</body><replace xmlns="urn:xmpp:message-correct:0" id="bad1"></replace></message>`,
			"But soft, what light through yonder window breaks?", mapping.XMPPMessage{Replace: "bad1"}},
		{"XEP-0461 §3.1 reply with a quote", mapping.OutMessage{ID: "m3", Body: "Great idea!", Reply: &mapping.OutReply{To: jid.MustParse("juliet@capulet.lit"), ID: "message-id1", Quote: quote}},
			"<body>&gt; Anna wrote:\n&gt; We should bake a cake 🎂\nGreat idea!</body>" + `<reply xmlns="urn:xmpp:reply:0" to="juliet@capulet.lit" id="message-id1"></reply>` +
				`<fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:reply:0"><body start="0" end="40"></body></fallback></message>`,
			"Great idea!", mapping.XMPPMessage{Reply: &mapping.XMPPReply{To: "juliet@capulet.lit", ID: "message-id1", Fallback: quote}}},
		{"XEP-0461 §3 reply without quote", mapping.OutMessage{ID: "m2", Body: "Great idea!", Reply: &mapping.OutReply{To: jid.MustParse("juliet@capulet.lit/balcony"), ID: "message-id1"}},
			`<body>Great idea!</body><reply xmlns="urn:xmpp:reply:0" to="juliet@capulet.lit/balcony" id="message-id1"></reply></message>`,
			"Great idea!", mapping.XMPPMessage{Reply: &mapping.XMPPReply{To: "juliet@capulet.lit/balcony", ID: "message-id1"}}},
		{"XEP-0444 §3.2 the whole set, each key once", mapping.OutMessage{ID: "x6", Reactions: &mapping.XMPPReactions{ID: "744f", Keys: []string{"👋", "🐢", "👋", ""}}},
			`<reactions xmlns="urn:xmpp:reactions:0" id="744f"><reaction>👋</reaction><reaction>🐢</reaction></reactions><store xmlns="urn:xmpp:hints"></store></message>`,
			"", mapping.XMPPMessage{Reactions: &mapping.XMPPReactions{ID: "744f", Keys: []string{"👋", "🐢"}}}},
		{"XEP-0444 §3.2 removing them all", mapping.OutMessage{ID: "x7", Reactions: &mapping.XMPPReactions{ID: "744f"}},
			`<reactions xmlns="urn:xmpp:reactions:0" id="744f"></reactions><store xmlns="urn:xmpp:hints"></store></message>`,
			"", mapping.XMPPMessage{Reactions: &mapping.XMPPReactions{ID: "744f"}}},
		{"XEP-0444 with a body the core gave", mapping.OutMessage{ID: "x8", Body: "👋", Reactions: &mapping.XMPPReactions{ID: "744f", Keys: []string{"👋"}}},
			`<body>👋</body><reactions xmlns="urn:xmpp:reactions:0" id="744f"><reaction>👋</reaction></reactions><fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:reactions:0"></fallback><store xmlns="urn:xmpp:hints"></store></message>`,
			"👋", mapping.XMPPMessage{Reactions: &mapping.XMPPReactions{ID: "744f", Keys: []string{"👋"}}}},
		{"XEP-0424 §3 retraction", mapping.OutMessage{ID: "retract-message-1", Retract: "origin-id-1"},
			`<body>/me retracted a previous message, but it&#39;s unsupported by your client.</body><retract xmlns="urn:xmpp:message-retract:1" id="origin-id-1"></retract>` +
				`<fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:message-retract:1"></fallback><store xmlns="urn:xmpp:hints"></store></message>`,
			retractFallbackBody, mapping.XMPPMessage{Retract: "origin-id-1"}},
		{"XEP-0424 with a body the core gave", mapping.OutMessage{ID: "r2", Body: "(deleted)", Retract: "origin-id-1"},
			`<body>(deleted)</body><retract xmlns="urn:xmpp:message-retract:1" id="origin-id-1"></retract>` +
				`<fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:message-retract:1"></fallback><store xmlns="urn:xmpp:hints"></store></message>`,
			"(deleted)", mapping.XMPPMessage{Retract: "origin-id-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.m.From, tc.m.To, tc.m.Type = from, to, "chat"
			got := encodeString(t, &tc.m)
			if want := head(tc.m.ID) + tc.want; got != want {
				t.Errorf("encoded\n  %s\nwant\n  %s", got, want)
			}
			back, err := decodeString(got)
			if err != nil {
				t.Fatal(err)
			}
			if back.Body != tc.wantBody || !reflect.DeepEqual(relationsOf(back), tc.back) {
				t.Errorf("decoded again: body %q %s,\nwant body %q %s", back.Body, show(relationsOf(back)), tc.wantBody, show(tc.back))
			}
		})
	}
}

// Hostile relations cost what they weigh, are bounded, and never panic.
func TestDecodeRelationsHostile(t *testing.T) {
	msg := func(inner string) *mapping.XMPPMessage {
		t.Helper()
		m, err := decodeString(`<message from='mallory@evil.example/x' to='alice\3aexample.org@matrix.example.org' id='h1' type='chat'>` + inner + `</message>`)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	long := strings.Repeat("i", maxIDLen+1)

	// 10,000 reactions, all different: the first 64 are the set.
	var many strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&many, "<reaction>%d</reaction>", i)
	}
	m := msg(`<reactions xmlns='urn:xmpp:reactions:0' id='x'>` + many.String() + `</reactions>`)
	if m.Reactions == nil || len(m.Reactions.Keys) != maxReactions || m.Reactions.Keys[0] != "0" || m.Reactions.Keys[maxReactions-1] != "63" {
		t.Errorf("10,000 reactions read as %d keys", len(m.Reactions.Keys))
	}
	// 10,000 times the same one: one key.
	m = msg(`<reactions xmlns='urn:xmpp:reactions:0' id='x'>` + strings.Repeat("<reaction>👍</reaction>", 10000) + `</reactions>`)
	if m.Reactions == nil || !slices.Equal(m.Reactions.Keys, []string{"👍"}) {
		t.Errorf("10,000 repeats read as %v", m.Reactions)
	}
	// Trimmed; empty, too long and repeated keys dropped, in order.
	m = msg(`<reactions xmlns='urn:xmpp:reactions:0' id='x'><reaction> 👍 </reaction><reaction>  </reaction><reaction>` +
		strings.Repeat("a", maxReactionLen+1) + `</reaction><reaction>❤️</reaction><reaction>👍</reaction><reaction><b>🐢</b></reaction></reactions>`)
	if m.Reactions == nil || !slices.Equal(m.Reactions.Keys, []string{"👍", "❤️"}) {
		t.Errorf("keys read as %q", m.Reactions.Keys)
	}
	// XEP-0444 §5: no more than one <reactions/>; two say nothing.
	if m = msg(`<reactions xmlns='urn:xmpp:reactions:0' id='x'><reaction>👍</reaction></reactions><reactions xmlns='urn:xmpp:reactions:0' id='y'/>`); m.Reactions != nil {
		t.Errorf("two <reactions/> read as %+v", m.Reactions)
	}

	// Ids longer than maxIDLen, or none, name nothing.
	for _, inner := range []string{
		`<replace xmlns='urn:xmpp:message-correct:0' id='` + long + `'/>`,
		`<replace xmlns='urn:xmpp:message-correct:0'/>`,
		`<reply xmlns='urn:xmpp:reply:0' to='a@b' id='` + long + `'/>`,
		`<reply xmlns='urn:xmpp:reply:0' to='a@b'/>`,
		`<reactions xmlns='urn:xmpp:reactions:0' id='` + long + `'><reaction>👍</reaction></reactions>`,
		`<reactions xmlns='urn:xmpp:reactions:0'><reaction>👍</reaction></reactions>`,
		`<retract xmlns='urn:xmpp:message-retract:1' id='` + long + `'/>`,
		`<retract xmlns='urn:xmpp:message-retract:1'/>`,
		`<apply-to xmlns='urn:xmpp:fasten:0' id='` + long + `'><retract xmlns='urn:xmpp:message-retract:0'/></apply-to>`,
		// An <apply-to/> without a retraction retracts nothing.
		`<apply-to xmlns='urn:xmpp:fasten:0' id='x'><moderate xmlns='urn:xmpp:message-moderate:0'/></apply-to>`,
		// Nor does a <retract/> of the old namespace outside one.
		`<retract xmlns='urn:xmpp:message-retract:0' id='x'/>`,
	} {
		if got := relationsOf(msg(inner)); !reflect.DeepEqual(got, mapping.XMPPMessage{}) {
			t.Errorf("%.80s read as %s", inner, show(got))
		}
	}
	// The first <apply-to/> holding a retraction is the one.
	m = msg(`<apply-to xmlns='urn:xmpp:fasten:0' id='a'/><apply-to xmlns='urn:xmpp:fasten:0' id='b'><retract xmlns='urn:xmpp:message-retract:0'/></apply-to>` +
		`<apply-to xmlns='urn:xmpp:fasten:0' id='c'><retract xmlns='urn:xmpp:message-retract:0'/></apply-to>`)
	if m.Retract != "b" {
		t.Errorf("retracts %q, want b", m.Retract)
	}
	// An author too long to be a JID is left out, the reply kept.
	m = msg(`<reply xmlns='urn:xmpp:reply:0' to='` + strings.Repeat("j", maxJIDLen+1) + `' id='x'/>`)
	if m.Reply == nil || m.Reply.To != "" || m.Reply.ID != "x" {
		t.Errorf("reply read as %+v", m.Reply)
	}
}

// The domain and every puppet announce the XEPs of relations (each of
// them: "MUST specify the … feature"), and the puppets' caps ver (XEP-0115
// §5.1) covers them: the presence's ver is the hash of what disco#info says.
func TestDiscoRelationFeatures(t *testing.T) {
	r := newStreamRig(t, mapping.PresencePolicy{AutoSubscribe: true})
	want := []string{mapping.NSCorrect, mapping.NSReply, mapping.NSReactions, mapping.NSRetract, mapping.NSFallback, mapping.NSStyling}
	for _, to := range []string{"matrix.example.org", pupBare} {
		typ, info, raw := r.discoInfoOf(t, to, "")
		if typ != "result" {
			t.Fatalf("%s: %s", to, raw)
		}
		var features []string
		for _, f := range info.Features {
			features = append(features, f.Var)
		}
		for _, f := range want {
			if !slices.Contains(features, f) {
				t.Errorf("%s does not announce %s", to, f)
			}
		}
		if to == pupBare && capsVer(info.Identities, features) != puppetVer {
			t.Errorf("the puppet's features hash to %q, its presence says %q", capsVer(info.Identities, features), puppetVer)
		}
	}
}
