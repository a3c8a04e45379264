package bench

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratabroker/strata/internal/harness"
)

// readReport returns the single JSON report in dir.
func readReport(t *testing.T, dir string) Report {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) != 1 {
		t.Fatalf("reports in %s: %v (%v)", dir, files, err)
	}
	var r Report
	if err := json.Unmarshal(mustRead(t, files[0]), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRunWithoutBroker runs the whole tool with a strata binary that does
// not exist: limits are measured, every benchmark is recorded unmeasured
// with its reason, the report is written and the data dir cleaned.
func TestRunWithoutBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("short: skips fsync and loopback measurements")
	}
	out, data := t.TempDir(), t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run([]string{"--quick", "--reps", "2", "--only", "C1,P1", "--out", out, "--data-dir", data,
		"--bin", filepath.Join(data, "no-such-strata")}, &stdout, &stderr)
	if code != ExitGoals {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, ExitGoals, stdout.String(), stderr.String())
	}
	r := readReport(t, out)
	if r.Schema != ReportSchema || r.NProc < 1 || r.GitCommit == "" || !r.Options.Quick || r.Options.Reps != 2 {
		t.Fatalf("header: %+v", r)
	}
	for _, n := range limitNames {
		for when, l := range map[string]Limits{"before": r.Limits.Before, "after": r.Limits.After} {
			if v := l[n]; !v.OK() || *v.V <= 0 {
				t.Errorf("limit %s %s = %+v", n, when, v)
			}
		}
	}
	var ids []string
	for _, b := range r.Benchmarks {
		ids = append(ids, b.ID)
		if b.Verdict != VerdictUnmeasured || !strings.Contains(b.Error, "no-such-strata") || b.Why != b.Error {
			t.Errorf("%s: verdict %s error %q why %q", b.ID, b.Verdict, b.Error, b.Why)
		}
		if b.LimitValue.V == nil {
			t.Errorf("%s: limit value unmeasured: %+v", b.ID, b.LimitValue)
		}
	}
	if strings.Join(ids, ",") != "P1,P1-lz4,C1" {
		t.Errorf("benchmarks %v", ids)
	}
	if left := mustReadDir(t, data); len(left) != 0 {
		t.Errorf("data dir not cleaned: %v", left)
	}
	for _, want := range []string{"N_lo", "UNMEASURED", "report: " + out} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
}

// TestSmokeQuick runs `strata bench --quick` against real brokers. It needs
// the strata binary; it skips (saying why) while ./cmd/strata does not build.
func TestSmokeQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("short: skips the broker smoke run")
	}
	bin, err := harness.Binary()
	if err != nil {
		t.Skipf("strata binary unavailable (go build ./cmd/strata failed): %v", firstLine(err.Error()))
	}
	out, data := t.TempDir(), t.TempDir()
	var stdout, stderr bytes.Buffer
	run([]string{"--quick", "--only", "P1,C1", "--reps", "1", "--duration", "1s", "--warmup", "1s", "--c1-bytes", "32MiB", // M1: m1_test.go
		"--out", out, "--data-dir", data, "--bin", bin}, &stdout, &stderr)
	t.Logf("stdout:\n%s", stdout.String())
	r := readReport(t, out)
	if len(r.Benchmarks) != 3 {
		t.Fatalf("%d benchmarks", len(r.Benchmarks))
	}
	for _, b := range r.Benchmarks {
		if b.Verdict != VerdictPass && b.Verdict != VerdictFail {
			t.Errorf("%s: %s: %s\nstderr:\n%s", b.ID, b.Verdict, b.Why, stderr.String())
			continue
		}
		rep := b.Reps[0].Figures
		for _, f := range []string{FigMBps, FigRatio, FigBytes} {
			if v := rep[f]; !v.OK() || *v.V <= 0 {
				t.Errorf("%s %s = %+v", b.ID, f, v)
			}
		}
	}
	if b := r.Benchmarks[2]; b.ID == "C1" && b.Reps[0].Figures[FigBytes].Float() < 32<<20 {
		t.Errorf("C1 read %v bytes, want ≥ 32 MiB of batches", b.Reps[0].Figures[FigBytes].Float())
	}
	if left := mustReadDir(t, data); len(left) != 0 {
		t.Errorf("data dir not cleaned: %v", left)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
