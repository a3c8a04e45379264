package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// Options are the run's settings, from the command line.
type Options struct {
	Only     []string      // benchmark ids or families to run; empty = all
	Reps     int           // repetitions per benchmark
	Duration time.Duration // measured window of saturating benchmarks
	Warmup   time.Duration // unmeasured lead-in before the window
	C1Bytes  int64         // bytes produced before C1 consumes them
	Out      string        // directory of the JSON reports
	DataDir  string        // where brokers and D_fsync write
	Bin      string        // strata binary
	Quick    bool          // smoke run: short durations, small sizes
	Limits   LimitParams
}

// Env is what a benchmark gets to work with.
type Env struct {
	Opts    Options
	DataDir string    // this run's private directory; removed at the end
	Bin     string    // strata binary
	Log     io.Writer // progress lines (stderr)

	Before Limits // the limits measured before the benchmarks (U1 paces its steady load by S_put)

	minio    *minioProc // started when C2 or U1 runs
	minioErr string     // why there is none
}

func (e *Env) logf(format string, args ...any) {
	if e.Log != nil {
		fmt.Fprintf(e.Log, "bench: "+format+"\n", args...)
	}
}

// Figure names used in reports.
const (
	FigMBps       = "mb_s"         // wall MB/s
	FigMBperCPU   = "mb_per_cpu_s" // MB per broker-CPU-second
	FigCPUSeconds = "cpu_s"        // broker CPU seconds in the window
	FigRatio      = "ratio"        // primary figure / limit
	FigBytes      = "bytes"        // bytes counted in the window
	FigSeconds    = "seconds"      // length of the window
	FigErrors     = "errors"       // client-side errors in the window
)

// Rep is the figures of one repetition, by figure name.
type Rep map[string]Value

// Runner runs the repetitions of one benchmark after its Prepare.
type Runner interface {
	// Rep measures repetition i (0-based). An error means the repetition
	// measured nothing; partial figures may still be returned.
	Rep(ctx context.Context, i int) (Rep, error)
	// Close stops every process the benchmark started and removes its data.
	Close() error
}

// Benchmark is one row of the table of named benchmarks.
type Benchmark struct {
	ID          string   // "P1", "P1-lz4", "C1"…: the family is the part before '-'
	Title       string   // one line
	Primary     string   // figure compared with the limit (FigMBps…)
	Limit       string   // limit name (LimitDFsync…)
	LimitFactor float64  // the limit is Limit × LimitFactor (P2: 1/3)
	Goal        float64  // the median ratio must be ≥ Goal (≤ Goal when Ceiling)
	Ceiling     bool     // lower is better (latencies): the goal is a ceiling
	Shown       []string // figures in the printed table; nil = MB/s, MB/cpu-s, ratio
	Prepare     func(ctx context.Context, env *Env) (Runner, error)
}

// Benchmarks returns the table of named benchmarks, in run order.
func Benchmarks() []Benchmark {
	return []Benchmark{
		{ID: "P1", Title: "produce, 1 broker, RF=1, acks=1, saturating, no compression",
			Primary: FigMBps, Limit: LimitDFsync, LimitFactor: 1, Goal: 0.5, Shown: p1Shown, Prepare: prepareP1("none")},
		{ID: "P1-lz4", Title: "produce, 1 broker, RF=1, acks=1, saturating, lz4",
			Primary: FigMBps, Limit: LimitDFsync, LimitFactor: 1, Goal: 0.5, Shown: p1Shown, Prepare: prepareP1("lz4")},
		{ID: "P2", Title: "produce, 3 brokers on loopback, RF=3, min.insync.replicas=2, acks=all, saturating",
			Primary: FigMBps, Limit: LimitDFsync, LimitFactor: 1.0 / 3, Goal: 0.5, Prepare: prepareP2},
		{ID: "L1", Title: "latency on P2's cluster, 5,000 msg/s open-loop, linger 1 ms, one tailing consumer (e2e p99 goal; p50 goal 5 ms beside it)",
			Primary: FigE2EP99, Limit: LimitLFsyncP99, LimitFactor: 1, Goal: 3, Ceiling: true, Shown: l1Shown, Prepare: prepareL1},
		{ID: "C1", Title: "hot consume from earliest, 6 partitions",
			Primary: FigMBps, Limit: LimitNLo, LimitFactor: 1, Goal: 0.35, Prepare: prepareC1},
		{ID: "C2", Title: "cold consume from MinIO, chunk cache empty, one consumer, 6 partitions",
			Primary: FigMBps, Limit: LimitSGet, LimitFactor: 1, Goal: 0.6, Shown: c2Shown, Prepare: prepareC2},
		{ID: "U1", Title: "upload a backlog of sealed segments to MinIO",
			Primary: FigMBps, Limit: LimitSPut, LimitFactor: 1, Goal: 0.8, Prepare: prepareU1},
		{ID: "U1-steady", Title: "steady upload while producing at S_put/2: keeps up (uploaded MB/s vs S_put/2), seal → uploaded p99, backlog",
			Primary: FigMBps, Limit: LimitSPut, LimitFactor: 0.5, Goal: 0.9, Shown: u1sShown, Prepare: prepareU1Steady},
		{ID: "M1", Title: "offset commits on etcd, 50 groups × 10 partitions in parallel (rate goal ≥ 2,000/s)", Primary: FigCommitP99, Limit: LimitLFsyncP99, LimitFactor: 1, Goal: 4, Ceiling: true, Shown: m1Shown, Prepare: prepareM1},
	}
}

// Select returns the benchmarks of table named by only (ids or families,
// case-insensitive: "P1" selects P1 and P1-lz4); all of them when only is
// empty. An unknown name is an error.
func Select(table []Benchmark, only []string) ([]Benchmark, error) {
	if len(only) == 0 {
		return table, nil
	}
	var out []Benchmark
	for _, b := range table {
		fam, _, _ := strings.Cut(b.ID, "-")
		for _, o := range only {
			if strings.EqualFold(o, b.ID) || strings.EqualFold(o, fam) {
				out = append(out, b)
				break
			}
		}
	}
	for _, o := range only {
		found := false
		for _, b := range out {
			fam, _, _ := strings.Cut(b.ID, "-")
			if strings.EqualFold(o, b.ID) || strings.EqualFold(o, fam) {
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("bench: unknown benchmark %q", o)
		}
	}
	return out, nil
}

// throughputRep turns the raw measurements of a throughput repetition into
// its figures.
func throughputRep(bytes int64, seconds float64, cpu Value, errs int64) Rep {
	r := Rep{
		FigBytes:      Measured(float64(bytes), "B"),
		FigSeconds:    Measured(seconds, "s"),
		FigCPUSeconds: cpu,
		FigErrors:     Measured(float64(errs), ""),
	}
	if bytes <= 0 {
		r[FigMBps] = Unmeasured("MB/s", "no bytes counted in the window")
	} else {
		r[FigMBps] = mbPerSec(bytes, seconds)
	}
	switch {
	case !r[FigMBps].OK():
		r[FigMBperCPU] = Unmeasured("MB/cpu-s", r[FigMBps].Reason)
	case !cpu.OK():
		r[FigMBperCPU] = Unmeasured("MB/cpu-s", "broker cpu: "+cpu.Reason)
	case *cpu.V <= 0:
		r[FigMBperCPU] = Unmeasured("MB/cpu-s", "broker used no measurable cpu (< 1 tick)")
	default:
		r[FigMBperCPU] = Measured(float64(bytes)/1e6 / *cpu.V, "MB/cpu-s")
	}
	return r
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
