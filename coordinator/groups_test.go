package coordinator_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
)

// registered opens a Store on eps registered as broker id.
func registered(t *testing.T, eps []string, id int32, mod ...func(*coordinator.Config)) *coordinator.Store {
	t.Helper()
	s := openStore(t, eps, mod...)
	if err := s.RegisterBroker(testCtx(t), coordinator.BrokerInfo{ID: id, Host: "127.0.0.1", Port: 9000 + id}); err != nil {
		t.Fatalf("register broker %d: %v", id, err)
	}
	return s
}

func wantOwner(t *testing.T, s *coordinator.Store, group string, want coordinator.GroupOwner, wantOK bool) {
	t.Helper()
	got, ok, err := s.GroupOwnerOf(testCtx(t), group)
	if err != nil {
		t.Fatalf("owner of %q: %v", group, err)
	}
	if ok != wantOK || got != want {
		t.Fatalf("owner of %q = %+v ok=%v, want %+v ok=%v", group, got, ok, want, wantOK)
	}
}

func TestGroupOwnershipMovesWhenOwnerCloses(t *testing.T) {
	eps := etcdtest.Start(t)
	ctx := testCtx(t)
	s1 := registered(t, eps, 1)
	s2 := registered(t, eps, 2)
	const g = "orders/consumers" // '/' is legal in a group id

	wantOwner(t, s2, g, coordinator.GroupOwner{}, false)
	own1, err := s1.AcquireGroup(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if own1.BrokerID != 1 || own1.Revision <= 0 {
		t.Fatalf("acquired %+v", own1)
	}
	got, err := s2.AcquireGroup(ctx, g)
	if !errors.Is(err, coordinator.ErrConflict) || got != own1 {
		t.Fatalf("second broker acquire = %+v, %v; want %+v, ErrConflict", got, err, own1)
	}
	if again, err := s1.AcquireGroup(ctx, g); err != nil || again != own1 {
		t.Fatalf("owner re-acquires = %+v, %v; want %+v", again, err, own1)
	}
	wantOwner(t, s2, g, own1, true)

	// Groups are independent.
	own2, err := s2.AcquireGroup(ctx, "other")
	if err != nil || own2.BrokerID != 2 {
		t.Fatalf("acquire other = %+v, %v", own2, err)
	}

	off := []coordinator.CommittedOffset{{Topic: "t", Partition: 0, Offset: 42, LeaderEpoch: 3, CommitTimestamp: 1000}}
	if err := s1.CommitOffsets(ctx, g, own1, off); err != nil {
		t.Fatal(err)
	}
	// A wrong owner revision (another group's) is refused.
	if err := s1.CommitOffsets(ctx, g, own2, off); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("commit with another group's ownership: %v, want ErrConflict", err)
	}

	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	wantOwner(t, s2, g, coordinator.GroupOwner{}, false) // lease revoked with the registration
	own2g, err := s2.AcquireGroup(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if own2g.BrokerID != 2 || own2g.Revision <= own1.Revision {
		t.Fatalf("new ownership %+v, want broker 2 with revision > %d", own2g, own1.Revision)
	}

	// The old owner's epoch is fenced off everywhere, and writes nothing.
	stale := []coordinator.CommittedOffset{{Topic: "t", Partition: 0, Offset: 99, CommitTimestamp: 2000},
		{Topic: "u", Partition: 1, Offset: 7, CommitTimestamp: 2000}}
	if err := s2.CommitOffsets(ctx, g, own1, stale); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("stale commit: %v, want ErrConflict", err)
	}
	if err := s2.DeleteOffsets(ctx, g, own1, map[string][]int32{"t": {0}}); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("stale delete offsets: %v, want ErrConflict", err)
	}
	if err := s2.DeleteGroup(ctx, g, own1); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("stale delete group: %v, want ErrConflict", err)
	}
	if n, err := s2.ExpireOffsets(ctx, g, own1, 1<<62); !errors.Is(err, coordinator.ErrConflict) || n != 0 {
		t.Fatalf("stale expire: %d, %v; want 0, ErrConflict", n, err)
	}
	sameOffsets(t, fetch(t, s2, g, nil), off)

	// Release: only at the current revision.
	if err := s2.ReleaseGroup(ctx, g, own1); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("release stale: %v, want ErrConflict", err)
	}
	wantOwner(t, s2, g, own2g, true)
	if err := s2.ReleaseGroup(ctx, g, own2g); err != nil {
		t.Fatal(err)
	}
	wantOwner(t, s2, g, coordinator.GroupOwner{}, false)
	if err := s2.CommitOffsets(ctx, g, own2g, off); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("commit after release: %v, want ErrConflict", err)
	}
	// Offsets survive ownership changes.
	sameOffsets(t, fetch(t, s2, g, nil), off)
}

func TestAcquireGroupNeedsRegistration(t *testing.T) {
	eps := etcdtest.Start(t)
	ctx := testCtx(t)
	s := openStore(t, eps)
	if _, err := s.AcquireGroup(ctx, "g"); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("acquire unregistered: %v, want ErrInvalid", err)
	}
	r := registered(t, eps, 3)
	if _, err := r.AcquireGroup(ctx, ""); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("acquire empty group: %v, want ErrInvalid", err)
	}
	if err := r.CommitOffsets(ctx, "g", coordinator.GroupOwner{}, nil); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("commit without ownership revision: %v, want ErrInvalid", err)
	}
	wantOwner(t, s, "g", coordinator.GroupOwner{}, false)
}

func TestGroupOwnershipMovesAfterLeaseExpiry(t *testing.T) {
	t.Parallel() // mostly waiting on the lease TTL
	eps := etcdtest.Start(t)
	ctx := testCtx(t)
	crashing := registered(t, eps, 1, func(c *coordinator.Config) { c.LeaseTTL = 2 * time.Second })
	survivor := registered(t, eps, 2)
	own1, err := crashing.AcquireGroup(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	off := []coordinator.CommittedOffset{{Topic: "t", Partition: 3, Offset: 10, LeaderEpoch: -1, CommitTimestamp: 5}}
	if err := crashing.CommitOffsets(ctx, "g", own1, off); err != nil {
		t.Fatal(err)
	}
	crashed := time.Now()
	if err := crashing.CrashForTest(); err != nil { // kill -9: the lease is not revoked
		t.Fatal(err)
	}
	if got, err := survivor.AcquireGroup(ctx, "g"); !errors.Is(err, coordinator.ErrConflict) || got != own1 {
		t.Fatalf("acquire while the crashed lease lives = %+v, %v; want %+v, ErrConflict", got, err, own1)
	}
	var own2 coordinator.GroupOwner
	eventually(t, 10*time.Second, "survivor acquires the group", func() bool {
		own2, err = survivor.AcquireGroup(ctx, "g")
		if err != nil && !errors.Is(err, coordinator.ErrConflict) {
			t.Fatalf("acquire: %v", err)
		}
		return err == nil
	})
	if d := time.Since(crashed); d < time.Second {
		t.Fatalf("group moved after %s: lease was revoked, not expired", d)
	}
	if own2.BrokerID != 2 || own2.Revision <= own1.Revision {
		t.Fatalf("new ownership %+v, want broker 2 with revision > %d", own2, own1.Revision)
	}
	// The survivor resumes from the committed offsets; the dead owner's epoch is fenced.
	sameOffsets(t, fetch(t, survivor, "g", nil), off)
	if err := survivor.CommitOffsets(ctx, "g", own1, off); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("commit with the dead owner's epoch: %v, want ErrConflict", err)
	}
	next := []coordinator.CommittedOffset{{Topic: "t", Partition: 3, Offset: 11, LeaderEpoch: 0, CommitTimestamp: 6}}
	if err := survivor.CommitOffsets(ctx, "g", own2, next); err != nil {
		t.Fatal(err)
	}
	sameOffsets(t, fetch(t, survivor, "g", nil), next)
}

func TestGroupsListsGroupsWithOffsets(t *testing.T) {
	eps := etcdtest.Start(t)
	ctx := testCtx(t)
	s := registered(t, eps, 1)
	if gs, err := s.Groups(ctx); err != nil || len(gs) != 0 {
		t.Fatalf("groups = %q, %v; want none", gs, err)
	}
	all := []string{"b", "a/b", "a", "a%2F", "z z", "ä"}
	for _, g := range all {
		own, err := s.AcquireGroup(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CommitOffsets(ctx, g, own, []coordinator.CommittedOffset{{Topic: "t", Offset: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AcquireGroup(ctx, "owned-no-offsets"); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(all)
	slices.Sort(want)
	gs, err := s.Groups(ctx)
	if err != nil || !slices.Equal(gs, want) {
		t.Fatalf("groups = %q, %v; want %q", gs, err, want)
	}
	for _, g := range all {
		if got := fetch(t, s, g, nil); len(got) != 1 || got[0].Topic != "t" || got[0].Offset != 1 {
			t.Fatalf("offsets of %q = %+v", g, got)
		}
	}
}

// TestGroupStateFollowsOwnership: the saved membership is written only by
// the owner, survives the owner, is read by the next owner, is listed by
// Groups and goes with DeleteGroup.
func TestGroupStateFollowsOwnership(t *testing.T) {
	eps := etcdtest.Start(t)
	ctx := testCtx(t)
	s1 := registered(t, eps, 1)
	s2 := registered(t, eps, 2)
	const g = "state/group"
	if st, err := s2.LoadGroupState(ctx, g); err != nil || st != nil {
		t.Fatalf("state of an unknown group = %q, %v; want none", st, err)
	}
	own1, err := s1.AcquireGroup(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.SaveGroupState(ctx, g, own1, []byte("gen 7")); err != nil {
		t.Fatal(err)
	}
	if gs, err := s2.Groups(ctx); err != nil || !slices.Equal(gs, []string{g}) {
		t.Fatalf("groups = %v, %v; want [%s] (a group with a state and no offsets)", gs, err, g)
	}
	// Not the owner: nothing written.
	if err := s2.SaveGroupState(ctx, g, coordinator.GroupOwner{BrokerID: 2, Revision: own1.Revision + 1}, []byte("stale")); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("save by a non-owner: %v, want ErrConflict", err)
	}
	if err := s1.SaveGroupState(ctx, g, own1, make([]byte, 2<<20)); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("save of 2 MiB: %v, want ErrInvalid", err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	own2, err := s2.AcquireGroup(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := s2.LoadGroupState(ctx, g); err != nil || string(st) != "gen 7" {
		t.Fatalf("state after the owner left = %q, %v; want %q", st, err, "gen 7")
	}
	// The old ownership is fenced.
	if err := s2.SaveGroupState(ctx, g, own1, []byte("old owner")); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("save under the old ownership: %v, want ErrConflict", err)
	}
	if err := s2.DeleteGroupState(ctx, g, own1); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("delete state under the old ownership: %v, want ErrConflict", err)
	}
	if err := s2.DeleteGroupState(ctx, g, own2); err != nil {
		t.Fatal(err)
	}
	if st, err := s2.LoadGroupState(ctx, g); err != nil || st != nil {
		t.Fatalf("state after DeleteGroupState = %q, %v; want none", st, err)
	}
	if gs, err := s2.Groups(ctx); err != nil || len(gs) != 0 {
		t.Fatalf("groups = %v, %v; want none (no offsets, no state)", gs, err)
	}
	if err := s2.SaveGroupState(ctx, g, own2, []byte("gen 8")); err != nil {
		t.Fatal(err)
	}
	if err := s2.DeleteGroup(ctx, g, own2); err != nil {
		t.Fatal(err)
	}
	if st, err := s2.LoadGroupState(ctx, g); err != nil || st != nil {
		t.Fatalf("state after DeleteGroup = %q, %v; want none", st, err)
	}
}
