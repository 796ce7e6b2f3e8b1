package mapping

import (
	"strings"
	"testing"
)

// A file's name from a remote sender is a name, never a path (XEP-0446
// §3): what follows its last separator, nothing for what is left of no
// use.
func TestSharedFileName(t *testing.T) {
	for name, want := range map[string]string{"summit.jpg": "summit.jpg", "../../etc/passwd": "passwd", `C:\photos\summit.jpg`: "summit.jpg",
		"..": "", "dir/": "", "bad\x00name": "", strings.Repeat("a", 256): ""} {
		if got := fileName(name); got != want {
			t.Errorf("name %q became %q, want %q", name, got, want)
		}
	}
}
