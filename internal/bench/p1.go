package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// P1: produce to one broker (RF=1, acks=1) as fast as it takes it.
//
// Each repetition starts a fresh broker on a fresh data directory, creates
// a 6-partition topic, runs p1Clients saturating producers sending
// prebuilt batches (rawload.go), and counts the value bytes acknowledged in
// the measured window (after the warm-up).
// Broker CPU is read from /proc/<pid>/stat at the window's edges.
//
// The topic is not tiered (remote.storage.enable=false): P1 measures the
// produce path against the disk, and the embedded default remote tier is a
// directory on that same disk — uploading every sealed segment to it would
// write each byte twice to the device D_fsync measures, which no deployment
// with a real object store does. Uploads have their own benchmark, U1.

const (
	p1Partitions = 6
	p1Clients    = 3
	p1Records    = 4096 // distinct records generated up front (4 MiB)
)

// p1Shown are the figures of P1's rows: mb_s counts record value bytes
// acknowledged (the goal's figure), wire_mb_s the batch bytes stored.
var p1Shown = []string{FigMBps, FigWireMBps, FigMBperCPU, FigRatio}

type p1Runner struct {
	env   *Env
	codec string
	recs  [][]byte
}

func prepareP1(codec string) func(context.Context, *Env) (Runner, error) {
	return func(ctx context.Context, env *Env) (Runner, error) {
		if _, err := codecOf(codec); err != nil {
			return nil, err
		}
		return &p1Runner{env: env, codec: codec, recs: GenerateRecords(p1Records, 1)}, nil
	}
}

func (r *p1Runner) Close() error { return nil }

func (r *p1Runner) Rep(ctx context.Context, i int) (Rep, error) {
	opts := r.env.Opts
	bp, err := r.env.startBroker(ctx, fmt.Sprintf("p1-%s-rep%d", r.codec, i+1), 0,
		fmt.Sprintf("--num.partitions=%d", p1Partitions))
	if err != nil {
		return nil, err
	}
	defer bp.stop()

	admin, err := adminClient(bp.b.Addr)
	if err != nil {
		return nil, err
	}
	const topic = "bench-p1"
	_, err = createTopic(ctx, admin, topic, p1Partitions, 1, map[string]string{"remote.storage.enable": "false"})
	admin.Close()
	if err != nil {
		return nil, err
	}

	stopProf := r.env.startProfile(bp.b.MetricsAddr, fmt.Sprintf("P1-%s-rep%d", r.codec, i))
	rep, err := measureProduceRaw(ctx, loadParams{addr: bp.b.Addr, topic: topic, partitions: p1Partitions,
		clients: p1Clients, codec: r.codec}, r.recs, []int{bp.b.PID()}, opts.Warmup, opts.Duration)
	stopProf()
	if aerr := bp.alive(); aerr != nil {
		return rep, aerr
	}
	return rep, err
}

// measureProduce runs a saturating load generator against p.addr and
// returns the figures of the window [warmup, warmup+duration): value bytes
// acknowledged in it and the CPU the processes pids used in it.
func measureProduce(ctx context.Context, p loadParams, recs [][]byte, pids []int, warmup, duration time.Duration) (Rep, error) {
	g, err := newLoadGen(p, recs)
	if err != nil {
		return nil, err
	}
	defer g.close()
	lctx, cancel := context.WithTimeout(ctx, warmup+duration+30*time.Second)
	defer cancel()
	g.start(lctx)
	defer g.wait()
	defer cancel() // stop producing before waiting

	return measureWindow(lctx, pids, warmup, duration, &g.acked, nil, &g.errs, g.lastErr)
}

// measureWindow waits out the warm-up, then measures a window of duration
// of a running load generator: the bytes its counter acked gained (and
// wire's, when not nil), its errors and the CPU of pids. Nothing
// acknowledged in the window is an error carrying the generator's first
// error (lastErr).
func measureWindow(ctx context.Context, pids []int, warmup, duration time.Duration, acked, wire, errs *atomic.Int64, lastErr func() error) (Rep, error) {
	if err := sleepCtx(ctx, warmup); err != nil {
		return nil, err
	}
	load := func(c *atomic.Int64) int64 {
		if c == nil {
			return 0
		}
		return c.Load()
	}
	b0, w0, e0, c0, t0 := acked.Load(), load(wire), errs.Load(), snapshotCPU(pids), time.Now()
	if err := sleepCtx(ctx, duration); err != nil {
		return nil, err
	}
	b1, w1, e1, c1, t1 := acked.Load(), load(wire), errs.Load(), snapshotCPU(pids), time.Now()
	rep := throughputRep(b1-b0, t1.Sub(t0).Seconds(), cpuSeconds(c0, c1), e1-e0)
	if w1 > w0 {
		rep[FigWireMBps] = mbPerSec(w1-w0, t1.Sub(t0).Seconds())
	}
	if b1 == b0 {
		if err := lastErr(); err != nil {
			return rep, fmt.Errorf("bench: produce: nothing acknowledged in the window; first error: %w", err)
		}
		return rep, errors.New("bench: produce: nothing acknowledged in the window")
	}
	return rep, nil
}
