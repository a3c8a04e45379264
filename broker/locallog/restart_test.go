package locallog

import (
	"errors"
	"testing"

	"github.com/stratabroker/strata/kafkaproto"
)

// A follower rebuilt from the remote tier: a second log restarts at the
// first one's second segment base with its epoch history and producer
// snapshot, then follows it; duplicates are still detected and the state
// survives a reopen.
func TestRestartAt(t *testing.T) {
	cfg := smallConfig()
	cfg.Tiered = true
	src, _ := openTest(t, t.TempDir(), cfg)
	seq := fillIdem(t, src, 4)
	segs := src.Segments()
	if len(segs) < 3 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	at := segs[2].BaseOffset
	snap, err := src.ProducerSnapshot(at)
	if err != nil {
		t.Fatal(err)
	}
	epochs := []EpochStart{{Epoch: 0, Start: 0}, {Epoch: 3, Start: at + 1000}} // the second is past the restart point

	dir := t.TempDir()
	dst, _ := openTest(t, dir, cfg)
	appendN(t, dst, 7, 1000, 5) // stale data that must go
	if err := dst.RestartAt(at, 2, epochs, snap); err != nil {
		t.Fatal(err)
	}
	if dst.LogEndOffset() != at || dst.LocalLogStartOffset() != at || dst.LogStartOffset() != 2 {
		t.Fatalf("after restart: end %d local start %d start %d, want %d %d 2", dst.LogEndOffset(), dst.LocalLogStartOffset(), dst.LogStartOffset(), at, at)
	}
	if h := dst.EpochHistory(); len(h) != 1 || h[0] != (EpochStart{Epoch: 0, Start: 2}) {
		t.Fatalf("epoch history %+v", h)
	}
	if _, err := dst.Read(at-1, 100, -1, true); !errors.Is(err, ErrOffsetTiered) {
		t.Fatalf("read below the local start: %v", err)
	}
	// Follow the source from the restart point.
	var copied int64
	for off := at; off < src.LogEndOffset(); off = copied {
		b, err := src.Read(off, 1<<20, -1, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dst.AppendAsFollower(b); err != nil {
			t.Fatal(err)
		}
		copied = dst.LogEndOffset()
	}
	if dst.LogEndOffset() != src.LogEndOffset() {
		t.Fatalf("follower end %d, leader end %d", dst.LogEndOffset(), src.LogEndOffset())
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	dst2, _ := openTest(t, dir, cfg)
	if dst2.LogStartOffset() != 2 || dst2.LocalLogStartOffset() != at {
		t.Fatalf("after reopen: start %d local start %d", dst2.LogStartOffset(), dst2.LocalLogStartOffset())
	}
	// The producers' state came through the snapshot: the last batches are
	// duplicates, the next sequences are accepted.
	last := map[int64]int64{} // producer → first offset of its last batch
	for off := at; off < dst2.LogEndOffset(); {
		b, err := dst2.Read(off, 1, -1, true)
		if err != nil {
			t.Fatal(err)
		}
		h, err := kafkaproto.ParseBatchHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		last[h.ProducerID] = h.BaseOffset
		off = h.LastOffset() + 1
	}
	if len(last) != 3 {
		t.Fatalf("producers after the restart point: %v", last)
	}
	for pid := int64(1); pid <= 3; pid++ {
		expectDup(t, dst2, pid, 0, seq[pid]-3, 3, last[pid])
		appendIdem(t, dst2, pid, 0, seq[pid], 3)
	}
	// A sequence gap is refused: the state is really known, not empty.
	if _, err := dst2.AppendAsLeader(idemBatch(t, 1, 0, seq[1]+10, dst2.LogEndOffset(), 1), 0); err == nil {
		t.Fatal("out-of-sequence append accepted")
	}
}

func TestRestartAtRejects(t *testing.T) {
	cfg := smallConfig()
	cfg.Tiered = true
	l, _ := openTest(t, t.TempDir(), cfg)
	appendN(t, l, 5, 1000, 1)
	snap5 := encodeCheckpoint((&producerState{}).encode(5))
	for _, tc := range []struct {
		name          string
		offset, start int64
		epochs        []EpochStart
		snap          []byte
	}{
		{"start above offset", 10, 11, nil, nil},
		{"negative", -1, 0, nil, nil},
		{"epochs out of order", 10, 0, []EpochStart{{2, 0}, {1, 5}}, nil},
		{"snapshot at another offset", 10, 0, nil, snap5},
		{"garbage snapshot", 10, 0, nil, []byte{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := l.RestartAt(tc.offset, tc.start, tc.epochs, tc.snap); err == nil {
				t.Fatal("accepted")
			}
			if l.LogEndOffset() != 5 {
				t.Fatalf("log changed: end %d", l.LogEndOffset())
			}
		})
	}
	if _, err := DecodeEpochHistory([]byte{0, 0, 0, 1}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short epoch history: %v", err)
	}
	h := []EpochStart{{1, 0}, {4, 9}}
	if got, err := DecodeEpochHistory(EncodeEpochHistory(h)); err != nil || len(got) != 2 || got[1] != h[1] {
		t.Fatalf("round trip: %v %v", got, err)
	}
	untiered, _ := openTest(t, t.TempDir(), smallConfig())
	if err := untiered.RestartAt(10, 5, nil, nil); err == nil {
		t.Fatal("untiered log accepted a log start below its data")
	}
}
