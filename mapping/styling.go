package mapping

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Text styling across the bridge.
//
// XMPP has no markup in a body; clients style its plain text by XEP-0393
// (Message Styling, version 1.1): *strong*, _emphasis_, `preformatted`,
// ~strike~ spans, ``` blocks and > quotes. Matrix clients show a message's
// formatted_body (org.matrix.custom.html) when there is one. So a styled
// body from XMPP gets the HTML its styling stands for, and the HTML of a
// Matrix message becomes styling, which XMPP clients show.
//
// The styling directives stay in the HTML, inside the element they start
// ("<strong>*most*</strong>"), quote markers and fence lines included:
// XEP-0393 §8 RECOMMENDS that directives be shown, styled like the text
// they apply to, and XMPP clients do show them. Above all, styling is read
// out of plain text that was not always meant as styling (">_>", a line
// that happens to start with "```"): kept directives make the worst case
// some text wrongly bold or quoted, never text missing. The text of the HTML
// is the body, character for character, but for an empty line next to a
// quote or a pre block, which the element's margin stands for
// (FuzzStylingToHTML checks it).

// StylingToHTML is the XEP-0393 styling of an XMPP body as Matrix HTML; ok
// is false, and html "", when the body has none, so that the message needs
// no formatted_body. A message carrying XEP-0393's <unstyled/> hint (§7)
// is not to be passed here.
func StylingToHTML(body string) (html string, ok bool) {
	raw := strings.Split(body, "\n")
	lines := make([]styledLine, len(raw))
	for i, l := range raw {
		lines[i] = styledLine{raw: l}
	}
	var b strings.Builder
	if !writeBlocks(&b, lines, 0) {
		return "", false
	}
	return b.String(), true
}

// styledLine is a line of the body. Its first start bytes are the quote
// markers of the quotes it is in; the rest is its text inside them. The
// markers stay in the line rather than being cut off and glued back, so
// that deep quotes cost no copying.
type styledLine struct {
	raw   string
	start int
}

func (l styledLine) text() string { return l.raw[l.start:] }

// maxQuoteDepth bounds the nesting of quotes: each level is a recursion and
// an element, and a body of ">>>>…" should cost neither. Deeper markers are
// text.
const maxQuoteDepth = 32

// writeBlocks writes lines, the children of the quotes depth deep (0: the
// whole body), as blocks (XEP-0393 §6.1) and tells whether any is styled.
// The newline between two plain lines is a <br>; next to a quote or a pre
// block it is the element's own break.
func writeBlocks(b *strings.Builder, lines []styledLine, depth int) (styled bool) {
	afterPlain := false
	for len(lines) > 0 {
		n := 1
		switch text := lines[0].text(); {
		case strings.HasPrefix(text, "```"):
			// §6.1.2: up to a line of only "```", or the end of the
			// parent block; its text is not styled further.
			for n < len(lines) && lines[n].text() != "```" {
				n++
			}
			if n < len(lines) {
				n++
			}
			b.WriteString("<pre><code>")
			for i, l := range lines[:n] {
				if i > 0 {
					b.WriteByte('\n')
				}
				b.WriteString(escapeHTML(l.raw))
			}
			b.WriteString("</code></pre>")
			styled, afterPlain = true, false
		case strings.HasPrefix(text, ">") && depth < maxQuoteDepth:
			// §6.1.3: the lines starting with ">", whose children are
			// what follows the ">" and its first whitespace character.
			for n < len(lines) && strings.HasPrefix(lines[n].text(), ">") {
				n++
			}
			for i := range lines[:n] {
				l := &lines[i]
				l.start++
				if r, size := utf8.DecodeRuneInString(l.text()); size > 0 && isStylingSpace(r) {
					l.start += size
				}
			}
			b.WriteString("<blockquote>")
			writeBlocks(b, lines[:n], depth+1)
			b.WriteString("</blockquote>")
			styled, afterPlain = true, false
		default:
			// §6.1.1: a plain line, with spans.
			if afterPlain {
				b.WriteString("<br>")
			}
			l := lines[0]
			b.WriteString(escapeHTML(l.raw[:l.start]))
			sp := spanParser{s: text, closing: [len(spanDirectives)]int{-1, -1, -1, -1}}
			if sp.write(b, 0, len(text)) {
				styled = true
			}
			afterPlain = true
		}
		lines = lines[n:]
	}
	return styled
}

// The span directives (XEP-0393 §6.2.2 to §6.2.5) and their elements.
const spanDirectives = "_*~`"

var spanElements = [len(spanDirectives)]string{"em", "strong", "del", "code"}

// spanParser finds the spans of a plain line (XEP-0393 §6.2), left to right
// and lazily: a span ends at the first directive that may close it.
type spanParser struct {
	s string
	// closing caches, per directive, the first closing one at or after the
	// position last searched from; len(s) if there is none, -1 before any
	// search. Searches only move forward, so that a line full of openings
	// that never close ("*a *a *a…") is scanned once, not once per opening.
	closing [len(spanDirectives)]int
}

// write writes s[from:to], the text of a plain line or of a span, and tells
// whether it holds a span.
func (p *spanParser) write(b *strings.Builder, from, to int) (styled bool) {
	plain := from
	for i := from; i < to; i++ {
		k := strings.IndexByte(spanDirectives, p.s[i])
		if k < 0 || !p.opens(i, from, to) {
			continue
		}
		// Some text between the directives, so a closing one at i+2 the
		// earliest.
		end := p.close(k, i+2, to)
		if end < 0 {
			continue
		}
		d, el := p.s[i:i+1], spanElements[k]
		b.WriteString(escapeHTML(p.s[plain:i]))
		b.WriteString("<" + el + ">" + d)
		if d == "`" {
			// §6.2.5: a preformatted span holds plain text only.
			b.WriteString(escapeHTML(p.s[i+1 : end]))
		} else {
			p.write(b, i+1, end)
		}
		b.WriteString(d + "</" + el + ">")
		styled = true
		i, plain = end, end+1
	}
	b.WriteString(escapeHTML(p.s[plain:to]))
	return styled
}

// opens tells whether the directive at i may open a span in s[from:to]: at
// the start of its block, after whitespace or right after the opening
// directive of the span it is in (from), and not followed by whitespace.
// Nor by the same directive: "**" and "****" style nothing (§6.2).
func (p *spanParser) opens(i, from, to int) bool {
	if i+1 >= to || p.s[i+1] == p.s[i] {
		return false
	}
	if r, _ := utf8.DecodeRuneInString(p.s[i+1 : to]); isStylingSpace(r) {
		return false
	}
	if i == from {
		return true
	}
	r, _ := utf8.DecodeLastRuneInString(p.s[:i])
	return isStylingSpace(r)
}

// close is the position of the first directive k at or after from and
// before to that is not preceded by whitespace, -1 if there is none.
func (p *spanParser) close(k, from, to int) int {
	if p.closing[k] < from {
		p.closing[k] = len(p.s)
		for j := from; j < len(p.s); j++ {
			if p.s[j] != spanDirectives[k] {
				continue
			}
			if r, _ := utf8.DecodeLastRuneInString(p.s[:j]); !isStylingSpace(r) {
				p.closing[k] = j
				break
			}
		}
	}
	if p.closing[k] >= to {
		return -1
	}
	return p.closing[k]
}

// isStylingSpace is XEP-0393's whitespace character: White_Space or in
// category Z (§4).
func isStylingSpace(r rune) bool {
	return unicode.IsSpace(r) || unicode.In(r, unicode.Z)
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")

func escapeHTML(s string) string { return htmlEscaper.Replace(s) }

// HTMLToStyling is a Matrix formatted_body (org.matrix.custom.html) as an
// XEP-0393 body: strong and emphasis, code, strike, pre blocks and quotes
// become their directives, line breaks, paragraphs and list items lines, a
// link its text followed by its address, and the reply fallback
// (<mx-reply>) goes; anything else is its text. Any input is taken: the
// HTML5 parser makes a tree of whatever it is given.
func HTMLToStyling(s string) string {
	nodes, err := html.ParseFragment(strings.NewReader(s), &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body})
	if err != nil {
		// Only a failing reader fails the parser.
		return s
	}
	var w styler
	for _, n := range nodes {
		w.node(n)
	}
	return w.String()
}

// blockBreaks are the elements that stand on lines of their own, with the
// number of newlines they are set apart by: paragraphs by an empty line, as
// a Matrix client's plain body has them.
var blockBreaks = map[atom.Atom]int{
	atom.P: 2, atom.H1: 2, atom.H2: 2, atom.H3: 2, atom.H4: 2, atom.H5: 2, atom.H6: 2,
	atom.Div: 1, atom.Table: 1, atom.Tr: 1, atom.Hr: 1, atom.Dl: 1, atom.Dt: 1, atom.Dd: 1,
	atom.Details: 1, atom.Summary: 1,
}

// styler writes the styling text of HTML nodes. An element whose text it
// must rework (a span, a quote, a list item, a link) gets a styler of its
// own for its children.
type styler struct {
	buf []byte
	// breaks is the number of newlines owed before the next text: a block
	// ends a line only if more text follows, so none lead or trail.
	breaks int
	// inline keeps the spaces at the edges of the text, which are the
	// parent's to place: they go outside of the span's directives.
	inline bool
	pre    bool // in <pre>: the text as it is
	code   bool // in <code> or <pre>: no directives
}

func (w *styler) String() string {
	if w.inline || w.pre {
		return string(w.buf)
	}
	return strings.TrimRight(string(w.buf), " ")
}

// write appends text after the newlines owed. Outside <pre>, spaces at the
// start of a line or after a space go, as HTML does not show them.
func (w *styler) write(s string) {
	if !w.pre {
		last := byte('\n')
		if len(w.buf) > 0 {
			last = w.buf[len(w.buf)-1]
		} else if w.inline {
			last = 0
		}
		if w.breaks > 0 || last == ' ' || last == '\n' {
			s = strings.TrimLeft(s, " ")
		}
		if s == "" {
			return
		}
		if w.breaks > 0 {
			for len(w.buf) > 0 && w.buf[len(w.buf)-1] == ' ' {
				w.buf = w.buf[:len(w.buf)-1]
			}
			for ; w.breaks > 0; w.breaks-- {
				w.buf = append(w.buf, '\n')
			}
		}
	}
	w.buf = append(w.buf, s...)
}

// block sets what follows apart from what came before by n newlines.
func (w *styler) block(n int) {
	if len(w.buf) > 0 {
		w.breaks = max(w.breaks, n)
	}
}

// textOf is the text n's children make in a styler like w: inline keeps
// the spaces at its edges, code makes it free of directives.
func (w *styler) textOf(n *html.Node, inline, code bool) string {
	sub := &styler{inline: inline, code: w.code || code}
	for c := range n.ChildNodes() {
		sub.node(c)
	}
	return sub.String()
}

func (w *styler) node(n *html.Node) {
	if n.Type == html.TextNode {
		if w.pre {
			w.write(n.Data)
		} else {
			w.write(collapseSpace(n.Data))
		}
		return
	}
	if n.Type != html.ElementNode || n.Data == "mx-reply" {
		// Comments and such; and the reply fallback, as the reply
		// crosses as a reply (XEP-0461).
		return
	}
	if w.pre {
		if n.DataAtom == atom.Br {
			w.write("\n")
		}
		for c := range n.ChildNodes() {
			w.node(c)
		}
		return
	}
	switch n.DataAtom {
	case atom.Br:
		if len(w.buf) > 0 {
			w.breaks++
		}
	case atom.Strong, atom.B:
		w.span(n, "*")
	case atom.Em, atom.I:
		w.span(n, "_")
	case atom.Del, atom.S, atom.Strike:
		w.span(n, "~")
	case atom.Code:
		w.span(n, "`")
	case atom.Pre:
		sub := &styler{pre: true, code: true}
		for c := range n.ChildNodes() {
			sub.node(c)
		}
		t := strings.TrimSuffix(sub.String(), "\n")
		// Not fenced twice: the HTML of a body that had its fences
		// (StylingToHTML keeps them).
		if !strings.HasPrefix(t, "```") || !strings.HasSuffix(t, "\n```") {
			t = "```\n" + t + "\n```"
		}
		w.block(1)
		w.write(t)
		w.block(1)
	case atom.Blockquote:
		w.block(1)
		if t := w.textOf(n, false, false); t != "" {
			lines := strings.Split(t, "\n")
			for i, l := range lines {
				switch {
				case l == "":
					lines[i] = ">"
				case strings.HasPrefix(l, ">"):
					lines[i] = ">" + l // ">>", a nested quote
				default:
					lines[i] = "> " + l
				}
			}
			w.write(strings.Join(lines, "\n"))
		}
		w.block(1)
	case atom.Ul, atom.Ol:
		num, err := strconv.Atoi(attr(n, "start"))
		if err != nil {
			num = 1
		}
		w.block(1)
		for c := range n.ChildNodes() {
			switch {
			case c.DataAtom != atom.Li:
				w.node(c)
			case n.DataAtom == atom.Ol:
				w.item(c, strconv.Itoa(num)+". ")
				num++
			default:
				w.item(c, "- ")
			}
		}
		w.block(1)
	case atom.Li:
		w.item(n, "- ")
	case atom.A:
		t := w.textOf(n, true, false)
		if href := attr(n, "href"); href != "" {
			switch strings.TrimSpace(t) {
			case href:
			case "":
				t = href
			default:
				t = strings.TrimRight(t, " ") + " <" + href + ">"
			}
		}
		w.write(t)
	case atom.Img:
		w.write(attr(n, "alt")) // a custom emoji's :name:
	case atom.Script, atom.Style:
	default:
		gap := blockBreaks[n.DataAtom]
		w.block(gap)
		for c := range n.ChildNodes() {
			w.node(c)
		}
		w.block(gap)
	}
}

// span writes the children of n inside directive d; those of a code span
// get no directives of their own (§6.2.5).
func (w *styler) span(n *html.Node, d string) {
	t := w.textOf(n, true, d == "`")
	if !w.code {
		t = wrapLines(t, d)
	}
	w.write(t)
}

// item writes a list item: marker, then its lines indented under the
// first.
func (w *styler) item(li *html.Node, marker string) {
	lines := strings.Split(w.textOf(li, false, false), "\n")
	for i, l := range lines {
		if i > 0 && l != "" {
			lines[i] = strings.Repeat(" ", len(marker)) + l
		}
	}
	w.block(1)
	w.write(marker + strings.Join(lines, "\n"))
	w.block(1)
}

// wrapLines puts each line of t inside directive d, as XEP-0393 wants a
// span: on one line, the directives next to the text, not to the spaces
// around it. Empty lines stay so; a line already inside d is not wrapped
// twice (it is the HTML of a styled body, which keeps its directives).
func wrapLines(t, d string) string {
	lines := strings.Split(t, "\n")
	for i, l := range lines {
		core := strings.TrimFunc(l, isStylingSpace)
		if core == "" || len(core) > 2 && strings.HasPrefix(core, d) && strings.HasSuffix(core, d) {
			continue
		}
		lead := len(l) - len(strings.TrimLeftFunc(l, isStylingSpace))
		lines[i] = l[:lead] + d + core + d + l[lead+len(core):]
	}
	return strings.Join(lines, "\n")
}

// collapseSpace turns each run of HTML whitespace into one space, as HTML
// shows it.
func collapseSpace(s string) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(" \t\n\f\r", s[i]) >= 0 {
			space = true
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteByte(s[i])
	}
	if space {
		b.WriteByte(' ')
	}
	return b.String()
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val
		}
	}
	return ""
}
