package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// U1-steady, the second half of BENCHMARKS.md's U1: a tiered topic
// produced at half of S_put (measured before the run) for the warm-up and
// the measured window, while the bench watches, every u1PollEvery, which
// segments the broker has sealed (a new active segment file appears in the
// partition directory) and which it has recorded uploaded (ListOffsets
// -5). Figures:
//   - MB/s: the segment bytes recorded uploaded in the window; its ratio to
//     S_put/2 says whether uploads keep up with production;
//   - the MB/s of values acknowledged to the producers, which it should
//     match;
//   - seal → uploaded p50 / p99: from the poll that first sees a segment
//     sealed to the poll that first sees it uploaded, over the segments
//     sealed in the window (all of them are waited for after it, bounded);
//   - backlog max: the most sealed bytes waiting for their upload at once.
//
// Its own broker runs with the default task interval (30 s): a segment
// uploads because it was sealed and committed, which is what the figure
// measures. It runs after U1 so that U1's drains are measured before this
// writes its gigabytes.

const (
	FigSteadyIn   = "in_mb_s"            // value MB/s acknowledged to the producers in the window
	FigSealP50    = "seal_upload_p50_ms" // segment sealed → recorded uploaded, p50
	FigSealP99    = "seal_upload_p99_ms" // segment sealed → recorded uploaded, p99
	FigBacklogMax = "backlog_max_mb"     // most sealed, not yet uploaded bytes at once

	u1PollEvery = 10 * time.Millisecond
	// u1SettleMax bounds the wait, after the window, for the segments
	// sealed in it to be recorded uploaded.
	u1SettleMax = 60 * time.Second
)

var u1sShown = []string{FigMBps, FigMBperCPU, FigRatio, FigSteadyIn, FigSealP50, FigSealP99, FigBacklogMax}

// sealedSeg is one segment the watch saw sealed.
type sealedSeg struct {
	end      int64 // last offset
	size     int64
	sealed   time.Time
	uploaded time.Time // zero until seen uploaded
}

// sealWatch follows the segments of one topic's partitions on one broker.
type sealWatch struct {
	dir    string // the broker's logs directory
	topic  string
	active []int64       // by partition: base of the active segment seen last; -1 none yet
	segs   [][]sealedSeg // by partition, in offset order
}

func newSealWatch(logs, topic string, parts int) *sealWatch {
	w := &sealWatch{dir: logs, topic: topic, active: make([]int64, parts), segs: make([][]sealedSeg, parts)}
	for p := range w.active {
		w.active[p] = -1
	}
	return w
}

// look records the segments sealed since the last look, as of now.
func (w *sealWatch) look(now time.Time) error {
	for p := range w.active {
		dir := filepath.Join(w.dir, fmt.Sprintf("%s-%d", w.topic, p))
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		var bases []int64
		sizes := map[int64]int64{}
		for _, e := range ents {
			name, ok := strings.CutSuffix(e.Name(), ".log")
			if !ok {
				continue
			}
			b, err := strconv.ParseInt(name, 10, 64)
			if err != nil {
				continue
			}
			bases = append(bases, b)
			if b >= w.active[p] {
				if fi, err := e.Info(); err == nil {
					sizes[b] = fi.Size()
				}
			}
		}
		if len(bases) == 0 {
			continue
		}
		slices.Sort(bases)
		newActive := bases[len(bases)-1]
		if w.active[p] >= 0 {
			// Every segment from the previous active one up to the new
			// active one was sealed since the last look.
			for i, b := range bases[:len(bases)-1] {
				if b >= w.active[p] {
					w.segs[p] = append(w.segs[p], sealedSeg{end: bases[i+1] - 1, size: sizes[b], sealed: now})
				}
			}
		}
		w.active[p] = newActive
	}
	return nil
}

// uploaded marks the segments whose end is at or below up[p] as uploaded
// now, and returns the bytes sealed and not yet uploaded.
func (w *sealWatch) uploaded(up []int64, now time.Time) (backlog int64) {
	for p := range w.segs {
		for i := range w.segs[p] {
			s := &w.segs[p][i]
			if s.uploaded.IsZero() && p < len(up) && s.end <= up[p] {
				s.uploaded = now
			}
			if s.uploaded.IsZero() {
				backlog += s.size
			}
		}
	}
	return backlog
}

// pending counts the segments sealed in [from, to) not yet seen uploaded.
func (w *sealWatch) pending(from, to time.Time) int {
	n := 0
	for _, segs := range w.segs {
		for _, s := range segs {
			if !s.sealed.Before(from) && s.sealed.Before(to) && s.uploaded.IsZero() {
				n++
			}
		}
	}
	return n
}

type u1sRunner struct{ *tierBroker }

func prepareU1Steady(ctx context.Context, env *Env) (Runner, error) {
	if sput, ok := env.Before[LimitSPut]; !ok || !sput.OK() || sput.Float() <= 0 {
		return nil, errors.New("bench: U1-steady: no S_put measured before the run to pace the producers by")
	}
	tb, err := startTierBroker(ctx, env, "u1s")
	if err != nil {
		return nil, err
	}
	return u1sRunner{tb}, nil
}

func (r u1sRunner) Rep(ctx context.Context, i int) (Rep, error) {
	bps := r.env.Before[LimitSPut].Float() * 1e6 / 2
	seg := tierSegmentBytes(r.env.Opts.C1Bytes / 2)
	topic := fmt.Sprintf("bench-u1s-%d", i)
	ti, err := createTopic(ctx, r.cl, topic, c1Partitions, 1, map[string]string{
		"segment.bytes":         strconv.FormatInt(seg, 10),
		"remote.storage.enable": "true",
		// A tiered deployment's disk: a few segments per partition.
		"local.retention.bytes": strconv.FormatInt(2*seg, 10),
	})
	if err != nil {
		return nil, err
	}
	gen, err := newLoadGen(loadParams{addr: r.bp.b.Addr, topic: topic, partitions: c1Partitions,
		clients: p1Clients, codec: "none", rate: bps}, GenerateRecords(p1Records, 4))
	if err != nil {
		return nil, err
	}
	defer gen.close()
	w := newSealWatch(filepath.Join(r.bp.dir, "logs"), topic, c1Partitions)
	pids := []int{r.bp.b.PID()}

	warm, dur := r.env.Opts.Warmup, r.env.Opts.Duration
	t0 := time.Now()
	from, to := t0.Add(warm), t0.Add(warm+dur)
	pctx, stopProduce := context.WithDeadline(ctx, to)
	defer stopProduce()
	gen.startUntil(ctx, pctx)
	var inFrom, backlogMax int64
	var c0 cpuSnapshot
	var inStart time.Time // when inFrom and c0 were taken
	poll := func(now time.Time) error {
		if err := w.look(now); err != nil {
			return err
		}
		up, err := listOffsets(ctx, r.cl, ti, -5)
		if err != nil {
			return err
		}
		b := w.uploaded(up, now)
		if !now.Before(from) && now.Before(to) {
			backlogMax = max(backlogMax, b)
		}
		return nil
	}
	for now := time.Now(); now.Before(to); now = time.Now() {
		if inStart.IsZero() && !now.Before(from) {
			inFrom, c0, inStart = gen.acked.Load(), snapshotCPU(pids), time.Now()
		}
		if err := poll(now); err != nil {
			return nil, err
		}
		if err := sleepCtx(ctx, u1PollEvery); err != nil {
			return nil, err
		}
	}
	inTo, c1, inEnd := gen.acked.Load(), snapshotCPU(pids), time.Now()
	gen.wait()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = gen.flush(fctx)
	cancel()
	if err != nil {
		return nil, err
	}
	if n := gen.errs.Load(); n > 0 {
		return nil, fmt.Errorf("bench: U1-steady: %d records failed, first: %w", n, gen.lastErr())
	}
	// Every segment sealed in the window, uploaded.
	settle := time.Now().Add(u1SettleMax)
	for w.pending(from, to) > 0 {
		if time.Now().After(settle) {
			return nil, fmt.Errorf("bench: U1-steady: %w: %d segments sealed in the window not uploaded %v after it",
				ErrTimeout, w.pending(from, to), u1SettleMax)
		}
		if err := poll(time.Now()); err != nil {
			return nil, err
		}
		if err := sleepCtx(ctx, u1PollEvery); err != nil {
			return nil, err
		}
	}
	var lat []float64
	for _, segs := range w.segs {
		for _, s := range segs {
			if !s.sealed.Before(from) && s.sealed.Before(to) {
				lat = append(lat, float64(s.uploaded.Sub(s.sealed))/float64(time.Millisecond))
			}
		}
	}
	secs := dur.Seconds()
	rep := throughputRep(uploadedBytes(w, from, to), secs, cpuSeconds(c0, c1), gen.errs.Load())
	rep[FigSteadyIn] = mbPerSec(inTo-inFrom, inEnd.Sub(inStart).Seconds())
	rep[FigBacklogMax] = Measured(float64(backlogMax)/1e6, "MB")
	if len(lat) == 0 {
		why := fmt.Sprintf("no segment sealed in the %v window", dur)
		rep[FigSealP50], rep[FigSealP99] = Unmeasured("ms", why), Unmeasured("ms", why)
	} else {
		p50, _ := Percentile(lat, 50)
		p99, _ := Percentile(lat, 99)
		rep[FigSealP50], rep[FigSealP99] = Measured(p50, "ms"), Measured(p99, "ms")
	}
	r.env.logf("U1-steady rep %d: produced %s MB/s (asked %.0f), uploaded %s MB/s; %d segments sealed in the window, sealed → uploaded p50 %s ms, p99 %s ms; backlog at most %.1f MB",
		i+1, fmtVal(rep[FigSteadyIn]), bps/1e6, fmtVal(rep[FigMBps]), len(lat), fmtVal(rep[FigSealP50]), fmtVal(rep[FigSealP99]), float64(backlogMax)/1e6)
	return rep, r.bp.alive()
}

// uploadedBytes is the size of the segments seen uploaded within [from, to).
func uploadedBytes(w *sealWatch, from, to time.Time) int64 {
	var n int64
	for _, segs := range w.segs {
		for _, s := range segs {
			if !s.uploaded.IsZero() && !s.uploaded.Before(from) && s.uploaded.Before(to) {
				n += s.size
			}
		}
	}
	return n
}
