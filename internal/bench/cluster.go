package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/internal/harness"
)

// ErrPortTaken: a port chosen for a broker was in use; the load generator
// refuses to start rather than measure somebody else's process.
var ErrPortTaken = errors.New("bench: port taken")

// ErrBrokerDied: a broker process exited while a benchmark needed it.
var ErrBrokerDied = errors.New("bench: broker exited")

// brokerProc is one broker started for a benchmark, with the data directory
// it owns.
type brokerProc struct {
	b   *harness.Broker
	dir string
}

// startBroker starts one `strata serve` on free 127.0.0.1 ports with its data
// in a fresh directory under env.DataDir named name. Ports are checked free
// right before the start, and the process is checked alive after it.
func (e *Env) startBroker(ctx context.Context, name string, id int32, args ...string) (*brokerProc, error) {
	return e.startBrokerOn(ctx, name, id, nil, args...)
}

// startBrokerOn is startBroker with the broker joining the etcd at
// endpoints (nil = its own embedded etcd).
//
// Brokers have no remote tier unless args give one (--remote, as C2 and U1
// do): the embedded default is a directory on the disk the hot-path
// benchmarks measure, and uploading every sealed segment there, as soon as
// it is sealed, would write each byte twice to it, which no deployment with
// a real object store does.
func (e *Env) startBrokerOn(ctx context.Context, name string, id int32, endpoints []string, args ...string) (*brokerProc, error) {
	args = append([]string{"--remote=none"}, args...) // a later --remote wins
	dir := filepath.Join(e.DataDir, name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("bench: start broker %s: %w", name, err)
	}
	port, mport, err := twoFreePorts()
	if err != nil {
		return nil, fmt.Errorf("bench: start broker %s: %w", name, err)
	}
	sctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	b, err := harness.Start(sctx, harness.BrokerConfig{
		Bin: e.Bin, DataDir: dir, BrokerID: id, Args: args, EtcdEndpoints: endpoints,
		Port: port, MetricsPort: mport,
		LogPath: filepath.Join(e.DataDir, name+".log"),
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: start broker %s: %w", name, err)
	}
	p := &brokerProc{b: b, dir: dir}
	if err := p.alive(); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *brokerProc) alive() error {
	if code := p.b.ExitCode(); code != -1 || p.b.PID() == 0 {
		return fmt.Errorf("%w: broker %d (pid %d) exit code %d; log tail:\n%s", ErrBrokerDied, p.b.Config.BrokerID, p.b.PID(), code, p.b.LogTail(20))
	}
	return nil
}

// stop stops the broker by its PID (SIGTERM, then SIGKILL) and removes its
// data directory and log.
func (p *brokerProc) stop() error {
	if p == nil {
		return nil
	}
	err := p.b.Stop()
	if err != nil {
		_ = p.b.Kill()
	}
	if rerr := os.RemoveAll(p.dir); rerr != nil && err == nil {
		err = rerr
	}
	keepLog(p.b.Config.LogPath)
	return err
}

// logsEnv names a directory: when set, a stopped broker's log is moved
// there (as <name>-<unix ns>.log) instead of removed, for reading what it
// did during a figure (run with STRATA_LOG_LEVEL=debug for per-segment
// upload timings).
const logsEnv = "STRATA_BENCH_LOGS"

func keepLog(path string) {
	if dir := os.Getenv(logsEnv); dir != "" {
		name := strings.TrimSuffix(filepath.Base(path), ".log")
		dst := filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
		if os.MkdirAll(dir, 0o755) == nil && os.Rename(path, dst) == nil {
			return
		}
	}
	os.Remove(path)
}

func twoFreePorts() (int, int, error) {
	for range 20 {
		a, err := harness.FreePort()
		if err != nil {
			return 0, 0, err
		}
		b, err := harness.FreePort()
		if err != nil {
			return 0, 0, err
		}
		if a == b {
			continue
		}
		for _, p := range []int{a, b} {
			if err := checkPortFree(p); err != nil {
				return 0, 0, err
			}
		}
		return a, b, nil
	}
	return 0, 0, errors.New("bench: no two distinct free ports in 20 tries")
}

// checkPortFree returns ErrPortTaken unless 127.0.0.1:port can be bound.
func checkPortFree(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("%w: 127.0.0.1:%d: %v", ErrPortTaken, port, err)
	}
	return l.Close()
}

// topicInfo is what the fetcher needs about a topic.
type topicInfo struct {
	name    string
	id      [16]byte
	leaders []int32 // by partition
}

// adminClient returns a kgo client for raw requests to addr.
func adminClient(addr string) (*kgo.Client, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestTimeoutOverhead(20*time.Second),
		kgo.RequestRetries(3), kgo.BrokerMaxReadBytes(256<<20))
	if err != nil {
		return nil, fmt.Errorf("bench: client for %s: %w", addr, err)
	}
	return cl, nil
}

// createTopic creates topic with parts partitions and replication factor rf
// and waits (bounded) until metadata shows every partition with a leader.
// If CreateTopics is refused for a reason other than "already exists", it
// still waits, relying on auto-creation through Metadata.
func createTopic(ctx context.Context, cl *kgo.Client, topic string, parts int32, rf int16, configs map[string]string) (topicInfo, error) {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 30_000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, parts, rf
	for k, v := range configs {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	var createErr error
	resp, err := req.RequestWith(ctx, cl)
	switch {
	case err != nil:
		createErr = err
	case len(resp.Topics) != 1:
		createErr = fmt.Errorf("%d topics in response", len(resp.Topics))
	default:
		if e := kerr.ErrorForCode(resp.Topics[0].ErrorCode); e != nil && !errors.Is(e, kerr.TopicAlreadyExists) {
			createErr = e
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	var last error
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		ti, err := topicMetadata(ctx, cl, topic, parts)
		if err == nil {
			return ti, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return topicInfo{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return topicInfo{}, fmt.Errorf("bench: create topic %s: not ready in 30 s: %v (CreateTopics: %v)", topic, last, createErr)
}

func topicMetadata(ctx context.Context, cl *kgo.Client, topic string, parts int32) (topicInfo, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = true
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, mt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return topicInfo{}, err
	}
	if len(resp.Topics) != 1 {
		return topicInfo{}, fmt.Errorf("metadata: %d topics", len(resp.Topics))
	}
	t := resp.Topics[0]
	if e := kerr.ErrorForCode(t.ErrorCode); e != nil {
		return topicInfo{}, fmt.Errorf("metadata: %w", e)
	}
	if int32(len(t.Partitions)) != parts {
		return topicInfo{}, fmt.Errorf("metadata: %d partitions, want %d", len(t.Partitions), parts)
	}
	ti := topicInfo{name: topic, id: t.TopicID, leaders: make([]int32, parts)}
	for _, p := range t.Partitions {
		if p.Partition < 0 || p.Partition >= parts {
			return topicInfo{}, fmt.Errorf("metadata: partition %d out of range", p.Partition)
		}
		if e := kerr.ErrorForCode(p.ErrorCode); e != nil {
			return topicInfo{}, fmt.Errorf("metadata: partition %d: %w", p.Partition, e)
		}
		if p.Leader < 0 {
			return topicInfo{}, fmt.Errorf("metadata: partition %d has no leader", p.Partition)
		}
		ti.leaders[p.Partition] = p.Leader
	}
	return ti, nil
}

// listOffsets returns the offset of every partition at timestamp ts
// (-2 = earliest, -1 = latest, i.e. the high watermark).
func listOffsets(ctx context.Context, cl *kgo.Client, ti topicInfo, ts int64) ([]int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = ti.name
	for p := range ti.leaders {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = int32(p), ts, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("bench: list offsets %s: %w", ti.name, err)
	}
	out := make([]int64, len(ti.leaders))
	seen := make([]bool, len(ti.leaders))
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.Partition < 0 || int(p.Partition) >= len(out) {
				return nil, fmt.Errorf("bench: list offsets %s: partition %d out of range", ti.name, p.Partition)
			}
			if e := kerr.ErrorForCode(p.ErrorCode); e != nil {
				return nil, fmt.Errorf("bench: list offsets %s/%d: %w", ti.name, p.Partition, e)
			}
			out[p.Partition], seen[p.Partition] = p.Offset, true
		}
	}
	for p, ok := range seen {
		if !ok {
			return nil, fmt.Errorf("bench: list offsets %s: partition %d missing", ti.name, p)
		}
	}
	return out, nil
}
