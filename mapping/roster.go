package mapping

import (
	"context"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"
)

// A puppet in its contacts' rosters (XEP-0356, Privileged Entity): where
// the XMPP server lets the component write its users' rosters (Prosody's
// and ejabberd's mod_privilege, roster "set" or "both"), each person with
// a portal has the puppet of its Matrix user in their roster, named after
// her display name, in the group RosterGroup, as slidge does. Clients that
// show no XEP-0172 nick (profanity, mcabber) show that name. Written when
// the portal opens and whenever her name changes; where the server grants
// nothing, nothing is asked.

// JobRosterItem writes a puppet into a person's roster.
const JobRosterItem JobKind = "xmpp.roster"

// RosterGroup is the roster group the puppets are put in.
const RosterGroup = "Matrix"

// ErrNoPrivilege is returned by XMPPSide.SetRosterItem when the person's
// server has not granted the component their roster.
var ErrNoPrivilege = errors.New("the server grants no roster access")

// rosterJob writes mxid's puppet into peer's roster.
func rosterJob(mxid id.UserID, peer jid.JID) *Job { return pairJob(JobRosterItem, mxid, peer) }

// rosterJobs are the roster writes of mxid's name change: one per portal.
func (b *people) rosterJobs(ctx context.Context, mxid id.UserID) ([]*Job, error) {
	ps, err := b.store.PortalsOf(ctx, mxid)
	if err != nil {
		return nil, err
	}
	var jobs []*Job
	for _, p := range ps {
		if !b.blocked(p.JID) {
			jobs = append(jobs, rosterJob(mxid, p.JID))
		}
	}
	return jobs, nil
}

// Each reads the name when it runs, as JobPresence does; one pair's writes
// in order, so that the newest name is the one that stays.
var _ = register(JobRosterItem, jobKind{side: SideXMPP, order: byPair, payload: pairArgs{}, asks: true, run: func(b *Bridge, ctx context.Context, job *Job) error { return b.people.setRosterItem(ctx, job) }})

// setRosterItem runs a JobRosterItem with the name as it stands: the
// stored profile's, else the homeserver's, else the user ID.
func (b *people) setRosterItem(ctx context.Context, job *Job) error {
	mxid, peer, from, err := b.pairOf(job)
	if err != nil {
		return err
	}
	puppet := from.Bare()
	if _, reason := b.resolvePuppet(puppet); reason != "" || b.blocked(peer) {
		return nil // no longer allowed: nothing is written of them
	}
	name := ""
	if p, err := b.store.PuppetProfile(ctx, mxid); err == nil {
		name = p.Name
	} else if !isNotFound(err) {
		return fmt.Errorf("look up the profile of %s: %w", mxid, err)
	} else if name, err = b.matrix.DisplayName(ctx, mxid); err != nil {
		return fmt.Errorf("look up the name of %s: %w", mxid, err)
	}
	if name == "" {
		name = string(mxid)
	}
	err = b.xmpp.SetRosterItem(ctx, peer, puppet, name)
	if errors.Is(err, ErrNoPrivilege) {
		b.count("xmpp_roster", "not_granted")
		return nil
	} else if err != nil {
		return fmt.Errorf("write %s into the roster of %s: %w", puppet, peer, err)
	}
	b.count("xmpp_roster", "written")
	return nil
}
