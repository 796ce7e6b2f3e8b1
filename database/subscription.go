package database

import (
	"context"
	"fmt"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

const (
	getSubscriptionQuery = `SELECT mxid, jid, from_them, to_them FROM subscription WHERE mxid=$1 AND jid=$2`
	// Each setter changes its own direction only, so that the two never
	// overwrite each other.
	setSubscriptionFromQuery = `
		INSERT INTO subscription (mxid, jid, from_them, to_them) VALUES ($1, $2, $3, false)
		ON CONFLICT (mxid, jid) DO UPDATE SET from_them=excluded.from_them
	`
	getSubscribersQuery    = `SELECT mxid, jid, from_them, to_them FROM subscription WHERE from_them ORDER BY mxid, jid`
	setSubscriptionToQuery = `
		INSERT INTO subscription (mxid, jid, from_them, to_them) VALUES ($1, $2, false, $3)
		ON CONFLICT (mxid, jid) DO UPDATE SET to_them=excluded.to_them
	`
)

func scanSubscription(row dbutil.Scannable) (*mapping.Subscription, error) {
	var s mapping.Subscription
	var peer string
	if err := row.Scan(&s.MXID, &peer, &s.FromThem, &s.ToThem); err != nil {
		return nil, err
	}
	var err error
	if s.JID, err = parseJID(peer); err != nil {
		return nil, err
	}
	return &s, nil
}

// Subscribers lists the pairs whose person is subscribed to the puppet.
func (db *Database) Subscribers(ctx context.Context) ([]*mapping.Subscription, error) {
	subs, err := queryMany(ctx, db.db, scanSubscription, getSubscribersQuery)
	if err != nil {
		return nil, fmt.Errorf("list subscribers: %w", err)
	}
	return subs, nil
}

// Subscription returns the presence subscription state of mxid's puppet
// and the bare JID of peer, or mapping.ErrNotFound if none was stored.
func (db *Database) Subscription(ctx context.Context, mxid id.UserID, peer jid.JID) (*mapping.Subscription, error) {
	s, err := queryOne(ctx, db.db, scanSubscription, getSubscriptionQuery, mxid, bareJID(peer))
	if err != nil {
		return nil, fmt.Errorf("get subscription of %s with %s: %w", mxid, peer.Bare(), err)
	}
	return s, nil
}

// SetSubscriptionFrom sets whether peer is subscribed to the puppet of mxid.
func (db *Database) SetSubscriptionFrom(ctx context.Context, mxid id.UserID, peer jid.JID, on bool) error {
	defer db.writing()()
	if _, err := db.db.Exec(ctx, setSubscriptionFromQuery, mxid, bareJID(peer), on); err != nil {
		return fmt.Errorf("set subscription of %s to %s: %w", peer.Bare(), mxid, err)
	}
	return nil
}

// SetSubscriptionTo sets whether the puppet of mxid is subscribed to peer.
func (db *Database) SetSubscriptionTo(ctx context.Context, mxid id.UserID, peer jid.JID, on bool) error {
	defer db.writing()()
	if _, err := db.db.Exec(ctx, setSubscriptionToQuery, mxid, bareJID(peer), on); err != nil {
		return fmt.Errorf("set subscription of %s to %s: %w", mxid, peer.Bare(), err)
	}
	return nil
}
