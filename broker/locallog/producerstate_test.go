package locallog

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratabroker/strata/kafkaproto"
)

// idemBatch builds a batch of n records of producer pid/epoch starting at
// sequence seq; values are "v<offset>" for offsets from first.
func idemBatch(t testing.TB, pid int64, epoch int16, seq int32, first int64, n int) []byte {
	t.Helper()
	recs := make([]kafkaproto.Record, n)
	for i := range recs {
		recs[i] = kafkaproto.Record{OffsetDelta: int32(i), TimestampDelta: int64(i), Value: fmt.Appendf(nil, "v%d", first+int64(i))}
	}
	b, err := kafkaproto.BuildBatch(kafkaproto.BatchHeader{BaseTimestamp: 1000, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq}, recs, kafkaproto.CodecNone)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// appendIdem appends an idempotent batch as leader and checks that it was
// written at the log end.
func appendIdem(t testing.TB, l *Log, pid int64, epoch int16, seq int32, n int) AppendResult {
	t.Helper()
	leo := l.LogEndOffset()
	res, err := l.AppendAsLeader(idemBatch(t, pid, epoch, seq, leo, n), 0)
	if err != nil {
		t.Fatalf("append producer %d epoch %d seq %d at %d: %v", pid, epoch, seq, leo, err)
	}
	if res.Duplicate || res.FirstOffset != leo || res.LastOffset != leo+int64(n)-1 {
		t.Fatalf("append producer %d seq %d at %d: %+v", pid, seq, leo, res)
	}
	return res
}

// expectDup resends a batch and checks it is answered with the original
// offsets and nothing is written.
func expectDup(t testing.TB, l *Log, pid int64, epoch int16, seq int32, n int, first int64) {
	t.Helper()
	leo, size := l.LogEndOffset(), l.Size()
	res, err := l.AppendAsLeader(idemBatch(t, pid, epoch, seq, first, n), 0)
	if err != nil {
		t.Fatalf("resend producer %d seq %d: %v", pid, seq, err)
	}
	if !res.Duplicate || res.FirstOffset != first || res.LastOffset != first+int64(n)-1 || res.LogAppendTime != -1 {
		t.Fatalf("resend producer %d seq %d: %+v, want duplicate of %d..%d", pid, seq, res, first, first+int64(n)-1)
	}
	if l.LogEndOffset() != leo || l.Size() != size {
		t.Fatalf("duplicate wrote: log end %d→%d, size %d→%d", leo, l.LogEndOffset(), size, l.Size())
	}
}

func expectErr(t testing.TB, l *Log, pid int64, epoch int16, seq int32, n int, want error) {
	t.Helper()
	leo, size := l.LogEndOffset(), l.Size()
	_, err := l.AppendAsLeader(idemBatch(t, pid, epoch, seq, leo, n), 0)
	if !errors.Is(err, want) {
		t.Fatalf("producer %d epoch %d seq %d: err %v, want %v", pid, epoch, seq, err, want)
	}
	if l.LogEndOffset() != leo || l.Size() != size {
		t.Fatalf("refused batch wrote: log end %d→%d, size %d→%d", leo, l.LogEndOffset(), size, l.Size())
	}
}

func TestIdempotentLastFiveBatches(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), smallConfig())
	// Producer 7, epoch 0: six batches of 2 records, sequences 0,2,…,10 at
	// offsets 0-1, 2-3, …, 10-11. Producer 9 interleaves one record.
	for i := range 6 {
		appendIdem(t, l, 7, 0, int32(2*i), 2)
	}
	appendIdem(t, l, 9, 3, 0, 1) // offset 12
	for i := 1; i < 6; i++ {
		expectDup(t, l, 7, 0, int32(2*i), 2, int64(2*i))
	}
	expectDup(t, l, 9, 3, 0, 1, 12)
	// The sixth-oldest is forgotten: its sequence no longer follows.
	expectErr(t, l, 7, 0, 0, 2, ErrOutOfOrderSequence)
	// A batch overlapping but not equal to a remembered one is out of order.
	expectErr(t, l, 7, 0, 10, 1, ErrOutOfOrderSequence)
	// Gap.
	expectErr(t, l, 7, 0, 13, 1, ErrOutOfOrderSequence)
	// Next in sequence.
	appendIdem(t, l, 7, 0, 12, 1) // offset 13
	if got := l.LogEndOffset(); got != 14 {
		t.Fatalf("log end %d, want 14", got)
	}
	checkContents(t, l)
}

func TestIdempotentEpochsAndUnknown(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), smallConfig())
	appendIdem(t, l, 5, 2, 0, 3)                         // 0-2, seq 0-2
	expectErr(t, l, 5, 1, 3, 1, ErrInvalidProducerEpoch) // older epoch
	expectErr(t, l, 5, 1, 0, 3, ErrInvalidProducerEpoch) // older epoch, even as a "duplicate"
	expectErr(t, l, 5, 3, 3, 1, ErrOutOfOrderSequence)   // new epoch must start at 0
	expectErr(t, l, 6, 0, 4, 1, ErrUnknownProducerID)    // unknown producer not at 0
	appendIdem(t, l, 5, 3, 0, 1)                         // 3: epoch bump resets the sequence
	expectErr(t, l, 5, 2, 3, 1, ErrInvalidProducerEpoch) // the old epoch is fenced
	expectErr(t, l, 5, 3, 0, 3, ErrOutOfOrderSequence)   // old epoch's batch is no duplicate now
	expectDup(t, l, 5, 3, 0, 1, 3)                       // 3 again
	appendIdem(t, l, 5, 3, 1, 2)                         // 4-5
	appendIdem(t, l, 6, 0, 0, 1)                         // 6: unknown producer at 0
	// 7-8: no producer id
	if _, err := l.AppendAsLeader(makeBatch(t, 7, 2, 1, 0), 0); err != nil {
		t.Fatal(err)
	}
	if got := l.LogEndOffset(); got != 9 {
		t.Fatalf("log end %d, want 9", got)
	}
	checkContents(t, l)
}

func TestIdempotentSequenceWrap(t *testing.T) {
	h := kafkaproto.BatchHeader{BaseSequence: math.MaxInt32 - 1, LastOffsetDelta: 3}
	if got := lastSequence(&h); got != 1 {
		t.Fatalf("last sequence of %d+3: %d, want 1", h.BaseSequence, got)
	}
	l, _ := openTest(t, t.TempDir(), smallConfig())
	// A follower append plants a producer near the end of the sequence space.
	b := idemBatch(t, 4, 0, math.MaxInt32-1, 0, 2)
	kafkaproto.StampBaseOffset(b, 0)
	if _, err := l.AppendAsFollower(b); err != nil {
		t.Fatal(err)
	}
	expectErr(t, l, 4, 0, math.MaxInt32, 1, ErrOutOfOrderSequence)
	expectDup(t, l, 4, 0, math.MaxInt32-1, 2, 0)
	appendIdem(t, l, 4, 0, 0, 1) // 2: wrapped
	appendIdem(t, l, 4, 0, 1, 1) // 3
}

// fillIdem appends batches of 3 records for producers 1..3 in turn until
// the log has at least segs segments; it returns the next sequence of each.
func fillIdem(t testing.TB, l *Log, segs int) map[int64]int32 {
	t.Helper()
	seq := map[int64]int32{1: 0, 2: 0, 3: 0}
	for i := 0; len(l.Segments()) < segs; i++ {
		if i > 10000 {
			t.Fatal("log does not roll")
		}
		pid := int64(1 + i%3)
		appendIdem(t, l, pid, 0, seq[pid], 3)
		seq[pid] += 3
	}
	return seq
}

// checkProducersKnown resends the last batch of each producer (expecting a
// duplicate at its original offsets, found by reading the log) and then
// appends the next sequence.
func checkProducersKnown(t testing.TB, l *Log, seq map[int64]int32) {
	t.Helper()
	last := map[int64]int64{} // producer → first offset of its last batch
	for off := l.LogStartOffset(); off < l.LogEndOffset(); {
		b, err := l.Read(off, 1, -1, true)
		if err != nil {
			t.Fatal(err)
		}
		h, err := kafkaproto.ParseBatchHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		if h.ProducerID >= 0 {
			last[h.ProducerID] = h.BaseOffset
		}
		off = h.LastOffset() + 1
	}
	for pid := int64(1); pid <= 3; pid++ {
		expectDup(t, l, pid, 0, seq[pid]-3, 3, last[pid])
	}
	for pid := int64(1); pid <= 3; pid++ {
		appendIdem(t, l, pid, 0, seq[pid], 3)
		seq[pid] += 3
	}
}

func snapshotsIn(t testing.TB, dir string) []int64 {
	t.Helper()
	offs, err := listSnapshots(dir)
	if err != nil {
		t.Fatal(err)
	}
	return offs
}

func TestProducerStateSnapshotsFollowSegments(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, smallConfig())
	fillIdem(t, l, 4)
	segs := l.Segments()
	got := snapshotsIn(t, dir)
	if len(got) != len(segs)-1 {
		t.Fatalf("snapshots %v for segments %+v", got, segs)
	}
	for i, o := range got {
		if o != segs[i+1].BaseOffset {
			t.Fatalf("snapshot %d at %d, segment base %d", i, o, segs[i+1].BaseOffset)
		}
		ps, err := readSnapshot(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps.entries) != 3 {
			t.Fatalf("snapshot %d holds %d producers", o, len(ps.entries))
		}
	}
	// Deleting the two oldest segments deletes the snapshots below the new
	// first segment.
	if err := l.DeleteRecordsBefore(segs[2].BaseOffset); err != nil {
		t.Fatal(err)
	}
	if got := snapshotsIn(t, dir); len(got) == 0 || got[0] != segs[2].BaseOffset {
		t.Fatalf("after deleting to %d: snapshots %v", segs[2].BaseOffset, got)
	}
}

func TestProducerStateSurvivesRestart(t *testing.T) {
	tests := []struct {
		name  string
		close func(*Log)
	}{
		{"clean", func(l *Log) { _ = l.Close() }},
		{"crash", func(l *Log) { l.abandon() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _ := openTest(t, dir, smallConfig())
			seq := fillIdem(t, l, 3)
			// Some batches in the active segment after the last snapshot.
			for pid := int64(1); pid <= 3; pid++ {
				appendIdem(t, l, pid, 0, seq[pid], 3)
				seq[pid] += 3
			}
			leo := l.LogEndOffset()
			tt.close(l)
			l2, _ := openTest(t, dir, smallConfig())
			if l2.LogEndOffset() != leo {
				t.Fatalf("log end %d after reopen, want %d", l2.LogEndOffset(), leo)
			}
			checkProducersKnown(t, l2, seq)
			checkContents(t, l2)
		})
	}
}

func TestProducerStateTornTail(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, smallConfig())
	appendIdem(t, l, 1, 0, 0, 2) // 0-1
	appendIdem(t, l, 1, 0, 2, 2) // 2-3
	segs := l.Segments()
	last := segs[len(segs)-1]
	l.abandon()
	// Tear the second batch.
	if err := os.Truncate(last.LogPath, last.Size-5); err != nil {
		t.Fatal(err)
	}
	l2, _ := openTest(t, dir, smallConfig())
	if got := l2.LogEndOffset(); got != 2 {
		t.Fatalf("log end %d after the torn tail, want 2", got)
	}
	// The torn batch's sequence is not remembered: its resend is appended.
	expectDup(t, l2, 1, 0, 0, 2, 0)
	appendIdem(t, l2, 1, 0, 2, 2) // 2-3 again
	checkContents(t, l2)
}

func TestProducerStateTruncateTo(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, smallConfig())
	fillIdem(t, l, 4)
	segs := l.Segments()
	cut := segs[1].BaseOffset + 3 // inside segment 1, after its snapshot
	// The next sequence of each producer after the batches below the cut.
	next := map[int64]int32{}
	for off := int64(0); off < l.LogEndOffset(); {
		b, err := l.Read(off, 1, -1, true)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := kafkaproto.ParseBatchHeader(b)
		if h.LastOffset() < cut {
			next[h.ProducerID] = lastSequence(&h) + 1
		}
		off = h.LastOffset() + 1
	}
	if err := l.TruncateTo(cut); err != nil {
		t.Fatal(err)
	}
	if got := snapshotsIn(t, dir); len(got) != 1 || got[0] != segs[1].BaseOffset {
		t.Fatalf("snapshots after truncating to %d: %v", cut, got)
	}
	leo := l.LogEndOffset()
	if leo > cut || leo < cut-2 {
		t.Fatalf("log end %d after truncating to %d", leo, cut)
	}
	// Each producer continues right after its last kept batch; what was cut
	// is forgotten.
	for pid := int64(1); pid <= 3; pid++ {
		expectErr(t, l, pid, 0, next[pid]+3, 3, ErrOutOfOrderSequence)
		appendIdem(t, l, pid, 0, next[pid], 3)
	}
	// And the same after a restart (the snapshot above the cut is gone).
	_ = l.Close()
	l2, _ := openTest(t, dir, smallConfig())
	for pid := int64(1); pid <= 3; pid++ {
		appendIdem(t, l2, pid, 0, next[pid]+3, 3)
	}
}

func TestProducerStateCorruptSnapshot(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, smallConfig())
	seq := fillIdem(t, l, 3)
	_ = l.Close()
	// Close wrote the newest snapshot at the log end; damage every snapshot.
	offs := snapshotsIn(t, dir)
	if len(offs) < 2 {
		t.Fatalf("snapshots %v", offs)
	}
	for _, o := range offs {
		p := filepath.Join(dir, snapshotName(o))
		b := readFile(t, p)
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l2, lb := openTest(t, dir, smallConfig())
	if !contains(lb.String(), "rebuilding producer state from the log") {
		t.Fatalf("recovery did not report the rebuild:\n%s", lb.String())
	}
	checkProducersKnown(t, l2, seq)
}

func TestProducerSnapshotDecodeRejects(t *testing.T) {
	ps := producerState{entries: map[int64]*producerEntry{
		3: {epoch: 1, lastTimestamp: 5, batches: []batchMeta{{0, 1, 10, 11}, {2, 2, 12, 12}}},
	}}
	p := ps.encode(20)
	got, err := decodeProducerState(p, 20)
	if err != nil || len(got.entries) != 1 || got.entries[3].epoch != 1 || len(got.entries[3].batches) != 2 || got.entries[3].batches[1] != (batchMeta{2, 2, 12, 12}) {
		t.Fatalf("round trip: %+v, %v", got.entries[3], err)
	}
	if _, err := decodeProducerState(p, 21); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("wrong offset: %v", err)
	}
	if _, err := decodeProducerState(ps.encode(12), 12); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("batch beyond the snapshot offset: %v", err)
	}
	for n := range len(p) {
		if _, err := decodeProducerState(p[:n], 20); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
}

// producer.id.expiration.ms: a producer idle past it is forgotten at the
// next retention check (its next batch, not at sequence 0, is then
// UNKNOWN_PRODUCER_ID, as in Kafka); one that keeps appending is kept even
// when its batches carry old timestamps (last seen = the append's time).
func TestProducerIDExpiration(t *testing.T) {
	cfg := smallConfig()
	cfg.ProducerIDExpirationMs = 60_000
	l, _ := openTest(t, t.TempDir(), cfg)
	clock := time.UnixMilli(10_000_000)
	l.now = func() time.Time { return clock }
	appendIdem(t, l, 1, 0, 0, 2) // idle after this
	appendIdem(t, l, 2, 0, 0, 2) // batch timestamps ~1000 ms: "old", yet appended now

	clock = clock.Add(40 * time.Second)
	appendIdem(t, l, 2, 0, 2, 1)
	if _, err := l.EnforceRetention(clock); err != nil {
		t.Fatal(err)
	}
	expectDup(t, l, 1, 0, 0, 2, 0) // 40 s idle: still known

	clock = clock.Add(30 * time.Second) // producer 1 idle 70 s, producer 2 30 s
	if _, err := l.EnforceRetention(clock); err != nil {
		t.Fatal(err)
	}
	expectErr(t, l, 1, 0, 2, 1, ErrUnknownProducerID) // forgotten
	appendIdem(t, l, 2, 0, 3, 1)                      // kept
	appendIdem(t, l, 1, 1, 0, 1)                      // a forgotten producer starts over

	never := smallConfig()
	never.ProducerIDExpirationMs = -1
	l2, _ := openTest(t, t.TempDir(), never)
	l2.now = func() time.Time { return clock }
	appendIdem(t, l2, 7, 0, 0, 1)
	if _, err := l2.EnforceRetention(clock.Add(1000 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	appendIdem(t, l2, 7, 0, 1, 1) // -1: never expires
}
