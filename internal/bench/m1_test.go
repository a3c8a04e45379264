package bench

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stratabroker/strata/internal/harness"
)

func TestM1Figures(t *testing.T) {
	lat := make([]float64, 200)
	for i := range lat {
		lat[i] = float64(i + 1) // 1…200 ms
	}
	r := m1Figures(lat, 2, Measured(0.5, "s"), 3)
	want := map[string]float64{
		FigCommitP50: 100, FigCommitP99: 198, FigCommits: 200,
		FigOffsetsPerS: 200 * m1Partitions / 2, FigRateRatio: 200 * m1Partitions / 2 / float64(m1RateGoal),
		FigErrors: 3, FigSeconds: 2, FigCPUSeconds: 0.5,
	}
	for f, w := range want {
		if v := r[f]; !v.OK() || *v.V != w {
			t.Errorf("%s = %+v, want %v", f, v, w)
		}
	}
	empty := m1Figures(nil, 2, Measured(0.5, "s"), 7)
	for _, f := range []string{FigCommitP50, FigCommitP99, FigOffsetsPerS, FigRateRatio} {
		if v := empty[f]; v.OK() || v.Reason == "" {
			t.Errorf("no commits: %s = %+v, want unmeasured with a reason", f, v)
		}
	}
}

func TestM1CeilingVerdict(t *testing.T) {
	var m1 Benchmark
	for _, b := range Benchmarks() {
		if b.ID == "M1" {
			m1 = b
		}
	}
	if !m1.Ceiling || m1.Primary != FigCommitP99 || m1.Limit != LimitLFsyncP99 || m1.Goal != 4 {
		t.Fatalf("M1 row %+v", m1)
	}
	lat := func(p99 float64) Rep {
		l := make([]float64, 100)
		for i := range l {
			l[i] = 1
		}
		l[98], l[99] = p99, p99
		return m1Figures(l, 1, Measured(1, "s"), 0)
	}
	for _, tc := range []struct {
		p99, limit float64
		want       string
	}{
		{8, 2, VerdictPass},  // ratio 4: at the ceiling
		{9, 2, VerdictFail},  // ratio 4.5
		{1, 10, VerdictPass}, // ratio 0.1
	} {
		br := BenchReport{ID: "M1", Primary: m1.Primary, Limit: m1.Limit, LimitFactor: 1, Goal: m1.Goal, Ceiling: true,
			Reps: []RepReport{{Rep: 1, Figures: lat(tc.p99)}}}
		br.finish(Measured(tc.limit, "ms"))
		if br.Verdict != tc.want {
			t.Errorf("p99 %v ms, L_fsync p99 %v ms: verdict %s (%s), want %s", tc.p99, tc.limit, br.Verdict, br.Why, tc.want)
		}
		if _, ok := br.Reps[0].Figures[FigEtcdRatio]; ok {
			t.Errorf("etcd ratio without an etcd figure")
		}
	}
	// The etcd floor is set against the same limit as the primary figure.
	br := BenchReport{ID: "M1", Primary: m1.Primary, Limit: m1.Limit, LimitFactor: 1, Goal: m1.Goal, Ceiling: true,
		Reps: []RepReport{{Rep: 1, Figures: Rep{FigCommitP99: Measured(2, "ms"), FigEtcdP99: Measured(3, "ms")}}}}
	br.finish(Measured(0.5, "ms"))
	if v := br.Reps[0].Figures[FigEtcdRatio]; !v.OK() || *v.V != 6 {
		t.Errorf("etcd_p99_ratio = %+v, want 6", v)
	}
}

// TestM1AgainstBroker runs M1 briefly against a real broker: measured with
// no errors when the broker serves OffsetCommit, else unmeasured saying so.
func TestM1AgainstBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("short: skips the broker run")
	}
	bin, err := harness.Binary()
	if err != nil {
		t.Skipf("strata binary unavailable (go build ./cmd/strata failed): %v", firstLine(err.Error()))
	}
	out, data := t.TempDir(), t.TempDir()
	var stdout, stderr bytes.Buffer
	run([]string{"--quick", "--only", "M1", "--reps", "1", "--duration", "2s", "--warmup", "500ms",
		"--out", out, "--data-dir", data, "--bin", bin}, &stdout, &stderr)
	t.Logf("stdout:\n%s", stdout.String())
	r := readReport(t, out)
	if len(r.Benchmarks) != 1 || r.Benchmarks[0].ID != "M1" {
		t.Fatalf("benchmarks %+v", r.Benchmarks)
	}
	b := r.Benchmarks[0]
	if b.Verdict == VerdictUnmeasured && strings.Contains(b.Why, ErrNotAdvertised.Error()) {
		t.Skipf("M1 unmeasured as it should be while the broker lacks OffsetCommit: %s", b.Why)
	}
	if b.Verdict != VerdictPass && b.Verdict != VerdictFail {
		t.Fatalf("M1: %s: %s\nstderr:\n%s", b.Verdict, b.Why, stderr.String())
	}
	rep := b.Reps[0].Figures
	for _, f := range []string{FigCommitP50, FigCommitP99, FigOffsetsPerS, FigCommits, FigRatio, FigEtcdP50, FigEtcdP99, FigEtcdRatio, FigVsEtcd} {
		if v := rep[f]; !v.OK() || *v.V <= 0 {
			t.Errorf("M1 %s = %+v", f, v)
		}
	}
	if v := rep[FigErrors]; !v.OK() || *v.V != 0 {
		t.Errorf("M1 errors = %+v, want 0", v)
	}
	if left := mustReadDir(t, data); len(left) != 0 {
		t.Errorf("data dir not cleaned: %v", left)
	}
}
