package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestProduceAndConsumeAgainstFake drives the P1 load generator and the C1
// preload and lean fetcher against the in-process fake broker, counting
// this test process's own CPU as the "broker" CPU.
func TestProduceAndConsumeAgainstFake(t *testing.T) {
	if testing.Short() {
		t.Skip("short: skips the load loops")
	}
	fb := startFakeBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	pids := []int{os.Getpid()}

	t.Run("P1 window", func(t *testing.T) {
		admin, err := adminClient(fb.addr())
		if err != nil {
			t.Fatal(err)
		}
		ti, err := createTopic(ctx, admin, "p1", 6, 1, nil)
		admin.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(ti.leaders) != 6 {
			t.Fatalf("leaders %v", ti.leaders)
		}
		rep, err := measureProduce(ctx, loadParams{addr: fb.addr(), topic: "p1", partitions: 6, clients: 2, codec: "lz4"},
			GenerateRecords(64, 1), pids, 2*time.Second, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if b := rep[FigBytes].Float(); !(b > 0) || int64(b)%RecordSize != 0 {
			t.Fatalf("bytes %v: want a positive multiple of %d", b, RecordSize)
		}
		if s := rep[FigSeconds].Float(); s < 1 || s > 5 {
			t.Fatalf("window %v s, want ≈ 1", s)
		}
		if !rep[FigMBps].OK() || !rep[FigCPUSeconds].OK() || rep[FigErrors].Float() != 0 {
			t.Fatalf("figures %+v", rep)
		}
		fb.mu.Lock()
		defer fb.mu.Unlock()
		for i, p := range fb.tops["p1"].parts {
			if p.hw == 0 {
				t.Errorf("partition %d got no records", i)
			}
		}
	})

	t.Run("C1 preload and consume", func(t *testing.T) {
		env := &Env{Opts: Options{C1Bytes: 8 << 20}}
		r, err := newC1Runner(ctx, env, fb.addr(), pids)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var recs int64
		for p := range r.end {
			recs += r.end[p] - r.start[p]
		}
		if recs != 8<<10 {
			t.Fatalf("preload: %d records, want %d", recs, 8<<10)
		}
		for i := range 2 {
			rep, err := r.Rep(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			// Every value byte plus batch and record overhead; no more
			// than 10 % overhead for 1 KiB records.
			if b := rep[FigBytes].Float(); b < 8<<20 || b > 1.1*(8<<20) {
				t.Fatalf("rep %d: %v batch bytes for 8 MiB of values", i, b)
			}
			if !rep[FigMBps].OK() {
				t.Fatalf("rep %d: %+v", i, rep[FigMBps])
			}
		}
	})
}
