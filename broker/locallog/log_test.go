package locallog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratabroker/strata/kafkaproto"
)

func TestAppendReadAcrossRolls(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), smallConfig())
	var batches [][2]int64
	rolledAt := map[int64]bool{} // first offsets of the appends that rolled
	for i := range 120 {
		n := 1 + i%4
		res := appendN(t, l, n, 1000+int64(i), 0)
		batches = append(batches, [2]int64{res.FirstOffset, res.LastOffset})
		if res.Rolled {
			rolledAt[res.FirstOffset] = true
		}
	}
	if got, want := l.LogEndOffset(), batches[len(batches)-1][1]+1; got != want {
		t.Fatalf("log end %d, want %d", got, want)
	}
	segs := l.Segments()
	if len(segs) < 10 {
		t.Fatalf("only %d segments with segment.bytes 1024", len(segs))
	}
	var size int64
	for i, s := range segs {
		size += s.Size
		if s.Size > 1024 {
			t.Errorf("segment %d has %d bytes > segment.bytes", s.BaseOffset, s.Size)
		}
		if i > 0 && s.BaseOffset != segs[i-1].NextOffset {
			t.Errorf("segment %d starts at %d, previous ends at %d", i, s.BaseOffset, segs[i-1].NextOffset)
		}
		if s.Active != (i == len(segs)-1) {
			t.Errorf("segment %d active=%v", i, s.Active)
		}
		// Every segment but the first began with an append that said it
		// rolled, and no other append said so.
		if rolledAt[s.BaseOffset] != (i > 0) {
			t.Errorf("segment %d: the append at its base reported Rolled=%v", s.BaseOffset, rolledAt[s.BaseOffset])
		}
	}
	if len(rolledAt) != len(segs)-1 {
		t.Errorf("%d appends reported a roll, %d segments were sealed", len(rolledAt), len(segs)-1)
	}
	if size != l.Size() {
		t.Errorf("Size %d, segments sum %d", l.Size(), size)
	}
	checkContents(t, l)
	// Every offset reads back starting with the batch holding it.
	for _, b := range batches {
		for off := b[0]; off <= b[1]; off++ {
			got, err := l.Read(off, 1, -1, true)
			if err != nil {
				t.Fatal(err)
			}
			recs := decodeAll(t, got)
			if len(recs) == 0 || recs[0].off != b[0] || recs[len(recs)-1].off != b[1] {
				t.Fatalf("read %d: got %v, want the batch %d..%d", off, recs, b[0], b[1])
			}
		}
	}
}

func TestReadLimits(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), smallConfig())
	// Five batches of 2 records: offsets 0-1, 2-3, 4-5, 6-7, 8-9; each the same size.
	for range 5 {
		appendN(t, l, 2, 100, 0)
	}
	one, err := l.Read(0, 1<<20, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	bs := len(one)
	if recs := decodeAll(t, one); len(recs) != 2 || recs[1].off != 1 {
		t.Fatalf("read 0 up to 2: %v", recs)
	}
	tests := []struct {
		name        string
		offset      int64
		maxBytes    int
		maxOffset   int64
		minOne      bool
		first, last int64 // expected record range; first > last = empty
	}{
		{"all", 0, 1 << 20, -1, false, 0, 9},
		{"max bytes two batches", 0, 2 * bs, -1, false, 0, 3},
		{"max bytes just under three", 2, 3*bs - 1, -1, false, 2, 5},
		{"too small without minOne", 0, bs - 1, -1, false, 1, 0},
		{"too small with minOne", 0, bs - 1, -1, true, 0, 1},
		{"zero bytes with minOne", 4, 0, -1, true, 4, 5},
		{"mid batch", 5, 1 << 20, -1, false, 4, 9},
		{"max offset at boundary", 0, 1 << 20, 6, false, 0, 5},
		{"max offset mid batch excludes it", 0, 1 << 20, 7, false, 0, 5},
		{"max offset below first batch end", 2, 1 << 20, 3, true, 1, 0},
		{"offset at max offset", 6, 1 << 20, 6, true, 1, 0},
		{"log end", 10, 1 << 20, -1, true, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := l.Read(tc.offset, tc.maxBytes, tc.maxOffset, tc.minOne)
			if err != nil {
				t.Fatal(err)
			}
			recs := decodeAll(t, b)
			if tc.first > tc.last {
				if len(recs) != 0 {
					t.Fatalf("want nothing, got %v", recs)
				}
				return
			}
			if len(recs) != int(tc.last-tc.first+1) || recs[0].off != tc.first || recs[len(recs)-1].off != tc.last {
				t.Fatalf("got %v, want %d..%d", recs, tc.first, tc.last)
			}
		})
	}
	for _, off := range []int64{-1, 11, 100} {
		if _, err := l.Read(off, 100, -1, true); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Errorf("read %d: %v, want ErrOffsetOutOfRange", off, err)
		}
	}
	if err := l.DeleteRecordsBefore(4); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Read(3, 100, -1, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Errorf("read below log start: %v", err)
	}
}

func TestOffsetForTimestampAndMax(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), smallConfig())
	// Batch k (3 records) has timestamps 1000*k + 0,1,2, except batch 3 which
	// is older (out of order, as CreateTime allows) and batch 5, compressed.
	for k := range 12 {
		ts := int64(1000 * k)
		if k == 3 {
			ts = 500
		}
		codec := kafkaproto.CodecNone
		if k == 5 {
			codec = kafkaproto.CodecZstd
		}
		leo := l.LogEndOffset()
		if _, err := l.AppendAsLeader(makeBatch(t, leo, 3, ts, codec), 0); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		ts       int64
		off, got int64
		found    bool
	}{
		{-5, 0, 0, true},
		{0, 0, 0, true},
		{1, 1, 1, true},
		{2, 2, 2, true},
		{3, 3, 1000, true},
		{501, 3, 1000, true}, // batch 1 (offsets 3..5) is the first with a record >= 501
		{1002, 5, 1002, true},
		{1003, 6, 2000, true},
		{2002, 8, 2002, true},
		{2003, 12, 4000, true}, // batch 3 (500..502) is skipped
		{5001, 16, 5001, true}, // compressed batch
		{11002, 35, 11002, true},
		{11003, -1, -1, false},
	}
	check := func(t *testing.T) {
		for _, tc := range tests {
			off, ts, found, err := l.OffsetForTimestamp(tc.ts)
			if err != nil || found != tc.found || off != tc.off || ts != tc.got {
				t.Errorf("OffsetForTimestamp(%d) = %d, %d, %v, %v; want %d, %d, %v", tc.ts, off, ts, found, err, tc.off, tc.got, tc.found)
			}
		}
		ts, off, err := l.MaxTimestamp()
		if err != nil || ts != 11002 || off != 35 {
			t.Errorf("MaxTimestamp = %d at %d, %v; want 11002 at 35", ts, off, err)
		}
	}
	t.Run("open", check)
	dir := l.dir
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, _ = openTest(t, dir, smallConfig())
	t.Run("reopened", check)
	// Below the log start nothing is returned.
	if err := l.DeleteRecordsBefore(7); err != nil {
		t.Fatal(err)
	}
	if off, _, _, _ := l.OffsetForTimestamp(0); off != 7 {
		t.Errorf("after DeleteRecordsBefore(7): OffsetForTimestamp(0) = %d, want 7", off)
	}
}

func TestEmptyLog(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), smallConfig())
	if ts, off, err := l.MaxTimestamp(); ts != -1 || off != -1 || err != nil {
		t.Errorf("MaxTimestamp on empty log: %d %d %v", ts, off, err)
	}
	if _, _, found, err := l.OffsetForTimestamp(0); found || err != nil {
		t.Errorf("OffsetForTimestamp on empty log: %v %v", found, err)
	}
	if b, err := l.Read(0, 100, -1, true); len(b) != 0 || err != nil {
		t.Errorf("read at log end of empty log: %d bytes, %v", len(b), err)
	}
	if e, o := l.EndOffsetForEpoch(0); e != -1 || o != -1 {
		t.Errorf("EndOffsetForEpoch on empty log: %d %d", e, o)
	}
	if _, err := l.AppendAsLeader(nil, 0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("empty append: %v", err)
	}
	if _, err := l.AppendAsLeader([]byte{1, 2, 3}, 0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("garbage append: %v", err)
	}
	if l.LogEndOffset() != 0 || l.Size() != 0 {
		t.Errorf("rejected appends changed the log: end %d size %d", l.LogEndOffset(), l.Size())
	}
}

func TestLogAppendTime(t *testing.T) {
	cfg := smallConfig()
	cfg.TimestampType = 1
	l, _ := openTest(t, t.TempDir(), cfg)
	now := time.UnixMilli(1_700_000_000_000)
	l.now = func() time.Time { return now }
	b := makeBatch(t, 0, 3, 5, kafkaproto.CodecNone)
	res, err := l.AppendAsLeader(b, 7)
	if err != nil {
		t.Fatal(err)
	}
	if res.LogAppendTime != now.UnixMilli() {
		t.Fatalf("LogAppendTime %d, want %d", res.LogAppendTime, now.UnixMilli())
	}
	got, err := l.Read(0, 1<<20, -1, false)
	if err != nil {
		t.Fatal(err)
	}
	h, err := kafkaproto.ValidateBatch(got, 0) // CRC was recomputed
	if err != nil {
		t.Fatal(err)
	}
	if h.TimestampType() != 1 || h.MaxTimestamp != now.UnixMilli() || h.PartitionLeaderEpoch != 7 {
		t.Fatalf("stored header %+v", h)
	}
	if off, ts, found, _ := l.OffsetForTimestamp(now.UnixMilli()); !found || off != 0 || ts != now.UnixMilli() {
		t.Errorf("OffsetForTimestamp(now) = %d %d %v", off, ts, found)
	}
}

func TestStampingInPlace(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), smallConfig())
	appendN(t, l, 4, 0, 1)
	b1 := makeBatch(t, 4, 2, 0, kafkaproto.CodecNone)
	b2 := makeBatch(t, 6, 3, 0, kafkaproto.CodecGzip)
	both := append(append([]byte(nil), b1...), b2...)
	res, err := l.AppendAsLeader(both, 3)
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstOffset != 4 || res.LastOffset != 8 || res.LogAppendTime != -1 {
		t.Fatalf("result %+v", res)
	}
	h1, _ := kafkaproto.ValidateBatch(both[:len(b1)], 0)
	h2, err := kafkaproto.ValidateBatch(both[len(b1):], 0)
	if err != nil || h1.BaseOffset != 4 || h2.BaseOffset != 6 || h1.PartitionLeaderEpoch != 3 || h2.PartitionLeaderEpoch != 3 {
		t.Fatalf("caller's slice not stamped: %+v %+v %v", h1, h2, err)
	}
	checkContents(t, l)
	if l.EpochForOffset(3) != 1 || l.EpochForOffset(4) != 3 {
		t.Errorf("epochs: %d %d", l.EpochForOffset(3), l.EpochForOffset(4))
	}
}

func TestAppendAsFollower(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), smallConfig())
	b := makeBatch(t, 0, 3, 0, kafkaproto.CodecNone)
	kafkaproto.StampLeaderEpoch(b, 4)
	if _, err := l.AppendAsFollower(b); err != nil {
		t.Fatal(err)
	}
	b2 := makeBatch(t, 3, 2, 0, kafkaproto.CodecNone)
	kafkaproto.StampBaseOffset(b2, 5) // gap
	if _, err := l.AppendAsFollower(b2); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Errorf("gap: %v", err)
	}
	kafkaproto.StampBaseOffset(b2, 3)
	kafkaproto.StampLeaderEpoch(b2, 6)
	b2[len(b2)-1] ^= 0xff
	if _, err := l.AppendAsFollower(b2); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad crc: %v", err)
	}
	b2[len(b2)-1] ^= 0xff
	res, err := l.AppendAsFollower(b2)
	if err != nil || res.FirstOffset != 3 || res.LastOffset != 4 {
		t.Fatalf("follower append: %+v %v", res, err)
	}
	if l.LatestEpoch() != 6 || l.EpochForOffset(2) != 4 || l.EpochForOffset(3) != 6 {
		t.Errorf("epochs: latest %d, at 2 %d, at 3 %d", l.LatestEpoch(), l.EpochForOffset(2), l.EpochForOffset(3))
	}
	checkContents(t, l)
}

func TestEpochCache(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, smallConfig())
	// epoch 1: 0..9, epoch 3: 10..19, epoch 6: 20..29
	for _, e := range []int32{1, 1, 3, 3, 6, 6} {
		appendN(t, l, 5, 0, e)
	}
	type want struct {
		epoch int32
		end   int64
	}
	check := func(t *testing.T, cases map[int32]want) {
		t.Helper()
		for req, w := range cases {
			if e, o := l.EndOffsetForEpoch(req); e != w.epoch || o != w.end {
				t.Errorf("EndOffsetForEpoch(%d) = %d, %d; want %d, %d", req, e, o, w.epoch, w.end)
			}
		}
	}
	// Kafka's semantics: older than the earliest epoch answers (requested,
	// earliest start); newer than the latest answers (-1, -1).
	full := map[int32]want{0: {0, 0}, 1: {1, 10}, 2: {1, 10}, 3: {3, 20}, 5: {3, 20}, 6: {6, 30}, 9: {-1, -1}, -1: {-1, -1}}
	check(t, full)
	for off, e := range map[int64]int32{0: 1, 9: 1, 10: 3, 19: 3, 20: 6, 29: 6} {
		if got := l.EpochForOffset(off); got != e {
			t.Errorf("EpochForOffset(%d) = %d, want %d", off, got, e)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, _ = openTest(t, dir, smallConfig())
	check(t, full)
	if err := l.TruncateTo(15); err != nil {
		t.Fatal(err)
	}
	check(t, map[int32]want{1: {1, 10}, 3: {3, 15}, 6: {-1, -1}})
	if l.LatestEpoch() != 3 {
		t.Errorf("latest epoch after truncation %d", l.LatestEpoch())
	}
	if err := l.DeleteRecordsBefore(12); err != nil {
		t.Fatal(err)
	}
	check(t, map[int32]want{1: {1, 12}, 2: {2, 12}, 3: {3, 15}})
	appendN(t, l, 5, 0, 8)
	check(t, map[int32]want{3: {3, 15}, 7: {3, 15}, 8: {8, 20}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, _ = openTest(t, dir, smallConfig())
	check(t, map[int32]want{1: {1, 12}, 3: {3, 15}, 7: {3, 15}, 8: {8, 20}, 9: {-1, -1}})
}

func TestDeleteRecordsBefore(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, smallConfig())
	for range 40 {
		appendN(t, l, 3, 0, 0)
	}
	before := l.Segments()
	target := before[3].BaseOffset + 1 // inside the fourth segment
	if err := l.DeleteRecordsBefore(target); err != nil {
		t.Fatal(err)
	}
	after := l.Segments()
	if len(after) != len(before)-3 || after[0].BaseOffset != before[3].BaseOffset {
		t.Fatalf("segments after delete: first %d, %d left of %d", after[0].BaseOffset, len(after), len(before))
	}
	for _, s := range before[:3] {
		if _, err := filepath.Glob(s.LogPath); err != nil {
			t.Fatal(err)
		}
		if m, _ := filepath.Glob(s.LogPath); len(m) != 0 {
			t.Errorf("%s still exists", s.LogPath)
		}
	}
	if l.LogStartOffset() != target {
		t.Fatalf("log start %d, want %d", l.LogStartOffset(), target)
	}
	checkContents(t, l)
	if err := l.DeleteRecordsBefore(l.LogEndOffset() + 1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Errorf("beyond log end: %v", err)
	}
	if err := l.DeleteRecordsBefore(2); err != nil || l.LogStartOffset() != target {
		t.Errorf("moving back: %v, start %d", err, l.LogStartOffset())
	}
	leo := l.LogEndOffset()
	if err := l.DeleteRecordsBefore(leo); err != nil {
		t.Fatal(err)
	}
	if n := len(l.Segments()); n != 1 {
		t.Errorf("%d segments after deleting everything", n)
	}
	if b, err := l.Read(leo, 100, -1, true); err != nil || len(b) != 0 {
		t.Errorf("read at log end: %d bytes %v", len(b), err)
	}
	// Crash (no Close): the log start survives because it was persisted.
	l.abandon()
	l, _ = openTest(t, dir, smallConfig())
	if l.LogStartOffset() != leo || l.LogEndOffset() != leo {
		t.Fatalf("after crash: start %d end %d, want %d", l.LogStartOffset(), l.LogEndOffset(), leo)
	}
	appendN(t, l, 2, 0, 0)
	checkContents(t, l)
}

func TestTruncateTo(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, smallConfig())
	for range 30 {
		appendN(t, l, 4, 0, 0)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		to, wantEnd int64
	}{
		{200, 120}, // beyond the end: nothing
		{100, 100},
		{98, 96}, // mid batch: the whole batch goes
		{segBase(l, 2), segBase(l, 2)},
		{segBase(l, 1) + 8, segBase(l, 1) + 8}, // two batches into segment 1
	}
	for _, tc := range tests {
		if err := l.TruncateTo(tc.to); err != nil {
			t.Fatal(err)
		}
		if got := l.LogEndOffset(); got != tc.wantEnd {
			t.Fatalf("TruncateTo(%d): end %d, want %d", tc.to, got, tc.wantEnd)
		}
		checkContents(t, l)
		// Every batch holds timestamps 0..3: the first record with 3 is offset 3.
		if ts, off, err := l.MaxTimestamp(); err != nil || off != 3 || ts != 3 {
			t.Errorf("MaxTimestamp after TruncateTo(%d) = %d at %d, %v", tc.to, ts, off, err)
		}
	}
	segs := l.Segments()
	if last := segs[len(segs)-1]; last.NextOffset != l.LogEndOffset() {
		t.Fatalf("last segment ends at %d", last.NextOffset)
	}
	// The truncated segment's indexes equal a rebuild from its data.
	last := segs[len(segs)-1]
	idx, tidx := readFile(t, last.IndexPath), readFile(t, last.TimeIndexPath)
	if len(idx) == 0 {
		t.Fatal("truncated segment has no index entries left to check")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{last.IndexPath, last.TimeIndexPath} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	l, _ = openTest(t, dir, smallConfig())
	if !bytes.Equal(readFile(t, last.IndexPath), idx) || !bytes.Equal(readFile(t, last.TimeIndexPath), tidx) {
		t.Fatal("indexes after TruncateTo differ from a rebuild")
	}
	for range 5 {
		appendN(t, l, 4, 0, 0)
	}
	checkContents(t, l)
	end := l.LogEndOffset()
	l.abandon()
	l, _ = openTest(t, dir, smallConfig())
	if l.LogEndOffset() != end {
		t.Fatalf("reopened end %d, want %d", l.LogEndOffset(), end)
	}
	checkContents(t, l)
	// Below the log start: restart the log there.
	if err := l.DeleteRecordsBefore(20); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateTo(10); err != nil {
		t.Fatal(err)
	}
	if l.LogStartOffset() != 10 || l.LogEndOffset() != 10 || len(l.Segments()) != 1 {
		t.Fatalf("full truncation: start %d end %d, %d segments", l.LogStartOffset(), l.LogEndOffset(), len(l.Segments()))
	}
	appendN(t, l, 3, 0, 0)
	checkContents(t, l)
}

func segBase(l *Log, i int) int64 { return l.Segments()[i].BaseOffset }

func TestRetentionByTime(t *testing.T) {
	cfg := smallConfig()
	cfg.RetentionMs = 10_000
	l, _ := openTest(t, t.TempDir(), cfg)
	// Segment k holds batches with timestamps around k*1000 (one roll per 4 batches).
	for k := range 6 {
		for range 4 {
			appendN(t, l, 5, int64(k)*1000, 0)
		}
		if err := l.rollForTest(); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, l, 5, 6000, 0)
	segs := l.Segments()
	if len(segs) != 7 {
		t.Fatalf("%d segments", len(segs))
	}
	// Max timestamps are k*1000+4. At now=13_004.5 segments 0..2 (max 4, 1004, 2004)
	// are > 10 s old... 13005-2004 = 11001 > 10000, 13005-3004 = 10001 > 10000.
	n, err := l.EnforceRetention(time.UnixMilli(13_005))
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 || l.LogStartOffset() != segs[4].BaseOffset {
		t.Fatalf("deleted %d, start %d; want 4, %d", n, l.LogStartOffset(), segs[4].BaseOffset)
	}
	checkContents(t, l)
	// Everything expired: the active segment is rolled and goes too.
	leo := l.LogEndOffset()
	n, err = l.EnforceRetention(time.UnixMilli(100_000))
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 || l.LogStartOffset() != leo || l.LogEndOffset() != leo || l.Size() != 0 {
		t.Fatalf("deleted %d, start %d end %d size %d; want 3, %d", n, l.LogStartOffset(), l.LogEndOffset(), l.Size(), leo)
	}
	appendN(t, l, 2, 100_000, 0)
	checkContents(t, l)
	if n, _ := l.EnforceRetention(time.UnixMilli(100_000)); n != 0 {
		t.Errorf("fresh data deleted: %d", n)
	}
}

// rollForTest rolls the active segment.
func (l *Log) rollForTest() error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	return l.rollLocked()
}

func TestRetentionBySize(t *testing.T) {
	l, _ := openTest(t, t.TempDir(), smallConfig())
	for range 60 {
		appendN(t, l, 3, 0, 0)
	}
	segs := l.Segments()
	total := l.Size()
	// Keep at most total - (first two segments): exactly two go.
	cfg := smallConfig()
	cfg.RetentionBytes = total - segs[0].Size - segs[1].Size
	l.UpdateConfig(cfg)
	n, err := l.EnforceRetention(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 || l.LogStartOffset() != segs[2].BaseOffset || l.Size() != cfg.RetentionBytes {
		t.Fatalf("deleted %d, start %d, size %d; want 2, %d, %d", n, l.LogStartOffset(), l.Size(), segs[2].BaseOffset, cfg.RetentionBytes)
	}
	cfg.RetentionBytes = 0 // everything but the active segment
	l.UpdateConfig(cfg)
	if _, err := l.EnforceRetention(time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := l.Segments(); len(got) != 1 || got[0].BaseOffset != segs[len(segs)-1].BaseOffset {
		t.Fatalf("%d segments left", len(got))
	}
	checkContents(t, l)
}

func TestSegmentMsRoll(t *testing.T) {
	cfg := smallConfig()
	cfg.SegmentBytes = 1 << 20
	cfg.SegmentMs = 1000
	l, _ := openTest(t, t.TempDir(), cfg)
	appendN(t, l, 2, 10_000, 0)
	appendN(t, l, 2, 10_900, 0) // within segment.ms of the first batch
	if n := len(l.Segments()); n != 1 {
		t.Fatalf("%d segments", n)
	}
	appendN(t, l, 2, 11_001, 0) // 1001 ms after the first batch: roll
	segs := l.Segments()
	if len(segs) != 2 || segs[1].BaseOffset != 4 {
		t.Fatalf("segments %+v", segs)
	}
	// EnforceRetention rolls by wall time.
	if _, err := l.EnforceRetention(time.UnixMilli(11_500)); err != nil || len(l.Segments()) != 2 {
		t.Fatalf("early roll: %v, %d segments", err, len(l.Segments()))
	}
	if _, err := l.EnforceRetention(time.UnixMilli(12_100)); err != nil || len(l.Segments()) != 3 {
		t.Fatalf("no roll: %v, %d segments", err, len(l.Segments()))
	}
	appendN(t, l, 1, 12_100, 0)
	if s := l.Segments(); s[2].BaseOffset != 6 || s[2].NextOffset != 7 {
		t.Fatalf("new segment %+v", s[2])
	}
	checkContents(t, l)
}

func TestIndexFull(t *testing.T) {
	cfg := smallConfig()
	cfg.SegmentBytes = 1 << 20
	cfg.IndexIntervalBytes = 1
	cfg.SegmentIndexBytes = 5 * timeEntrySize
	l, _ := openTest(t, t.TempDir(), cfg)
	for i := range 20 {
		appendN(t, l, 1, int64(i), 0)
	}
	segs := l.Segments()
	if len(segs) < 3 {
		t.Fatalf("index never full: %d segments", len(segs))
	}
	checkContents(t, l)
}

func TestCloseReopenPreservesEverything(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTest(t, dir, smallConfig())
	for i := range 50 {
		appendN(t, l, 1+i%3, int64(i*10), int32(i/10))
	}
	if err := l.DeleteRecordsBefore(7); err != nil {
		t.Fatal(err)
	}
	segs := l.Segments()
	var idx [][]byte
	for _, s := range segs {
		idx = append(idx, readFile(t, s.IndexPath), readFile(t, s.TimeIndexPath))
	}
	leo := l.LogEndOffset()
	ts, tsOff, _ := l.MaxTimestamp()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Read(7, 10, -1, true); !errors.Is(err, ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if _, err := l.AppendAsLeader(makeBatch(t, 0, 1, 0, 0), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
	l, lb := openTest(t, dir, smallConfig())
	if l.LogEndOffset() != leo || l.LogStartOffset() != 7 || l.LatestEpoch() != 4 {
		t.Fatalf("reopened: end %d start %d epoch %d", l.LogEndOffset(), l.LogStartOffset(), l.LatestEpoch())
	}
	got := l.Segments()
	if len(got) != len(segs) {
		t.Fatalf("%d segments, had %d", len(got), len(segs))
	}
	for i := range got {
		if got[i] != segs[i] {
			t.Errorf("segment %d: %+v, had %+v", i, got[i], segs[i])
		}
		if string(readFile(t, got[i].IndexPath)) != string(idx[2*i]) || string(readFile(t, got[i].TimeIndexPath)) != string(idx[2*i+1]) {
			t.Errorf("segment %d indexes changed", i)
		}
	}
	if ts2, off2, _ := l.MaxTimestamp(); ts2 != ts || off2 != tsOff {
		t.Errorf("MaxTimestamp %d@%d, had %d@%d", ts2, off2, ts, tsOff)
	}
	if contains(lb.String(), "truncat") || contains(lb.String(), "rebuild") {
		t.Errorf("clean reopen reported repairs:\n%s", lb.String())
	}
	checkContents(t, l)
	appendN(t, l, 2, 0, 4)
	checkContents(t, l)
	if err := l.Delete(); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Errorf("Delete left %v", m)
	}
}

func TestFlushPolicy(t *testing.T) {
	cfg := smallConfig()
	cfg.FlushIntervalMessages = 5
	dir := t.TempDir()
	l, _ := openTest(t, dir, cfg)
	appendN(t, l, 3, 0, 0)
	if rp, err := readOffsetCheckpoint(dir, recoveryPointFile); !isNotExist(err) {
		t.Fatalf("recovery point %d %v before the interval", rp, err)
	}
	appendN(t, l, 3, 0, 0)
	if rp, err := readOffsetCheckpoint(dir, recoveryPointFile); err != nil || rp != 6 {
		t.Fatalf("recovery point %d %v after 6 messages, want 6", rp, err)
	}
	appendN(t, l, 1, 0, 0)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if rp, err := readOffsetCheckpoint(dir, recoveryPointFile); err != nil || rp != 7 {
		t.Fatalf("recovery point %d %v after Flush, want 7", rp, err)
	}
}

func TestGroupCommitConcurrent(t *testing.T) {
	cfg := smallConfig()
	cfg.GroupCommit = true
	cfg.SegmentBytes = 64 << 10
	l, _ := openTest(t, t.TempDir(), cfg)
	const writers, each = 8, 40
	type span struct{ first, last int64 }
	results := make(chan span, writers*each)
	errs := make(chan error, writers+1)
	done := make(chan struct{})
	go func() { // a concurrent reader
		defer func() { errs <- nil }()
		for i := 0; i < 10000; i++ {
			select {
			case <-done:
				return
			default:
			}
			if _, err := l.Read(l.LogStartOffset(), 4096, -1, true); err != nil {
				errs <- err
				return
			}
		}
	}()
	for w := range writers {
		go func() {
			for i := range each {
				b := makeBatch(t, 0, 1+(w+i)%3, int64(i), 0)
				res, err := l.AppendAsLeader(b, 0)
				if err != nil {
					errs <- err
					return
				}
				results <- span{res.FirstOffset, res.LastOffset}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	close(results)
	seen := map[int64]bool{}
	var count int64
	for s := range results {
		for o := s.first; o <= s.last; o++ {
			if seen[o] {
				t.Fatalf("offset %d assigned twice", o)
			}
			seen[o] = true
			count++
		}
	}
	if count != l.LogEndOffset() {
		t.Fatalf("%d offsets assigned, log end %d", count, l.LogEndOffset())
	}
	for o := range count {
		if !seen[o] {
			t.Fatalf("offset %d missing", o)
		}
	}
	l.gcMu.Lock()
	durable, syncs := l.gcDurable, l.gcSyncs
	l.gcMu.Unlock()
	if syncs < 1 || syncs >= writers*each {
		t.Errorf("%d fsync rounds for %d concurrent appends: not shared", syncs, writers*each)
	}
	t.Logf("%d appends, %d fsync rounds", writers*each, syncs)
	if durable != writers*each {
		t.Fatalf("%d appends durable, want %d", durable, writers*each)
	}
	got, err := l.Read(0, 1<<30, -1, true)
	if err != nil {
		t.Fatal(err)
	}
	if recs := decodeAll(t, got); int64(len(recs)) != count {
		t.Fatalf("read %d records, want %d", len(recs), count)
	}
}

func TestCheckpointCodec(t *testing.T) {
	p := []byte("payload")
	b := encodeCheckpoint(p)
	if got, err := decodeCheckpoint(b); err != nil || string(got) != "payload" {
		t.Fatalf("round trip: %q %v", got, err)
	}
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 0x40
		if _, err := decodeCheckpoint(c); !errors.Is(err, ErrCorrupt) {
			t.Errorf("flip byte %d: %v", i, err)
		}
	}
	if _, err := decodeCheckpoint(b[:len(b)-1]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short: %v", err)
	}
}

// TestFindPositionAcrossBlocks reads back every batch of a segment whose
// index entries lie far apart, so that finding a batch walks many headers
// through several findBlock reads, including batches larger than a block
// and headers that straddle two blocks.
func TestFindPositionAcrossBlocks(t *testing.T) {
	cfg := smallConfig()
	cfg.SegmentBytes = 4 << 20
	cfg.IndexIntervalBytes = 64 << 10
	l, _ := openTest(t, t.TempDir(), cfg)
	var batches [][2]int64
	for i := range 700 {
		n := 1 + i%3
		if i%150 == 5 { // runs of small batches longer than a block between them
			n = 1500 // about 15 KiB: more than a findBlock
		}
		res := appendN(t, l, n, 1000+int64(i), 0)
		batches = append(batches, [2]int64{res.FirstOffset, res.LastOffset})
	}
	if segs := l.Segments(); len(segs) != 1 || segs[0].Size < 3*findBlock {
		t.Fatalf("want one segment of several blocks, got %+v", segs)
	}
	for _, b := range batches {
		for _, off := range []int64{b[0], (b[0] + b[1]) / 2, b[1]} {
			got, err := l.Read(off, 1, -1, true)
			if err != nil {
				t.Fatal(err)
			}
			recs := decodeAll(t, got)
			if len(recs) != int(b[1]-b[0]+1) || recs[0].off != b[0] || recs[len(recs)-1].off != b[1] {
				t.Fatalf("read %d: got %d records, want the batch %d..%d", off, len(recs), b[0], b[1])
			}
		}
	}
}
