package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// ErrProcFormat: a /proc file did not have the expected shape.
var ErrProcFormat = errors.New("bench: unexpected /proc format")

// ClockTicksPerSecond is the USER_HZ that /proc/<pid>/stat counts in.
const ClockTicksPerSecond = 100

// ParseProcStat returns utime+stime (fields 14 and 15, in clock ticks) from
// the contents of /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so fields are
// counted from the last ')'.
func ParseProcStat(data []byte) (int64, error) {
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat: no ')' after comm", ErrProcFormat)
	}
	// After ')': field 3 (state) is f[0], so field n is f[n-3].
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: stat: %d fields after comm, want ≥ 13", ErrProcFormat, len(f))
	}
	ut, err := strconv.ParseInt(f[14-3], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: stat utime %q", ErrProcFormat, f[14-3])
	}
	st, err := strconv.ParseInt(f[15-3], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: stat stime %q", ErrProcFormat, f[15-3])
	}
	return ut + st, nil
}

// ProcCPUTicks returns utime+stime of process pid, in clock ticks.
func ProcCPUTicks(pid int) (int64, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("bench: cpu of pid %d: no such process", pid)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: cpu of pid %d: %w", pid, err)
	}
	t, err := ParseProcStat(data)
	if err != nil {
		return 0, fmt.Errorf("bench: cpu of pid %d: %w", pid, err)
	}
	return t, nil
}

// cpuSnapshot is the summed CPU ticks of a set of processes at one moment,
// or the error that prevented reading one of them.
type cpuSnapshot struct {
	ticks int64
	err   error
}

func snapshotCPU(pids []int) cpuSnapshot {
	if len(pids) == 0 {
		return cpuSnapshot{err: errors.New("bench: cpu: no broker process")}
	}
	var sum int64
	for _, pid := range pids {
		t, err := ProcCPUTicks(pid)
		if err != nil {
			return cpuSnapshot{err: err}
		}
		sum += t
	}
	return cpuSnapshot{ticks: sum}
}

// cpuSeconds returns the broker CPU seconds between two snapshots.
func cpuSeconds(a, b cpuSnapshot) Value {
	switch {
	case a.err != nil:
		return Unmeasured("s", a.err.Error())
	case b.err != nil:
		return Unmeasured("s", b.err.Error())
	case b.ticks < a.ticks:
		return Unmeasured("s", fmt.Sprintf("cpu ticks went backwards (%d → %d)", a.ticks, b.ticks))
	}
	return Measured(float64(b.ticks-a.ticks)/ClockTicksPerSecond, "s")
}

// ParseLoadAvg returns the 1, 5 and 15 minute load averages from the
// contents of /proc/loadavg ("0.52 0.58 0.59 1/467 12345").
func ParseLoadAvg(data []byte) ([3]float64, error) {
	var out [3]float64
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return out, fmt.Errorf("%w: loadavg: %d fields, want ≥ 3", ErrProcFormat, len(f))
	}
	for i := range 3 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return out, fmt.Errorf("%w: loadavg field %d %q", ErrProcFormat, i+1, f[i])
		}
		out[i] = v
	}
	return out, nil
}

// LoadAvg is the machine's load average at one moment, or why it is unknown.
type LoadAvg struct {
	Load   *[3]float64 `json:"load"` // 1, 5, 15 minutes; null when unreadable
	Reason string      `json:"reason,omitempty"`
}

func readLoadAvg() LoadAvg {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return LoadAvg{Reason: err.Error()}
	}
	l, err := ParseLoadAvg(data)
	if err != nil {
		return LoadAvg{Reason: err.Error()}
	}
	return LoadAvg{Load: &l}
}

// gitCommit returns `git rev-parse HEAD` in the working directory, or
// "unknown".
func gitCommit(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if c == "" {
		return "unknown"
	}
	return c
}

// repoRoot returns the top of the git work tree, or the working directory.
func repoRoot(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "git", "rev-parse", "--show-toplevel").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); d != "" {
			return d
		}
	}
	if wd, err := os.Getwd(); err == nil {
		return wd
	}
	return os.TempDir()
}

func nproc() int { return runtime.NumCPU() }
