package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
)

// offsetStore is what the offsets tests use of a Store or an OffsetWriter.
type offsetStore interface {
	AcquireGroup(ctx context.Context, group string) (coordinator.GroupOwner, error)
	CommitOffsets(ctx context.Context, group string, own coordinator.GroupOwner, offs []coordinator.CommittedOffset) error
	FetchOffsets(ctx context.Context, group string, topics []string) ([]coordinator.CommittedOffset, error)
	DeleteOffsets(ctx context.Context, group string, own coordinator.GroupOwner, parts map[string][]int32) error
	DeleteGroup(ctx context.Context, group string, own coordinator.GroupOwner) error
	ExpireOffsets(ctx context.Context, group string, own coordinator.GroupOwner, cutoffMs int64) (int, error)
	Groups(ctx context.Context) ([]string, error)
}

// forEachOffsetWriter runs f once on the Store itself (read, then write) and
// once through an OffsetWriter (cached buckets, batched writes): both keep
// the same contracts.
func forEachOffsetWriter(t *testing.T, f func(t *testing.T, wrap func(*coordinator.Store) offsetStore)) {
	t.Run("Store", func(t *testing.T) {
		f(t, func(s *coordinator.Store) offsetStore { return s })
	})
	t.Run("OffsetWriter", func(t *testing.T) {
		f(t, func(s *coordinator.Store) offsetStore { return coordinator.NewOffsetWriter(s) })
	})
}

func fetch(t *testing.T, s offsetStore, group string, topics []string) []coordinator.CommittedOffset {
	t.Helper()
	got, err := s.FetchOffsets(testCtx(t), group, topics)
	if err != nil {
		t.Fatalf("fetch offsets of %q: %v", group, err)
	}
	return got
}

func strp(s string) *string { return &s }

func offsetString(o coordinator.CommittedOffset) string {
	m := "<null>"
	if o.Metadata != nil {
		m = fmt.Sprintf("%q", *o.Metadata)
	}
	return fmt.Sprintf("%s/%d@%d e%d ts%d md%s", o.Topic, o.Partition, o.Offset, o.LeaderEpoch, o.CommitTimestamp, m)
}

// sameOffsets compares exactly; want must be sorted by topic and partition.
func sameOffsets(t *testing.T, got, want []coordinator.CommittedOffset) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d offsets, want %d", len(got), len(want))
	}
	for i := range want {
		if g, w := offsetString(got[i]), offsetString(want[i]); g != w {
			t.Fatalf("offset %d = %s, want %s", i, g, w)
		}
	}
}

// genOffsets builds offsets for parts partitions spread over topics topics
// (sorted by topic then partition), with varied epochs and metadata.
func genOffsets(topics, parts int, base int64) []coordinator.CommittedOffset {
	var out []coordinator.CommittedOffset
	per := parts / topics
	for ti := 0; ti < topics; ti++ {
		n := per
		if ti < parts%topics {
			n++
		}
		topic := fmt.Sprintf("topic-%04d", ti)
		for p := 0; p < n; p++ {
			o := coordinator.CommittedOffset{Topic: topic, Partition: int32(p), Offset: base + int64(ti*100000+p),
				LeaderEpoch: int32(p%5) - 1, CommitTimestamp: 1_700_000_000_000 + int64(p)}
			switch p % 3 {
			case 1:
				o.Metadata = strp("")
			case 2:
				o.Metadata = strp(fmt.Sprintf("consumer-%d", p))
			}
			out = append(out, o)
		}
	}
	return out
}

func TestCommitManyPartitionsAtomically(t *testing.T) {
	forEachOffsetWriter(t, testCommitManyPartitionsAtomically)
}

func testCommitManyPartitionsAtomically(t *testing.T, wrap func(*coordinator.Store) offsetStore) {
	s := wrap(registered(t, etcdtest.Start(t), 1))
	ctx := testCtx(t)
	tests := []struct {
		name           string
		topics, parts  int
		metadataLength int
	}{
		{"1000 partitions of one topic", 1, 1000, 0},
		{"2000 partitions over 300 topics", 300, 2000, 0},
		{"5000 partitions over 1000 topics with 100-byte metadata", 1000, 5000, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := "g-" + strings.ReplaceAll(tc.name, " ", "-")
			own, err := s.AcquireGroup(ctx, g)
			if err != nil {
				t.Fatal(err)
			}
			offs := genOffsets(tc.topics, tc.parts, 0)
			if tc.metadataLength > 0 {
				for i := range offs {
					offs[i].Metadata = strp(strings.Repeat("m", tc.metadataLength))
				}
			}
			if err := s.CommitOffsets(ctx, g, own, offs); err != nil {
				t.Fatal(err)
			}
			sameOffsets(t, fetch(t, s, g, nil), offs)

			// A second commit of every other topic's partitions changes only those.
			var upd, want []coordinator.CommittedOffset
			for _, o := range offs {
				if o.Partition%2 == 0 {
					o.Offset += 1_000_000
					o.Metadata = nil
					upd = append(upd, o)
				}
				want = append(want, o)
			}
			if err := s.CommitOffsets(ctx, g, own, upd); err != nil {
				t.Fatal(err)
			}
			sameOffsets(t, fetch(t, s, g, nil), want)

			// FetchOffsets of two topics only.
			sel := []string{want[0].Topic, want[len(want)-1].Topic, "never-committed"}
			var wantSel []coordinator.CommittedOffset
			for _, o := range want {
				if o.Topic == sel[0] || o.Topic == sel[1] {
					wantSel = append(wantSel, o)
				}
			}
			sameOffsets(t, fetch(t, s, g, sel), wantSel)
		})
	}
}

func TestCommitTooLargeWritesNothing(t *testing.T) {
	forEachOffsetWriter(t, testCommitTooLargeWritesNothing)
}

func testCommitTooLargeWritesNothing(t *testing.T, wrap func(*coordinator.Store) offsetStore) {
	s := wrap(registered(t, etcdtest.Start(t), 1))
	ctx := testCtx(t)
	own, err := s.AcquireGroup(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	first := genOffsets(2, 10, 0)
	if err := s.CommitOffsets(ctx, "g", own, first); err != nil {
		t.Fatal(err)
	}
	big := genOffsets(50, 1000, 500)
	for i := range big {
		big[i].Metadata = strp(strings.Repeat("x", 4096)) // 4 MB in all
	}
	if err := s.CommitOffsets(ctx, "g", own, big); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("4 MB commit: %v, want ErrInvalid", err)
	}
	sameOffsets(t, fetch(t, s, "g", nil), first)
	bad := []coordinator.CommittedOffset{{Topic: "t", Partition: 1, Offset: 5}, {Topic: "", Partition: 0}}
	if err := s.CommitOffsets(ctx, "g", own, bad); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("commit with an empty topic: %v, want ErrInvalid", err)
	}
	bad[1] = coordinator.CommittedOffset{Topic: "t", Partition: -1}
	if err := s.CommitOffsets(ctx, "g", own, bad); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("commit with partition -1: %v, want ErrInvalid", err)
	}
	sameOffsets(t, fetch(t, s, "g", nil), first)
}

func TestConcurrentCommitsAreNotLost(t *testing.T) {
	forEachOffsetWriter(t, testConcurrentCommitsAreNotLost)
}

func testConcurrentCommitsAreNotLost(t *testing.T, wrap func(*coordinator.Store) offsetStore) {
	eps := etcdtest.Start(t)
	s := wrap(registered(t, eps, 1))
	other := wrap(openStore(t, eps)) // a second client writing with the same ownership
	ctx := testCtx(t)
	own, err := s.AcquireGroup(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	const writers, commits = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*commits)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if w%2 == 1 {
				st = other
			}
			for c := 0; c < commits; c++ {
				// Every writer commits to one shared topic (same bucket) and its own topic.
				offs := []coordinator.CommittedOffset{
					{Topic: "shared", Partition: int32(w*commits + c), Offset: int64(c), CommitTimestamp: int64(w)},
					{Topic: fmt.Sprintf("own-%d", w), Partition: 0, Offset: int64(c), CommitTimestamp: int64(w)},
				}
				if err := st.CommitOffsets(ctx, "g", own, offs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent commit: %v", err)
	}
	var want []coordinator.CommittedOffset
	for w := 0; w < writers; w++ {
		want = append(want, coordinator.CommittedOffset{Topic: fmt.Sprintf("own-%d", w), Partition: 0, Offset: commits - 1, CommitTimestamp: int64(w)})
	}
	for p := 0; p < writers*commits; p++ {
		want = append(want, coordinator.CommittedOffset{Topic: "shared", Partition: int32(p), Offset: int64(p % commits), CommitTimestamp: int64(p / commits)})
	}
	sameOffsets(t, fetch(t, other, "g", nil), want)
}

func TestFetchUnknownGroupIsEmpty(t *testing.T) {
	s := openStore(t, etcdtest.Start(t))
	for _, topics := range [][]string{nil, {}, {"t"}} {
		got, err := s.FetchOffsets(testCtx(t), "nobody", topics)
		if err != nil || len(got) != 0 {
			t.Fatalf("fetch unknown group, topics %q = %+v, %v; want empty", topics, got, err)
		}
	}
	if _, err := s.FetchOffsets(testCtx(t), "", nil); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("fetch empty group id: %v, want ErrInvalid", err)
	}
}

func TestDeleteAndExpireOffsets(t *testing.T) {
	forEachOffsetWriter(t, testDeleteAndExpireOffsets)
}

func testDeleteAndExpireOffsets(t *testing.T, wrap func(*coordinator.Store) offsetStore) {
	raw := registered(t, etcdtest.Start(t), 1)
	s := wrap(raw)
	ctx := testCtx(t)
	own, err := s.AcquireGroup(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	// a/0..3, b/0..3, c/0..3; timestamps 100*(partition+1).
	var all []coordinator.CommittedOffset
	for _, topic := range []string{"a", "b", "c"} {
		for p := int32(0); p < 4; p++ {
			all = append(all, coordinator.CommittedOffset{Topic: topic, Partition: p, Offset: int64(p) * 10, CommitTimestamp: 100 * int64(p+1)})
		}
	}
	if err := s.CommitOffsets(ctx, "g", own, all); err != nil {
		t.Fatal(err)
	}
	keep := func(drop func(o coordinator.CommittedOffset) bool) []coordinator.CommittedOffset {
		var out []coordinator.CommittedOffset
		for _, o := range all {
			if !drop(o) {
				out = append(out, o)
			}
		}
		all = out
		return out
	}

	// OffsetDelete: a/1, a/3, all of c, and partitions that have no offsets.
	if err := s.DeleteOffsets(ctx, "g", own, map[string][]int32{"a": {1, 3, 9}, "c": {0, 1, 2, 3}, "zz": {0}}); err != nil {
		t.Fatal(err)
	}
	want := keep(func(o coordinator.CommittedOffset) bool {
		return o.Topic == "c" || (o.Topic == "a" && (o.Partition == 1 || o.Partition == 3))
	})
	sameOffsets(t, fetch(t, s, "g", nil), want)
	// Deleting nothing that exists is fine.
	if err := s.DeleteOffsets(ctx, "g", own, map[string][]int32{"c": {0}}); err != nil {
		t.Fatal(err)
	}
	sameOffsets(t, fetch(t, s, "g", nil), want)

	// Expiry: strictly below the cutoff.
	n, err := s.ExpireOffsets(ctx, "g", own, 300)
	if err != nil || n != 3 { // a/0 (100), b/0 (100), b/1 (200)
		t.Fatalf("expire < 300 = %d, %v; want 3", n, err)
	}
	want = keep(func(o coordinator.CommittedOffset) bool { return o.CommitTimestamp < 300 })
	sameOffsets(t, fetch(t, s, "g", nil), want)
	if n, err := s.ExpireOffsets(ctx, "g", own, 300); err != nil || n != 0 {
		t.Fatalf("expire again = %d, %v; want 0", n, err)
	}
	if gs, err := s.Groups(ctx); err != nil || len(gs) != 1 || gs[0] != "g" {
		t.Fatalf("groups = %q, %v", gs, err)
	}
	if n, err := s.ExpireOffsets(ctx, "g", own, 1000); err != nil || n != len(want) {
		t.Fatalf("expire all = %d, %v; want %d", n, err, len(want))
	}
	sameOffsets(t, fetch(t, s, "g", nil), nil)
	if gs, err := s.Groups(ctx); err != nil || len(gs) != 0 {
		t.Fatalf("groups after expiring everything = %q, %v; want none", gs, err)
	}

	// DeleteGroup removes every offset but keeps the ownership.
	if err := s.CommitOffsets(ctx, "g", own, genOffsets(20, 200, 0)); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitOffsets(ctx, "other", own, []coordinator.CommittedOffset{{Topic: "a", Offset: 1}}); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("commit to another group with this group's ownership: %v, want ErrConflict", err)
	}
	if err := s.DeleteGroup(ctx, "g", own); err != nil {
		t.Fatal(err)
	}
	sameOffsets(t, fetch(t, s, "g", nil), nil)
	wantOwner(t, raw, "g", own, true)
	if err := s.DeleteGroup(ctx, "g", own); err != nil {
		t.Fatalf("delete an empty group: %v", err)
	}
}
