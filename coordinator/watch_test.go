package coordinator_test

import (
	"context"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
)

// next waits for a snapshot satisfying cond, skipping others (snapshots may be
// coalesced), bounded in time.
func next(t *testing.T, ch <-chan []coordinator.Topic, what string, cond func([]coordinator.Topic) bool) []coordinator.Topic {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case ts, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed while waiting for %s", what)
			}
			if cond(ts) {
				return ts
			}
		case <-timer.C:
			t.Fatalf("no snapshot with %s within 10s", what)
		}
	}
}

func TestWatchTopicsSeesOtherStore(t *testing.T) {
	eps := etcdtest.Start(t)
	ctx := testCtx(t)
	writer := openStore(t, eps)
	reader := openStore(t, eps)
	if err := writer.CreateTopic(ctx, mkTopic("pre", 1, 1)); err != nil {
		t.Fatal(err)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := reader.WatchTopics(wctx)
	first := next(t, ch, "initial set", func([]coordinator.Topic) bool { return true })
	if !slices.Equal(names(first), []string{"pre"}) {
		t.Fatalf("first snapshot %v, want [pre]", names(first))
	}

	created := mkTopic("live", 3, 1, 2)
	if err := writer.CreateTopic(ctx, created); err != nil {
		t.Fatal(err)
	}
	got := next(t, ch, "live created", func(ts []coordinator.Topic) bool { return len(ts) == 2 })
	if !slices.Equal(names(got), []string{"live", "pre"}) {
		t.Fatalf("snapshot %v, want [live pre]", names(got))
	}
	sameTopic(t, got[0], created)

	st := created.Partitions[2]
	st.Leader, st.ISR, st.LeaderEpoch, st.PartitionEpoch = 2, []int32{2}, 1, 1
	if err := writer.UpdatePartition(ctx, "live", st, 0); err != nil {
		t.Fatal(err)
	}
	got = next(t, ch, "partition 2 led by broker 2", func(ts []coordinator.Topic) bool {
		return len(ts) == 2 && ts[0].Partitions[2].Leader == 2
	})
	samePartition(t, got[0].Partitions[2], st)

	if err := writer.SetTopicConfigs(ctx, "pre", map[string]string{"retention.ms": "9"}, first[0].Revision); err != nil {
		t.Fatal(err)
	}
	next(t, ch, "pre config change", func(ts []coordinator.Topic) bool {
		return len(ts) == 2 && ts[1].Configs["retention.ms"] == "9"
	})

	if err := writer.DeleteTopic(ctx, "live"); err != nil {
		t.Fatal(err)
	}
	got = next(t, ch, "live deleted", func(ts []coordinator.Topic) bool { return len(ts) == 1 })
	if got[0].Name != "pre" {
		t.Fatalf("after delete: %v, want [pre]", names(got))
	}

	cancel()
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatal("watch channel not closed 5s after cancel")
		}
	}
}

func TestWatchTopicsClosedByStoreClose(t *testing.T) {
	eps := etcdtest.Start(t)
	s := openStore(t, eps)
	ch := s.WatchTopics(context.Background())
	if ts := next(t, ch, "initial set", func([]coordinator.Topic) bool { return true }); len(ts) != 0 {
		t.Fatalf("initial set %v, want empty", names(ts))
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with a watch running")
	}
	if _, ok := <-ch; ok {
		t.Fatal("watch channel still open after Close")
	}
	if _, ok := <-s.WatchTopics(context.Background()); ok {
		t.Fatal("WatchTopics on a closed store delivered a snapshot")
	}
}

func TestWatchTopicsSurvivesEtcdRestartAndCompaction(t *testing.T) {
	t.Parallel() // mostly waiting on timeouts
	ctx := testCtx(t)
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	openOwner := func() *coordinator.Store {
		t.Helper()
		s, err := coordinator.Open(ctx, coordinator.Config{EmbedDir: dir, EmbedListen: listen, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("open embedded etcd: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	owner := openOwner()
	reader := openStore(t, owner.Endpoints(), func(c *coordinator.Config) { c.DialTimeout = time.Second })
	ch := reader.WatchTopics(ctx)
	if ts := next(t, ch, "initial set", func([]coordinator.Topic) bool { return true }); len(ts) != 0 {
		t.Fatalf("initial set %v, want empty", names(ts))
	}
	if err := owner.CreateTopic(ctx, mkTopic("one", 1, 1)); err != nil {
		t.Fatal(err)
	}
	next(t, ch, "topic one", func(ts []coordinator.Topic) bool { return len(ts) == 1 })

	if err := owner.Close(); err != nil { // etcd down
		t.Fatal(err)
	}
	owner = openOwner() // same dir, same address
	for i := range 5 {
		if err := owner.CreateTopic(ctx, mkTopic("two"+strconv.Itoa(i), 1, 1)); err != nil {
			t.Fatal(err)
		}
	}
	// Compact away the history the reader's watch would resume from.
	cur, err := owner.Client().Get(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Client().Compact(ctx, cur.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if err := owner.CreateTopic(ctx, mkTopic("three", 1, 1)); err != nil {
		t.Fatal(err)
	}
	got := next(t, ch, "all seven topics after restart", func(ts []coordinator.Topic) bool { return len(ts) == 7 })
	want := []string{"one", "three", "two0", "two1", "two2", "two3", "two4"}
	if !slices.Equal(names(got), want) {
		t.Fatalf("after restart: %v, want %v", names(got), want)
	}
	// Close the reader first: an embedded etcd's Close waits (up to ~7s) for
	// other clients' open watch streams.
	if err := reader.Close(); err != nil {
		t.Fatal(err)
	}
}
