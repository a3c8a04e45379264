package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// M1: offset commits on etcd. Prepare starts one broker (with its embedded
// etcd) on a fresh data directory and creates an m1Partitions topic. Each
// repetition runs m1Groups committers in parallel, each on its own
// connection, each committing all m1Partitions offsets of its own group in
// one standalone OffsetCommit (generation −1, no member id) at a time, in
// two phases of warm-up + duration each:
//
//   - latency, open loop: every group commits every m1PacedInterval (50
//     groups × 20/s = 10,000 partition offsets per second, five times the
//     rate goal), each commit's latency taken from its intended send time
//     (no coordinated omission, as BENCHMARKS.md asks of latencies). Its
//     p50 / p99 are the latency figures; the goal is on p99 against
//     L_fsync p99 (≤ 4 ×, a ceiling).
//   - rate, closed loop: every group commits again as soon as it is
//     answered. The partition offsets committed per second are the rate
//     figure (goal ≥ m1RateGoal); the latencies of this saturated phase are
//     reported too (by Little's law they are 50 / the commit rate).
//
// A broker that does not advertise OffsetCommit leaves M1 unmeasured with
// that reason.
const (
	m1Groups     = 50
	m1Partitions = 10
	m1RateGoal   = 2000 // partition offsets committed per second
	m1Topic      = "bench-m1"
	// m1PacedInterval is each group's commit interval in the latency phase.
	m1PacedInterval = 50 * time.Millisecond
)

// M1 figure names.
const (
	FigCommitP50   = "commit_p50_ms"       // latency of one OffsetCommit, p50
	FigCommitP99   = "commit_p99_ms"       // latency of one OffsetCommit, p99
	FigOffsetsPerS = "offsets_per_s"       // partition offsets committed per second
	FigCommits     = "commits"             // OffsetCommit requests answered in the window
	FigRateRatio   = "offsets_rate_goal"   // offsets_per_s / m1RateGoal (≥ 1 meets it)
	FigSatP50      = "sat_p50_ms"          // closed-loop (saturated) phase: commit latency p50
	FigSatP99      = "sat_p99_ms"          // closed-loop (saturated) phase: commit latency p99
	FigPacedRate   = "paced_offsets_per_s" // latency phase: partition offsets committed per second
)

// m1Shown are the figures of M1's row in the printed table.
var m1Shown = []string{FigCommitP50, FigCommitP99, FigPacedRate, FigOffsetsPerS, FigRateRatio, FigSatP50, FigSatP99, FigRatio}

// ErrNotAdvertised: the broker does not advertise an API a benchmark needs.
var ErrNotAdvertised = errors.New("bench: API not advertised by the broker")

type m1Runner struct {
	env *Env
	bp  *brokerProc
	cl  *kgo.Client
}

// prepareM1 starts the broker, checks that it serves OffsetCommit and
// creates the topic; the repetitions share them, each with its own groups.
func prepareM1(ctx context.Context, env *Env) (_ Runner, err error) {
	bp, err := env.startBroker(ctx, "m1", 0)
	if err != nil {
		return nil, err
	}
	r := &m1Runner{env: env, bp: bp}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.cl, err = adminClient(bp.b.Addr); err != nil {
		return nil, err
	}
	if err := m1Advertised(ctx, r.cl); err != nil {
		return nil, err
	}
	if _, err := createTopic(ctx, r.cl, m1Topic, m1Partitions, 1, nil); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *m1Runner) Close() error {
	if r.cl != nil {
		r.cl.Close()
		r.cl = nil
	}
	err := r.bp.stop()
	r.bp = nil
	return err
}

func (r *m1Runner) Rep(ctx context.Context, i int) (Rep, error) {
	if err := r.bp.alive(); err != nil {
		return nil, err
	}
	pids := []int{r.bp.b.PID()}
	stopProf := r.env.startProfile(r.bp.b.MetricsAddr, fmt.Sprintf("M1-rep%d", i))
	paced, err := measureCommits(ctx, r.bp.b.Addr, fmt.Sprintf("bench-m1-r%d-lat", i+1), pids, r.env.Opts.Warmup, r.env.Opts.Duration, m1PacedInterval)
	var sat Rep
	if err == nil {
		sat, err = measureCommits(ctx, r.bp.b.Addr, fmt.Sprintf("bench-m1-r%d", i+1), pids, r.env.Opts.Warmup, r.env.Opts.Duration, 0)
	}
	stopProf()
	rep := m1Merge(paced, sat)
	if aerr := r.bp.alive(); aerr != nil {
		return rep, aerr
	}
	return rep, err
}

// m1Merge makes one repetition's figures: latencies of the paced phase,
// the rate (and the saturated latencies) of the closed-loop one.
func m1Merge(paced, sat Rep) Rep {
	rep := Rep{}
	for _, f := range []string{FigCommitP50, FigCommitP99, FigSeconds} {
		if v, ok := paced[f]; ok {
			rep[f] = v
		}
	}
	if v, ok := paced[FigOffsetsPerS]; ok {
		rep[FigPacedRate] = v
	}
	for _, f := range []string{FigOffsetsPerS, FigRateRatio, FigCommits, FigCPUSeconds} {
		if v, ok := sat[f]; ok {
			rep[f] = v
		}
	}
	if v, ok := sat[FigCommitP50]; ok {
		rep[FigSatP50] = v
	}
	if v, ok := sat[FigCommitP99]; ok {
		rep[FigSatP99] = v
	}
	errs := 0.0
	for _, r := range []Rep{paced, sat} {
		if v, ok := r[FigErrors]; ok && v.OK() {
			errs += *v.V
		}
	}
	rep[FigErrors] = Measured(errs, "")
	return rep
}

// m1Advertised checks that the broker at cl advertises OffsetCommit v2+.
func m1Advertised(ctx context.Context, cl *kgo.Client) error {
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("bench: M1: ApiVersions: %w", err)
	}
	for _, k := range resp.ApiKeys {
		if k.ApiKey == 8 && k.MaxVersion >= 2 {
			return nil
		}
	}
	return fmt.Errorf("%w: OffsetCommit (key 8) v2+: consumer-group offsets not served yet", ErrNotAdvertised)
}

// measureCommits runs m1Groups committers (groups prefix-0…) against addr
// for warmup+duration and returns the figures of the window. With interval
// > 0 each group commits on a fixed schedule (open loop; a commit's latency
// counts from its intended send time, so a late start is latency too);
// with 0 each commits again as soon as it is answered.
func measureCommits(ctx context.Context, addr, prefix string, pids []int, warmup, duration, interval time.Duration) (Rep, error) {
	clients := make([]*kgo.Client, m1Groups)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	var err error
	for g := range clients {
		if clients[g], err = adminClient(addr); err != nil {
			return nil, err
		}
	}

	lctx, cancel := context.WithTimeout(ctx, warmup+duration+30*time.Second)
	defer cancel()
	start := time.Now()
	winStart, winEnd := start.Add(warmup), start.Add(warmup+duration)
	var (
		mu       sync.Mutex
		lat      []float64
		errs     atomic.Int64
		firstErr error
		c0       cpuSnapshot
		c0Once   sync.Once
	)
	var wg sync.WaitGroup
	for g := range clients {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			local := make([]float64, 0, 1024)
			group := fmt.Sprintf("%s-%d", prefix, g)
			// Paced groups start spread over one interval.
			next := start.Add(time.Duration(g) * interval / m1Groups)
			for it := int64(1); it < 1<<40 && lctx.Err() == nil; it++ {
				if time.Now().After(winEnd) {
					break
				}
				req := m1CommitRequest(group, m1Topic, it)
				t0 := time.Now()
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						select {
						case <-time.After(d):
						case <-lctx.Done():
						}
					}
					t0 = next // intended send time
					next = next.Add(interval)
				}
				if !t0.Before(winStart) {
					c0Once.Do(func() { c0 = snapshotCPU(pids) })
				}
				resp, err := req.RequestWith(lctx, clients[g])
				t1 := time.Now()
				if err == nil {
					err = m1CommitErr(resp)
				}
				if err != nil {
					errs.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("%s: %w", group, err)
					}
					mu.Unlock()
					if lctx.Err() != nil {
						break
					}
					continue
				}
				if !t0.Before(winStart) && !t1.After(winEnd) {
					local = append(local, float64(t1.Sub(t0))/float64(time.Millisecond))
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}(g)
	}
	wg.Wait()
	c1 := snapshotCPU(pids)
	c0Once.Do(func() { c0 = cpuSnapshot{err: errors.New("bench: M1: window never started")} })

	rep := m1Figures(lat, duration.Seconds(), cpuSeconds(c0, c1), errs.Load())
	if len(lat) == 0 {
		if firstErr != nil {
			return rep, fmt.Errorf("bench: M1: no commit answered in the window; first error: %w", firstErr)
		}
		return rep, errors.New("bench: M1: no commit answered in the window")
	}
	return rep, nil
}

// m1CommitRequest is one standalone commit of every partition of topic for
// group, at offset it (so each commit changes every value).
func m1CommitRequest(group, topic string, it int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation, req.MemberID = group, -1, ""
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	for p := int32(0); p < m1Partitions; p++ {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = p, it, -1
		rp.Metadata = kmsg.StringPtr("m1")
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	return req
}

// m1CommitErr returns the first error of a commit's response, or an error
// when it does not answer every partition.
func m1CommitErr(resp *kmsg.OffsetCommitResponse) error {
	n := 0
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if e := kerr.ErrorForCode(p.ErrorCode); e != nil {
				return fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, e)
			}
			n++
		}
	}
	if n != m1Partitions {
		return fmt.Errorf("commit answered %d partitions, sent %d", n, m1Partitions)
	}
	return nil
}

// m1Figures turns the latencies (ms) of the commits answered in a window of
// seconds into M1's figures.
func m1Figures(lat []float64, seconds float64, cpu Value, errs int64) Rep {
	r := Rep{
		FigCommits:    Measured(float64(len(lat)), ""),
		FigSeconds:    Measured(seconds, "s"),
		FigCPUSeconds: cpu,
		FigErrors:     Measured(float64(errs), ""),
	}
	if len(lat) == 0 || seconds <= 0 {
		why := "no commit answered in the window"
		for _, f := range []string{FigCommitP50, FigCommitP99} {
			r[f] = Unmeasured("ms", why)
		}
		r[FigOffsetsPerS] = Unmeasured("1/s", why)
		r[FigRateRatio] = Unmeasured("", why)
		return r
	}
	p50, _ := Percentile(lat, 50)
	p99, _ := Percentile(lat, 99)
	rate := float64(len(lat)*m1Partitions) / seconds
	r[FigCommitP50] = Measured(p50, "ms")
	r[FigCommitP99] = Measured(p99, "ms")
	r[FigOffsetsPerS] = Measured(rate, "1/s")
	r[FigRateRatio] = Measured(rate/m1RateGoal, "")
	return r
}
