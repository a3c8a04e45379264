package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrTimeout: a bounded measurement loop ran out of time before its count.
var ErrTimeout = errors.New("bench: measurement timed out")

// LimitParams sizes the limit measurements.
type LimitParams struct {
	DFsyncBytes  int64         // D_fsync: total bytes written (1 MiB chunks)
	LFsyncCount  int           // L_fsync: number of 4 KiB write+fdatasync
	NLoDuration  time.Duration // N_lo: how long to stream
	FsyncTimeout time.Duration // bound of each fsync measurement
}

// DefaultLimitParams are the sizes of docs/BENCHMARKS.md.
func DefaultLimitParams() LimitParams {
	return LimitParams{DFsyncBytes: 256 << 20, LFsyncCount: 2000, NLoDuration: 3 * time.Second, FsyncTimeout: 3 * time.Minute}
}

// Limit names as they appear in the report.
const (
	LimitDFsync    = "D_fsync"
	LimitLFsyncP50 = "L_fsync_p50"
	LimitLFsyncP99 = "L_fsync_p99"
	LimitNLo       = "N_lo"
)

// limitNames is the report order of the limits.
var limitNames = []string{LimitDFsync, LimitLFsyncP50, LimitLFsyncP99, LimitNLo}

// objectLimitNames are measured only when a benchmark needs MinIO (C2, U1).
var objectLimitNames = []string{LimitSPut, LimitSGet}

// reportedLimits are the limit names present in either calibration.
func reportedLimits(before, after Limits) []string {
	out := append([]string(nil), limitNames...)
	for _, n := range objectLimitNames {
		if _, ok := before[n]; ok {
			out = append(out, n)
		} else if _, ok := after[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// Limits is one calibration of the machine: every limit name → its figure.
type Limits map[string]Value

// MeasureLimits measures every limit once, in dir (the brokers' data
// directory). A limit that fails is recorded unmeasured with its reason.
func MeasureLimits(ctx context.Context, dir string, p LimitParams) Limits {
	l := Limits{}
	if v, err := MeasureDFsync(ctx, dir, p.DFsyncBytes, p.FsyncTimeout); err != nil {
		l[LimitDFsync] = Unmeasured("MB/s", err.Error())
	} else {
		l[LimitDFsync] = v
	}
	if p50, p99, err := MeasureLFsync(ctx, dir, p.LFsyncCount, p.FsyncTimeout); err != nil {
		l[LimitLFsyncP50] = Unmeasured("ms", err.Error())
		l[LimitLFsyncP99] = Unmeasured("ms", err.Error())
	} else {
		l[LimitLFsyncP50], l[LimitLFsyncP99] = p50, p99
	}
	if v, err := MeasureNLo(ctx, p.NLoDuration); err != nil {
		l[LimitNLo] = Unmeasured("MB/s", err.Error())
	} else {
		l[LimitNLo] = v
	}
	return l
}

// MeasureDFsync writes total bytes to a fresh file in dir in 1 MiB writes,
// each followed by fdatasync, and returns MB/s. The file is removed.
func MeasureDFsync(ctx context.Context, dir string, total int64, timeout time.Duration) (Value, error) {
	const chunk = 1 << 20
	if total < chunk {
		return Value{}, fmt.Errorf("bench: D_fsync: total %d bytes < 1 MiB", total)
	}
	buf := make([]byte, chunk)
	fillPseudoRandom(buf, 1)
	n := int(total / chunk)
	start := time.Now()
	err := withTempFile(dir, "dfsync-", func(f *os.File) error {
		deadline := start.Add(timeout)
		for i := range n {
			if err := ctx.Err(); err != nil {
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%w: D_fsync after %d of %d MiB (%v)", ErrTimeout, i, n, timeout)
			}
			if _, err := f.Write(buf); err != nil {
				return err
			}
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				return fmt.Errorf("fdatasync: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return Value{}, fmt.Errorf("bench: D_fsync in %s: %w", dir, err)
	}
	return mbPerSec(int64(n)*chunk, time.Since(start).Seconds()), nil
}

// MeasureLFsync appends count × 4 KiB to a fresh file in dir, each write
// followed by fdatasync, and returns the p50 and p99 latency of one
// write+fdatasync in milliseconds. The file is removed.
func MeasureLFsync(ctx context.Context, dir string, count int, timeout time.Duration) (p50, p99 Value, err error) {
	if count < 1 {
		return Value{}, Value{}, fmt.Errorf("bench: L_fsync: count %d", count)
	}
	buf := make([]byte, 4<<10)
	fillPseudoRandom(buf, 2)
	lat := make([]float64, 0, count)
	err = withTempFile(dir, "lfsync-", func(f *os.File) error {
		deadline := time.Now().Add(timeout)
		for i := range count {
			if err := ctx.Err(); err != nil {
				return err
			}
			t0 := time.Now()
			if t0.After(deadline) {
				return fmt.Errorf("%w: L_fsync after %d of %d writes (%v)", ErrTimeout, i, count, timeout)
			}
			if _, err := f.Write(buf); err != nil {
				return err
			}
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				return fmt.Errorf("fdatasync: %w", err)
			}
			lat = append(lat, float64(time.Since(t0))/float64(time.Millisecond))
		}
		return nil
	})
	if err != nil {
		return Value{}, Value{}, fmt.Errorf("bench: L_fsync in %s: %w", dir, err)
	}
	a, _ := Percentile(lat, 50)
	b, _ := Percentile(lat, 99)
	return Measured(a, "ms"), Measured(b, "ms"), nil
}

func withTempFile(dir, prefix string, fn func(*os.File) error) error {
	f, err := os.CreateTemp(dir, prefix)
	if err != nil {
		return err
	}
	name := f.Name()
	defer os.Remove(name)
	ferr := fn(f)
	cerr := f.Close()
	if ferr != nil {
		return ferr
	}
	if cerr != nil {
		return fmt.Errorf("close %s: %w", filepath.Base(name), cerr)
	}
	return nil
}

// MeasureNLo streams 1 MiB writes over one loopback TCP connection for d
// and returns the MB/s the reader received.
func MeasureNLo(ctx context.Context, d time.Duration) (Value, error) {
	if d <= 0 {
		return Value{}, fmt.Errorf("bench: N_lo: duration %v", d)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Value{}, fmt.Errorf("bench: N_lo: listen: %w", err)
	}
	defer ln.Close()
	hard := time.Now().Add(d + 10*time.Second) // bound on every blocking call

	type result struct {
		n   int64
		err error
	}
	got := make(chan result, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = ln.(*net.TCPListener).SetDeadline(hard)
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: fmt.Errorf("accept: %w", err)}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(hard)
		n, err := io.CopyBuffer(io.Discard, c, make([]byte, 1<<20))
		got <- result{n: n, err: err}
	}()
	defer wg.Wait()

	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		ln.Close()
		return Value{}, fmt.Errorf("bench: N_lo: dial: %w", err)
	}
	_ = c.SetDeadline(hard)
	buf := make([]byte, 1<<20)
	fillPseudoRandom(buf, 3)
	start := time.Now()
	end := start.Add(d)
	var werr error
	for i := 0; time.Now().Before(end) && i < 1<<30; i++ {
		if werr = ctx.Err(); werr != nil {
			break
		}
		if _, werr = c.Write(buf); werr != nil {
			break
		}
	}
	c.Close() // reader sees EOF once it has everything
	r := <-got
	elapsed := time.Since(start).Seconds()
	if werr != nil {
		return Value{}, fmt.Errorf("bench: N_lo: write: %w", werr)
	}
	if r.err != nil {
		return Value{}, fmt.Errorf("bench: N_lo: read: %w", r.err)
	}
	return mbPerSec(r.n, elapsed), nil
}

// fillPseudoRandom fills b with incompressible bytes from a xorshift
// generator seeded with seed (cheap, deterministic, no allocation).
func fillPseudoRandom(b []byte, seed uint64) {
	x := seed*0x9E3779B97F4A7C15 | 1
	for i := 0; i < len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(x >> (8 * j))
		}
	}
}
