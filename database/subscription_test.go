package database

import (
	"fmt"
	"testing"

	"mellium.im/xmpp/jid"

	"xmppbridge/mapping"
)

// Each direction of a subscription is set on its own, is kept per (user,
// bare JID) pair, and survives a restart.
func TestSubscription(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		_, err := s.Subscription(ctx, alice, bob)
		wantNotFound(t, "Subscription on empty store", err)

		check := func(what string, want mapping.Subscription) {
			t.Helper()
			got, err := s.Subscription(ctx, want.MXID, want.JID)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if got.MXID != want.MXID || !got.JID.Equal(want.JID) || got.FromThem != want.FromThem || got.ToThem != want.ToThem {
				t.Errorf("%s = %+v (jid %s), want %+v (jid %s)", what, *got, got.JID, want, want.JID)
			}
		}
		// A full JID is kept bare.
		must(t, s.SetSubscriptionFrom(ctx, alice, jid.MustParse("bob@example.net/phone"), true))
		check("after SetSubscriptionFrom", mapping.Subscription{MXID: alice, JID: bob, FromThem: true})
		must(t, s.SetSubscriptionTo(ctx, alice, bob, true))
		check("after SetSubscriptionTo", mapping.Subscription{MXID: alice, JID: bob, FromThem: true, ToThem: true})
		must(t, s.SetSubscriptionFrom(ctx, alice, bob, false))
		check("after cancelling from", mapping.Subscription{MXID: alice, JID: bob, ToThem: true})

		// Other pairs are apart.
		must(t, s.SetSubscriptionTo(ctx, dave, bob, true))
		check("another user", mapping.Subscription{MXID: dave, JID: bob, ToThem: true})
		_, err = s.Subscription(ctx, alice, carol)
		wantNotFound(t, "Subscription of another peer", err)

		if db, ok := s.(*store); ok {
			// The database keeps it across a restart (the fake has no
			// restart).
			db.reopen()
			check("after reopen", mapping.Subscription{MXID: alice, JID: bob, ToThem: true})
		}
	})
}

// Subscribers lists the pairs with a subscription from the person, in a
// stable order, and nothing else.
func TestSubscribers(t *testing.T) {
	forEachStore(t, func(t *testing.T, s contractStore) {
		ctx := t.Context()
		if subs, err := s.Subscribers(ctx); err != nil || len(subs) != 0 {
			t.Fatalf("Subscribers on an empty store = %v, %v", subs, err)
		}
		must(t, s.SetSubscriptionFrom(ctx, dave, bob, true))
		must(t, s.SetSubscriptionFrom(ctx, alice, carol, true))
		must(t, s.SetSubscriptionTo(ctx, alice, bob, true)) // "to" only
		must(t, s.SetSubscriptionFrom(ctx, alice, bob, true))
		must(t, s.SetSubscriptionFrom(ctx, alice, bob, false)) // and cancelled
		subs, err := s.Subscribers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, sub := range subs {
			got = append(got, string(sub.MXID)+" "+sub.JID.String())
		}
		want := []string{string(alice) + " " + carol.String(), string(dave) + " " + bob.String()}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Subscribers = %v, want %v", got, want)
		}
	})
}
