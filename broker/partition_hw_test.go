package broker

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stratabroker/strata/broker/locallog"
)

func openTestLogAt(t *testing.T, dir string) *locallog.Log {
	t.Helper()
	cfg := locallog.DefaultConfig()
	cfg.SegmentMs, cfg.RetentionMs, cfg.RetentionBytes = -1, -1, -1
	l, err := locallog.Open(dir, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// hwTestPartition opens the log in dir as partition t-0 with replicas
// replicas and returns it with its initial high watermark applied.
func hwTestPartition(t *testing.T, dir string, replicas int) *partition {
	t.Helper()
	l := openTestLogAt(t, dir)
	p := &partition{topic: "t", index: 0, self: 1}
	p.log.Store(l)
	p.fencedEpoch.Store(-1)
	p.initHighWatermark(l, replicas, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return p
}

func TestHighWatermarkCheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	ckpt := filepath.Join(dir, "high-watermark-checkpoint")

	// A new replicated log with 10 records and no checkpoint: HW = LEO.
	p := hwTestPartition(t, dir, 3)
	for range 2 {
		if _, err := p.getLog().AppendAsLeader(testBatch(t, 5), 0); err != nil {
			t.Fatal(err)
		}
	}
	p.hw.Store(0)
	if err := p.checkpointHighWatermark(); err != nil {
		t.Fatal(err)
	}
	// The HW moves to 6 and is checkpointed; an unchanged HW is not
	// written again.
	p.advanceHighWatermark(6)
	if err := p.checkpointHighWatermark(); err != nil {
		t.Fatal(err)
	}
	if hw, err := p.getLog().ReadHighWatermark(); err != nil || hw != 6 {
		t.Fatalf("checkpoint = %d, %v; want 6", hw, err)
	}
	if err := os.Remove(ckpt); err != nil {
		t.Fatal(err)
	}
	if err := p.checkpointHighWatermark(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ckpt); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unchanged HW rewritten: stat = %v", err)
	}
	// Clean close writes the HW (8 now) even between periodic checkpoints.
	p.advanceHighWatermark(8)
	if err := p.getLog().DeleteRecordsBefore(3); err != nil {
		t.Fatal(err)
	}
	if err := p.close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		prepare  func(t *testing.T) // runs on the closed partition's directory
		replicas int
		want     int64
	}{
		{"replicated: the checkpoint", nil, 3, 8},
		{"one replica: the log end", nil, 1, 10},
		{"checkpoint past the log end: the log end", func(t *testing.T) { writeHWCheckpoint(t, dir, 50) }, 3, 10},
		{"checkpoint below the log start: the log start", func(t *testing.T) { writeHWCheckpoint(t, dir, 1) }, 2, 3},
		{"damaged checkpoint: the log start", func(t *testing.T) {
			if err := os.WriteFile(ckpt, []byte("garbage-garbage-garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, 3, 3},
		{"no checkpoint: the log end", func(t *testing.T) {
			if err := os.Remove(ckpt); err != nil {
				t.Fatal(err)
			}
		}, 3, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prepare != nil {
				tc.prepare(t)
			}
			q := hwTestPartition(t, dir, tc.replicas)
			defer q.getLog().Close()
			if got := q.highWatermark(); got != tc.want {
				t.Fatalf("HW after reopen = %d, want %d", got, tc.want)
			}
			if l := q.getLog(); l.LogEndOffset() != 10 || l.LogStartOffset() != 3 {
				t.Fatalf("log [%d, %d), want [3, 10)", l.LogStartOffset(), l.LogEndOffset())
			}
		})
	}
}

// writeHWCheckpoint writes a valid checkpoint of hw through a log opened
// on dir and closed again.
func writeHWCheckpoint(t *testing.T, dir string, hw int64) {
	t.Helper()
	l := openTestLogAt(t, dir)
	if err := l.WriteHighWatermark(hw); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSealedCommittedKicks: the tiering kick fires when the high watermark
// passes the end of a sealed segment: at once when it already has, once for
// several passed together, never before, also when rolls are reported out
// of order, and not again for a segment already passed.
func TestSealedCommittedKicks(t *testing.T) {
	kicks := 0
	p := &partition{sealedCommitted: func() { kicks++ }}
	expect := func(want int, what string) {
		t.Helper()
		if kicks != want {
			t.Fatalf("%s: %d kicks, want %d", what, kicks, want)
		}
	}
	p.advanceHighWatermark(50)
	p.noteSealed(40) // already committed
	expect(1, "seal below the HW")
	p.noteSealed(200)
	p.noteSealed(100) // a concurrent appender's earlier roll, reported late
	p.noteSealed(300)
	p.advanceHighWatermark(99)
	expect(1, "HW short of every seal")
	p.advanceHighWatermark(100)
	expect(2, "HW at the first seal's end")
	p.advanceHighWatermark(350)
	expect(3, "HW past two seals at once")
	p.advanceHighWatermark(400)
	p.noteSealed(300) // a repeat of a passed seal
	expect(4, "a seal at or below the HW kicks")
	p.advanceHighWatermark(500)
	expect(4, "nothing sealed left")
	if f := p.sealFirst.Load(); f != 0 || len(p.sealEnds) != 0 {
		t.Fatalf("left over: first %d, ends %v", f, p.sealEnds)
	}
	// Without a tier nothing is recorded.
	q := &partition{}
	q.noteSealed(10)
	if len(q.sealEnds) != 0 {
		t.Fatalf("untiered partition recorded seals %v", q.sealEnds)
	}
}
