package retry

import (
	"testing"
	"time"
)

// An outage is said once when it has lasted Grace, then summarised every
// Every; the tries between are quiet, and its end tells whether it was
// said, how many tries failed and since when.
func TestOutageIsSaidOnceThenSummarised(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name         string
		grace, every time.Duration
		at           []time.Duration // failed tries, after t0
		want         []Say
		said         bool
	}{
		{"said at once", 0, time.Minute,
			[]time.Duration{0, 10 * time.Second, 50 * time.Second, 60 * time.Second, 61 * time.Second, 2 * time.Minute},
			[]Say{First, Quiet, Quiet, Summary, Quiet, Summary}, true},
		{"a restart within its grace is never said", 30 * time.Second, 5 * time.Minute,
			[]time.Duration{0, time.Second, 3 * time.Second},
			[]Say{Quiet, Quiet, Quiet}, false},
		{"said when it outlasts its grace", 30 * time.Second, 5 * time.Minute,
			[]time.Duration{0, 16 * time.Second, 31 * time.Second, 5 * time.Minute, 5*time.Minute + 31*time.Second},
			[]Say{Quiet, Quiet, First, Quiet, Summary}, true},
		{"no summaries", 0, 0,
			[]time.Duration{0, time.Hour, 2 * time.Hour},
			[]Say{First, Quiet, Quiet}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Outage{Grace: tt.grace, Every: tt.every}
			for i, at := range tt.at {
				if got := o.Fail(t0.Add(at)); got != tt.want[i] {
					t.Errorf("try %d at +%v: %v, want %v", i, at, got, tt.want[i])
				}
			}
			if o.Tries() != len(tt.at) || !o.Since().Equal(t0) {
				t.Errorf("%d tries since %v, want %d since %v", o.Tries(), o.Since(), len(tt.at), t0)
			}
			said, tries, since := o.End()
			if said != tt.said || tries != len(tt.at) || !since.Equal(t0) {
				t.Errorf("End = %v, %d, %v; want %v, %d, %v", said, tries, since, tt.said, len(tt.at), t0)
			}
			// The next failure starts a new outage.
			if got := o.Fail(t0.Add(time.Hour + tt.grace)); o.Tries() != 1 || (tt.grace == 0) != (got == First) {
				t.Errorf("after End: %v with %d tries, want a fresh outage", got, o.Tries())
			}
		})
	}
}
