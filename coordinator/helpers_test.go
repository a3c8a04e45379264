package coordinator_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stratabroker/strata/coordinator"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openStore opens a Store on eps, closed by t.Cleanup.
func openStore(t testing.TB, eps []string, mod ...func(*coordinator.Config)) *coordinator.Store {
	t.Helper()
	cfg := coordinator.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: quietLogger()}
	for _, m := range mod {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := coordinator.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 20ms until it returns true or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newID() [16]byte { return uuid.New() }

// partitions returns n partitions with replicas reps, led by reps[0].
func partitions(from, n int, reps ...int32) []coordinator.PartitionState {
	out := make([]coordinator.PartitionState, n)
	for i := range out {
		out[i] = coordinator.PartitionState{
			Partition: int32(from + i),
			Replicas:  slices.Clone(reps),
			Leader:    reps[0],
			ISR:       slices.Clone(reps),
		}
	}
	return out
}

func mkTopic(name string, n int, reps ...int32) coordinator.Topic {
	return coordinator.Topic{Name: name, ID: newID(), Configs: map[string]string{}, Partitions: partitions(0, n, reps...)}
}

// sameTopic compares everything but Revision.
func sameTopic(t testing.TB, got, want coordinator.Topic) {
	t.Helper()
	if got.Name != want.Name || got.ID != want.ID {
		t.Fatalf("topic = %s/%x, want %s/%x", got.Name, got.ID, want.Name, want.ID)
	}
	if len(got.Configs) != len(want.Configs) {
		t.Fatalf("topic %s configs = %v, want %v", want.Name, got.Configs, want.Configs)
	}
	for k, v := range want.Configs {
		if got.Configs[k] != v {
			t.Fatalf("topic %s configs = %v, want %v", want.Name, got.Configs, want.Configs)
		}
	}
	if len(got.Partitions) != len(want.Partitions) {
		t.Fatalf("topic %s has %d partitions, want %d", want.Name, len(got.Partitions), len(want.Partitions))
	}
	for i := range want.Partitions {
		samePartition(t, got.Partitions[i], want.Partitions[i])
	}
	if got.Revision <= 0 {
		t.Fatalf("topic %s revision %d, want > 0", want.Name, got.Revision)
	}
}

func samePartition(t testing.TB, got, want coordinator.PartitionState) {
	t.Helper()
	if got.Partition != want.Partition || got.Leader != want.Leader || got.LeaderEpoch != want.LeaderEpoch ||
		got.PartitionEpoch != want.PartitionEpoch || !slices.Equal(got.Replicas, want.Replicas) || !slices.Equal(got.ISR, want.ISR) {
		t.Fatalf("partition state = %+v, want %+v", got, want)
	}
}

func names(ts []coordinator.Topic) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}
