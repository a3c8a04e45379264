package locallog

import (
	"errors"
	"testing"
	"time"
)

// A tiered log deletes local segments only up to the uploaded offset, moves
// only the local log start, answers reads below it with ErrOffsetTiered, and
// keeps the log start across a restart.
func TestTieredLocalRetention(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig()
	cfg.Tiered = true
	cfg.LocalRetentionBytes = 0 // keep nothing local beyond the active segment
	l, _ := openTest(t, dir, cfg)
	for i := 0; i < 40; i++ {
		appendN(t, l, 5, 1000+int64(i), 1)
	}
	segs := l.Segments()
	if len(segs) < 4 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	// Nothing uploaded: nothing may go.
	if n, err := l.EnforceRetention(time.Now()); err != nil || n != 0 {
		t.Fatalf("retention before upload: deleted %d, err %v", n, err)
	}
	// Upload covers the first two segments and half of the third.
	up := segs[2].BaseOffset + 1
	l.SetTieredOffset(up)
	n, err := l.EnforceRetention(time.Now())
	if err != nil || n != 2 {
		t.Fatalf("retention after upload to %d: deleted %d, err %v", up, n, err)
	}
	if got := l.LogStartOffset(); got != 0 {
		t.Fatalf("log start moved to %d; only the local start may move", got)
	}
	if got := l.LocalLogStartOffset(); got != segs[2].BaseOffset {
		t.Fatalf("local log start %d, want %d", got, segs[2].BaseOffset)
	}
	if _, err := l.Read(3, 1<<20, -1, true); !errors.Is(err, ErrOffsetTiered) {
		t.Fatalf("read below local start: %v, want ErrOffsetTiered", err)
	}
	if b, err := l.Read(segs[2].BaseOffset, 1<<20, -1, true); err != nil || len(decodeAll(t, b)) == 0 {
		t.Fatalf("read at local start: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, _ := openTest(t, dir, cfg)
	if l2.LogStartOffset() != 0 || l2.LocalLogStartOffset() != segs[2].BaseOffset {
		t.Fatalf("after restart: log start %d local %d", l2.LogStartOffset(), l2.LocalLogStartOffset())
	}
	// Remote retention moves the log start; local data below it goes too.
	if err := l2.DeleteRecordsBefore(segs[1].NextOffset); err != nil {
		t.Fatal(err)
	}
	if l2.LogStartOffset() != segs[1].NextOffset {
		t.Fatalf("log start %d after advance to %d", l2.LogStartOffset(), segs[1].NextOffset)
	}
	if _, err := l2.Read(0, 100, -1, true); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below log start: %v", err)
	}
	// A non-tiered open of the same dir clamps the log start to local data.
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Tiered = false
	l3, _ := openTest(t, dir, cfg)
	if l3.LogStartOffset() != segs[2].BaseOffset {
		t.Fatalf("untiered log start %d, want %d", l3.LogStartOffset(), segs[2].BaseOffset)
	}
}
