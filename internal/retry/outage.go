package retry

import "time"

// Say is what an Outage makes of one more failed try.
type Say int

const (
	// Quiet: a try like the ones before, for the debug log only.
	Quiet Say = iota
	// First: the outage is worth saying, once.
	First
	// Summary: it still lasts; say how long and how many tries.
	Summary
)

// Outage keeps a failure that goes on (a server away, a secret refused)
// from filling the log with the same line every few seconds: it is said
// once, then summarised every Every, and its end is said. The zero value
// says the first failure at once and never summarises; set Grace and
// Every.
type Outage struct {
	// Grace is how long failures go unsaid before they are an outage: a
	// server restarting is away a second or two, and its return says all.
	Grace time.Duration
	// Every is how often a summary is due while it lasts; 0: never.
	Every time.Duration

	since, said time.Time // first failure; last First or Summary
	tries       int
}

// Fail records a failed try at now and tells how to say it.
func (o *Outage) Fail(now time.Time) Say {
	if o.tries == 0 {
		o.since = now
	}
	o.tries++
	switch {
	case o.said.IsZero() && now.Sub(o.since) >= o.Grace:
		o.said = now
		return First
	case !o.said.IsZero() && o.Every > 0 && now.Sub(o.said) >= o.Every:
		o.said = now
		return Summary
	}
	return Quiet
}

// Tries is how many tries failed in a row so far.
func (o *Outage) Tries() int { return o.tries }

// Since is when the first failed try of this outage was; zero if none.
func (o *Outage) Since() time.Time { return o.since }

// End records a try that succeeded. said tells whether the outage was
// said (so its end is worth saying too), tries how many tries had failed
// and since when.
func (o *Outage) End() (said bool, tries int, since time.Time) {
	said, tries, since = !o.said.IsZero(), o.tries, o.since
	*o = Outage{Grace: o.Grace, Every: o.Every}
	return said, tries, since
}
