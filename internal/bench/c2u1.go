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
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// C2 and U1: tiered storage against a real MinIO the run starts (its S_put
// and S_get are the limits, measured in the same run).
//
// C2, cold consume: one broker tiering to MinIO, a 6-partition topic of
// Options.C1Bytes produced and uploaded, local copies deleted
// (local.retention.bytes 1 MiB per partition), then per repetition the
// broker is restarted (its chunk cache starts empty) and one lean consumer
// reads every partition from the log start. Figures: MB/s, time to the
// first record byte, fetch latency p99.
//
// U1, backlog upload: per repetition a fresh topic of Options.C1Bytes/2
// is produced with tiering off, then remote.storage.enable is turned on and
// the time until every sealed segment is recorded uploaded is measured:
// MB/s of segment bytes.

const (
	FigTTFB       = "ttfb_ms"      // C2: time to the first record byte
	FigFetchP99   = "fetch_p99_ms" // C2: fetch request latency p99
	tierLocalKeep = 1 << 20
)

// tierSegmentBytes sizes segments so that each partition of total bytes
// seals about eight: big enough for real objects, enough of them to tier.
func tierSegmentBytes(total int64) int64 {
	return min(max(total/c1Partitions/8, 1<<20), 64<<20)
}

var c2Shown = []string{FigMBps, FigTTFB, FigFetchP99, FigRatio}

type c2Runner struct {
	*c1Runner
	bp *brokerProc
}

func brokerTierArgs(m *minioProc, prefix string, extra ...string) []string {
	return append([]string{
		"--remote", m.url(prefix),
		"--remote.log.manager.task.interval.ms=100",
		"--log.retention.check.interval.ms=100",
		fmt.Sprintf("--num.partitions=%d", c1Partitions),
	}, extra...)
}

func prepareC2(ctx context.Context, env *Env) (_ Runner, err error) {
	if env.minio == nil {
		return nil, errors.New("bench: C2 needs MinIO: " + env.minioErr)
	}
	bp, err := env.startBroker(ctx, "c2", 0, brokerTierArgs(env.minio, "c2")...)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			bp.stop()
		}
	}()
	cl, err := adminClient(bp.b.Addr)
	if err != nil {
		return nil, err
	}
	r := &c2Runner{c1Runner: &c1Runner{env: env, pids: []int{bp.b.PID()}, cl: cl, name: "C2"}, bp: bp}
	const topic = "bench-c2"
	if r.ti, err = createTopic(ctx, cl, topic, c1Partitions, 1, map[string]string{
		"segment.bytes": strconv.FormatInt(tierSegmentBytes(env.Opts.C1Bytes), 10), "local.retention.bytes": strconv.Itoa(tierLocalKeep),
	}); err != nil {
		return nil, err
	}
	total := env.Opts.C1Bytes
	timeout := 60*time.Second + time.Duration(float64(total)/4e6*float64(time.Second))
	env.logf("C2: producing %d bytes", total)
	if err := produceBytes(ctx, loadParams{addr: bp.b.Addr, topic: topic, partitions: c1Partitions,
		clients: p1Clients, codec: "none"}, GenerateRecords(p1Records, 3), total, timeout); err != nil {
		return nil, fmt.Errorf("bench: C2 preload: %w", err)
	}
	env.logf("C2: waiting for the upload and the local deletion")
	if err := waitTiered(ctx, cl, r.ti, filepath.Join(bp.dir, "logs"), timeout); err != nil {
		return nil, err
	}
	if r.start, err = listOffsets(ctx, cl, r.ti, -2); err != nil {
		return nil, err
	}
	if r.end, err = listOffsets(ctx, cl, r.ti, -1); err != nil {
		return nil, err
	}
	local, err := listOffsets(ctx, cl, r.ti, -4)
	if err != nil {
		return nil, err
	}
	var recs, cold int64
	for p := range r.end {
		recs += r.end[p] - r.start[p]
		cold += local[p] - r.start[p]
	}
	env.logf("C2: %d records, %d of them only in MinIO", recs, cold)
	if cold < recs/2 {
		return nil, fmt.Errorf("bench: C2: only %d of %d records are cold", cold, recs)
	}
	return r, nil
}

// waitTiered waits until every partition has uploaded all its sealed
// segments (ListOffsets -5 reaches the active segment) and trimmed its
// local log (-4 past 0).
func waitTiered(ctx context.Context, cl *kgo.Client, ti topicInfo, logsDir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		up, err1 := listOffsets(ctx, cl, ti, -5)
		local, err2 := listOffsets(ctx, cl, ti, -4)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		done := true
		for p := range up {
			active, err := activeSegmentBase(logsDir, ti.name, p)
			if err != nil {
				return err
			}
			if up[p] < active-1 || local[p] == 0 {
				done = false
			}
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s: %w waiting for uploads (uploaded to %v, local starts %v)", ti.name, ErrTimeout, up, local)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// activeSegmentBase is the base offset of a partition's newest local
// segment, from its directory.
func activeSegmentBase(logsDir, topic string, p int) (int64, error) {
	ents, err := os.ReadDir(filepath.Join(logsDir, fmt.Sprintf("%s-%d", topic, p)))
	if err != nil {
		return 0, err
	}
	var bases []int64
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".log"); ok {
			if b, err := strconv.ParseInt(n, 10, 64); err == nil {
				bases = append(bases, b)
			}
		}
	}
	if len(bases) == 0 {
		return 0, fmt.Errorf("bench: no segments in %s-%d", topic, p)
	}
	return slices.Max(bases), nil
}

// sealedBytes is the size of every local segment but the newest.
func sealedBytes(logsDir, topic string, p int) (int64, error) {
	dir := filepath.Join(logsDir, fmt.Sprintf("%s-%d", topic, p))
	active, err := activeSegmentBase(logsDir, topic, p)
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok || name == fmt.Sprintf("%020d", active) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return 0, err
		}
		n += fi.Size()
	}
	return n, nil
}

func (r *c2Runner) Close() error {
	if r.cl != nil {
		r.cl.Close()
		r.cl = nil
	}
	err := r.bp.stop()
	r.bp = nil
	return err
}

func (r *c2Runner) Rep(ctx context.Context, i int) (Rep, error) {
	// Nothing of the preload or a previous repetition is still being
	// written back while this one reads.
	syscall.Sync()
	// A restart empties the chunk cache: every repetition reads cold.
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err := r.bp.b.Restart(rctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bench: C2: restart: %w", err)
	}
	r.pids = []int{r.bp.b.PID()}
	if err := r.bp.alive(); err != nil {
		return nil, err
	}
	// A fresh client: the old one's connections died with the broker.
	r.cl.Close()
	cl, err := adminClient(r.bp.b.Addr)
	if err != nil {
		return nil, err
	}
	r.cl = cl
	stopProf := r.env.startProfile(r.bp.b.MetricsAddr, fmt.Sprintf("C2-rep%d", i))
	c0, t0 := snapshotCPU(r.pids), time.Now()
	bytes, err := r.consume(ctx)
	c1, t1 := snapshotCPU(r.pids), time.Now()
	stopProf()
	if err != nil {
		return nil, err
	}
	rep := throughputRep(bytes, t1.Sub(t0).Seconds(), cpuSeconds(c0, c1), 0)
	rep[FigTTFB] = Measured(float64(r.ttfb.Microseconds())/1000, "ms")
	lat := slices.Clone(r.fetchMs)
	slices.Sort(lat)
	if len(lat) > 0 {
		rep[FigFetchP99] = Measured(lat[min(len(lat)-1, len(lat)*99/100)], "ms")
	} else {
		rep[FigFetchP99] = Unmeasured("ms", "no fetches")
	}
	return rep, r.bp.alive()
}

// tierBroker is a broker tiering to the run's MinIO with the default task
// interval (30 s), and an admin client to it: uploads start because a
// topic's remote storage was turned on or a segment was sealed, not
// because a round came. U1 and U1-steady run on one each.
type tierBroker struct {
	env *Env
	bp  *brokerProc
	cl  *kgo.Client
}

func startTierBroker(ctx context.Context, env *Env, name string, extra ...string) (*tierBroker, error) {
	if env.minio == nil {
		return nil, fmt.Errorf("bench: %s needs MinIO: %s", name, env.minioErr)
	}
	args := append(brokerTierArgs(env.minio, name, extra...), "--remote.log.manager.task.interval.ms=30000")
	bp, err := env.startBroker(ctx, name, 0, args...)
	if err != nil {
		return nil, err
	}
	cl, err := adminClient(bp.b.Addr)
	if err != nil {
		bp.stop()
		return nil, err
	}
	return &tierBroker{env: env, bp: bp, cl: cl}, nil
}

func (r *tierBroker) Close() error {
	if r.cl != nil {
		r.cl.Close()
	}
	return r.bp.stop()
}

type u1Runner struct{ *tierBroker }

func prepareU1(ctx context.Context, env *Env) (Runner, error) {
	tb, err := startTierBroker(ctx, env, "u1", "--log.remote.storage.enable=false")
	if err != nil {
		return nil, err
	}
	return u1Runner{tb}, nil
}

func (r u1Runner) Rep(ctx context.Context, i int) (Rep, error) {
	topic := fmt.Sprintf("bench-u1-%d", i)
	ti, err := createTopic(ctx, r.cl, topic, c1Partitions, 1, map[string]string{
		"segment.bytes": strconv.FormatInt(tierSegmentBytes(r.env.Opts.C1Bytes/2), 10), "remote.storage.enable": "false",
	})
	if err != nil {
		return nil, err
	}
	total := r.env.Opts.C1Bytes / 2
	timeout := 60*time.Second + time.Duration(float64(total)/4e6*float64(time.Second))
	if err := produceBytes(ctx, loadParams{addr: r.bp.b.Addr, topic: topic, partitions: c1Partitions,
		clients: p1Clients, codec: "none"}, GenerateRecords(p1Records, 4), total, timeout); err != nil {
		return nil, fmt.Errorf("bench: U1 preload: %w", err)
	}
	logs := filepath.Join(r.bp.dir, "logs")
	var backlog int64
	for p := range c1Partitions {
		n, err := sealedBytes(logs, topic, p)
		if err != nil {
			return nil, err
		}
		backlog += n
	}
	if backlog == 0 {
		return nil, fmt.Errorf("bench: U1: no sealed segments to upload after %d bytes", total)
	}
	// The backlog exists before the measured phase: write the preload's
	// dirty pages (and the previous repetition's) back first, so that the
	// upload is not measured racing the kernel's writeback of them.
	syscall.Sync()
	pids := []int{r.bp.b.PID()}
	stopProf := r.env.startProfile(r.bp.b.MetricsAddr, fmt.Sprintf("U1-rep%d", i))
	defer stopProf()
	c0, t0 := snapshotCPU(pids), time.Now()
	if err := alterTopicConfig(ctx, r.cl, topic, "remote.storage.enable", "true"); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		up, err := listOffsets(ctx, r.cl, ti, -5)
		if err != nil {
			return nil, err
		}
		done := true
		for p := range up {
			active, err := activeSegmentBase(logs, topic, p)
			if err != nil {
				return nil, err
			}
			if up[p] < active-1 {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bench: U1: %w: backlog not drained (uploaded to %v)", ErrTimeout, up)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
	c1, t1 := snapshotCPU(pids), time.Now()
	rep := throughputRep(backlog, t1.Sub(t0).Seconds(), cpuSeconds(c0, c1), 0)
	return rep, r.bp.alive()
}

// alterTopicConfig sets one topic config with IncrementalAlterConfigs.
func alterTopicConfig(ctx context.Context, cl *kgo.Client, topic, name, value string) error {
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, topic
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Value = name, &value
	res.Configs = append(res.Configs, c)
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("bench: alter %s %s: %w", topic, name, err)
	}
	for _, r := range resp.Resources {
		if e := kerr.ErrorForCode(r.ErrorCode); e != nil {
			return fmt.Errorf("bench: alter %s %s: %w", topic, name, e)
		}
	}
	return nil
}
