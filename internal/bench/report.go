package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// ReportSchema is the version of the JSON report's shape.
const ReportSchema = 1

// NoisyThreshold: limits measured before and after differing by more than
// this fraction (relative to the smaller) mark the run noisy.
const NoisyThreshold = 0.30

// Verdicts of a benchmark against its goal.
const (
	VerdictPass       = "PASS"
	VerdictFail       = "FAIL"
	VerdictUnmeasured = "UNMEASURED"
)

// Report is the JSON document written for one run.
type Report struct {
	Schema     int           `json:"schema"`
	Started    time.Time     `json:"started"`
	Finished   time.Time     `json:"finished"`
	GitCommit  string        `json:"git_commit"`
	NProc      int           `json:"nproc"`
	LoadAvg    LoadAvgs      `json:"loadavg"`
	Options    ReportOptions `json:"options"`
	Limits     LimitsReport  `json:"limits"`
	Benchmarks []BenchReport `json:"benchmarks"`
}

// LoadAvgs is /proc/loadavg at the start and the end of the run.
type LoadAvgs struct {
	Start LoadAvg `json:"start"`
	End   LoadAvg `json:"end"`
}

// ReportOptions records the settings of the run.
type ReportOptions struct {
	Reps            int      `json:"reps"`
	DurationSeconds float64  `json:"duration_s"`
	WarmupSeconds   float64  `json:"warmup_s"`
	C1Bytes         int64    `json:"c1_bytes"`
	Quick           bool     `json:"quick"`
	DataDir         string   `json:"data_dir"`
	Only            []string `json:"only"`
}

// LimitsReport holds both calibrations and the noisy verdict.
type LimitsReport struct {
	DFsyncBytes int64    `json:"d_fsync_bytes"`
	LFsyncCount int      `json:"l_fsync_count"`
	NLoSeconds  float64  `json:"n_lo_s"`
	Before      Limits   `json:"before"`
	After       Limits   `json:"after"`
	Noisy       bool     `json:"noisy"`
	NoisyLimits []string `json:"noisy_limits"` // limits that moved > 30 %
}

// BenchReport is one benchmark's repetitions, summaries and verdict.
type BenchReport struct {
	ID          string             `json:"id"`
	Title       string             `json:"title"`
	Primary     string             `json:"primary"`
	Limit       string             `json:"limit"`
	LimitFactor float64            `json:"limit_factor"`
	LimitValue  Value              `json:"limit_value"` // the limit the ratio divides by
	Goal        float64            `json:"goal"`        // median ratio ≥ goal (≤ when ceiling)
	Ceiling     bool               `json:"ceiling,omitempty"`
	Shown       []string           `json:"-"`
	Error       string             `json:"error,omitempty"`
	Reps        []RepReport        `json:"reps"`
	Summary     map[string]Summary `json:"summary"`
	Verdict     string             `json:"verdict"`
	Why         string             `json:"why,omitempty"` // for UNMEASURED
}

// RepReport is one repetition.
type RepReport struct {
	Rep     int    `json:"rep"` // 1-based
	Figures Rep    `json:"figures"`
	Error   string `json:"error,omitempty"`
}

// limitFor returns the value a ratio divides by: the mean of the before and
// after calibrations when both were measured, else the one that was, times
// factor.
func limitFor(before, after Limits, name string, factor float64) Value {
	b, a := before[name], after[name]
	unit := b.Unit
	if unit == "" {
		unit = a.Unit
	}
	var v float64
	switch {
	case b.OK() && a.OK():
		v = (*b.V + *a.V) / 2
	case b.OK():
		v = *b.V
	case a.OK():
		v = *a.V
	default:
		reason := b.Reason
		if reason == "" {
			reason = a.Reason
		}
		if reason == "" {
			reason = "limit " + name + " not measured"
		}
		return Unmeasured(unit, reason)
	}
	return Measured(v*factor, unit)
}

// noisyLimits returns the names of limits that moved by more than
// NoisyThreshold between the two calibrations.
func noisyLimits(before, after Limits) []string {
	out := []string{}
	for _, n := range reportedLimits(before, after) {
		if Differs(before[n], after[n], NoisyThreshold) {
			out = append(out, n)
		}
	}
	return out
}

// finish computes every ratio, summary and verdict of br given the limit.
func (br *BenchReport) finish(limit Value) {
	br.LimitValue = limit
	for i := range br.Reps {
		f := br.Reps[i].Figures
		if f == nil {
			continue
		}
		if p, ok := f[br.Primary]; ok {
			f[FigRatio] = Ratio(p, limit)
		} else {
			f[FigRatio] = Unmeasured("", "primary figure "+br.Primary+" missing")
		}
		if e, ok := f[FigEtcdP99]; ok {
			f[FigEtcdRatio] = Ratio(e, limit) // M1's etcd floor against the same limit
		}
		if e, ok := f[FigFloorP99]; ok {
			f[FigFloorRat] = Ratio(e, limit) // L1's floor against the same limit
		}
	}
	names := map[string]bool{}
	for _, r := range br.Reps {
		for k := range r.Figures {
			names[k] = true
		}
	}
	br.Summary = map[string]Summary{}
	for k := range names {
		var vals []Value
		for _, r := range br.Reps {
			v, ok := r.Figures[k]
			if !ok {
				reason := "repetition failed"
				if r.Error != "" {
					reason = r.Error
				}
				v = Unmeasured("", reason)
			}
			vals = append(vals, v)
		}
		br.Summary[k] = Summarize(vals)
	}
	med := Unmeasured("", br.Error)
	if s, ok := br.Summary[FigRatio]; ok {
		med = s.MedianValue()
	} else if br.Error == "" {
		med = Unmeasured("", "no repetition ran")
	}
	switch {
	case !med.OK():
		br.Verdict, br.Why = VerdictUnmeasured, med.Reason
	case br.Ceiling && *med.V <= br.Goal, !br.Ceiling && *med.V >= br.Goal:
		br.Verdict = VerdictPass
	default:
		br.Verdict = VerdictFail
	}
}

// writeJSON writes r to dir/<UTC timestamp of r.Started>.json and returns the
// path.
func writeJSON(dir string, r *Report) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("bench: write report: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("bench: write report: %w", err)
	}
	path := filepath.Join(dir, r.Started.UTC().Format("20060102T150405Z")+".json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("bench: write report %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("bench: write report %s: %w", path, err)
	}
	return path, nil
}

func fmtVal(v Value) string {
	if !v.OK() {
		return "n/a"
	}
	return fmtNum(*v.V)
}

func fmtPtr(p *float64) string {
	if p == nil {
		return "n/a"
	}
	return fmtNum(*p)
}

func fmtNum(x float64) string {
	switch ax := math.Abs(x); {
	case ax == 0:
		return "0"
	case ax >= 1000:
		return fmt.Sprintf("%.0f", x)
	case ax >= 10:
		return fmt.Sprintf("%.1f", x)
	case ax >= 0.01:
		return fmt.Sprintf("%.3f", x)
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

func fmtLoad(l LoadAvg) string {
	if l.Load == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", l.Load[0])
}

// PrintTable writes the human table of r to w.
func PrintTable(w io.Writer, r *Report) {
	fmt.Fprintf(w, "strata bench  %s  commit %.12s  nproc %d  load(1m) %s → %s\n",
		r.Started.UTC().Format(time.RFC3339), r.GitCommit, r.NProc, fmtLoad(r.LoadAvg.Start), fmtLoad(r.LoadAvg.End))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nlimit\tbefore\tafter\tunit\t")
	for _, n := range reportedLimits(r.Limits.Before, r.Limits.After) {
		b, a := r.Limits.Before[n], r.Limits.After[n]
		unit := b.Unit
		if unit == "" {
			unit = a.Unit
		}
		mark := ""
		if slices.Contains(r.Limits.NoisyLimits, n) {
			mark = "moved > 30 %"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n, fmtVal(b), fmtVal(a), unit, mark)
	}
	if r.Limits.Noisy {
		fmt.Fprintln(tw, "NOISY RUN: limits moved by more than 30 % between before and after")
	}
	fmt.Fprintln(tw, "\nbench\tfigure\tmin\tmedian\tmax\tn\t")
	for _, b := range r.Benchmarks {
		figs := b.Shown
		if figs == nil {
			figs = []string{FigMBps, FigMBperCPU, FigRatio}
		}
		if b.Error != "" {
			fmt.Fprintf(tw, "%s\t(failed: %s)\n", b.ID, oneLine(b.Error))
			continue
		}
		for i, f := range figs {
			id := ""
			if i == 0 {
				id = b.ID
			}
			s := b.Summary[f]
			label := f
			if f == FigRatio {
				label = fmt.Sprintf("ratio/%s", b.Limit)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t\n", id, label, fmtPtr(s.Min), fmtPtr(s.Median), fmtPtr(s.Max), s.N)
		}
		for _, rp := range b.Reps {
			if rp.Error != "" {
				fmt.Fprintf(tw, "\t  rep %d failed: %s\n", rp.Rep, oneLine(rp.Error))
			}
		}
	}
	fmt.Fprintln(tw, "\ngoal\tmedian ratio\tgoal\tverdict\t")
	for _, b := range r.Benchmarks {
		med := "n/a"
		if s, ok := b.Summary[FigRatio]; ok {
			med = fmtPtr(s.Median)
		}
		v := b.Verdict
		if b.Why != "" {
			v += " (" + oneLine(b.Why) + ")"
		}
		cmp := "≥"
		if b.Ceiling {
			cmp = "≤"
		}
		fmt.Fprintf(tw, "%s vs %s\t%s\t%s %.2f\t%s\t\n", b.ID, b.Limit, med, cmp, b.Goal, v)
	}
	tw.Flush()
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}
