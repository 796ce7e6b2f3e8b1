package mapping_test

import (
	"slices"
	"strings"
	"testing"

	. "xmppbridge/mapping"
)

// The bot's commands are counted by name, and every word it does not know
// under one label, unknown: a label per word would let anyone who may
// talk to the bot grow the metric without end.
func TestBotCommandLabelsAreBounded(t *testing.T) {
	h := newHarness(t)
	botRoom(t, h)
	for _, text := range []string{"help", "PING", "frobnicate", "xyzzy 1", "héllo", "ping"} {
		h.say(t, mgmt, text)
	}
	want := map[string]int{"bot_command/help": 1, "bot_command/ping": 2, "bot_command/unknown": 3}
	for k, n := range h.counts {
		if !strings.HasPrefix(k, "bot_command/") {
			continue
		}
		if word := strings.TrimPrefix(k, "bot_command/"); word != "unknown" && !slices.Contains(CommandWords, word) {
			t.Errorf("counted under %q, a label no command has", word)
		}
		if n != want[k] {
			t.Errorf("%s counted %d, want %d", k, n, want[k])
		}
	}
}
