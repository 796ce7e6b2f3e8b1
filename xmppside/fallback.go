// XEP-0428: Fallback Indication (urn:xmpp:fallback:0).

package xmppside

import (
	"encoding/xml"
	"sort"
	"strconv"
	"strings"

	"xmppbridge/mapping"
)

// NSFeatureFallback is the namespace of the Compatibility Fallbacks
// protoXEP that XEP-0428 0.2 took in. XEP-0461's own example (§3.1) still
// spells its fallback so; the bridge reads it, and writes only
// mapping.NSFallback.
const NSFeatureFallback = "urn:xmpp:feature-fallback:0"

// maxFallbackRanges bounds the ranges the fallbacks for one XEP may mark
// in a message; more, and none is taken.
const maxFallbackRanges = 16

var _ = register(&xep{
	namespaces: []string{mapping.NSFallback, NSFeatureFallback},
	decode:     decodeFallback,
	features:   []discoFeature{{at: discoRelations + 4, ns: mapping.NSFallback, on: onBoth}},
})

// fallbacksKept are the message's fallbacks, by namespace (mapping.NSFallback,
// then NSFeatureFallback): the XEP they are for cuts its text out of the
// body once every child is read (cutFallback).
var fallbacksKept = newStateKey()

// decodeFallback reads a <fallback/>, kept for the XEP it names.
func decodeFallback(in *inMessage, start xml.StartElement) error {
	if start.Name.Local != "fallback" {
		return in.skip()
	}
	var f fallbackElem
	if err := in.d.DecodeElement(&f, &start); err != nil {
		return err
	}
	kept := stateOf[[2][]fallbackElem](in, fallbacksKept)
	i := 0
	if start.Name.Space == NSFeatureFallback {
		i = 1
	}
	kept[i] = append(kept[i], f)
	return nil
}

// fallbacksIn are the message's fallbacks (decodeFallback), for cutFallback.
func fallbacksIn(in *inMessage) [][]fallbackElem {
	if kept := keptBy[[2][]fallbackElem](in, fallbacksKept); kept != nil {
		return kept[:]
	}
	return nil
}

// fallbackElem is <fallback for='…'/>: the parts of the message that are
// only there for clients without the XEP named by for (§2.2). Without
// children it marks every <body/> and <subject/> whole.
type fallbackElem struct {
	For     string          `xml:"for,attr"`
	Body    []fallbackRange `xml:"body"`
	Subject []struct{}      `xml:"subject"`
}

// fallbackRange is a <body start='…' end='…'/> of a fallback: without
// both attributes, the whole body.
type fallbackRange struct {
	Start *string `xml:"start,attr"`
	End   *string `xml:"end,attr"`
}

// cutFallback takes out of body what the fallbacks for ns mark: kept is
// the rest, cut the marked text, the pieces of each joined in order. A
// range counts Unicode code points (§2.2 refers to XEP-0426 §2), start
// the index of its first one and end the index after its last (XEP-0426
// §3), so a range may split a grapheme cluster (XEP-0426 §2.1: split it).
// ok is false, and body is to be kept whole, when no fallback is for ns
// or one of them is malformed: a range half given, not a number,
// negative, reversed or past the end of the body, or too many ranges.
func cutFallback(body, ns string, lists ...[]fallbackElem) (kept, cut string, ok bool) {
	var ranges [][2]int
	found, whole := false, false
	for _, list := range lists {
		for _, f := range list {
			if f.For != ns {
				continue
			}
			found = true
			if len(f.Body) == 0 && len(f.Subject) == 0 {
				whole = true // §2.2: no child marks everything
			}
			for _, b := range f.Body {
				if b.Start == nil && b.End == nil {
					whole = true
					continue
				}
				r, good := parseRange(b)
				if !good || len(ranges) == maxFallbackRanges {
					return body, "", false
				}
				ranges = append(ranges, r)
			}
		}
	}
	switch {
	case !found:
		return body, "", false
	case whole:
		return "", body, true
	}
	sort.Slice(ranges, func(i, j int) bool { return ranges[i][0] < ranges[j][0] })
	// Overlapping ranges mark their union.
	merged := ranges[:0]
	for _, r := range ranges {
		if n := len(merged); n > 0 && r[0] <= merged[n-1][1] {
			merged[n-1][1] = max(merged[n-1][1], r[1])
			continue
		}
		merged = append(merged, r)
	}
	// The byte offsets of the ranges' ends, in one pass over the body.
	points := make([]int, 0, 2*len(merged))
	for _, r := range merged {
		points = append(points, r[0], r[1])
	}
	offsets := make([]int, 0, len(points))
	i := 0 // the index of the code point at byte b
	for b := range body {
		for len(offsets) < len(points) && points[len(offsets)] == i {
			offsets = append(offsets, b)
		}
		i++
	}
	for len(offsets) < len(points) {
		if points[len(offsets)] != i {
			return body, "", false // past the end
		}
		offsets = append(offsets, len(body))
	}
	var k, c strings.Builder
	prev := 0
	for j := 0; j < len(offsets); j += 2 {
		k.WriteString(body[prev:offsets[j]])
		c.WriteString(body[offsets[j]:offsets[j+1]])
		prev = offsets[j+1]
	}
	k.WriteString(body[prev:])
	return k.String(), c.String(), true
}

// parseRange reads a range's start and end (xs:integer), which must both
// be given, not negative, and in order.
func parseRange(b fallbackRange) ([2]int, bool) {
	if b.Start == nil || b.End == nil {
		return [2]int{}, false
	}
	start, err1 := strconv.Atoi(strings.TrimSpace(*b.Start))
	end, err2 := strconv.Atoi(strings.TrimSpace(*b.End))
	if err1 != nil || err2 != nil || start < 0 || start > end {
		return [2]int{}, false
	}
	return [2]int{start, end}, true
}

// encodeFallbackRange writes a fallback for ns marking the code points
// [start, end) of the body.
func encodeFallbackRange(t *tokens, ns string, start, end int) {
	t.start(mapping.NSFallback, "fallback", "for", ns)
	t.empty("", "body", "start", strconv.Itoa(start), "end", strconv.Itoa(end))
	t.end()
}

// encodeFallbackWhole writes a fallback for ns marking the whole body (no
// child, as XEP-0424 §3 writes it).
func encodeFallbackWhole(t *tokens, ns string) {
	t.empty(mapping.NSFallback, "fallback", "for", ns)
}
