package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
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
//   - the etcd floor, open loop: the same 50 × 20 writes per second, each
//     one compare-and-put transaction of a bucket-sized value straight to
//     the broker's etcd (clientv3 over loopback, keys outside the broker's
//     prefix), latency from the intended send time. No etcd-backed commit
//     can be faster than this on the same machine in the same run; its p99
//     against L_fsync p99 (etcd_p99_ratio) shows how much of the 4 × budget
//     etcd itself takes, and commit_p99 / etcd_p99 (vs_etcd_p99) what the
//     broker adds.
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
	FigEtcdP50     = "etcd_p50_ms"         // the etcd floor: one compare-and-put txn at the paced rate, p50
	FigEtcdP99     = "etcd_p99_ms"         // the etcd floor, p99
	FigEtcdRatio   = "etcd_p99_ratio"      // etcd_p99 / M1's limit (L_fsync p99), like the ratio
	FigVsEtcd      = "vs_etcd_p99"         // commit_p99 / etcd_p99
)

// m1Shown are the figures of M1's row in the printed table.
var m1Shown = []string{FigCommitP50, FigCommitP99, FigPacedRate, FigOffsetsPerS, FigRateRatio, FigSatP50, FigSatP99, FigEtcdP50, FigEtcdP99, FigEtcdRatio, FigVsEtcd, FigRatio}

// ErrNotAdvertised: the broker does not advertise an API a benchmark needs.
var ErrNotAdvertised = errors.New("bench: API not advertised by the broker")

type m1Runner struct {
	env  *Env
	bp   *brokerProc
	cl   *kgo.Client
	etcd *clientv3.Client // the broker's embedded etcd
}

// prepareM1 starts the broker, checks that it serves OffsetCommit and
// creates the topic; the repetitions share them, each with its own groups.
func prepareM1(ctx context.Context, env *Env) (_ Runner, err error) {
	etcdPort, _, err := twoFreePorts()
	if err != nil {
		return nil, fmt.Errorf("bench: M1: %w", err)
	}
	etcdAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(etcdPort))
	bp, err := env.startBroker(ctx, "m1", 0, "--etcd-listen="+etcdAddr)
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
	if r.etcd, err = clientv3.New(clientv3.Config{Endpoints: []string{"http://" + etcdAddr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}); err != nil {
		return nil, fmt.Errorf("bench: M1: etcd client: %w", err)
	}
	return r, nil
}

func (r *m1Runner) Close() error {
	if r.etcd != nil {
		r.etcd.Close()
		r.etcd = nil
	}
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
	var floor Rep
	if err == nil {
		floor, err = measureEtcdFloor(ctx, r.etcd, fmt.Sprintf("/strata-bench-m1-floor/r%d/", i+1), r.env.Opts.Warmup, max(r.env.Opts.Duration/3, time.Second), m1PacedInterval)
	}
	stopProf()
	rep := m1Merge(paced, sat)
	for f, v := range floor {
		rep[f] = v
	}
	if c, e := rep[FigCommitP99], rep[FigEtcdP99]; c.OK() && e.OK() && *e.V > 0 {
		rep[FigVsEtcd] = Measured(*c.V / *e.V, "")
	}
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

// measureEtcdFloor writes to etcd what M1's paced phase commits, without the
// broker: m1Groups writers, one compare-and-put transaction of a
// bucket-sized value each per interval, each on its own key under prefix
// (removed afterwards), latency from the intended send time. It returns
// FigEtcdP50 and FigEtcdP99 of the window after warmup.
func measureEtcdFloor(ctx context.Context, cli *clientv3.Client, prefix string, warmup, duration, interval time.Duration) (Rep, error) {
	if cli == nil {
		return nil, errors.New("bench: M1: no etcd client")
	}
	lctx, cancel := context.WithTimeout(ctx, warmup+duration+30*time.Second)
	defer cancel()
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		cli.Delete(dctx, prefix, clientv3.WithPrefix())
		dcancel()
	}()
	val := string(make([]byte, 40*m1Partitions)) // about one encoded bucket of m1Partitions offsets
	start := time.Now()
	winStart, winEnd := start.Add(warmup), start.Add(warmup+duration)
	var (
		mu       sync.Mutex
		lat      []float64
		firstErr error
	)
	var wg sync.WaitGroup
	for g := range m1Groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("%sg%02d", prefix, g)
			var modRev int64
			local := make([]float64, 0, 1024)
			next := start.Add(time.Duration(g) * interval / m1Groups)
			for lctx.Err() == nil && next.Before(winEnd) {
				if d := time.Until(next); d > 0 {
					select {
					case <-time.After(d):
					case <-lctx.Done():
					}
				}
				t0 := next
				next = next.Add(interval)
				resp, err := cli.Txn(lctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).Then(clientv3.OpPut(key, val)).Commit()
				t1 := time.Now()
				if err == nil && !resp.Succeeded {
					err = fmt.Errorf("compare of %s at mod revision %d failed", key, modRev)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					break
				}
				modRev = resp.Header.Revision
				if !t0.Before(winStart) && !t1.After(winEnd) {
					local = append(local, float64(t1.Sub(t0))/float64(time.Millisecond))
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("bench: M1: etcd floor: %w", firstErr)
	}
	if len(lat) == 0 {
		return nil, errors.New("bench: M1: etcd floor: no write in the window")
	}
	p50, _ := Percentile(lat, 50)
	p99, _ := Percentile(lat, 99)
	return Rep{FigEtcdP50: Measured(p50, "ms"), FigEtcdP99: Measured(p99, "ms")}, nil
}
