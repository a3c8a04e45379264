package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stratabroker/strata/internal/harness"
)

// Exit codes of Main.
const (
	ExitOK    = 0 // every selected goal PASSed
	ExitGoals = 1 // a goal FAILed or could not be judged, or the run failed
	ExitUsage = 2 // bad flags
)

// Main runs `strata bench` with args (without the program and subcommand
// names) and returns the process exit code.
func Main(args []string) int {
	return run(args, os.Stdout, os.Stderr)
}

func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintln(stderr, err)
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, path, err := Run(ctx, opts, stderr)
	if r != nil {
		PrintTable(stdout, r)
	}
	if path != "" {
		fmt.Fprintf(stdout, "\nreport: %s\n", path)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ExitGoals
	}
	for _, b := range r.Benchmarks {
		if b.Verdict != VerdictPass {
			return ExitGoals
		}
	}
	return ExitOK
}

func parseFlags(args []string, stderr io.Writer) (Options, error) {
	fs := flag.NewFlagSet("strata bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", "", "comma-separated benchmark ids or families to run (e.g. P1,C1); default all")
	reps := fs.Int("reps", 3, "repetitions per benchmark")
	dur := fs.Duration("duration", 30*time.Second, "measured window of saturating benchmarks")
	warm := fs.Duration("warmup", 5*time.Second, "warm-up before the measured window")
	c1 := fs.String("c1-bytes", "2GiB", "bytes produced before C1 consumes them (e.g. 2GiB, 128MiB)")
	out := fs.String("out", "bench-results", "directory of the JSON reports")
	dataDir := fs.String("data-dir", "", "where brokers and D_fsync write (a private temp dir is made inside; default: the repository's root)")
	bin := fs.String("bin", "", "strata binary (default: $STRATA_BIN, this executable if it is strata, else go build ./cmd/strata)")
	quick := fs.Bool("quick", false, "smoke run: 3 s windows, 1 s warm-up, 128 MiB C1, small limits")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: strata bench [flags]\n\nbenchmarks:\n")
		for _, b := range Benchmarks() {
			cmp := "≥"
			if b.Ceiling {
				cmp = "≤"
			}
			fmt.Fprintf(fs.Output(), "  %-7s %s (goal: %s ratio %s %.2f)\n", b.ID, b.Title, b.Limit, cmp, b.Goal)
		}
		fmt.Fprintln(fs.Output(), "\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return Options{}, err
	}
	if fs.NArg() > 0 {
		return Options{}, fmt.Errorf("strata bench: unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	o := Options{Reps: *reps, Duration: *dur, Warmup: *warm, Out: *out, DataDir: *dataDir,
		Bin: *bin, Quick: *quick, Limits: DefaultLimitParams()}
	if *only != "" {
		for _, s := range strings.Split(*only, ",") {
			if s = strings.TrimSpace(s); s != "" {
				o.Only = append(o.Only, s)
			}
		}
	}
	n, err := ParseSize(*c1)
	if err != nil {
		return Options{}, fmt.Errorf("strata bench: --c1-bytes: %w", err)
	}
	o.C1Bytes = n
	if o.Quick {
		if !set["duration"] {
			o.Duration = 3 * time.Second
		}
		if !set["warmup"] {
			o.Warmup = 1 * time.Second
		}
		if !set["c1-bytes"] {
			o.C1Bytes = 128 << 20
		}
		o.Limits = LimitParams{DFsyncBytes: 16 << 20, LFsyncCount: 100, NLoDuration: time.Second, FsyncTimeout: time.Minute}
	}
	switch {
	case o.Reps < 1 || o.Reps > 100:
		return Options{}, fmt.Errorf("strata bench: --reps %d: want 1..100", o.Reps)
	case o.Duration <= 0 || o.Duration > time.Hour:
		return Options{}, fmt.Errorf("strata bench: --duration %v: want (0, 1h]", o.Duration)
	case o.Warmup < 0 || o.Warmup > time.Hour:
		return Options{}, fmt.Errorf("strata bench: --warmup %v: want [0, 1h]", o.Warmup)
	case o.C1Bytes < RecordSize || o.C1Bytes > 1<<40:
		return Options{}, fmt.Errorf("strata bench: --c1-bytes %d: want 1 KiB..1 TiB", o.C1Bytes)
	}
	if _, err := Select(Benchmarks(), o.Only); err != nil {
		return Options{}, err
	}
	return o, nil
}

// ParseSize parses a byte count: a plain integer, or one with a suffix
// B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000),
// case-insensitive.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suf string
		mul int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"b", 1}}
	mul := int64(1)
	lt := strings.ToLower(t)
	for _, u := range units {
		if strings.HasSuffix(lt, u.suf) {
			mul, t = u.mul, strings.TrimSpace(t[:len(t)-len(u.suf)])
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bench: size %q: want e.g. 2GiB, 128MiB or 1048576", s)
	}
	if n > (1<<62)/mul {
		return 0, fmt.Errorf("bench: size %q: too large", s)
	}
	return n * mul, nil
}

// resolveBin picks the strata binary: opts.Bin, $STRATA_BIN, this
// executable when it is named strata, else harness.Binary (go build).
// The binary must exist and be executable.
func resolveBin(opts Options) (string, error) {
	bin := opts.Bin
	if bin == "" {
		bin = os.Getenv("STRATA_BIN")
	}
	if bin == "" {
		if exe, err := os.Executable(); err == nil && filepath.Base(exe) == "strata" {
			bin = exe
		}
	}
	if bin == "" {
		var err error
		if bin, err = harness.Binary(); err != nil {
			return "", err
		}
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("bench: strata binary: %w", err)
	}
	return path, nil
}

// Run measures the limits, runs the selected benchmarks, measures the
// limits again, writes the JSON report to opts.Out and returns it with its
// path. Benchmarks that fail are recorded in the report with their reason;
// err is only for a run that could not report at all.
func Run(ctx context.Context, opts Options, logw io.Writer) (*Report, string, error) {
	sel, err := Select(Benchmarks(), opts.Only)
	if err != nil {
		return nil, "", err
	}
	r := &Report{
		Schema:    ReportSchema,
		Started:   time.Now().UTC(),
		GitCommit: gitCommit(ctx),
		NProc:     nproc(),
		Options: ReportOptions{Reps: opts.Reps, DurationSeconds: opts.Duration.Seconds(),
			WarmupSeconds: opts.Warmup.Seconds(), C1Bytes: opts.C1Bytes, Quick: opts.Quick, Only: opts.Only},
		Benchmarks: []BenchReport{},
	}
	r.LoadAvg.Start = readLoadAvg()

	base := opts.DataDir
	if base == "" {
		base = repoRoot(ctx)
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, "", fmt.Errorf("bench: data dir %s: %w", base, err)
	}
	dir, err := os.MkdirTemp(base, ".strata-bench-")
	if err != nil {
		return nil, "", fmt.Errorf("bench: data dir in %s: %w", base, err)
	}
	defer os.RemoveAll(dir)
	r.Options.DataDir = dir
	env := &Env{Opts: opts, DataDir: dir, Log: logw}

	bin, binErr := resolveBin(opts)
	env.Bin = bin

	lp := opts.Limits
	r.Limits = LimitsReport{DFsyncBytes: lp.DFsyncBytes, LFsyncCount: lp.LFsyncCount, NLoSeconds: lp.NLoDuration.Seconds()}
	env.logf("measuring limits (before) in %s", dir)
	r.Limits.Before = MeasureLimits(ctx, dir, lp)
	if needsMinIO(sel) {
		if m, err := env.startMinIO(ctx); err != nil {
			env.minioErr = err.Error()
			env.logf("MinIO: %v", err)
		} else {
			env.minio = m
			defer m.stop()
		}
		env.measureObjectLimits(ctx, r.Limits.Before, lp)
	}
	env.Before = r.Limits.Before

	for _, b := range sel {
		br := BenchReport{ID: b.ID, Title: b.Title, Primary: b.Primary, Limit: b.Limit,
			LimitFactor: b.LimitFactor, Goal: b.Goal, Ceiling: b.Ceiling, Shown: b.Shown, Reps: []RepReport{}}
		if binErr != nil {
			br.Error = fmt.Sprintf("no strata binary: %v", binErr)
		} else {
			runBenchmark(ctx, env, b, &br)
		}
		r.Benchmarks = append(r.Benchmarks, br)
	}

	env.logf("measuring limits (after)")
	r.Limits.After = MeasureLimits(ctx, dir, lp)
	if needsMinIO(sel) {
		env.measureObjectLimits(ctx, r.Limits.After, lp)
	}
	r.Limits.NoisyLimits = noisyLimits(r.Limits.Before, r.Limits.After)
	r.Limits.Noisy = len(r.Limits.NoisyLimits) > 0
	for i := range r.Benchmarks {
		b := &r.Benchmarks[i]
		b.finish(limitFor(r.Limits.Before, r.Limits.After, b.Limit, b.LimitFactor))
	}
	r.LoadAvg.End = readLoadAvg()
	r.Finished = time.Now().UTC()
	path, err := writeJSON(opts.Out, r)
	return r, path, err
}

func runBenchmark(ctx context.Context, env *Env, b Benchmark, br *BenchReport) {
	if err := ctx.Err(); err != nil {
		br.Error = fmt.Sprintf("not run: %v", err)
		return
	}
	env.logf("%s: prepare", b.ID)
	runner, err := b.Prepare(ctx, env)
	if err != nil {
		br.Error = err.Error()
		env.logf("%s: prepare failed: %v", b.ID, err)
		return
	}
	defer func() {
		if err := runner.Close(); err != nil {
			env.logf("%s: close: %v", b.ID, err)
		}
	}()
	for i := range env.Opts.Reps {
		rr := RepReport{Rep: i + 1}
		if err := ctx.Err(); err != nil {
			rr.Error = fmt.Sprintf("not run: %v", err)
			br.Reps = append(br.Reps, rr)
			continue
		}
		fig, err := runner.Rep(ctx, i)
		rr.Figures = fig
		if rr.Figures == nil {
			rr.Figures = Rep{}
		}
		if err != nil {
			rr.Error = err.Error()
			// Figures of a failed repetition are not results.
			rr.Figures = Rep{FigMBps: Unmeasured("MB/s", oneLine(rr.Error))}
			env.logf("%s rep %d: %v", b.ID, i+1, err)
		} else if b.Primary != FigMBps {
			env.logf("%s rep %d: %s %s", b.ID, i+1, b.Primary, fmtVal(fig[b.Primary]))
		} else {
			env.logf("%s rep %d: %s MB/s, %s MB/cpu-s", b.ID, i+1, fmtVal(fig[FigMBps]), fmtVal(fig[FigMBperCPU]))
		}
		br.Reps = append(br.Reps, rr)
	}
}
