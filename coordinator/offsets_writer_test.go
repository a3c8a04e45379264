package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
)

// Concurrent commits of many groups share transactions, yet each group is
// fenced on its own: the one whose ownership moved to another broker fails
// with ErrConflict and writes nothing, the others succeed.
func TestOffsetWriterFencesEachGroupOfABatch(t *testing.T) {
	eps := etcdtest.Start(t)
	raw := registered(t, eps, 1)
	w := coordinator.NewOffsetWriter(raw)
	other := registered(t, eps, 2)
	ctx := testCtx(t)

	const groups, rounds = 40, 5
	owns := make([]coordinator.GroupOwner, groups)
	for g := range owns {
		var err error
		if owns[g], err = w.AcquireGroup(ctx, fmt.Sprintf("g%d", g)); err != nil {
			t.Fatal(err)
		}
	}
	// Every group has offsets, so the writer holds their buckets in memory.
	for g := range owns {
		if err := w.CommitOffsets(ctx, fmt.Sprintf("g%d", g), owns[g], []coordinator.CommittedOffset{{Topic: "t", Partition: 0, Offset: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	// g7 moves to broker 2 behind the writer's back.
	if err := raw.ReleaseGroup(ctx, "g7", owns[7]); err != nil {
		t.Fatal(err)
	}
	if _, err := other.AcquireGroup(ctx, "g7"); err != nil {
		t.Fatal(err)
	}

	for r := 1; r <= rounds; r++ {
		errs := make([]error, groups)
		var wg sync.WaitGroup
		for g := 0; g < groups; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				offs := make([]coordinator.CommittedOffset, 10)
				for p := range offs {
					offs[p] = coordinator.CommittedOffset{Topic: "t", Partition: int32(p), Offset: int64(100*r + p), CommitTimestamp: int64(r)}
				}
				errs[g] = w.CommitOffsets(ctx, fmt.Sprintf("g%d", g), owns[g], offs)
			}()
		}
		wg.Wait()
		for g, err := range errs {
			if g == 7 {
				if !errors.Is(err, coordinator.ErrConflict) {
					t.Fatalf("round %d: commit to the moved group: %v, want ErrConflict", r, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("round %d: commit to g%d: %v", r, g, err)
			}
		}
	}
	for g := 0; g < groups; g++ {
		var want []coordinator.CommittedOffset
		if g == 7 {
			want = []coordinator.CommittedOffset{{Topic: "t", Partition: 0, Offset: 1}}
		} else {
			for p := 0; p < 10; p++ {
				want = append(want, coordinator.CommittedOffset{Topic: "t", Partition: int32(p), Offset: int64(100*rounds + p), CommitTimestamp: rounds})
			}
		}
		sameOffsets(t, fetch(t, raw, fmt.Sprintf("g%d", g), nil), want)
	}
}

// Buckets changed by someone else (another client with the same ownership,
// DeleteGroup through the Store) are read again: nothing is lost and nothing
// deleted comes back.
func TestOffsetWriterRereadsChangedBuckets(t *testing.T) {
	eps := etcdtest.Start(t)
	raw := registered(t, eps, 1)
	w := coordinator.NewOffsetWriter(raw)
	second := openStore(t, eps)
	ctx := testCtx(t)
	own, err := w.AcquireGroup(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	commit := func(s offsetStore, p int32, off int64) {
		t.Helper()
		if err := s.CommitOffsets(ctx, "g", own, []coordinator.CommittedOffset{{Topic: "a", Partition: p, Offset: off}}); err != nil {
			t.Fatalf("commit a/%d@%d: %v", p, off, err)
		}
	}
	commit(w, 0, 10)      // the writer now holds bucket(a)
	commit(second, 1, 20) // same bucket, written by another client
	commit(w, 2, 30)      // the writer's compare fails; it reads again and redoes
	sameOffsets(t, fetch(t, raw, "g", nil), []coordinator.CommittedOffset{
		{Topic: "a", Partition: 0, Offset: 10}, {Topic: "a", Partition: 1, Offset: 20}, {Topic: "a", Partition: 2, Offset: 30},
	})

	if err := raw.DeleteGroup(ctx, "g", own); err != nil { // not through the writer
		t.Fatal(err)
	}
	commit(w, 3, 40)
	sameOffsets(t, fetch(t, raw, "g", nil), []coordinator.CommittedOffset{{Topic: "a", Partition: 3, Offset: 40}})

	// Expiry through the writer sees the other client's commit too.
	if err := second.CommitOffsets(ctx, "g", own, []coordinator.CommittedOffset{{Topic: "a", Partition: 4, Offset: 50, CommitTimestamp: 5}}); err != nil {
		t.Fatal(err)
	}
	if n, err := w.ExpireOffsets(ctx, "g", own, 1); err != nil || n != 1 { // a/3 has timestamp 0
		t.Fatalf("expire = %d, %v; want 1", n, err)
	}
	sameOffsets(t, fetch(t, raw, "g", nil), []coordinator.CommittedOffset{{Topic: "a", Partition: 4, Offset: 50, CommitTimestamp: 5}})
}

// A new ownership of the same group is written with fresh buckets; the old
// one is fenced.
func TestOffsetWriterNewOwnership(t *testing.T) {
	raw := registered(t, etcdtest.Start(t), 1)
	w := coordinator.NewOffsetWriter(raw)
	ctx := testCtx(t)
	own1, err := w.AcquireGroup(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.CommitOffsets(ctx, "g", own1, []coordinator.CommittedOffset{{Topic: "a", Partition: 0, Offset: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := w.ReleaseGroup(ctx, "g", own1); err != nil {
		t.Fatal(err)
	}
	if err := w.CommitOffsets(ctx, "g", own1, []coordinator.CommittedOffset{{Topic: "a", Partition: 0, Offset: 2}}); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("commit after release: %v, want ErrConflict", err)
	}
	own2, err := w.AcquireGroup(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if own2.Revision <= own1.Revision {
		t.Fatalf("new ownership revision %d, want > %d", own2.Revision, own1.Revision)
	}
	if err := w.CommitOffsets(ctx, "g", own2, []coordinator.CommittedOffset{{Topic: "a", Partition: 1, Offset: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := w.CommitOffsets(ctx, "g", own1, []coordinator.CommittedOffset{{Topic: "a", Partition: 0, Offset: 4}}); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("commit with the old ownership: %v, want ErrConflict", err)
	}
	// A commit of nothing still tells whether the group is owned.
	if err := w.CommitOffsets(ctx, "g", own1, nil); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("empty commit with the old ownership: %v, want ErrConflict", err)
	}
	if err := w.CommitOffsets(ctx, "g", own2, nil); err != nil {
		t.Fatalf("empty commit: %v", err)
	}
	if err := w.DeleteOffsets(ctx, "g", own2, map[string][]int32{"zz": {0}}); err != nil {
		t.Fatalf("delete offsets that do not exist: %v", err)
	}
	sameOffsets(t, fetch(t, raw, "g", nil), []coordinator.CommittedOffset{{Topic: "a", Partition: 0, Offset: 1}, {Topic: "a", Partition: 1, Offset: 3}})
}

func TestOffsetWriterBadInput(t *testing.T) {
	raw := registered(t, etcdtest.Start(t), 1)
	w := coordinator.NewOffsetWriter(raw)
	ctx := testCtx(t)
	own, err := w.AcquireGroup(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	one := []coordinator.CommittedOffset{{Topic: "a", Offset: 1}}
	tests := []struct {
		name  string
		group string
		own   coordinator.GroupOwner
		offs  []coordinator.CommittedOffset
	}{
		{"empty group id", "", own, one},
		{"no ownership revision", "g", coordinator.GroupOwner{BrokerID: 1}, one},
		{"empty topic", "g", own, []coordinator.CommittedOffset{{Topic: "", Offset: 1}}},
		{"negative partition", "g", own, []coordinator.CommittedOffset{{Topic: "a", Partition: -1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := w.CommitOffsets(ctx, tc.group, tc.own, tc.offs); !errors.Is(err, coordinator.ErrInvalid) {
				t.Fatalf("commit: %v, want ErrInvalid", err)
			}
		})
	}
	sameOffsets(t, fetch(t, raw, "g", nil), nil)
}

// A caller whose context ends stops waiting; a closed Store fails at once.
func TestOffsetWriterContextAndClose(t *testing.T) {
	raw := registered(t, etcdtest.Start(t), 1)
	w := coordinator.NewOffsetWriter(raw)
	ctx := testCtx(t)
	own, err := w.AcquireGroup(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := w.CommitOffsets(done, "g", own, []coordinator.CommittedOffset{{Topic: "a", Offset: 1}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("commit with a canceled context: %v, want context.Canceled", err)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := w.CommitOffsets(ctx, "g", own, []coordinator.CommittedOffset{{Topic: "a", Offset: 2}}); !errors.Is(err, coordinator.ErrUnavailable) {
		t.Fatalf("commit on a closed store: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("commit on a closed store took %s", d)
	}
}

// With the embedded etcd the writer calls the server in process: the same
// fencing, re-reads and close behaviour hold there.
func TestOffsetWriterEmbeddedEtcd(t *testing.T) {
	ctx := testCtx(t)
	raw, err := coordinator.Open(ctx, coordinator.Config{EmbedDir: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	if err := raw.RegisterBroker(ctx, coordinator.BrokerInfo{ID: 1, Host: "127.0.0.1", Port: 9001}); err != nil {
		t.Fatal(err)
	}
	w := coordinator.NewOffsetWriter(raw)
	remote := openStore(t, raw.Endpoints()) // a client over gRPC, same ownership

	const groups = 8
	owns := make([]coordinator.GroupOwner, groups)
	for g := range owns {
		if owns[g], err = w.AcquireGroup(ctx, fmt.Sprintf("g%d", g)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.ReleaseGroup(ctx, "g0", owns[0]); err != nil { // g0's ownership is stale from here on
		t.Fatal(err)
	}
	for round := int64(1); round <= 3; round++ {
		errs := make([]error, groups)
		var wg sync.WaitGroup
		for g := range owns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[g] = w.CommitOffsets(ctx, fmt.Sprintf("g%d", g), owns[g], []coordinator.CommittedOffset{{Topic: "t", Partition: 0, Offset: round}})
			}()
		}
		wg.Wait()
		if !errors.Is(errs[0], coordinator.ErrConflict) {
			t.Fatalf("round %d: commit to the released group: %v, want ErrConflict", round, errs[0])
		}
		for g, err := range errs[1:] {
			if err != nil {
				t.Fatalf("round %d: g%d: %v", round, g+1, err)
			}
		}
		// Another client changes g1's bucket: the writer's next write re-reads it.
		if err := remote.CommitOffsets(ctx, "g1", owns[1], []coordinator.CommittedOffset{{Topic: "t", Partition: int32(round), Offset: 10 * round}}); err != nil {
			t.Fatal(err)
		}
	}
	sameOffsets(t, fetch(t, raw, "g0", nil), nil)
	sameOffsets(t, fetch(t, raw, "g2", nil), []coordinator.CommittedOffset{{Topic: "t", Partition: 0, Offset: 3}})
	sameOffsets(t, fetch(t, raw, "g1", nil), []coordinator.CommittedOffset{
		{Topic: "t", Partition: 0, Offset: 3}, {Topic: "t", Partition: 1, Offset: 10}, {Topic: "t", Partition: 2, Offset: 20}, {Topic: "t", Partition: 3, Offset: 30},
	})

	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.CommitOffsets(ctx, "g2", owns[2], []coordinator.CommittedOffset{{Topic: "t", Offset: 9}}); !errors.Is(err, coordinator.ErrUnavailable) {
		t.Fatalf("commit after close: %v, want ErrUnavailable", err)
	}
}
