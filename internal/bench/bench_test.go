package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pierrec/lz4/v4"
)

func ptr(v float64) *float64 { return &v }

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100..1, unsorted
	}
	tests := []struct {
		name    string
		samples []float64
		p       float64
		want    float64
		wantErr bool
	}{
		{"p50 of 1..100", hundred, 50, 50, false},
		{"p99 of 1..100", hundred, 99, 99, false},
		{"p100 of 1..100", hundred, 100, 100, false},
		{"p1 of 1..100", hundred, 1, 1, false},
		{"p50 of three", []float64{5, 1, 3}, 50, 3, false},
		{"p99 of three", []float64{5, 1, 3}, 99, 5, false},
		{"p34 of three", []float64{5, 1, 3}, 34, 3, false},
		{"p33 of three", []float64{5, 1, 3}, 33, 1, false},
		{"single", []float64{7}, 99.9, 7, false},
		{"empty", nil, 50, 0, true},
		{"p0", []float64{1}, 0, 0, true},
		{"p101", []float64{1}, 101, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := slices.Clone(tc.samples)
			got, err := Percentile(tc.samples, tc.p)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
			if !slices.Equal(orig, tc.samples) {
				t.Fatalf("input modified: %v", tc.samples)
			}
		})
	}
	if _, err := Percentile(nil, 50); !errors.Is(err, ErrNoSamples) {
		t.Fatalf("empty: err = %v, want ErrNoSamples", err)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		samples []float64
		want    float64
	}{
		{[]float64{3}, 3},
		{[]float64{9, 1, 5}, 5},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 20}, 15},
		{[]float64{-1, 7, 7, 100, 0}, 7},
	}
	for _, tc := range tests {
		got, err := Median(tc.samples)
		if err != nil || got != tc.want {
			t.Errorf("Median(%v) = %v, %v; want %v", tc.samples, got, err, tc.want)
		}
	}
	if _, err := Median(nil); !errors.Is(err, ErrNoSamples) {
		t.Errorf("Median(nil) err = %v", err)
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize([]Value{Measured(30, "MB/s"), Unmeasured("MB/s", "broker died"), Measured(10, "MB/s"), Measured(20, "MB/s")})
	if s.N != 3 || *s.Min != 10 || *s.Median != 20 || *s.Max != 30 || s.Unit != "MB/s" || s.Reason != "" {
		t.Fatalf("summary = %+v (min %v med %v max %v)", s, *s.Min, *s.Median, *s.Max)
	}
	s = Summarize([]Value{Unmeasured("MB/s", "first"), Unmeasured("MB/s", "second")})
	if s.N != 0 || s.Min != nil || s.Median != nil || s.Max != nil || s.Reason != "first" {
		t.Fatalf("all unmeasured: %+v", s)
	}
	if v := s.MedianValue(); v.OK() || v.Reason != "first" {
		t.Fatalf("MedianValue = %+v", v)
	}
	if s := Summarize(nil); s.Reason != "no repetition measured" {
		t.Fatalf("empty: %+v", s)
	}
}

func TestMeasuredAndRatio(t *testing.T) {
	if v := Measured(math.NaN(), "x"); v.OK() || v.Reason == "" {
		t.Fatalf("NaN measured: %+v", v)
	}
	if v := Measured(math.Inf(1), "x"); v.OK() {
		t.Fatalf("Inf measured: %+v", v)
	}
	tests := []struct {
		name     string
		num, den Value
		want     *float64
		reason   string
	}{
		{"plain", Measured(50, "MB/s"), Measured(200, "MB/s"), ptr(0.25), ""},
		{"num missing", Unmeasured("MB/s", "boom"), Measured(1, ""), nil, "numerator unmeasured: boom"},
		{"den missing", Measured(1, ""), Unmeasured("MB/s", "no disk"), nil, "limit unmeasured: no disk"},
		{"den zero", Measured(1, ""), Measured(0, ""), nil, "limit is 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Ratio(tc.num, tc.den)
			if (got.V == nil) != (tc.want == nil) || (got.V != nil && *got.V != *tc.want) || got.Reason != tc.reason {
				t.Fatalf("Ratio = %+v, want %v %q", got, tc.want, tc.reason)
			}
		})
	}
}

func TestDiffers(t *testing.T) {
	tests := []struct {
		a, b Value
		want bool
	}{
		{Measured(100, ""), Measured(129, ""), false},
		{Measured(100, ""), Measured(131, ""), true},
		{Measured(131, ""), Measured(100, ""), true},
		{Measured(100, ""), Measured(77, ""), false}, // 100/77 = 1.298
		{Measured(100, ""), Measured(76, ""), true},  // 100/76 = 1.316
		{Measured(100, ""), Unmeasured("", "x"), false},
		{Measured(0, ""), Measured(5, ""), false},
	}
	for i, tc := range tests {
		if got := Differs(tc.a, tc.b, NoisyThreshold); got != tc.want {
			t.Errorf("%d: Differs(%v, %v) = %v, want %v", i, tc.a.Float(), tc.b.Float(), got, tc.want)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	// Fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"plain", "4242 (strata) S 1 4242 4242 0 -1 4194560 1000 0 2 0 1234 56 7 8 20 0 12 0 99 1000 200", 1290, false},
		{"comm with spaces and parens", "77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 10 20 0 0 20 0", 30, false},
		{"newline", "1 (x) S 0 0 0 0 0 0 0 0 0 0 3 4 0 0 0 0\n", 7, false},
		{"no paren", "1 x S 0 0 0 0 0 0 0 0 0 0 3 4", 0, true},
		{"too short", "1 (x) S 0 0 0", 0, true},
		{"bad utime", "1 (x) S 0 0 0 0 0 0 0 0 0 0 a 4 0 0 0 0", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProcStat([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParseProcStat = %d, %v; want %d, err %v", got, err, tc.want, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrProcFormat) {
				t.Fatalf("err %v is not ErrProcFormat", err)
			}
		})
	}
}

func TestProcCPUTicksSelf(t *testing.T) {
	// Burn a little CPU so that the reading cannot be an uninitialised zero
	// by accident of a wrong field: our own process has run for > 0 ticks
	// once it has spun for 50 ms.
	end := time.Now().Add(50 * time.Millisecond)
	x := 0
	for i := 0; time.Now().Before(end) && i < 1<<30; i++ {
		x += i
	}
	_ = x
	ticks, err := ProcCPUTicks(selfPID())
	if err != nil {
		t.Fatal(err)
	}
	if ticks < 1 {
		t.Fatalf("own cpu ticks = %d after spinning 50 ms", ticks)
	}
	if _, err := ProcCPUTicks(0); err == nil {
		t.Fatal("pid 0: no error")
	}
	v := cpuSeconds(cpuSnapshot{ticks: 100}, cpuSnapshot{ticks: 250})
	if !v.OK() || *v.V != 1.5 {
		t.Fatalf("cpuSeconds = %+v, want 1.5", v)
	}
	if v := cpuSeconds(cpuSnapshot{ticks: 100}, cpuSnapshot{ticks: 50}); v.OK() {
		t.Fatalf("backwards ticks measured: %+v", v)
	}
	if v := cpuSeconds(cpuSnapshot{err: errors.New("gone")}, cpuSnapshot{ticks: 50}); v.OK() || v.Reason != "gone" {
		t.Fatalf("error snapshot: %+v", v)
	}
}

func TestParseLoadAvg(t *testing.T) {
	got, err := ParseLoadAvg([]byte("0.52 1.58 10.25 1/467 12345\n"))
	if err != nil || got != [3]float64{0.52, 1.58, 10.25} {
		t.Fatalf("ParseLoadAvg = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0.5 0.5", "x 1 2 3/4 5"} {
		if _, err := ParseLoadAvg([]byte(bad)); !errors.Is(err, ErrProcFormat) {
			t.Errorf("ParseLoadAvg(%q) err = %v", bad, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"2GiB", 2 << 30, true},
		{"128MiB", 128 << 20, true},
		{"128mib", 128 << 20, true},
		{"4KiB", 4096, true},
		{"1GB", 1e9, true},
		{"10MB", 10e6, true},
		{"1048576", 1 << 20, true},
		{"512B", 512, true},
		{" 3 GiB ", 3 << 30, true},
		{"", 0, false},
		{"GiB", 0, false},
		{"-1", 0, false},
		{"1.5GiB", 0, false},
		{"99999999999TiB", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// batch builds a record batch v2 whose header says base, lastOffsetDelta
// and magic, with bodyLen bytes of records after the header.
func batch(base int64, delta int32, magic byte, bodyLen int) []byte {
	b := make([]byte, batchHeaderLen+bodyLen)
	binary.BigEndian.PutUint64(b[0:], uint64(base))
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-batchLenPrefix))
	b[16] = magic
	binary.BigEndian.PutUint32(b[23:], uint32(delta))
	return b
}

func TestWalkBatches(t *testing.T) {
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	b1 := batch(100, 9, 2, 39)   // 100..109, 100 bytes
	b2 := batch(110, 0, 2, 139)  // 110, 200 bytes
	b3 := batch(111, 4, 2, 1000) // to be truncated
	tests := []struct {
		name      string
		data      []byte
		want      int64
		wantNext  int64
		wantBytes int64
		wantN     int
		wantErr   bool
	}{
		{"empty", nil, 100, 100, 0, 0, false},
		{"one", b1, 100, 110, 100, 1, false},
		{"two", cat(b1, b2), 100, 111, 300, 2, false},
		{"truncated tail not counted", cat(b1, b2, b3[:500]), 100, 111, 300, 2, false},
		{"tail shorter than prefix", cat(b1, b3[:7]), 100, 110, 100, 1, false},
		{"tail shorter than header", cat(b1, b3[:30]), 100, 110, 100, 1, false},
		{"first batch not at requested offset", b1, 101, 101, 0, 0, true},
		{"gap between batches", cat(b1, batch(111, 0, 2, 0)), 100, 110, 100, 1, true},
		{"magic 1", batch(100, 0, 1, 10), 100, 100, 0, 0, true},
		{"negative delta", batch(100, -1, 2, 10), 100, 100, 0, 0, true},
		{"length below header", func() []byte {
			b := batch(100, 0, 2, 10)
			binary.BigEndian.PutUint32(b[8:], 10)
			return b
		}(), 100, 100, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next, n, cnt, err := WalkBatches(tc.data, tc.want)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadBatch) {
				t.Fatalf("err %v is not ErrBadBatch", err)
			}
			if next != tc.wantNext || n != tc.wantBytes || cnt != tc.wantN {
				t.Fatalf("WalkBatches = next %d bytes %d n %d; want %d %d %d", next, n, cnt, tc.wantNext, tc.wantBytes, tc.wantN)
			}
		})
	}
}

func TestGenerateRecords(t *testing.T) {
	recs := GenerateRecords(1024, 1)
	again := GenerateRecords(1024, 1)
	other := GenerateRecords(1, 2)
	var raw bytes.Buffer
	distinct := map[string]bool{}
	for i, r := range recs {
		if len(r) != RecordSize {
			t.Fatalf("record %d: %d bytes", i, len(r))
		}
		if !json.Valid(r) {
			t.Fatalf("record %d is not JSON: %s", i, r)
		}
		if !bytes.Equal(r, again[i]) {
			t.Fatalf("record %d differs between runs with one seed", i)
		}
		distinct[string(r)] = true
		raw.Write(r)
	}
	if len(distinct) != len(recs) {
		t.Fatalf("%d distinct of %d", len(distinct), len(recs))
	}
	if bytes.Equal(other[0], recs[0]) {
		t.Fatal("seed 2 gave the same first record as seed 1")
	}
	var c bytes.Buffer
	w := lz4.NewWriter(&c)
	if _, err := w.Write(raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ratio := float64(raw.Len()) / float64(c.Len())
	if ratio < 2 || ratio > 4 {
		t.Fatalf("lz4 ratio of 1 MiB = %.2f, want 2..4", ratio)
	}
}

func TestThroughputRep(t *testing.T) {
	r := throughputRep(30_000_000, 3, Measured(1.5, "s"), 2)
	want := map[string]float64{FigMBps: 10, FigMBperCPU: 20, FigBytes: 30e6, FigSeconds: 3, FigCPUSeconds: 1.5, FigErrors: 2}
	for k, w := range want {
		if v := r[k]; !v.OK() || *v.V != w {
			t.Errorf("%s = %+v, want %v", k, v, w)
		}
	}
	r = throughputRep(30_000_000, 3, Unmeasured("s", "no such process"), 0)
	if v := r[FigMBperCPU]; v.OK() || v.Reason != "broker cpu: no such process" {
		t.Errorf("cpu unmeasured: %+v", v)
	}
	if v := r[FigMBps]; !v.OK() || *v.V != 10 {
		t.Errorf("mb_s = %+v", v)
	}
	r = throughputRep(0, 3, Measured(0, "s"), 5)
	if r[FigMBps].OK() || r[FigMBperCPU].OK() || r[FigMBps].Reason != "no bytes counted in the window" {
		t.Errorf("zero bytes: %+v %+v", r[FigMBps], r[FigMBperCPU])
	}
	r = throughputRep(10, 1, Measured(0, "s"), 0)
	if r[FigMBperCPU].OK() {
		t.Errorf("zero cpu measured: %+v", r[FigMBperCPU])
	}
}

func TestLimitFor(t *testing.T) {
	before := Limits{LimitDFsync: Measured(100, "MB/s"), LimitNLo: Unmeasured("MB/s", "no loopback")}
	after := Limits{LimitDFsync: Measured(200, "MB/s"), LimitNLo: Unmeasured("MB/s", "still none")}
	if v := limitFor(before, after, LimitDFsync, 1); !v.OK() || *v.V != 150 || v.Unit != "MB/s" {
		t.Errorf("mean: %+v", v)
	}
	if v := limitFor(before, after, LimitDFsync, 1.0/3); !v.OK() || *v.V != 50 {
		t.Errorf("factor: %+v", v)
	}
	if v := limitFor(before, Limits{}, LimitDFsync, 1); !v.OK() || *v.V != 100 {
		t.Errorf("before only: %+v", v)
	}
	if v := limitFor(before, after, LimitNLo, 1); v.OK() || v.Reason != "no loopback" {
		t.Errorf("none: %+v", v)
	}
	got := noisyLimits(
		Limits{LimitDFsync: Measured(100, ""), LimitNLo: Measured(1000, ""), LimitLFsyncP50: Measured(1, "")},
		Limits{LimitDFsync: Measured(140, ""), LimitNLo: Measured(1100, ""), LimitLFsyncP50: Unmeasured("", "x")})
	if !slices.Equal(got, []string{LimitDFsync}) {
		t.Errorf("noisyLimits = %v", got)
	}
}

func TestSelect(t *testing.T) {
	table := Benchmarks()
	ids := func(bs []Benchmark) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.ID)
		}
		return out
	}
	tests := []struct {
		only []string
		want []string
		err  bool
	}{
		{nil, []string{"P1", "P1-lz4", "P2", "L1", "C1", "C2", "U1", "U1-steady", "M1"}, false},
		{[]string{"u1"}, []string{"U1", "U1-steady"}, false},
		{[]string{"l1", "P2"}, []string{"P2", "L1"}, false},
		{[]string{"m1"}, []string{"M1"}, false},
		{[]string{"P1"}, []string{"P1", "P1-lz4"}, false},
		{[]string{"p1-LZ4"}, []string{"P1-lz4"}, false},
		{[]string{"C1", "P1"}, []string{"P1", "P1-lz4", "C1"}, false},
		{[]string{"Z9"}, nil, true},
	}
	for _, tc := range tests {
		got, err := Select(table, tc.only)
		if (err != nil) != tc.err || !slices.Equal(ids(got), tc.want) {
			t.Errorf("Select(%v) = %v, %v; want %v", tc.only, ids(got), err, tc.want)
		}
	}
	for _, b := range table {
		if b.Prepare == nil || b.Primary == "" || b.Limit == "" || b.Goal <= 0 || b.LimitFactor <= 0 {
			t.Errorf("incomplete table row %+v", b)
		}
	}
}

func TestParseFlags(t *testing.T) {
	var sink bytes.Buffer
	o, err := parseFlags([]string{"--quick", "--duration", "2s", "--only", "P1, C1"}, &sink)
	if err != nil {
		t.Fatal(err)
	}
	if o.Duration != 2*time.Second || o.Warmup != time.Second || o.C1Bytes != 128<<20 || o.Reps != 3 ||
		!slices.Equal(o.Only, []string{"P1", "C1"}) || o.Limits.DFsyncBytes != 16<<20 {
		t.Fatalf("quick options = %+v", o)
	}
	o, err = parseFlags(nil, &sink)
	if err != nil {
		t.Fatal(err)
	}
	if o.Duration != 30*time.Second || o.Warmup != 5*time.Second || o.C1Bytes != 2<<30 || o.Out != "bench-results" ||
		o.Limits != DefaultLimitParams() {
		t.Fatalf("default options = %+v", o)
	}
	for _, bad := range [][]string{{"--reps", "0"}, {"--only", "X1"}, {"--c1-bytes", "lots"}, {"extra"}, {"--nope"}} {
		if _, err := parseFlags(bad, &sink); err == nil {
			t.Errorf("parseFlags(%v): no error", bad)
		}
	}
}

func TestReportJSONShape(t *testing.T) {
	br := BenchReport{ID: "P1", Primary: FigMBps, Limit: LimitDFsync, LimitFactor: 1, Goal: 0.5,
		Reps: []RepReport{
			{Rep: 1, Figures: throughputRep(10e6, 1, Measured(1, "s"), 0)},
			{Rep: 2, Figures: Rep{FigMBps: Unmeasured("MB/s", "broker exited")}, Error: "broker exited"},
			{Rep: 3, Figures: throughputRep(30e6, 1, Measured(1, "s"), 0)},
		}}
	br.finish(Measured(40, "MB/s"))
	if br.Verdict != VerdictPass {
		t.Fatalf("verdict %s (%s)", br.Verdict, br.Why)
	}
	s := br.Summary[FigRatio]
	if s.N != 2 || *s.Min != 0.25 || *s.Median != 0.5 || *s.Max != 0.75 {
		t.Fatalf("ratio summary %+v", s)
	}
	if s := br.Summary[FigMBperCPU]; s.N != 2 || *s.Median != 20 {
		t.Fatalf("mb/cpu summary %+v", s)
	}
	fail := BenchReport{ID: "C1", Primary: FigMBps, Limit: LimitNLo, Goal: 0.35,
		Reps: []RepReport{{Rep: 1, Figures: throughputRep(10e6, 1, Measured(1, "s"), 0)}}}
	fail.finish(Measured(100, "MB/s"))
	if fail.Verdict != VerdictFail {
		t.Fatalf("0.1 vs 0.35: verdict %s", fail.Verdict)
	}
	unm := BenchReport{ID: "C1", Primary: FigMBps, Limit: LimitNLo, Goal: 0.35, Error: "broker would not start", Reps: []RepReport{}}
	unm.finish(Unmeasured("MB/s", "no loopback"))
	if unm.Verdict != VerdictUnmeasured || unm.Why != "broker would not start" {
		t.Fatalf("unmeasured: %s %q", unm.Verdict, unm.Why)
	}

	start := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	r := &Report{Schema: ReportSchema, Started: start, Finished: start.Add(time.Minute), GitCommit: "abc", NProc: 2,
		LoadAvg: LoadAvgs{Start: LoadAvg{Load: &[3]float64{1, 2, 3}}, End: LoadAvg{Reason: "no /proc"}},
		Limits: LimitsReport{
			Before:      Limits{LimitDFsync: Measured(40, "MB/s"), LimitNLo: Unmeasured("MB/s", "refused")},
			After:       Limits{LimitDFsync: Measured(40, "MB/s"), LimitNLo: Unmeasured("MB/s", "refused")},
			NoisyLimits: []string{}},
		Benchmarks: []BenchReport{br, unm}}
	dir := t.TempDir()
	path, err := writeJSON(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, "/20240506T070809Z.json") {
		t.Fatalf("path %s", path)
	}
	var doc map[string]any
	data := mustRead(t, path)
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	get := func(keys ...any) any {
		t.Helper()
		var cur any = doc
		for _, k := range keys {
			switch k := k.(type) {
			case string:
				m, ok := cur.(map[string]any)
				if !ok {
					t.Fatalf("%v: not an object at %q", keys, k)
				}
				if cur, ok = m[k]; !ok {
					t.Fatalf("%v: no key %q", keys, k)
				}
			case int:
				a, ok := cur.([]any)
				if !ok || k >= len(a) {
					t.Fatalf("%v: no index %d", keys, k)
				}
				cur = a[k]
			}
		}
		return cur
	}
	checks := []struct {
		path []any
		want any
	}{
		{[]any{"schema"}, float64(1)},
		{[]any{"git_commit"}, "abc"},
		{[]any{"nproc"}, float64(2)},
		{[]any{"started"}, "2024-05-06T07:08:09Z"},
		{[]any{"loadavg", "start", "load", 2}, float64(3)},
		{[]any{"loadavg", "end", "load"}, nil},
		{[]any{"loadavg", "end", "reason"}, "no /proc"},
		{[]any{"limits", "before", "D_fsync", "value"}, float64(40)},
		{[]any{"limits", "before", "D_fsync", "unit"}, "MB/s"},
		{[]any{"limits", "after", "N_lo", "value"}, nil},
		{[]any{"limits", "after", "N_lo", "reason"}, "refused"},
		{[]any{"limits", "noisy"}, false},
		{[]any{"benchmarks", 0, "id"}, "P1"},
		{[]any{"benchmarks", 0, "verdict"}, "PASS"},
		{[]any{"benchmarks", 0, "limit_value", "value"}, float64(40)},
		{[]any{"benchmarks", 0, "reps", 1, "figures", "mb_s", "value"}, nil},
		{[]any{"benchmarks", 0, "reps", 1, "figures", "mb_s", "reason"}, "broker exited"},
		{[]any{"benchmarks", 0, "reps", 1, "error"}, "broker exited"},
		{[]any{"benchmarks", 0, "reps", 2, "figures", "ratio", "value"}, 0.75},
		{[]any{"benchmarks", 0, "summary", "mb_s", "median"}, float64(20)},
		{[]any{"benchmarks", 0, "summary", "mb_s", "min"}, float64(10)},
		{[]any{"benchmarks", 0, "summary", "mb_s", "max"}, float64(30)},
		{[]any{"benchmarks", 1, "verdict"}, "UNMEASURED"},
		{[]any{"benchmarks", 1, "error"}, "broker would not start"},
	}
	for _, c := range checks {
		if got := get(c.path...); got != c.want {
			t.Errorf("%v = %#v, want %#v", c.path, got, c.want)
		}
	}
	var table bytes.Buffer
	PrintTable(&table, r)
	for _, want := range []string{"D_fsync", "P1 vs D_fsync", "PASS", "UNMEASURED (broker would not start)", "rep 2 failed: broker exited", "n/a"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestMeasureLimitsSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("short: skips fsync and loopback measurements")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := MeasureLimits(ctx, dir, LimitParams{DFsyncBytes: 4 << 20, LFsyncCount: 50, NLoDuration: 300 * time.Millisecond, FsyncTimeout: 30 * time.Second})
	for _, n := range limitNames {
		v, ok := l[n]
		if !ok || !v.OK() || *v.V <= 0 {
			t.Errorf("%s = %+v, want a positive measurement", n, v)
		}
	}
	if l[LimitLFsyncP50].Float() > l[LimitLFsyncP99].Float() {
		t.Errorf("p50 %v > p99 %v", l[LimitLFsyncP50].Float(), l[LimitLFsyncP99].Float())
	}
	if entries := mustReadDir(t, dir); len(entries) != 0 {
		t.Errorf("limit files left behind: %v", entries)
	}
	if _, err := MeasureDFsync(ctx, dir, 1000, time.Second); err == nil {
		t.Error("D_fsync of < 1 MiB: no error")
	}
	done, cancel2 := context.WithCancel(ctx)
	cancel2()
	if _, _, err := MeasureLFsync(done, dir, 10, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("L_fsync with cancelled ctx: %v", err)
	}
}
