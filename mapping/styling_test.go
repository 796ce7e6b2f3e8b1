package mapping

import (
	"html"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// The examples of XEP-0393 (Message Styling, version 1.1), each under the
// section it comes from, and the rules of those sections. want "" means
// not styled: no formatted_body.
var stylingTests = []struct{ name, body, want string }{
	// §6.1.1: spans do not cross lines.
	{"§6.1.1 plain blocks", "There are three blocks in this body,\nbut there is no *formatting\nas spans* may not escape blocks.", ""},
	{"§6.1.1 lines are joined by <br>", "a\n*b*\n\nc", "a<br><strong>*b*</strong><br><br>c"},

	{"§6.1.2 preformatted block",
		"```ignored\n(println \"Hello, world!\")\n```\n\nThis should show up as monospace, preformatted text ⤴",
		"<pre><code>```ignored\n(println &quot;Hello, world!&quot;)\n```</code></pre><br>This should show up as monospace, preformatted text ⤴"},
	{"§6.1.2 no closing preformatted text sequence",
		"> ```\n> (println \"Hello, world!\")\n\nThe entire blockquote is a preformatted text block, but this line is plaintext!",
		"<blockquote><pre><code>&gt; ```\n&gt; (println &quot;Hello, world!&quot;)</code></pre></blockquote><br>The entire blockquote is a preformatted text block, but this line is plaintext!"},
	{"§6.1.2 no child spans", "```\n*not strong* _nor this_\n```\n*strong*",
		"<pre><code>```\n*not strong* _nor this_\n```</code></pre><strong>*strong*</strong>"},
	{"§6.1.2 to the end of the message", "```\n> no quote", "<pre><code>```\n&gt; no quote</code></pre>"},
	{"§6.1.2 only three grave accents close", "```\n``` not\n````\n```\nafter",
		"<pre><code>```\n``` not\n````\n```</code></pre>after"},

	{"§6.1.3 quotation", "> That that is, is.\n\nSaid the old hermit of Prague.",
		"<blockquote>&gt; That that is, is.</blockquote><br>Said the old hermit of Prague."},
	{"§6.1.3 nested quotation", ">> That that is, is.\n> Said the old hermit of Prague.\n\nWho?",
		"<blockquote><blockquote>&gt;&gt; That that is, is.</blockquote>&gt; Said the old hermit of Prague.</blockquote><br>Who?"},
	{"§6.1.3 ends at a line without >", "> a\nb", "<blockquote>&gt; a</blockquote>b"},
	{"§6.1.3 spans in a quote", "> *quoted*\n>_too_", "<blockquote>&gt; <strong>*quoted*</strong><br>&gt;<em>_too_</em></blockquote>"},
	{"§6.1.3 only the first whitespace is trimmed", ">  ```", "<blockquote>&gt;  ```</blockquote>"},
	{"§6.1.3 a pre block in a quote ends with it", "> ```\n> a\n> ```\n> *b*\nc",
		"<blockquote><pre><code>&gt; ```\n&gt; a\n&gt; ```</code></pre>&gt; <strong>*b*</strong></blockquote>c"},

	{"§6.2 strong", "*strong*", "<strong>*strong*</strong>"},
	{"§6.2 plain strong plain", "plain *strong* plain", "plain <strong>*strong*</strong> plain"},
	{"§6.2 strong plain strong", "*strong* plain *strong*", "<strong>*strong*</strong> plain <strong>*strong*</strong>"},
	{"§6.2 lazily matched", "*strong*plain*", "<strong>*strong*</strong>plain*"},
	{"§6.2 opening followed by whitespace", "* plain *strong*", "* plain <strong>*strong*</strong>"},
	{"§6.2 no opening", "not strong*", ""},
	{"§6.2 no closing", "*not strong", ""},
	{"§6.2 not across lines", "*not \n strong*", ""},
	{"§6.2 closing preceded by whitespace", "*not *strong", ""},
	{"§6.2 nothing inside", "**", ""},
	{"§6.2 nothing inside, twice", "****", ""},
	{"§6.2 opening inside a word", "a*b*c 2*3*4", ""},
	{"§6.2 after a different opening directive", "_*both*_", "<em>_<strong>*both*</strong>_</em>"},
	{"§6.2 not after a closing directive", "*a*_b_", "<strong>*a*</strong>_b_"},
	{"§6.2 spans do not overlap", "*this cannot _overlap*_", "<strong>*this cannot _overlap*</strong>_"},
	{"§6.2 Unicode whitespace", "\u00a0*a* *b\u2003*", "\u00a0<strong>*a*</strong> *b\u2003*"},
	{"§4 glossary, span in a span", "_emphasized span containing *strong span*_",
		"<em>_emphasized span containing <strong>*strong span*</strong>_</em>"},

	{"§6.2.1 plain", "Two spans, both *alike in dignity*", "Two spans, both <strong>*alike in dignity*</strong>"},
	{"§6.2.2 emphasis", "The full title is _Twelfth Night, or What You Will_ but\n_most_ people shorten it.",
		"The full title is <em>_Twelfth Night, or What You Will_</em> but<br><em>_most_</em> people shorten it."},
	{"§6.2.3 strong emphasis", "The full title is \"Twelfth Night, or What You Will\" but\n*most* people shorten it.",
		"The full title is &quot;Twelfth Night, or What You Will&quot; but<br><strong>*most*</strong> people shorten it."},
	{"§6.2.4 strike through", "Everyone ~dis~likes cake.", "Everyone <del>~dis~</del>likes cake."},
	{"§6.2.5 preformatted span", "This is `monospace`", "This is <code>`monospace`</code>"},
	{"§6.2.5 no spans inside", "This is `*monospace*`", "This is <code>`*monospace*`</code>"},
	{"§6.2.5 inside strong", "This is *`monospace and bold`*", "This is <strong>*<code>`monospace and bold`</code>*</strong>"},
	{"§6.2.5 monospace text", "Wow, I can write in `monospace`!", "Wow, I can write in <code>`monospace`</code>!"},

	{"HTML is escaped", `*<b>&"x"*`, "<strong>*&lt;b&gt;&amp;&quot;x&quot;*</strong>"},
	{"HTML is escaped, unstyled", `<b>&"x"</b>`, ""},
	{"empty", "", ""},
}

func TestStylingToHTML(t *testing.T) {
	for _, tc := range stylingTests {
		got, ok := StylingToHTML(tc.body)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: StylingToHTML(%q) = %q, %v; want %q", tc.name, tc.body, got, ok, tc.want)
		}
	}
}

// Matrix clients' HTML, and HTML that is none.
func TestHTMLToStyling(t *testing.T) {
	for _, tc := range []struct{ name, html, want string }{
		{"strong", "<strong>bold</strong> and <b>b</b>", "*bold* and *b*"},
		{"emphasis", "<em>e</em> <i>i</i>", "_e_ _i_"},
		{"code", "<code>x &lt; y</code>", "`x < y`"},
		{"no directives in code", "<code><b>x</b> *y*</code>", "`x *y*`"},
		{"strike", "<del>a</del> <s>b</s> <strike>c</strike>", "~a~ ~b~ ~c~"},
		{"nested spans", "<strong>a <em>b</em></strong>", "*a _b_*"},
		{"spaces go outside the directives", "<b> bold </b>x", "*bold* x"},
		{"a span per line", "<b>a<br>b</b>", "*a*\n*b*"},
		{"empty span", "<b></b>x<em> </em>y", "x y"},
		{"a styled body's HTML is not styled twice", "<strong>*x*</strong> <code>`y`</code>", "*x* `y`"},

		{"pre", "<pre><code>line 1\n  *line 2*\n</code></pre>", "```\nline 1\n  *line 2*\n```"},
		{"pre with a language", "<p>see</p>\n<pre><code class=\"language-go\">x := a &amp;&amp; b\n</code></pre>\n", "see\n\n```\nx := a && b\n```"},
		{"a styled body's pre", "<pre><code>```go\nx\n```</code></pre>", "```go\nx\n```"},

		{"quote", "<blockquote>\n<p>quoted</p>\n</blockquote>\n<p>reply</p>\n", "> quoted\n\nreply"},
		{"quote of lines", "<blockquote>a<br><br>b</blockquote>c", "> a\n>\n> b\nc"},
		{"nested quote", "<blockquote><blockquote>a</blockquote>b</blockquote>", ">> a\n> b"},
		{"pre in a quote", "<blockquote><pre><code>x\n</code></pre></blockquote>", "> ```\n> x\n> ```"},
		{"empty quote", "a<blockquote></blockquote>b", "a\nb"},

		{"line breaks", "a<br>b<br><br>c", "a\nb\n\nc"},
		{"paragraphs", "<p>a</p>\n<p>b</p>", "a\n\nb"},
		{"whitespace collapses", "<p>  a \n  b  </p>", "a b"},
		{"headings", "<h1>Title</h1><p>text</p>", "Title\n\ntext"},

		{"link", `<a href="https://example.org/">the site</a>`, "the site <https://example.org/>"},
		{"link that is its address", `<a href="https://example.org/">https://example.org/</a>`, "https://example.org/"},
		{"mention", `<a href="https://matrix.to/#/@alice:example.org">Alice</a>: hi`, "Alice <https://matrix.to/#/@alice:example.org>: hi"},
		{"link without text", `<a href="https://example.org/"></a>`, "https://example.org/"},
		{"anchor without address", `<a name="x">text</a>`, "text"},

		{"reply fallback", `<mx-reply><blockquote><a href="https://matrix.to/#/!r:example.org/$e">In reply to</a> <a href="https://matrix.to/#/@bob:example.org">@bob:example.org</a><br>hello</blockquote></mx-reply>answer`, "answer"},

		{"list", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>\n", "- one\n- two"},
		{"numbered list", `<p>steps:</p><ol start="3"><li>c</li><li>d</li></ol>`, "steps:\n\n3. c\n4. d"},
		{"nested list", "<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>", "- a\n  - b\n- c"},
		{"item of lines", "<ol><li><p>a</p><p>b</p></li></ol>", "1. a\n\n   b"},

		{"entities", "&amp; &lt;3 &quot;&#x1F600;&nbsp;", "& <3 \"😀\u00a0"},
		{"emoji image", `<img src="mxc://example.org/cat" alt=":cat:"> ok`, ":cat: ok"},
		{"other elements are their text", `<font color="red">red</font> <span data-mx-spoiler>secret</span>`, "red secret"},
		{"no scripts", "<script>alert(1)</script><style>p{}</style>x", "x"},

		{"unclosed", "<b>unclosed <i>too", "*unclosed _too_*"},
		{"stray end tags", "a</i></blockquote>b", "ab"},
		{"not HTML", "a < b && c > d", "a < b && c > d"},
		{"empty", "", ""},
	} {
		if got := HTMLToStyling(tc.html); got != tc.want {
			t.Errorf("%s: HTMLToStyling(%q) = %q, want %q", tc.name, tc.html, got, tc.want)
		}
	}
}

// A styled body that goes to Matrix and comes back has its styling back,
// not doubled, where the HTML can tell.
func TestStylingRoundTrip(t *testing.T) {
	for _, body := range []string{
		"plain *strong* _em_ ~del~ `code`",
		"This is *`monospace and bold`*",
		"```ignored\n(println \"Hello, world!\")\n```\n\nThis should show up as monospace, preformatted text ⤴",
		"a\n*b*\n\nc",
	} {
		h, _ := StylingToHTML(body)
		if got := HTMLToStyling(h); got != body {
			t.Errorf("HTMLToStyling(StylingToHTML(%q)) = %q", body, got)
		}
	}
}

// Bodies that would cost much with a careless parser.
func TestStylingToHTMLLargeBodies(t *testing.T) {
	for _, body := range []string{
		strings.Repeat("*a ", 50000),
		"*" + strings.Repeat("_a ", 50000) + "b*",
		strings.Repeat(">", 100000) + " deep",
		strings.Repeat("> a\n", 20000),
	} {
		h, ok := StylingToHTML(body)
		checkStylingHTML(t, body, h, ok)
	}
}

// FuzzStylingToHTML checks that no body makes StylingToHTML panic, that an
// unstyled body gets no HTML, so it crosses as it is, and that a styled
// body's HTML is well nested and shows the body's own text, no character
// lost or added.
func FuzzStylingToHTML(f *testing.F) {
	for _, tc := range stylingTests {
		f.Add(tc.body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		h, ok := StylingToHTML(body)
		checkStylingHTML(t, body, h, ok)
	})
}

var htmlTag = regexp.MustCompile(`</?([a-z]+)>`)

func checkStylingHTML(t *testing.T, body, h string, ok bool) {
	t.Helper()
	if !ok {
		if h != "" {
			t.Fatalf("StylingToHTML(%q) = %q, false", body, h)
		}
		return
	}
	if !strings.ContainsAny(body, "*_`~>") {
		t.Fatalf("StylingToHTML(%q) found styling without directives: %q", body, h)
	}
	// The text of the HTML, with a newline for each <br> and around each
	// block element (empty lines do not count: next to a block they are
	// the element's own margin).
	var text strings.Builder
	var open []string
	last := 0
	for _, m := range htmlTag.FindAllStringSubmatchIndex(h, -1) {
		text.WriteString(html.UnescapeString(h[last:m[0]]))
		last = m[1]
		tag, name := h[m[0]:m[1]], h[m[2]:m[3]]
		switch {
		case tag == "<br>":
			text.WriteByte('\n')
			continue
		case tag[1] == '/':
			if len(open) == 0 || open[len(open)-1] != name {
				t.Fatalf("StylingToHTML(%q) = %q: %s closes %v", body, h, tag, open)
			}
			open = open[:len(open)-1]
		default:
			open = append(open, name)
		}
		if name == "blockquote" || name == "pre" {
			text.WriteByte('\n')
		}
	}
	text.WriteString(html.UnescapeString(h[last:]))
	if len(open) > 0 {
		t.Fatalf("StylingToHTML(%q) = %q: %v not closed", body, h, open)
	}
	if got, want := nonEmptyLines(text.String()), nonEmptyLines(body); got != want {
		t.Fatalf("StylingToHTML(%q) = %q shows %q", body, h, got)
	}
}

func nonEmptyLines(s string) string {
	var lines []string
	for l := range strings.SplitSeq(s, "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// FuzzHTMLToStyling checks that no HTML makes HTMLToStyling panic, and that
// text that is no HTML at all keeps its characters.
func FuzzHTMLToStyling(f *testing.F) {
	for _, s := range []string{"<b>x</b>", "<ul><li>a<ol start=x><li>b", "<pre><code>x</pre>", "<mx-reply>", "<a href>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := HTMLToStyling(s)
		if utf8.ValidString(s) && !strings.ContainsAny(s, "<&\r\x00") && strings.Join(strings.Fields(s), " ") != strings.Join(strings.Fields(got), " ") {
			t.Fatalf("HTMLToStyling(%q) = %q", s, got)
		}
	})
}
