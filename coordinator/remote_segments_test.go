package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stratabroker/strata/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// These tests are internal (package coordinator) to reach the page size and
// the hook that runs between a fenced read and its write.

func rsOpen(t *testing.T, eps []string, dial time.Duration) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Open(ctx, Config{Endpoints: eps, DialTimeout: dial, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func rsCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rsTopic creates topic name with n partitions on replicas {1,2,3}, led by
// broker 1 at epoch 0, and returns its ID.
func rsTopic(t *testing.T, s *Store, name string, n int) [16]byte {
	t.Helper()
	tp := Topic{Name: name, ID: uuid.New(), Configs: map[string]string{}}
	for i := range n {
		tp.Partitions = append(tp.Partitions, PartitionState{Partition: int32(i), Replicas: []int32{1, 2, 3}, Leader: 1, ISR: []int32{1, 2, 3}})
	}
	if err := s.CreateTopic(rsCtx(t), tp); err != nil {
		t.Fatal(err)
	}
	return tp.ID
}

// rsSetLeader writes partition p's state with the given leader, epoch and ISR.
func rsSetLeader(t *testing.T, s *Store, topic string, p, leader, epoch int32, isr ...int32) {
	t.Helper()
	ctx := rsCtx(t)
	tp, err := s.Topic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	cur := tp.Partitions[p]
	next := PartitionState{Partition: p, Replicas: cur.Replicas, Leader: leader, LeaderEpoch: epoch, ISR: isr, PartitionEpoch: cur.PartitionEpoch + 1}
	if err := s.UpdatePartition(ctx, topic, next, cur.PartitionEpoch); err != nil {
		t.Fatal(err)
	}
}

func rsSeg(topicID [16]byte, p int32, start, end int64, f LeaderFence) RemoteSegment {
	return RemoteSegment{
		TopicID: topicID, Partition: p, ID: uuid.New(), StartOffset: start, EndOffset: end,
		MaxTimestamp: 1_700_000_000_000 + start, BrokerID: f.BrokerID, LeaderEpoch: f.LeaderEpoch,
		Epochs:    []EpochStart{{Epoch: f.LeaderEpoch, StartOffset: start}},
		SizeBytes: 1000 * (end - start + 1), State: CopyStarted, StateTimeMs: 1_700_000_000_000,
	}
}

func rsList(t *testing.T, s *Store, topicID [16]byte, p int32) []RemoteSegment {
	t.Helper()
	segs, err := s.RemoteSegments(rsCtx(t), topicID, p)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// rsSame compares everything but StateTimeMs (compared by callers when it matters).
func rsSame(t *testing.T, got, want RemoteSegment) {
	t.Helper()
	g, w := got, want
	g.StateTimeMs, w.StateTimeMs = 0, 0
	if !sameRemoteSegment(g, w) {
		t.Fatalf("segment =\n %+v, want\n %+v", got, want)
	}
}

func TestRemoteSegmentCodec(t *testing.T) {
	segs := []RemoteSegment{
		{StartOffset: 0, EndOffset: 0, State: CopyStarted},
		{StartOffset: 123_456, EndOffset: 130_000, MaxTimestamp: -1, BrokerID: 3, LeaderEpoch: 7, SizeBytes: 1 << 30,
			Epochs: []EpochStart{{5, 123_456}, {6, 125_000}, {7, 129_999}}, State: CopyFinished, StateTimeMs: 1_760_000_000_000},
		{StartOffset: 1<<63 - 2, EndOffset: 1<<63 - 1, MaxTimestamp: 1<<63 - 1, BrokerID: 1<<31 - 1, LeaderEpoch: 1<<31 - 1,
			SizeBytes: 1<<63 - 1, State: DeleteStarted, StateTimeMs: -1 << 63},
	}
	for i, in := range segs {
		val := encodeRemoteSegment(in)
		var out RemoteSegment
		if err := decodeRemoteSegment(val, &out); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		rsSame(t, out, in)
		if out.StateTimeMs != in.StateTimeMs {
			t.Fatalf("segment %d: state time %d, want %d", i, out.StateTimeMs, in.StateTimeMs)
		}
		for n := 0; n < len(val); n++ {
			if err := decodeRemoteSegment(val[:n], &out); err == nil {
				t.Fatalf("segment %d: prefix of %d/%d bytes decoded", i, n, len(val))
			}
		}
		if err := decodeRemoteSegment(append(slices.Clone(val), 0), &out); err == nil {
			t.Fatalf("segment %d: trailing byte accepted", i)
		}
	}
	// A typical record (three epochs, realistic offsets and times) is small.
	if n := len(encodeRemoteSegment(segs[1])); n > 64 {
		t.Fatalf("typical value is %d bytes, want <= 64", n)
	}
	bad := encodeRemoteSegment(segs[1])
	bad[0] = 2
	if err := decodeRemoteSegment(bad, &RemoteSegment{}); err == nil {
		t.Fatal("version 2 decoded")
	}
	bad[0], bad[1] = remoteFormatV1, byte(DeleteFinished)
	if err := decodeRemoteSegment(bad, &RemoteSegment{}); err == nil {
		t.Fatal("stored state delete-finished decoded")
	}
	if got := RemoteSegmentState(9).String(); got != "RemoteSegmentState(9)" {
		t.Fatalf("String of 9 = %q", got)
	}
	if got := DeleteStarted.String(); got != "delete-started" {
		t.Fatalf("String of DeleteStarted = %q", got)
	}
}

func FuzzDecodeRemoteSegment(f *testing.F) {
	f.Add(encodeRemoteSegment(RemoteSegment{StartOffset: 5, EndOffset: 9, Epochs: []EpochStart{{1, 5}}, State: CopyStarted}))
	f.Add([]byte{1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{1, 2, 2, 2, 0, 0, 0, 0, 0, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		var seg RemoteSegment
		if err := decodeRemoteSegment(b, &seg); err != nil {
			return
		}
		if seg.StartOffset < 0 || seg.EndOffset < seg.StartOffset || len(seg.Epochs) > maxSegmentEpochs {
			t.Fatalf("decoded an impossible record %+v", seg)
		}
		var again RemoteSegment
		if err := decodeRemoteSegment(encodeRemoteSegment(seg), &again); err != nil || !sameRemoteSegment(seg, again) {
			t.Fatalf("re-decode: %+v, %v; want %+v", again, err, seg)
		}
	})
}

func TestRemoteSegmentsLifecycle(t *testing.T) {
	s := rsOpen(t, etcdtest.Start(t), 5*time.Second)
	ctx := rsCtx(t)
	tid := rsTopic(t, s, "life", 2)
	f0 := LeaderFence{Topic: "life", Partition: 0, BrokerID: 1, LeaderEpoch: 0}

	t.Run("round trip", func(t *testing.T) {
		a := rsSeg(tid, 0, 100, 199, f0)
		b := rsSeg(tid, 0, 0, 99, f0)
		b.Epochs = nil
		c := rsSeg(tid, 0, 200, 299, f0)
		c.Epochs = []EpochStart{{0, 150}, {0 + 1, 210}, {0 + 2, 250}} // an epoch may start before the segment
		for _, seg := range []RemoteSegment{a, b, c} {
			if err := s.AddRemoteSegment(ctx, seg, f0); err != nil {
				t.Fatal(err)
			}
		}
		got := rsList(t, s, tid, 0)
		if len(got) != 3 {
			t.Fatalf("%d records, want 3", len(got))
		}
		for i, want := range []RemoteSegment{b, a, c} {
			rsSame(t, got[i], want)
			if got[i].StateTimeMs != want.StateTimeMs {
				t.Fatalf("record %d state time %d, want %d (as added)", i, got[i].StateTimeMs, want.StateTimeMs)
			}
		}
		if other := rsList(t, s, tid, 1); len(other) != 0 {
			t.Fatalf("partition 1 lists %d records, want 0", len(other))
		}

		before := time.Now().UnixMilli()
		if err := s.UpdateRemoteSegmentState(ctx, tid, 0, a.ID, CopyFinished, f0); err != nil {
			t.Fatal(err)
		}
		got = rsList(t, s, tid, 0)
		if got[1].ID != a.ID || got[1].State != CopyFinished || got[1].StateTimeMs < before || got[1].StateTimeMs > time.Now().UnixMilli() {
			t.Fatalf("after copy-finished: %+v (state time want >= %d)", got[1], before)
		}
		want := a
		want.State = CopyFinished
		rsSame(t, got[1], want)

		for _, to := range []RemoteSegmentState{DeleteStarted, DeleteFinished} {
			if err := s.UpdateRemoteSegmentState(ctx, tid, 0, a.ID, to, f0); err != nil {
				t.Fatalf("to %s: %v", to, err)
			}
		}
		got = rsList(t, s, tid, 0)
		if len(got) != 2 || got[0].ID != b.ID || got[1].ID != c.ID {
			t.Fatalf("after delete-finished: %+v", got)
		}
		// Both keys of the record are gone from etcd.
		for _, k := range []string{s.keys.remoteSegment(tid, 0, a.StartOffset, a.ID), s.keys.remoteSegmentID(tid, 0, a.ID)} {
			resp, err := s.cli.Get(ctx, k)
			if err != nil || len(resp.Kvs) != 0 {
				t.Fatalf("key %s after delete-finished: %v, %v", k, resp.Kvs, err)
			}
		}
		// Terminal state is idempotent; anything else on a gone record is not found.
		if err := s.UpdateRemoteSegmentState(ctx, tid, 0, a.ID, DeleteFinished, f0); err != nil {
			t.Fatalf("repeated delete-finished: %v", err)
		}
		if err := s.UpdateRemoteSegmentState(ctx, tid, 0, a.ID, CopyFinished, f0); !errors.Is(err, ErrSegmentNotFound) {
			t.Fatalf("copy-finished of a deleted record: %v, want ErrSegmentNotFound", err)
		}
		// A failed copy goes straight to delete.
		for _, to := range []RemoteSegmentState{DeleteStarted, DeleteFinished} {
			if err := s.UpdateRemoteSegmentState(ctx, tid, 0, b.ID, to, f0); err != nil {
				t.Fatalf("copy-started to %s: %v", to, err)
			}
		}
		if got := rsList(t, s, tid, 0); len(got) != 1 || got[0].ID != c.ID {
			t.Fatalf("after deleting the failed copy: %+v", got)
		}
	})

	t.Run("idempotent", func(t *testing.T) {
		seg := rsSeg(tid, 1, 0, 9, LeaderFence{BrokerID: 1})
		f1 := LeaderFence{Topic: "life", Partition: 1, BrokerID: 1}
		if err := s.AddRemoteSegment(ctx, seg, f1); err != nil {
			t.Fatal(err)
		}
		if err := s.AddRemoteSegment(ctx, seg, f1); err != nil {
			t.Fatalf("same add again: %v", err)
		}
		other := seg
		other.EndOffset = 19
		if err := s.AddRemoteSegment(ctx, other, f1); !errors.Is(err, ErrConflict) {
			t.Fatalf("different record under the same id: %v, want ErrConflict", err)
		}
		other = seg
		other.StartOffset, other.EndOffset = 10, 19
		if err := s.AddRemoteSegment(ctx, other, f1); !errors.Is(err, ErrConflict) {
			t.Fatalf("same id at another offset: %v, want ErrConflict", err)
		}
		if err := s.UpdateRemoteSegmentState(ctx, tid, 1, seg.ID, CopyFinished, f1); err != nil {
			t.Fatal(err)
		}
		first := rsList(t, s, tid, 1)
		if len(first) != 1 || first[0].State != CopyFinished {
			t.Fatalf("records %+v", first)
		}
		rev := first[0].StateTimeMs
		kv, err := s.cli.Get(ctx, s.keys.remoteSegment(tid, 1, 0, seg.ID))
		if err != nil || len(kv.Kvs) != 1 {
			t.Fatal(kv, err)
		}
		if err := s.UpdateRemoteSegmentState(ctx, tid, 1, seg.ID, CopyFinished, f1); err != nil {
			t.Fatalf("same state again: %v", err)
		}
		again, err := s.cli.Get(ctx, s.keys.remoteSegment(tid, 1, 0, seg.ID))
		if err != nil || len(again.Kvs) != 1 || again.Kvs[0].ModRevision != kv.Kvs[0].ModRevision {
			t.Fatalf("same-state update wrote: mod revision %v -> %v (%v)", kv.Kvs[0].ModRevision, again.Kvs, err)
		}
		if got := rsList(t, s, tid, 1); got[0].StateTimeMs != rev {
			t.Fatalf("state time moved on a no-op: %d -> %d", rev, got[0].StateTimeMs)
		}
		if err := s.AddRemoteSegment(ctx, seg, f1); !errors.Is(err, ErrConflict) {
			t.Fatalf("add of a record that moved on: %v, want ErrConflict", err)
		}
		if err := s.UpdateRemoteSegmentState(ctx, tid, 1, uuid.New(), CopyFinished, f1); !errors.Is(err, ErrSegmentNotFound) {
			t.Fatalf("unknown id: %v, want ErrSegmentNotFound", err)
		}
	})

	t.Run("transitions", func(t *testing.T) {
		// path[i] brings a fresh record from copy-started to state i+1.
		path := map[RemoteSegmentState][]RemoteSegmentState{
			CopyStarted: nil, CopyFinished: {CopyFinished}, DeleteStarted: {CopyFinished, DeleteStarted},
		}
		legal := map[[2]RemoteSegmentState]bool{
			{CopyStarted, CopyStarted}: true, {CopyStarted, CopyFinished}: true, {CopyStarted, DeleteStarted}: true,
			{CopyFinished, CopyFinished}: true, {CopyFinished, DeleteStarted}: true,
			{DeleteStarted, DeleteStarted}: true, {DeleteStarted, DeleteFinished}: true,
		}
		start := int64(1000)
		for _, from := range []RemoteSegmentState{CopyStarted, CopyFinished, DeleteStarted} {
			for to := RemoteSegmentState(0); to <= 5; to++ {
				t.Run(fmt.Sprintf("%s to %s", from, to), func(t *testing.T) {
					start += 10
					seg := rsSeg(tid, 0, start, start+9, f0)
					if err := s.AddRemoteSegment(ctx, seg, f0); err != nil {
						t.Fatal(err)
					}
					for _, st := range path[from] {
						if err := s.UpdateRemoteSegmentState(ctx, tid, 0, seg.ID, st, f0); err != nil {
							t.Fatal(err)
						}
					}
					err := s.UpdateRemoteSegmentState(ctx, tid, 0, seg.ID, to, f0)
					if legal[[2]RemoteSegmentState{from, to}] {
						if err != nil {
							t.Fatalf("legal transition: %v", err)
						}
					} else if !errors.Is(err, ErrInvalid) {
						t.Fatalf("illegal transition: %v, want ErrInvalid", err)
					}
					var state RemoteSegmentState // 0 = gone
					for _, r := range rsList(t, s, tid, 0) {
						if r.ID == seg.ID {
							state = r.State
						}
					}
					want := from
					if err == nil {
						want = to
					}
					if want == DeleteFinished {
						want = 0
					}
					if state != want {
						t.Fatalf("state after %s -> %s is %s, want %s", from, to, state, want)
					}
				})
			}
		}
	})

	t.Run("invalid", func(t *testing.T) {
		ok := rsSeg(tid, 0, 5000, 5009, f0)
		cases := []struct {
			name  string
			mod   func(*RemoteSegment, *LeaderFence)
			write bool
		}{
			{"state not copy-started", func(s *RemoteSegment, _ *LeaderFence) { s.State = CopyFinished }, false},
			{"zero topic id", func(s *RemoteSegment, _ *LeaderFence) { s.TopicID = [16]byte{} }, false},
			{"zero segment id", func(s *RemoteSegment, _ *LeaderFence) { s.ID = [16]byte{} }, false},
			{"negative start", func(s *RemoteSegment, _ *LeaderFence) { s.StartOffset = -1 }, false},
			{"end before start", func(s *RemoteSegment, _ *LeaderFence) { s.EndOffset = s.StartOffset - 1 }, false},
			{"negative size", func(s *RemoteSegment, _ *LeaderFence) { s.SizeBytes = -1 }, false},
			{"partition mismatch", func(s *RemoteSegment, _ *LeaderFence) { s.Partition = 1 }, false},
			{"broker mismatch", func(s *RemoteSegment, _ *LeaderFence) { s.BrokerID = 2 }, false},
			{"epoch mismatch", func(s *RemoteSegment, _ *LeaderFence) { s.LeaderEpoch = 1 }, false},
			{"epochs unsorted", func(s *RemoteSegment, _ *LeaderFence) {
				s.Epochs = []EpochStart{{0, 5005}, {0, 5006}}
			}, false},
			{"epoch past end", func(s *RemoteSegment, _ *LeaderFence) { s.Epochs = []EpochStart{{0, 5010}} }, false},
			{"bad topic name", func(_ *RemoteSegment, f *LeaderFence) { f.Topic = "a/b" }, false},
			{"negative fence epoch", func(s *RemoteSegment, f *LeaderFence) { f.LeaderEpoch, s.LeaderEpoch = -1, -1 }, false},
		}
		for _, c := range cases {
			seg, f := ok, f0
			seg.Epochs = slices.Clone(ok.Epochs)
			c.mod(&seg, &f)
			if err := s.AddRemoteSegment(ctx, seg, f); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", c.name, err)
			}
		}
		if err := s.UpdateRemoteSegmentState(ctx, tid, 1, ok.ID, CopyFinished, f0); !errors.Is(err, ErrInvalid) {
			t.Errorf("update with partition not the fence's: %v, want ErrInvalid", err)
		}
		if _, err := s.RemoteSegments(ctx, tid, -1); !errors.Is(err, ErrInvalid) {
			t.Errorf("list partition -1: %v, want ErrInvalid", err)
		}
		for _, r := range rsList(t, s, tid, 0) {
			if r.StartOffset >= 5000 {
				t.Fatalf("an invalid add wrote %+v", r)
			}
		}
	})
}

func TestRemoteSegmentsFencing(t *testing.T) {
	s := rsOpen(t, etcdtest.Start(t), 5*time.Second)
	ctx := rsCtx(t)
	tid := rsTopic(t, s, "fence", 1)
	f := LeaderFence{Topic: "fence", Partition: 0, BrokerID: 1, LeaderEpoch: 0}
	seg := rsSeg(tid, 0, 0, 9, f)
	if err := s.AddRemoteSegment(ctx, seg, f); err != nil {
		t.Fatal(err)
	}

	// Not the leader, or not at this epoch.
	for _, bad := range []LeaderFence{{"fence", 0, 2, 0}, {"fence", 0, 1, 1}} {
		s2 := rsSeg(tid, 0, 10, 19, bad)
		if err := s.AddRemoteSegment(ctx, s2, bad); !errors.Is(err, ErrFenced) {
			t.Fatalf("add under %+v: %v, want ErrFenced", bad, err)
		}
		if err := s.UpdateRemoteSegmentState(ctx, tid, 0, seg.ID, CopyFinished, bad); !errors.Is(err, ErrFenced) {
			t.Fatalf("update under %+v: %v, want ErrFenced", bad, err)
		}
	}

	// An ISR-only change between the read and the write: retried, succeeds.
	calls := 0
	err := s.updateRemoteSegmentState(ctx, tid, 0, seg.ID, CopyFinished, f, func(attempt int) {
		calls++
		if attempt == 0 {
			rsSetLeader(t, s, "fence", 0, 1, 0, 1, 2)
		}
	})
	if err != nil || calls != 2 {
		t.Fatalf("update across an ISR change: %v after %d writes, want success after 2", err, calls)
	}
	calls = 0
	s3 := rsSeg(tid, 0, 10, 19, f)
	err = s.addRemoteSegment(ctx, s3, f, func(attempt int) {
		calls++
		if attempt == 0 {
			rsSetLeader(t, s, "fence", 0, 1, 0, 1)
		}
	})
	if err != nil || calls != 2 {
		t.Fatalf("add across an ISR change: %v after %d writes, want success after 2", err, calls)
	}

	// The epoch moves between the read and the write: nothing is written.
	s4 := rsSeg(tid, 0, 20, 29, f)
	err = s.addRemoteSegment(ctx, s4, f, func(attempt int) {
		if attempt == 0 {
			rsSetLeader(t, s, "fence", 0, 1, 1, 1)
		}
	})
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("add across an epoch bump: %v, want ErrFenced", err)
	}
	fe1 := LeaderFence{Topic: "fence", Partition: 0, BrokerID: 1, LeaderEpoch: 1}
	err = s.updateRemoteSegmentState(ctx, tid, 0, s3.ID, CopyFinished, fe1, func(attempt int) {
		if attempt == 0 {
			rsSetLeader(t, s, "fence", 0, 2, 2, 2)
		}
	})
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("update across a leader move: %v, want ErrFenced", err)
	}
	got := rsList(t, s, tid, 0)
	if len(got) != 2 || got[0].ID != seg.ID || got[0].State != CopyFinished || got[1].ID != s3.ID || got[1].State != CopyStarted {
		t.Fatalf("records after fenced writes: %+v", got)
	}
	// The new leader at the new epoch writes.
	f2 := LeaderFence{Topic: "fence", Partition: 0, BrokerID: 2, LeaderEpoch: 2}
	if err := s.UpdateRemoteSegmentState(ctx, tid, 0, s3.ID, DeleteStarted, f2); err != nil {
		t.Fatalf("new leader: %v", err)
	}
	if err := s.UpdateRemoteSegmentState(ctx, tid, 0, s3.ID, DeleteFinished, f); !errors.Is(err, ErrFenced) {
		t.Fatalf("old leader: %v, want ErrFenced", err)
	}

	// Contention that never stops is bounded.
	calls = 0
	err = s.addRemoteSegment(ctx, rsSeg(tid, 0, 40, 49, f2), f2, func(int) {
		calls++
		rsSetLeader(t, s, "fence", 0, 2, 2, 2, 3)
	})
	if !errors.Is(err, ErrConflict) || calls != remoteAttempts {
		t.Fatalf("endless ISR churn: %v after %d writes, want ErrConflict after %d", err, calls, remoteAttempts)
	}

	// Missing partition, missing topic, re-created topic.
	fp := LeaderFence{Topic: "fence", Partition: 3, BrokerID: 2, LeaderEpoch: 2}
	if err := s.AddRemoteSegment(ctx, rsSeg(tid, 3, 0, 9, fp), fp); !errors.Is(err, ErrFenced) || !errors.Is(err, ErrPartitionNotFound) {
		t.Fatalf("missing partition: %v, want ErrFenced and ErrPartitionNotFound", err)
	}
	if err := s.DeleteTopic(ctx, "fence"); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateRemoteSegmentState(ctx, tid, 0, s3.ID, DeleteFinished, f2); !errors.Is(err, ErrFenced) || !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("deleted topic: %v, want ErrFenced and ErrTopicNotFound", err)
	}
	rsTopic(t, s, "fence", 1) // same name, new id, broker 1 leads at epoch 0 again
	f0 := LeaderFence{Topic: "fence", Partition: 0, BrokerID: 1, LeaderEpoch: 0}
	if err := s.AddRemoteSegment(ctx, rsSeg(tid, 0, 50, 59, f0), f0); !errors.Is(err, ErrFenced) || !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("re-created topic: %v, want ErrFenced and ErrTopicNotFound", err)
	}
	// Records of the deleted topic are still listed (for cleanup).
	if got := rsList(t, s, tid, 0); len(got) != 2 {
		t.Fatalf("deleted topic lists %d records, want 2", len(got))
	}
}

// rsPut writes records straight to etcd, 60 per transaction (two keys each,
// under etcd's 128 operations).
func rsPut(t *testing.T, s *Store, segs []RemoteSegment) {
	t.Helper()
	ctx := rsCtx(t)
	for i := 0; i < len(segs); i += 60 {
		var ops []clientv3.Op
		for _, seg := range segs[i:min(i+60, len(segs))] {
			ops = append(ops,
				clientv3.OpPut(s.keys.remoteSegment(seg.TopicID, seg.Partition, seg.StartOffset, seg.ID), string(encodeRemoteSegment(seg))),
				clientv3.OpPut(s.keys.remoteSegmentID(seg.TopicID, seg.Partition, seg.ID), strconv.FormatInt(seg.StartOffset, 10)))
		}
		if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRemoteSegmentsPaging(t *testing.T) {
	s := rsOpen(t, etcdtest.Start(t), 5*time.Second)
	ctx := rsCtx(t)
	tid := uuid.New()
	f := LeaderFence{BrokerID: 1}
	const n = 2500
	var segs []RemoteSegment
	// Inserted out of order; every 10th start offset has three attempts whose
	// state times run against their ids' order.
	for i := n - 1; len(segs) < n; i-- {
		seg := rsSeg(tid, 1, int64(i)*100, int64(i)*100+99, f)
		seg.StateTimeMs = int64(i)
		if i%10 == 0 {
			seg.ID[0] = 0x30
		}
		segs = append(segs, seg)
		if i%10 == 0 {
			// Key order: 0x10…, 0x20…, 0x30…; state-time order: 0x20…, 0x10…, 0x30….
			for k := 1; k <= 2 && len(segs) < n; k++ {
				dup := seg
				dup.ID = uuid.New()
				dup.ID[0] = byte(0x10 * k)
				dup.StateTimeMs = int64(i) - int64(k)
				segs = append(segs, dup)
			}
		}
	}
	rsPut(t, s, segs)
	// Neighbours that must not leak into partition 1: partition 10 and 11,
	// and another topic.
	rsPut(t, s, []RemoteSegment{rsSeg(tid, 10, 0, 9, f), rsSeg(tid, 11, 0, 9, f), rsSeg(uuid.New(), 1, 0, 9, f)})

	want := slices.Clone(segs)
	slices.SortFunc(want, func(a, b RemoteSegment) int {
		if a.StartOffset != b.StartOffset {
			return int(a.StartOffset/100 - b.StartOffset/100)
		}
		return int(a.StateTimeMs - b.StateTimeMs)
	})
	for _, page := range []int{7, remotePageSize, n} {
		got, err := s.listRemoteSegments(ctx, tid, 1, page)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if len(got) != n {
			t.Fatalf("page %d: %d records, want %d", page, len(got), n)
		}
		for i := range want {
			if got[i].ID != want[i].ID || got[i].StartOffset != want[i].StartOffset || got[i].StateTimeMs != want[i].StateTimeMs {
				t.Fatalf("page %d: record %d = %d/%d/%x, want %d/%d/%x", page, i,
					got[i].StartOffset, got[i].StateTimeMs, got[i].ID, want[i].StartOffset, want[i].StateTimeMs, want[i].ID)
			}
		}
		rsSame(t, got[n-1], want[n-1])
	}
	if got := rsList(t, s, tid, 10); len(got) != 1 || got[0].Partition != 10 {
		t.Fatalf("partition 10: %+v", got)
	}
}

func TestDeleteAllRemoteSegmentsAndTopicIDs(t *testing.T) {
	s := rsOpen(t, etcdtest.Start(t), 5*time.Second)
	ctx := rsCtx(t)
	if ids, err := s.RemoteTopicIDs(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("no records: %v, %v", ids, err)
	}
	a, b, c := [16]byte{0xaa, 1}, [16]byte{0x01, 2}, [16]byte{0xff, 3}
	f := LeaderFence{BrokerID: 1}
	var segs []RemoteSegment
	for _, id := range [][16]byte{a, b, c} {
		for p := range int32(3) {
			for i := range int64(4) {
				segs = append(segs, rsSeg(id, p, i*10, i*10+9, f))
			}
		}
	}
	rsPut(t, s, segs)
	// A stray key under remote/ is stepped over.
	if _, err := s.cli.Put(ctx, s.keys.remote()+"stray", "x"); err != nil {
		t.Fatal(err)
	}
	ids, err := s.RemoteTopicIDs(ctx)
	if err != nil || !slices.Equal(ids, [][16]byte{b, a, c}) {
		t.Fatalf("topic ids %x, %v; want %x", ids, err, [][16]byte{b, a, c})
	}
	if err := s.DeleteAllRemoteSegments(ctx, a); err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		if got := rsList(t, s, a, p); len(got) != 0 {
			t.Fatalf("topic a partition %d: %d records after delete", p, len(got))
		}
		if got := rsList(t, s, b, p); len(got) != 4 {
			t.Fatalf("topic b partition %d: %d records, want 4", p, len(got))
		}
	}
	resp, err := s.cli.Get(ctx, s.keys.remoteTopic(a), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("keys left under topic a: %v, %v", resp.Count, err)
	}
	ids, err = s.RemoteTopicIDs(ctx)
	if err != nil || !slices.Equal(ids, [][16]byte{b, c}) {
		t.Fatalf("topic ids after delete %x, %v", ids, err)
	}
	if err := s.DeleteAllRemoteSegments(ctx, a); err != nil {
		t.Fatalf("delete again: %v", err)
	}
	if err := s.DeleteAllRemoteSegments(ctx, [16]byte{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero id: %v, want ErrInvalid", err)
	}
}

func TestRemoteSegmentsEtcdGone(t *testing.T) {
	t.Parallel() // mostly waiting on timeouts
	ctx := rsCtx(t)
	owner, err := Open(ctx, Config{EmbedDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	s := rsOpen(t, owner.Endpoints(), 500*time.Millisecond)
	tid := rsTopic(t, s, "gone", 1)
	f := LeaderFence{Topic: "gone", Partition: 0, BrokerID: 1}
	seg := rsSeg(tid, 0, 0, 9, f)
	if err := s.AddRemoteSegment(ctx, seg, f); err != nil {
		t.Fatal(err)
	}
	if err := owner.Close(); err != nil { // stops the embedded etcd
		t.Fatal(err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"add", func() error { return s.AddRemoteSegment(ctx, rsSeg(tid, 0, 10, 19, f), f) }},
		{"update", func() error { return s.UpdateRemoteSegmentState(ctx, tid, 0, seg.ID, CopyFinished, f) }},
		{"list", func() error { _, err := s.RemoteSegments(ctx, tid, 0); return err }},
		{"delete all", func() error { return s.DeleteAllRemoteSegments(ctx, tid) }},
		{"topic ids", func() error { _, err := s.RemoteTopicIDs(ctx); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			err := c.call()
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%s with etcd gone: %v, want ErrUnavailable", c.name, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("%s took %s with a 500ms timeout", c.name, d)
			}
		})
	}
}
