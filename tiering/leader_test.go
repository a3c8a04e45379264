package tiering

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/kafkaproto"
)

func ep(epoch int32, start int64) coordinator.EpochStart {
	return coordinator.EpochStart{Epoch: epoch, StartOffset: start}
}

func TestInLineage(t *testing.T) {
	history := []ManifestEpoch{{0, 0}, {2, 100}, {5, 300}}
	seg := func(start, end int64, epochs ...coordinator.EpochStart) coordinator.RemoteSegment {
		return coordinator.RemoteSegment{StartOffset: start, EndOffset: end, Epochs: epochs}
	}
	for _, tc := range []struct {
		name string
		r    coordinator.RemoteSegment
		want bool
	}{
		{"first epoch", seg(0, 99, ep(0, 0)), true},
		{"two epochs", seg(50, 149, ep(0, 50), ep(2, 100)), true},
		{"latest epoch reaches on", seg(300, 900, ep(5, 300)), true},
		{"unknown epoch", seg(100, 199, ep(3, 100)), false},
		{"epoch runs past its end here", seg(250, 350, ep(2, 250)), false},
		{"epoch starts earlier there", seg(90, 120, ep(2, 90)), false},
		{"no epochs recorded", seg(0, 10), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := inLineage(tc.r, history); got != tc.want {
				t.Fatalf("inLineage(%+v) = %v, want %v", tc.r, got, tc.want)
			}
		})
	}
	// History trimmed at a log start of 160: a segment straddling it with
	// an epoch from before stays.
	if !inLineage(seg(100, 199, ep(0, 100), ep(2, 150)), []ManifestEpoch{{2, 160}, {5, 300}}) {
		t.Fatal("a segment straddling the log start was refused")
	}
	if !inLineage(seg(0, 5, ep(7, 0)), nil) {
		t.Fatal("an empty history refused a segment")
	}
}

// addMultiSegment seals a segment of batches batches of n records each.
func (f *fakePart) addMultiSegment(t *testing.T, batches, n int, ts int64) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	base := f.leo
	var all []byte
	for b := 0; b < batches; b++ {
		recs := make([]kafkaproto.Record, n)
		for i := range recs {
			recs[i] = kafkaproto.Record{OffsetDelta: int32(i), Value: fmt.Appendf(nil, "v%d", f.leo+int64(i))}
		}
		bt, err := kafkaproto.BuildBatch(kafkaproto.BatchHeader{BaseTimestamp: ts + int64(b), MaxTimestamp: ts + int64(b), ProducerID: -1, BaseSequence: -1}, recs, kafkaproto.CodecNone)
		if err != nil {
			t.Fatal(err)
		}
		kafkaproto.StampBaseOffset(bt, f.leo)
		f.data[f.leo] = bt
		all = append(all, bt...)
		f.leo += int64(n)
	}
	lp := filepath.Join(f.dir, fmt.Sprintf("%020d.log", base))
	ip := filepath.Join(f.dir, fmt.Sprintf("%020d.index", base))
	tp := filepath.Join(f.dir, fmt.Sprintf("%020d.timeindex", base))
	for _, w := range []struct {
		p string
		b []byte
	}{{lp, all}, {ip, nil}, {tp, nil}} {
		if err := os.WriteFile(w.p, w.b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.segs = append(f.segs, LocalSegment{BaseOffset: base, NextOffset: f.leo, Size: int64(len(all)), MaxTimestamp: ts + int64(batches-1),
		LogPath: lp, IndexPath: ip, TimeIndexPath: tp})
}

func TestSliceSegment(t *testing.T) {
	f := newFakePart(t, "t", [16]byte{1})
	f.addMultiSegment(t, 5, 10, 1000)
	seg := f.segs[0]
	part, err := sliceSegment(seg, 20, 1)
	if err != nil {
		t.Fatal(err)
	}
	skip := int64(len(f.data[0]) + len(f.data[10]))
	if part.BaseOffset != 20 || part.NextOffset != 50 || part.pos != skip || part.Size != seg.Size-skip || part.MaxTimestamp != 1004 {
		t.Fatalf("slice %+v", part)
	}
	m := &Manifest{BaseOffset: 20, EndOffset: 49, LogSize: part.Size}
	offs, times, err := decodeRemoteIndexes(m, part.offIdx, part.timeIdx)
	if err != nil {
		t.Fatal(err)
	}
	// Interval 1 byte: every batch but the first is indexed.
	if len(offs) != 2 || offs[0].rel != 10 || int64(offs[0].pos) != int64(len(f.data[20])) || len(times) != 3 || times[2].ts != 1004 || times[2].rel != 29 {
		t.Fatalf("indexes %+v %+v", offs, times)
	}
	for _, bad := range []int64{25, 50, 0 - 1} {
		if _, err := sliceSegment(seg, bad, 1); err == nil {
			t.Fatalf("slice at %d accepted", bad)
		}
	}
}

// A new leader ignores and removes a deposed leader's upload outside its
// epoch lineage, and uploads only the part of a local segment past what
// is already in the remote tier: no gap, no overlap, reads exact.
func TestManagerLeaderChange(t *testing.T) {
	e := newManagerEnv(t, Config{})
	ctx := context.Background()
	now := time.Now().UnixMilli()
	e.part.addSegment(t, 10, now) // [0, 10) epoch 0
	e.m.RunOnce(ctx)
	if recs := e.records(t); len(recs) != 1 || recs[0].EndOffset != 9 {
		t.Fatalf("records %+v", recs)
	}
	// Broker 2 leads at epoch 1 and uploads [10, 19] of its own history.
	setLeader := func(leader, epoch int32) {
		t.Helper()
		topic, err := e.meta.Topic(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		ps := topic.Partitions[0]
		ps.Leader, ps.LeaderEpoch, ps.PartitionEpoch = leader, epoch, ps.PartitionEpoch+1
		ps.Replicas, ps.ISR = []int32{1, 2}, []int32{1, 2}
		if err := e.meta.UpdatePartition(ctx, "t", ps, topic.Partitions[0].PartitionEpoch); err != nil {
			t.Fatal(err)
		}
	}
	setLeader(2, 1)
	foreign := coordinator.RemoteSegment{TopicID: e.part.id, Partition: 0, ID: [16]byte{7}, StartOffset: 10, EndOffset: 19,
		BrokerID: 2, LeaderEpoch: 1, Epochs: []coordinator.EpochStart{{Epoch: 1, StartOffset: 10}}, SizeBytes: 50, State: coordinator.CopyStarted}
	f2 := coordinator.LeaderFence{Topic: "t", Partition: 0, BrokerID: 2, LeaderEpoch: 1}
	if err := e.meta.AddRemoteSegment(ctx, foreign, f2); err != nil {
		t.Fatal(err)
	}
	if err := e.meta.UpdateRemoteSegmentState(ctx, e.part.id, 0, foreign.ID, coordinator.CopyFinished, f2); err != nil {
		t.Fatal(err)
	}
	fkey := SegmentKey("t", e.part.id, 0, 10, foreign.ID, ExtLog)
	if err := e.store.Put(ctx, fkey, bytes.NewReader([]byte("deposed")), 7); err != nil {
		t.Fatal(err)
	}
	// Broker 1 leads again at epoch 2; its log never had epoch 1: from
	// offset 10 on it holds epoch 2, in one segment of three batches.
	setLeader(1, 2)
	e.part.mu.Lock()
	e.part.epoch = 2
	e.part.history = []ManifestEpoch{{0, 0}, {2, 10}}
	e.part.mu.Unlock()
	e.part.addMultiSegment(t, 3, 10, now) // [10, 40)
	e.m.RunOnce(ctx)
	recs := e.records(t)
	if len(recs) != 2 || recs[1].StartOffset != 10 || recs[1].EndOffset != 39 || recs[1].BrokerID != 1 || recs[1].LeaderEpoch != 2 {
		t.Fatalf("after the leader change: %+v", recs)
	}
	for _, o := range e.objects(t) {
		if o.Key == fkey {
			t.Fatal("the deposed leader's object is still there")
		}
	}
	// Another leader change (epoch 3, same broker, so same history) whose
	// local segments straddle what epoch 2 uploaded: [30, 60) in three
	// batches, with [30, 39] already remote. Only [40, 59] goes up.
	setLeader(1, 3)
	e.part.mu.Lock()
	e.part.epoch = 3
	e.part.leo = 30
	e.part.segs = e.part.segs[:1] // the local log re-rolled differently
	e.part.history = []ManifestEpoch{{0, 0}, {2, 10}, {3, 60}}
	e.part.mu.Unlock()
	e.part.addMultiSegment(t, 3, 10, now) // [30, 60) — rewritten identically
	e.m.RunOnce(ctx)
	recs = e.records(t)
	if len(recs) != 3 || recs[2].StartOffset != 40 || recs[2].EndOffset != 59 || recs[2].LeaderEpoch != 3 {
		t.Fatalf("after the straddling upload: %+v", recs)
	}
	if e.m.HighestUploadedOffset(e.part.id, 0) != 59 {
		t.Fatalf("highest uploaded %d", e.m.HighestUploadedOffset(e.part.id, 0))
	}
	b, err := e.m.Read(ctx, e.part.id, 0, 40, 1<<20, 60, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(append([]byte(nil), e.part.data[40]...), e.part.data[50]...); !bytes.Equal(b, want) {
		t.Fatalf("read of the slice: %d bytes, want %d", len(b), len(want))
	}
	// The records' epochs say which leader wrote the slice.
	if ep := recs[2].Epochs; len(ep) != 1 || ep[0] != (coordinator.EpochStart{Epoch: 2, StartOffset: 40}) {
		t.Fatalf("slice epochs %+v", ep)
	}
}
