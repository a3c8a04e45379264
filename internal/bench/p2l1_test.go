package bench

import (
	"bytes"
	"testing"

	"github.com/stratabroker/strata/internal/harness"
)

func TestL1Figures(t *testing.T) {
	ack := []float64{1, 2, 3, 4, 100}
	e2e := []float64{2, 3, 4, 5, 6, 7, 8, 9, 10, 200}
	r := l1Figures(ack, e2e, 12, 2, 1, Measured(0.5, "s"), 1)
	want := map[string]float64{
		FigAckP50: 3, FigAckP99: 100, FigAckP999: 100,
		FigE2EP50: 6, FigE2EP99: 200, FigE2EP999: 200,
		FigE2EP50Gol: 6 / l1P50GoalMs, FigSent: 12, FigMissing: 2, FigErrors: 3,
	}
	for k, w := range want {
		if v := r[k]; !v.OK() || *v.V != w {
			t.Errorf("%s = %+v, want %v", k, v, w)
		}
	}
	empty := l1Figures(nil, nil, 0, 0, 1, Measured(0, "s"), 0)
	for _, k := range []string{FigAckP50, FigE2EP99, FigE2EP50Gol} {
		if empty[k].OK() || empty[k].Reason == "" {
			t.Errorf("no samples: %s = %+v, want unmeasured with a reason", k, empty[k])
		}
	}
}

// TestSmokeP2L1 runs P2 and L1 once, briefly, on a real 3-broker cluster.
func TestSmokeP2L1(t *testing.T) {
	if testing.Short() {
		t.Skip("short: skips the 3-broker smoke run")
	}
	bin, err := harness.Binary()
	if err != nil {
		t.Skipf("strata binary unavailable (go build ./cmd/strata failed): %v", firstLine(err.Error()))
	}
	out, data := t.TempDir(), t.TempDir()
	var stdout, stderr bytes.Buffer
	run([]string{"--quick", "--only", "P2,L1", "--reps", "1", "--duration", "1s", "--warmup", "1s",
		"--out", out, "--data-dir", data, "--bin", bin}, &stdout, &stderr)
	t.Logf("stdout:\n%s", stdout.String())
	r := readReport(t, out)
	if len(r.Benchmarks) != 2 || r.Benchmarks[0].ID != "P2" || r.Benchmarks[1].ID != "L1" {
		t.Fatalf("benchmarks %+v, want P2 then L1", r.Benchmarks)
	}
	for _, b := range r.Benchmarks {
		if b.Verdict != VerdictPass && b.Verdict != VerdictFail {
			t.Fatalf("%s: %s: %s\nstderr:\n%s", b.ID, b.Verdict, b.Why, stderr.String())
		}
	}
	p2 := r.Benchmarks[0].Reps[0].Figures
	for _, f := range []string{FigMBps, FigRatio, FigBytes} {
		if v := p2[f]; !v.OK() || *v.V <= 0 {
			t.Errorf("P2 %s = %+v", f, v)
		}
	}
	l1 := r.Benchmarks[1].Reps[0].Figures
	for _, f := range []string{FigAckP50, FigAckP99, FigE2EP50, FigE2EP99, FigE2EP999, FigRatio, FigFloorP50, FigFloorP99, FigFloorRat, FigVsFloor} {
		if v := l1[f]; !v.OK() || *v.V <= 0 {
			t.Errorf("L1 %s = %+v", f, v)
		}
	}
	// 1 s at 5,000 msg/s, every record consumed.
	if n := l1[FigSent].Float(); n < 4900 || n > 5001 {
		t.Errorf("L1 sent %v records in a 1 s window, want 5,000", n)
	}
	if m := l1[FigMissing].Float(); m != 0 {
		t.Errorf("L1: %v records never consumed", m)
	}
	if left := mustReadDir(t, data); len(left) != 0 {
		t.Errorf("data dir not cleaned: %v", left)
	}
}
