package coordinator_test

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestTopicCreateGetListDelete(t *testing.T) {
	s := openStore(t, etcdtest.Start(t))
	ctx := testCtx(t)

	a := mkTopic("alpha", 3, 1)
	a.Configs = map[string]string{"retention.ms": "1000", "cleanup.policy": "delete"}
	b := mkTopic("beta.events_v2-x", 1, 1)
	for _, tp := range []coordinator.Topic{b, a} {
		if err := s.CreateTopic(ctx, tp); err != nil {
			t.Fatalf("create %s: %v", tp.Name, err)
		}
	}
	got, err := s.Topic(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	sameTopic(t, got, a)

	all, err := s.Topics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names(all), []string{"alpha", "beta.events_v2-x"}) {
		t.Fatalf("topics = %v", names(all))
	}
	sameTopic(t, all[0], a)
	sameTopic(t, all[1], b)

	dup := mkTopic("alpha", 1, 1)
	if err := s.CreateTopic(ctx, dup); !errors.Is(err, coordinator.ErrTopicExists) {
		t.Fatalf("create existing: %v, want ErrTopicExists", err)
	}
	if got, _ := s.Topic(ctx, "alpha"); got.ID != a.ID || len(got.Partitions) != 3 {
		t.Fatalf("failed create changed the topic: %+v", got)
	}

	if err := s.DeleteTopic(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Topic(ctx, "alpha"); !errors.Is(err, coordinator.ErrTopicNotFound) {
		t.Fatalf("get deleted: %v, want ErrTopicNotFound", err)
	}
	if err := s.DeleteTopic(ctx, "alpha"); !errors.Is(err, coordinator.ErrTopicNotFound) {
		t.Fatalf("delete deleted: %v, want ErrTopicNotFound", err)
	}
	all, err = s.Topics(ctx)
	if err != nil || !slices.Equal(names(all), []string{"beta.events_v2-x"}) {
		t.Fatalf("topics after delete = %v, %v", names(all), err)
	}
}

func TestCreateTopicRejectsInvalid(t *testing.T) {
	s := openStore(t, etcdtest.Start(t))
	ctx := testCtx(t)

	gap := mkTopic("gap", 3, 1)
	gap.Partitions[2].Partition = 3
	lateBad := mkTopic("late-bad", 1000, 1, 2)
	lateBad.Partitions[999].ISR = []int32{7}
	tests := []struct {
		name string
		mod  func(*coordinator.Topic)
		tp   coordinator.Topic
	}{
		{name: "empty name", tp: mkTopic("", 1, 1)},
		{name: "slash in name", tp: mkTopic("a/b", 1, 1)},
		{name: "dot", tp: mkTopic(".", 1, 1)},
		{name: "too long", tp: mkTopic(string(make([]byte, 250)), 1, 1)},
		{name: "zero id", tp: coordinator.Topic{Name: "zero", Partitions: partitions(0, 1, 1)}},
		{name: "no partitions", tp: coordinator.Topic{Name: "none", ID: newID()}},
		{name: "not dense", tp: gap},
		{name: "no replicas", tp: coordinator.Topic{Name: "norep", ID: newID(), Partitions: []coordinator.PartitionState{{Leader: -1}}}},
		{name: "repeated replica", tp: coordinator.Topic{Name: "rep", ID: newID(), Partitions: []coordinator.PartitionState{{Replicas: []int32{1, 1}, Leader: 1}}}},
		{name: "leader not replica", tp: coordinator.Topic{Name: "lead", ID: newID(), Partitions: []coordinator.PartitionState{{Replicas: []int32{1}, Leader: 2}}}},
		{name: "isr not subset, last of 1000", tp: lateBad},
		{name: "record too large", tp: mkTopic("huge", 60000, 1000001, 1000002, 1000003)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.CreateTopic(ctx, tc.tp); !errors.Is(err, coordinator.ErrInvalid) {
				t.Fatalf("create: %v, want ErrInvalid", err)
			}
		})
	}
	all, err := s.Topics(ctx)
	if err != nil || len(all) != 0 {
		t.Fatalf("invalid creates wrote topics: %v, %v", names(all), err)
	}
}

func TestCreateTopicThousandPartitionsAtomically(t *testing.T) {
	s := openStore(t, etcdtest.Start(t))
	ctx := testCtx(t)
	tp := mkTopic("big", 1000, 1, 2, 3)
	for i := range tp.Partitions {
		tp.Partitions[i].Leader = int32(1 + i%3)
	}
	before, err := s.Client().Get(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTopic(ctx, tp); err != nil {
		t.Fatal(err)
	}
	got, err := s.Topic(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	sameTopic(t, got, tp)
	// One transaction = one revision step.
	if got.Revision != before.Header.Revision+1 {
		t.Fatalf("topic revision %d, want %d (a single transaction)", got.Revision, before.Header.Revision+1)
	}
	// Partition updates on the big topic work at both ends.
	for _, p := range []int32{0, 999} {
		st := got.Partitions[p]
		st.ISR = st.Replicas[:1]
		st.Leader = st.Replicas[0]
		st.LeaderEpoch++
		st.PartitionEpoch++
		if err := s.UpdatePartition(ctx, "big", st, 0); err != nil {
			t.Fatalf("update %d: %v", p, err)
		}
		tp.Partitions[p] = st
	}
	got, err = s.Topic(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	sameTopic(t, got, tp)
	if err := s.DeleteTopic(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	left, err := s.Client().Get(ctx, s.Prefix()+"/topics/", clientv3.WithPrefix())
	if err != nil || left.Count != 0 {
		t.Fatalf("keys left after delete: %d, %v", left.Count, err)
	}
}

func TestCreateTopicTwentyThousandPartitionsFits(t *testing.T) {
	s := openStore(t, etcdtest.Start(t))
	ctx := testCtx(t)
	tp := mkTopic("huge-but-fits", 20000, 101, 102, 103)
	if err := s.CreateTopic(ctx, tp); err != nil {
		t.Fatalf("create 20000 partitions: %v", err)
	}
	got, err := s.Topic(ctx, tp.Name)
	if err != nil {
		t.Fatal(err)
	}
	sameTopic(t, got, tp)
}

func TestSetTopicConfigsCAS(t *testing.T) {
	s := openStore(t, etcdtest.Start(t))
	ctx := testCtx(t)
	if err := s.CreateTopic(ctx, mkTopic("cfg", 2, 1)); err != nil {
		t.Fatal(err)
	}
	t0, err := s.Topic(ctx, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"retention.ms": "60000", "remote.storage.enable": "true"}
	if err := s.SetTopicConfigs(ctx, "cfg", want, t0.Revision); err != nil {
		t.Fatal(err)
	}
	t1, err := s.Topic(ctx, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	if t1.Revision <= t0.Revision || len(t1.Configs) != 2 || t1.Configs["retention.ms"] != "60000" || len(t1.Partitions) != 2 {
		t.Fatalf("after set: rev %d (was %d) configs %v partitions %d", t1.Revision, t0.Revision, t1.Configs, len(t1.Partitions))
	}

	tests := []struct {
		name    string
		topic   string
		rev     int64
		wantErr error
	}{
		{"stale revision", "cfg", t0.Revision, coordinator.ErrConflict},
		{"future revision", "cfg", t1.Revision + 100, coordinator.ErrConflict},
		{"missing topic", "nope", t1.Revision, coordinator.ErrTopicNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.SetTopicConfigs(ctx, tc.topic, map[string]string{"retention.ms": "1"}, tc.rev)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("set: %v, want %v", err, tc.wantErr)
			}
		})
	}
	t2, err := s.Topic(ctx, "cfg")
	if err != nil || t2.Revision != t1.Revision || t2.Configs["retention.ms"] != "60000" {
		t.Fatalf("failed CAS changed the topic: %+v, %v", t2, err)
	}
	// Racing writers with the same revision: exactly one wins.
	wins := race(t, 8, func(i int) error {
		return s.SetTopicConfigs(ctx, "cfg", map[string]string{"segment.ms": string(rune('a' + i))}, t2.Revision)
	})
	if wins != 1 {
		t.Fatalf("%d concurrent SetTopicConfigs won, want 1", wins)
	}
}

func TestAddPartitions(t *testing.T) {
	s := openStore(t, etcdtest.Start(t))
	ctx := testCtx(t)
	tp := mkTopic("grow", 2, 1)
	if err := s.CreateTopic(ctx, tp); err != nil {
		t.Fatal(err)
	}
	t0, _ := s.Topic(ctx, "grow")
	tests := []struct {
		name    string
		topic   string
		parts   []coordinator.PartitionState
		rev     int64
		wantErr error
	}{
		{"gap", "grow", partitions(3, 1, 1), t0.Revision, coordinator.ErrInvalid},
		{"overlap", "grow", partitions(1, 2, 1), t0.Revision, coordinator.ErrInvalid},
		{"empty", "grow", nil, t0.Revision, coordinator.ErrInvalid},
		{"stale", "grow", partitions(2, 1, 1), t0.Revision - 1, coordinator.ErrConflict},
		{"missing", "nope", partitions(0, 1, 1), t0.Revision, coordinator.ErrTopicNotFound},
		{"ok", "grow", partitions(2, 3, 1), t0.Revision, nil},
		{"same revision again", "grow", partitions(5, 1, 1), t0.Revision, coordinator.ErrConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.AddPartitions(ctx, tc.topic, tc.parts, tc.rev)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("add: %v, want %v", err, tc.wantErr)
			}
		})
	}
	tp.Partitions = append(tp.Partitions, partitions(2, 3, 1)...)
	got, err := s.Topic(ctx, "grow")
	if err != nil {
		t.Fatal(err)
	}
	sameTopic(t, got, tp)
}

func TestUpdatePartitionCAS(t *testing.T) {
	s := openStore(t, etcdtest.Start(t))
	ctx := testCtx(t)
	tp := mkTopic("upd", 2, 1, 2, 3)
	if err := s.CreateTopic(ctx, tp); err != nil {
		t.Fatal(err)
	}
	t0, _ := s.Topic(ctx, "upd")

	next := func(base coordinator.PartitionState, leader int32, isr ...int32) coordinator.PartitionState {
		base.Replicas = slices.Clone(base.Replicas)
		base.Leader, base.ISR = leader, isr
		base.LeaderEpoch++
		base.PartitionEpoch++
		return base
	}
	p1 := next(tp.Partitions[0], 2, 2, 3)
	p2 := next(p1, 3, 3)
	bad := p1
	bad.PartitionEpoch = 5
	outOfRange := p1
	outOfRange.Partition = 7
	invalid := next(tp.Partitions[0], 9, 9)

	tests := []struct {
		name     string
		topic    string
		st       coordinator.PartitionState
		expected int32
		wantErr  error
	}{
		{"first change", "upd", p1, 0, nil},
		{"stale epoch", "upd", p1, 0, coordinator.ErrConflict},
		{"epoch not expected+1", "upd", bad, 1, coordinator.ErrConflict},
		{"leader not replica", "upd", invalid, 0, coordinator.ErrInvalid},
		{"no such partition", "upd", outOfRange, 0, coordinator.ErrPartitionNotFound},
		{"no such topic", "nope", p1, 0, coordinator.ErrTopicNotFound},
		{"second change", "upd", p2, 1, nil},
		{"replay of second", "upd", p2, 1, coordinator.ErrConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.UpdatePartition(ctx, tc.topic, tc.st, tc.expected)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("update: %v, want %v", err, tc.wantErr)
			}
		})
	}
	got, err := s.Topic(ctx, "upd")
	if err != nil {
		t.Fatal(err)
	}
	samePartition(t, got.Partitions[0], p2)
	samePartition(t, got.Partitions[1], tp.Partitions[1])
	if got.Revision != t0.Revision {
		t.Fatalf("partition updates moved the topic revision %d -> %d", t0.Revision, got.Revision)
	}
	// Config CAS still succeeds with the revision read before the updates.
	if err := s.SetTopicConfigs(ctx, "upd", map[string]string{"min.insync.replicas": "2"}, t0.Revision); err != nil {
		t.Fatalf("set configs after partition updates: %v", err)
	}
	if got, _ := s.Topic(ctx, "upd"); got.Partitions[0].PartitionEpoch != 2 {
		t.Fatalf("config change lost partition state: %+v", got.Partitions[0])
	}

	// Racing controllers with the same expected epoch: exactly one wins, and
	// racing updates of different partitions all succeed.
	wins := race(t, 8, func(i int) error {
		return s.UpdatePartition(ctx, "upd", next(p2, 3, 3), 2)
	})
	if wins != 1 {
		t.Fatalf("%d concurrent updates of one epoch won, want 1", wins)
	}
	if err := s.UpdatePartition(ctx, "upd", next(tp.Partitions[1], 2, 2), 0); err != nil {
		t.Fatal(err)
	}

	// Fenced by topic ID: the right ID passes, a wrong one is not found.
	cur, err := s.Topic(ctx, "upd")
	if err != nil {
		t.Fatal(err)
	}
	p1now := cur.Partitions[1]
	if err := s.UpdatePartitionFenced(ctx, "upd", newID(), next(p1now, 3, 3), p1now.PartitionEpoch); !errors.Is(err, coordinator.ErrTopicNotFound) {
		t.Fatalf("fenced update with a wrong topic id: %v, want ErrTopicNotFound", err)
	}
	if err := s.UpdatePartitionFenced(ctx, "upd", tp.ID, next(p1now, 3, 3), p1now.PartitionEpoch); err != nil {
		t.Fatalf("fenced update with the right topic id: %v", err)
	}

	// Delete and re-create: the new topic starts from its own initial state,
	// and an update fenced on the old ID cannot reach it.
	if err := s.DeleteTopic(ctx, "upd"); err != nil {
		t.Fatal(err)
	}
	again := mkTopic("upd", 2, 4)
	if err := s.CreateTopic(ctx, again); err != nil {
		t.Fatal(err)
	}
	stale := next(again.Partitions[0], 4, 4)
	if err := s.UpdatePartitionFenced(ctx, "upd", tp.ID, stale, 0); !errors.Is(err, coordinator.ErrTopicNotFound) {
		t.Fatalf("update fenced on the deleted topic's id: %v, want ErrTopicNotFound", err)
	}
	got, err = s.Topic(ctx, "upd")
	if err != nil {
		t.Fatal(err)
	}
	sameTopic(t, got, again)
}

// race runs n calls of f concurrently and returns how many returned nil; every
// other call must fail with ErrConflict.
func race(t *testing.T, n int, f func(i int) error) int {
	t.Helper()
	var (
		mu   sync.Mutex
		wins int
		wg   sync.WaitGroup
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f(i)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, coordinator.ErrConflict):
				t.Errorf("racing call %d: %v, want nil or ErrConflict", i, err)
			}
		}()
	}
	wg.Wait()
	return wins
}
