package test

// End-to-end failover of a three-broker cluster on one etcd (issue 5):
//
//   - TestClusterKillLeaderMidStream: kill -9 of a partition leader while an
//     idempotent acks=all franz-go producer streams; the controller elects a
//     new leader from the ISR after the lease (10 s) lapses, the producer
//     carries on by itself, every acknowledged record is read exactly once
//     at its acknowledged offset; the killed broker comes back into every
//     ISR, takes its preferred leadership back, and serves the same data.
//   - TestClusterKillTwoOfThree: with both followers dead the ISR shrinks
//     after replica.lag.time.max.ms and acks=all is refused with
//     NOT_ENOUGH_REPLICAS without appending; the followers come back, catch
//     up, rejoin the ISR and acks=all works again.
//   - TestClusterSIGSTOPLeader: a leader frozen past its lease is replaced;
//     produce requests it finds in its socket when it thaws are never
//     acknowledged with acks=all, and no trace of them survives on any
//     broker once it follows the new leader.
//   - TestClusterRollingRestart: every broker restarted in turn with SIGTERM
//     (controlled shutdown) under an acks=all producer and a consumer group
//     of two: nothing acknowledged is missed, and the group commits the end
//     offsets.
//
// Helpers are prefixed "cluster"; the brokers run the binary of
// harness.Binary ($STRATA_BIN or a build of ./cmd/strata).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
	"github.com/stratabroker/strata/internal/harness"
)

// clusterLease is the broker registration lease TTL (coordinator default).
const clusterLease = 10 * time.Second

// clusterEnv is n brokers (ids 1..n) on one embedded etcd, with a Store
// client to read partition states.
type clusterEnv struct {
	t     *testing.T
	bs    map[int32]*harness.Broker
	ids   []int32
	eps   []string // the etcd the test's Store uses
	store *coordinator.Store
}

// clusterStart starts n brokers with the given extra flags.
func clusterStart(t *testing.T, n int, args ...string) *clusterEnv {
	t.Helper()
	return clusterStartVia(t, n, nil, args...)
}

// clusterStartVia is clusterStart where broker id reaches etcd at
// via(id, eps) (nil via: eps itself).
func clusterStartVia(t *testing.T, n int, via func(id int32, eps []string) []string, args ...string) *clusterEnv {
	t.Helper()
	eps := etcdtest.Start(t)
	root := t.TempDir()
	c := &clusterEnv{t: t, bs: map[int32]*harness.Broker{}, eps: eps}
	for id := int32(1); id <= int32(n); id++ {
		ep := eps
		if via != nil {
			ep = via(id, eps)
		}
		c.bs[id] = harness.StartT(t, harness.BrokerConfig{
			DataDir: filepath.Join(root, fmt.Sprintf("b%d", id)), BrokerID: id, EtcdEndpoints: ep, Args: args,
		})
		c.ids = append(c.ids, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := coordinator.Open(ctx, coordinator.Config{Endpoints: eps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("open etcd store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	c.store = store
	return c
}

// addrs returns the Kafka addresses of the brokers ids (all when none).
func (c *clusterEnv) addrs(ids ...int32) []string {
	if len(ids) == 0 {
		ids = c.ids
	}
	var out []string
	for _, id := range ids {
		out = append(out, c.bs[id].Addr)
	}
	return out
}

// others returns every broker id but the given ones.
func (c *clusterEnv) others(not ...int32) []int32 {
	var out []int32
	for _, id := range c.ids {
		if !slices.Contains(not, id) {
			out = append(out, id)
		}
	}
	return out
}

// states reads every partition state of topic from etcd.
func (c *clusterEnv) states(topic string) []coordinator.PartitionState {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tp, err := c.store.Topic(ctx, topic)
	if err != nil {
		c.t.Fatalf("read topic %s from etcd: %v", topic, err)
	}
	return tp.Partitions
}

// waitStates polls the partition states of topic in etcd until cond
// accepts them (nil) or d passes, and returns the accepted states.
func (c *clusterEnv) waitStates(d time.Duration, what, topic string, cond func([]coordinator.PartitionState) error) []coordinator.PartitionState {
	c.t.Helper()
	var sts []coordinator.PartitionState
	apiEventually(c.t, d, what, func() error {
		sts = c.states(topic)
		return cond(sts)
	})
	return sts
}

// waitMetadata polls Metadata v12 on the brokers ask until cond accepts
// the topic's answer on each of them.
func (c *clusterEnv) waitMetadata(d time.Duration, what, topic string, ask []int32, cond func(id int32, md *kmsg.MetadataResponse, mt *kmsg.MetadataResponseTopic) error) {
	c.t.Helper()
	apiEventually(c.t, d, what, func() error {
		for _, id := range ask {
			md := apiMetadata(c.t, c.bs[id].Addr, 12, false, []string{topic})
			mt := apiFindTopic(md, topic)
			if mt == nil || mt.ErrorCode != 0 {
				return fmt.Errorf("broker %d: topic %s not in metadata", id, topic)
			}
			if err := cond(id, md, mt); err != nil {
				return fmt.Errorf("broker %d: %w", id, err)
			}
		}
		return nil
	})
}

// createTopic creates topic with parts partitions of replication factor rf
// and configs, and waits until every partition has a leader and a full ISR
// in etcd and in every broker's metadata.
func (c *clusterEnv) createTopic(topic string, parts int32, rf int16, configs map[string]string) []coordinator.PartitionState {
	c.t.Helper()
	apiEventually(c.t, 20*time.Second, "create "+topic, func() error {
		resp := rawReq[*kmsg.CreateTopicsResponse](c.t, c.bs[c.ids[0]].Addr, apiCreateTopicsReq(5, false, topic, parts, rf, configs))
		if len(resp.Topics) != 1 {
			return fmt.Errorf("%d topics in response", len(resp.Topics))
		}
		if code := resp.Topics[0].ErrorCode; code != 0 && code != kerr.TopicAlreadyExists.Code {
			return fmt.Errorf("CreateTopics: %s", apiCode(code))
		}
		return nil
	})
	return c.waitFullISR(topic, parts, rf)
}

// waitFullISR waits until every partition of topic has a leader and rf
// in-sync replicas, in etcd and in every broker's metadata.
func (c *clusterEnv) waitFullISR(topic string, parts int32, rf int16) []coordinator.PartitionState {
	c.t.Helper()
	sts := c.waitStates(30*time.Second, topic+": every partition led with a full ISR in etcd", topic, func(sts []coordinator.PartitionState) error {
		if len(sts) != int(parts) {
			return fmt.Errorf("%d partitions", len(sts))
		}
		for _, st := range sts {
			if st.Leader < 1 || len(st.ISR) != int(rf) || len(st.Replicas) != int(rf) {
				return fmt.Errorf("partition %d: leader %d replicas %v ISR %v", st.Partition, st.Leader, st.Replicas, st.ISR)
			}
		}
		return nil
	})
	c.waitMetadata(20*time.Second, topic+": the full ISRs in every broker's metadata", topic, c.ids, func(_ int32, _ *kmsg.MetadataResponse, mt *kmsg.MetadataResponseTopic) error {
		if len(mt.Partitions) != int(parts) {
			return fmt.Errorf("%d partitions", len(mt.Partitions))
		}
		for _, p := range mt.Partitions {
			st := sts[p.Partition]
			if p.ErrorCode != 0 || p.Leader != st.Leader || p.LeaderEpoch != st.LeaderEpoch || len(p.ISR) != int(rf) {
				return fmt.Errorf("partition %d: leader %d epoch %d ISR %v %s, etcd has leader %d epoch %d", p.Partition, p.Leader, p.LeaderEpoch, p.ISR, apiCode(p.ErrorCode), st.Leader, st.LeaderEpoch)
			}
		}
		return nil
	})
	return sts
}

// clusterProducer returns an acks=all franz-go producer writing
// uncompressed batches to the partition set on each record; idempotent
// unless told otherwise.
func clusterProducer(t *testing.T, seeds []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	base := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(2 * time.Millisecond),
		kgo.RecordDeliveryTimeout(45 * time.Second),
		kgo.RetryTimeout(45 * time.Second),
		kgo.MetadataMinAge(100 * time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// clusterProduceSync produces values to partition p of topic with acks=all
// and returns their offsets; any error fails the test.
func clusterProduceSync(t *testing.T, seeds []string, topic string, p int32, values []string) []int64 {
	t.Helper()
	cl := clusterProducer(t, seeds)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	rs := make([]*kgo.Record, len(values))
	for i, v := range values {
		rs[i] = &kgo.Record{Topic: topic, Partition: p, Value: []byte(v)}
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records (%s..) to %s/%d with acks=all: %v", len(values), values[0], topic, p, err)
	}
	offs := make([]int64, len(rs))
	for i, r := range rs {
		offs[i] = r.Offset
	}
	return offs
}

// clusterValues returns "prefix-0" .. "prefix-(n-1)".
func clusterValues(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + "-" + strconv.Itoa(i)
	}
	return out
}

// clusterRead reads partition p of topic from the broker at addr, which
// must lead it, with Fetch v12 from offset 0 until end. Refusals (the
// broker does not lead yet) and a high watermark below end are retried
// until d passes, then reported as an error; offsets that are not dense,
// or a high watermark beyond end, fail the test.
func clusterRead(t *testing.T, addr, topic string, p int32, end int64, d time.Duration) ([]rawFetched, error) {
	t.Helper()
	deadline := time.Now().Add(d)
	out := make([]rawFetched, 0, end)
	next := int64(0)
	for {
		fp := rawFetchPartition(t, rawReq[*kmsg.FetchResponse](t, addr, rawFetchReq(12, topic, p, next, 100, 1)))
		var last string
		if fp.ErrorCode != 0 {
			last = "fetch answered " + apiCode(fp.ErrorCode)
		} else {
			if fp.HighWatermark > end {
				t.Fatalf("read %s/%d from %s: high watermark %d beyond the expected end %d", topic, p, addr, fp.HighWatermark, end)
			}
			recs, _, err := rawParseBatches(fp.RecordBatches)
			if err != nil {
				t.Fatalf("read %s/%d from %s at %d: %v", topic, p, addr, next, err)
			}
			for _, r := range recs {
				if r.Offset < next {
					continue // the batch holding next starts before it
				}
				if r.Offset != next {
					t.Fatalf("read %s/%d from %s: offset %d follows %d (offsets not dense)", topic, p, addr, r.Offset, next-1)
				}
				out = append(out, r)
				next++
			}
			last = fmt.Sprintf("high watermark %d", fp.HighWatermark)
		}
		if next >= end {
			return out, nil
		}
		if time.Now().After(deadline) {
			return out, fmt.Errorf("read %s/%d from %s: %d of %d records after %v; last: %s", topic, p, addr, next, end, d, last)
		}
		time.Sleep(50 * time.Millisecond) // poll interval of a bounded wait
	}
}

// stableEnd returns the latest offset of partition p of topic on its
// leader (looked up in etcd at each try: leadership may move) once two
// answers 300 ms apart agree (bounded by d).
func (c *clusterEnv) stableEnd(topic string, p int32, d time.Duration) int64 {
	c.t.Helper()
	prev := int64(-1)
	var end int64
	apiEventually(c.t, d, fmt.Sprintf("stable end offset of %s/%d", topic, p), func() error {
		leader := c.states(topic)[p].Leader
		if leader < 1 {
			prev = -1
			return fmt.Errorf("no leader")
		}
		code, off, _ := apiListOffset(c.t, c.bs[leader].Addr, 9, topic, p, -1)
		if code != 0 {
			prev = -1
			return fmt.Errorf("ListOffsets on broker %d: %s", leader, apiCode(code))
		}
		if off != prev {
			prev = off
			time.Sleep(300 * time.Millisecond) // the second look of a bounded wait
			return fmt.Errorf("end offset moved to %d", off)
		}
		end = off
		return nil
	})
	return end
}

// clusterWantValues asserts that recs are exactly values at offsets 0.. .
func clusterWantValues(t *testing.T, who string, recs []rawFetched, values []string) {
	t.Helper()
	for i := 0; i < min(len(recs), len(values)); i++ {
		if recs[i].Offset != int64(i) || string(recs[i].Value) != values[i] {
			t.Fatalf("%s: record %d is offset %d value %q, want offset %d value %q", who, i, recs[i].Offset, recs[i].Value, i, values[i])
		}
	}
	if len(recs) != len(values) {
		t.Fatalf("%s: %d records, want %d", who, len(recs), len(values))
	}
}

// clusterStreamAck is one acknowledged record of a stream.
type clusterStreamAck struct {
	seq    int
	offset int64
}

// clusterStream produces n records round-robin over parts partitions
// (record i to partition i % parts, value "s-<i>"), rate records a second
// at most, through cl, remembering what was acknowledged.
type clusterStream struct {
	mu      sync.Mutex
	acked   map[int32][]clusterStreamAck // in acknowledgement order
	nAcked  int
	failed  int
	errs    []string
	sent    int
	stopped bool
}

func clusterValue(seq int) string { return fmt.Sprintf("s-%06d", seq) }

// clusterSeq parses a value of clusterValue; -1 if it is not one.
func clusterSeq(v []byte) int {
	s, ok := strings.CutPrefix(string(v), "s-")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(s)
	if err != nil || clusterValue(n) != string(v) {
		return -1
	}
	return n
}

// run produces until n records are sent, stop is closed or ctx ends; it
// does not wait for the outstanding acknowledgements (Flush does).
func (s *clusterStream) run(ctx context.Context, cl *kgo.Client, topic string, parts int32, n, rate int, stop <-chan struct{}) {
	const tick = 10 * time.Millisecond
	per := max(rate/int(time.Second/tick), 1)
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for seq := 0; seq < n; {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-tk.C:
		}
		for i := 0; i < per && seq < n; i++ {
			r := &kgo.Record{Topic: topic, Partition: int32(seq % int(parts)), Value: []byte(clusterValue(seq))}
			cur := seq
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				s.mu.Lock()
				defer s.mu.Unlock()
				if err != nil {
					s.failed++
					if len(s.errs) < 5 {
						s.errs = append(s.errs, fmt.Sprintf("record %d to partition %d: %v", cur, r.Partition, err))
					}
					return
				}
				s.acked[r.Partition] = append(s.acked[r.Partition], clusterStreamAck{cur, r.Offset})
				s.nAcked++
			})
			seq++
		}
		s.mu.Lock()
		s.sent = seq
		s.mu.Unlock()
	}
}

func (s *clusterStream) counts() (sent, acked, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.nAcked, s.failed
}

// clusterCheckStream checks partition p as read (recs, offsets 0..) against
// the stream: every value is a stream record of this partition, none
// twice, in produce order (increasing sequence), and every acknowledged
// record sits at the offset it was acknowledged at.
func clusterCheckStream(t *testing.T, who string, s *clusterStream, parts, p int32, recs []rawFetched) {
	t.Helper()
	last := -1
	at := map[int64]int{}
	for i, r := range recs {
		seq := clusterSeq(r.Value)
		switch {
		case r.Offset != int64(i):
			t.Fatalf("%s: record %d has offset %d", who, i, r.Offset)
		case seq < 0 || int32(seq%int(parts)) != p:
			t.Fatalf("%s: offset %d holds %q, not a record produced to partition %d", who, r.Offset, r.Value, p)
		case seq == last:
			t.Fatalf("%s: record %d (%q) stored twice, at offsets %d and %d", who, seq, r.Value, r.Offset-1, r.Offset)
		case seq < last:
			t.Fatalf("%s: offset %d holds record %d after record %d (not in produce order)", who, r.Offset, seq, last)
		}
		last = seq
		at[r.Offset] = seq
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.acked[p] {
		got, ok := at[a.offset]
		if !ok || got != a.seq {
			t.Fatalf("%s: record %d was acknowledged at offset %d, which holds %s", who, a.seq, a.offset,
				map[bool]string{true: clusterValue(got), false: "nothing (log ends at " + strconv.Itoa(len(recs)) + ")"}[ok])
		}
	}
}

func TestClusterKillLeaderMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: three brokers, waits for a broker lease (10 s) to expire")
	}
	start := time.Now()
	c := clusterStart(t, 3, "--replica.lag.time.max.ms=10000", "--replica.fetch.wait.max.ms=200", "--leader.imbalance.check.interval.seconds=2")
	const topic, parts, n, rate = "cluster-kill-leader", int32(3), 24_000, 1_200
	before := c.createTopic(topic, parts, 3, map[string]string{"min.insync.replicas": "2"})
	victim := before[0]
	t.Logf("partition 0: leader %d epoch %d ISR %v replicas %v", victim.Leader, victim.LeaderEpoch, victim.ISR, victim.Replicas)

	s := &clusterStream{acked: map[int32][]clusterStreamAck{}}
	cl := clusterProducer(t, c.addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.run(ctx, cl, topic, parts, n, rate, nil)
	}()
	defer wg.Wait()
	defer cancel()

	clientEventually(t, 20*time.Second, "a quarter of the stream acknowledged", func() (bool, string) {
		sent, acked, failed := s.counts()
		return acked >= n/4, fmt.Sprintf("sent %d acked %d failed %d", sent, acked, failed)
	})
	if err := c.bs[victim.Leader].Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	sentAtKill, ackedAtKill, _ := s.counts()
	survivors := c.others(victim.Leader)

	// The controller elects a leader from the ISR once the lease lapses.
	after := c.waitStates(clusterLease+15*time.Second, "partition 0 re-elected after kill -9 of its leader", topic, func(sts []coordinator.PartitionState) error {
		st := sts[0]
		if st.Leader == victim.Leader || st.Leader < 1 {
			return fmt.Errorf("leader %d epoch %d ISR %v", st.Leader, st.LeaderEpoch, st.ISR)
		}
		return nil
	})[0]
	elected := time.Since(killed)
	switch {
	case !slices.Contains(victim.ISR, after.Leader) || !slices.Contains(survivors, after.Leader):
		t.Fatalf("new leader %d is not a surviving member of the ISR %v", after.Leader, victim.ISR)
	case after.LeaderEpoch <= victim.LeaderEpoch:
		t.Fatalf("new leader %d has leader epoch %d, was %d", after.Leader, after.LeaderEpoch, victim.LeaderEpoch)
	case slices.Contains(after.ISR, victim.Leader) || !slices.Contains(after.ISR, after.Leader):
		t.Fatalf("ISR after the election %v (dead broker %d, leader %d)", after.ISR, victim.Leader, after.Leader)
	}
	// The last keep-alive (every TTL/3) may precede the kill by 3.3 s.
	if elected < clusterLease/2 {
		t.Fatalf("partition 0 re-elected %v after the kill, before the %v lease could lapse", elected, clusterLease)
	}
	t.Logf("kill -9 of broker %d at %d sent / %d acknowledged; partition 0 re-elected after %v: leader %d epoch %d ISR %v",
		victim.Leader, sentAtKill, ackedAtKill, elected.Round(time.Millisecond), after.Leader, after.LeaderEpoch, after.ISR)

	// The producer carries on by itself and finishes.
	clientEventually(t, 45*time.Second, "the whole stream sent", func() (bool, string) {
		sent, acked, failed := s.counts()
		return sent == n, fmt.Sprintf("sent %d acked %d failed %d", sent, acked, failed)
	})
	fctx, fcancel := context.WithTimeout(context.Background(), 50*time.Second)
	err := cl.Flush(fctx)
	fcancel()
	if err != nil {
		_, acked, failed := s.counts()
		t.Fatalf("flush the producer: %v (acked %d failed %d of %d)", err, acked, failed, n)
	}
	_, acked, failed := s.counts()
	t.Logf("stream done %v after the kill: %d acknowledged, %d failed (%v)", time.Since(killed).Round(time.Millisecond), acked, failed, s.errs)
	if acked+failed != n {
		t.Fatalf("%d acknowledged + %d failed != %d produced", acked, failed, n)
	}
	if failed > 5 {
		t.Fatalf("%d records failed (at most 5 allowed): %v", failed, s.errs)
	}
	s.mu.Lock()
	p0 := s.acked[0]
	s.mu.Unlock()
	if len(p0) == 0 || p0[len(p0)-1].seq < sentAtKill {
		t.Fatalf("partition 0: no record produced after the kill was acknowledged (last acknowledged %v)", p0[max(len(p0)-1, 0):])
	}

	// Every acknowledged record once, in order, at its offset, from the
	// current leader of each partition.
	sts := c.states(topic)
	ends := map[int32]int64{}
	first := map[int32][]rawFetched{}
	for p := int32(0); p < parts; p++ {
		addr := c.bs[sts[p].Leader].Addr
		ends[p] = c.stableEnd(topic, p, 20*time.Second)
		recs, err := clusterRead(t, addr, topic, p, ends[p], 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		clusterCheckStream(t, fmt.Sprintf("partition %d on leader %d", p, sts[p].Leader), s, parts, p, recs)
		first[p] = recs
	}
	t.Logf("end offsets %v; every acknowledged record read once at its offset", ends)

	// Restart the killed broker: it rejoins every ISR and takes back the
	// leadership of partition 0 (its preferred replica).
	rctx, rcancel := context.WithTimeout(context.Background(), 40*time.Second)
	err = c.bs[victim.Leader].Restart(rctx)
	rcancel()
	if err != nil {
		t.Fatalf("restart broker %d: %v", victim.Leader, err)
	}
	restarted := time.Now()
	c.waitStates(30*time.Second, fmt.Sprintf("broker %d back in every ISR", victim.Leader), topic, func(sts []coordinator.PartitionState) error {
		for _, st := range sts {
			if !slices.Contains(st.ISR, victim.Leader) || len(st.ISR) != 3 {
				return fmt.Errorf("partition %d: ISR %v", st.Partition, st.ISR)
			}
		}
		return nil
	})
	inISR := time.Since(restarted)
	sts = c.waitStates(20*time.Second, "preferred leaders restored", topic, func(sts []coordinator.PartitionState) error {
		for _, st := range sts {
			if st.Leader != st.Replicas[0] {
				return fmt.Errorf("partition %d: leader %d, preferred %d", st.Partition, st.Leader, st.Replicas[0])
			}
		}
		return nil
	})
	if sts[0].Leader != victim.Leader || sts[0].LeaderEpoch <= after.LeaderEpoch {
		t.Fatalf("partition 0 after the restart: leader %d epoch %d, want broker %d in an epoch above %d", sts[0].Leader, sts[0].LeaderEpoch, victim.Leader, after.LeaderEpoch)
	}
	t.Logf("broker %d back in every ISR %v after its restart; preferred leaders restored after %v", victim.Leader, inISR.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	for p := int32(0); p < parts; p++ {
		addr := c.bs[sts[p].Leader].Addr
		recs, err := clusterRead(t, addr, topic, p, ends[p], 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		who := fmt.Sprintf("partition %d re-read from leader %d", p, sts[p].Leader)
		if len(recs) != len(first[p]) {
			t.Fatalf("%s: %d records, first read %d", who, len(recs), len(first[p]))
		}
		for i := range recs {
			if recs[i].Offset != first[p][i].Offset || string(recs[i].Value) != string(first[p][i].Value) {
				t.Fatalf("%s: offset %d holds %q, first read %q at %d", who, recs[i].Offset, recs[i].Value, first[p][i].Value, first[p][i].Offset)
			}
		}
		if code, end, _ := apiListOffset(t, addr, 9, topic, p, -1); code != 0 || end != ends[p] {
			t.Fatalf("%s: end offset %d (%s), was %d", who, end, apiCode(code), ends[p])
		}
	}
	t.Logf("test took %v", time.Since(start).Round(time.Millisecond))
}

func TestClusterKillTwoOfThree(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: three brokers, kills and restarts two")
	}
	start := time.Now()
	const lag = 2 * time.Second
	c := clusterStart(t, 3, fmt.Sprintf("--replica.lag.time.max.ms=%d", lag.Milliseconds()), "--replica.fetch.wait.max.ms=200")
	const topic = "cluster-kill-two"
	replCreateTopic(t, c.bs[1].Addr, topic, []int32{1, 2, 3}, map[string]string{"min.insync.replicas": "2"})
	c.waitFullISR(topic, 1, 3)
	if st := c.states(topic)[0]; st.Leader != 1 {
		t.Fatalf("leader %d, want broker 1 (first replica)", st.Leader)
	}

	const na, nc = 1000, 500
	a := clusterValues("a", na)
	if offs := clusterProduceSync(t, c.addrs(), topic, 0, a); offs[0] != 0 || offs[na-1] != na-1 {
		t.Fatalf("a records acknowledged at offsets %d..%d, want 0..%d", offs[0], offs[na-1], na-1)
	}

	// Both followers die: until the leader drops them from the ISR,
	// acks=all attempts are appended and time out (not acknowledged, but
	// in the log, as in Kafka); afterwards they are refused before any
	// append with NOT_ENOUGH_REPLICAS.
	for _, id := range []int32{2, 3} {
		if err := c.bs[id].Kill(); err != nil {
			t.Fatal(err)
		}
	}
	killed := time.Now()
	attempt := func(v string) kmsg.ProduceResponseTopicPartition {
		req := rawProduceReq(9, -1, topic, 0, rawBatch(rawBatchSpec{}, rawValues(v)...))
		req.TimeoutMillis = 1000
		return rawProducePartition(t, rawReq[*kmsg.ProduceResponse](t, c.bs[1].Addr, req))
	}
	var unacked []string
	var refusedAfter time.Duration
	clientEventually(t, lag+20*time.Second, "acks=all refused with NOT_ENOUGH_REPLICAS", func() (bool, string) {
		v := "unacked-" + strconv.Itoa(len(unacked))
		r := attempt(v)
		switch r.ErrorCode {
		case kerr.NotEnoughReplicas.Code:
			refusedAfter = time.Since(killed)
			return true, ""
		case kerr.RequestTimedOut.Code, kerr.NotEnoughReplicasAfterAppend.Code:
			unacked = append(unacked, v)
			return false, apiCode(r.ErrorCode)
		case 0:
			t.Fatalf("acks=all with both followers dead acknowledged %q at offset %d", v, r.BaseOffset)
		default:
			t.Fatalf("acks=all with both followers dead: %s, want REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND or NOT_ENOUGH_REPLICAS", apiCode(r.ErrorCode))
		}
		return false, ""
	})
	t.Logf("NOT_ENOUGH_REPLICAS %v after the kills; %d acks=all attempts appended before that without acknowledgement", refusedAfter.Round(time.Millisecond), len(unacked))
	if refusedAfter < lag-500*time.Millisecond { // a follower's last fetch may precede the kill by a fetch wait
		t.Fatalf("NOT_ENOUGH_REPLICAS after %v, before replica.lag.time.max.ms (%v) could drop the followers", refusedAfter, lag)
	}
	if st := c.states(topic)[0]; st.Leader != 1 || !slices.Equal(st.ISR, []int32{1}) {
		t.Fatalf("etcd state with both followers dead: leader %d ISR %v, want leader 1 ISR [1]", st.Leader, st.ISR)
	}
	total := int64(na + len(unacked))
	for i := 0; i < 5; i++ {
		r := attempt("refused-" + strconv.Itoa(i))
		if r.ErrorCode != kerr.NotEnoughReplicas.Code || r.BaseOffset != -1 {
			t.Fatalf("acks=all with ISR [1] and min.insync.replicas=2: %s base offset %d, want NOT_ENOUGH_REPLICAS and -1", apiCode(r.ErrorCode), r.BaseOffset)
		}
	}
	// Nothing refused was appended; with the ISR down to the leader its
	// high watermark covers every appended attempt.
	if code, end, _ := apiListOffset(t, c.bs[1].Addr, 9, topic, 0, -1); code != 0 || end != total {
		t.Fatalf("end offset with ISR [1]: %d (%s), want %d (%d acknowledged + %d timed out)", end, apiCode(code), total, na, len(unacked))
	}

	// Both come back, catch up and rejoin the ISR; acks=all works again.
	for _, id := range []int32{2, 3} {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		err := c.bs[id].Restart(ctx)
		cancel()
		if err != nil {
			t.Fatalf("restart broker %d: %v", id, err)
		}
	}
	restarted := time.Now()
	c.waitStates(30*time.Second, "brokers 2 and 3 back in the ISR", topic, func(sts []coordinator.PartitionState) error {
		if st := sts[0]; st.Leader != 1 || !slices.Equal(slices.Sorted(slices.Values(st.ISR)), []int32{1, 2, 3}) {
			return fmt.Errorf("leader %d ISR %v", st.Leader, st.ISR)
		}
		return nil
	})
	c.waitFullISR(topic, 1, 3)
	t.Logf("brokers 2 and 3 back in the ISR %v after their restart", time.Since(restarted).Round(time.Millisecond))
	cv := clusterValues("c", nc)
	if offs := clusterProduceSync(t, c.addrs(), topic, 0, cv); offs[0] != total || offs[nc-1] != total+nc-1 {
		t.Fatalf("c records acknowledged at offsets %d..%d, want %d..%d", offs[0], offs[nc-1], total, total+nc-1)
	}
	want := append(append(slices.Clone(a), unacked...), cv...)
	recs, err := clusterRead(t, c.bs[1].Addr, topic, 0, int64(len(want)), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	clusterWantValues(t, "partition 0 on leader 1", recs, want)
	t.Logf("test took %v", time.Since(start).Round(time.Millisecond))
}

func TestClusterSIGSTOPLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: three brokers, freezes one past its lease (10 s)")
	}
	start := time.Now()
	c := clusterStart(t, 3, "--replica.lag.time.max.ms=5000", "--replica.fetch.wait.max.ms=200", "--leader.imbalance.check.interval.seconds=2")
	const topic = "cluster-sigstop"
	replCreateTopic(t, c.bs[1].Addr, topic, []int32{1, 2, 3}, map[string]string{"min.insync.replicas": "2"})
	before := c.waitFullISR(topic, 1, 3)[0]
	if before.Leader != 1 {
		t.Fatalf("leader %d, want broker 1 (first replica)", before.Leader)
	}
	const na, nb = 1000, 500
	a := clusterValues("a", na)
	clusterProduceSync(t, c.addrs(), topic, 0, a)

	// A connection to the leader, open before it freezes.
	old := c.bs[1]
	conn := rawDial(t, old.Addr)
	if md := conn.do(kmsg.NewPtrMetadataRequest()).(*kmsg.MetadataResponse); len(md.Brokers) != 3 {
		t.Fatalf("metadata from broker 1 lists %d brokers, want 3", len(md.Brokers))
	}
	if err := old.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			old.Resume()
		}
	}()
	clusterWaitStopped(t, old.PID())
	// Stale writes, buffered by the kernel until broker 1 runs again.
	staleAll := rawProduceReq(9, -1, topic, 0, rawBatch(rawBatchSpec{}, rawValues("stale-all-0", "stale-all-1")...))
	staleAll.TimeoutMillis = 5000
	staleOne := rawProduceReq(9, 1, topic, 0, rawBatch(rawBatchSpec{}, rawValues("stale-one")...))
	corrAll, corrOne := conn.send(staleAll), conn.send(staleOne)

	after := c.waitStates(clusterLease+15*time.Second, "a new leader while broker 1 is frozen", topic, func(sts []coordinator.PartitionState) error {
		if st := sts[0]; st.Leader == 1 || st.Leader < 1 {
			return fmt.Errorf("leader %d epoch %d ISR %v", st.Leader, st.LeaderEpoch, st.ISR)
		}
		return nil
	})[0]
	t.Logf("broker %d leads in epoch %d (was %d) %v after SIGSTOP of broker 1; ISR %v", after.Leader, after.LeaderEpoch, before.LeaderEpoch, time.Since(paused).Round(time.Millisecond), after.ISR)
	if after.LeaderEpoch <= before.LeaderEpoch || slices.Contains(after.ISR, 1) || len(after.ISR) != 2 {
		t.Fatalf("state after the election: leader %d epoch %d ISR %v; want an epoch above %d and ISR {2,3}", after.Leader, after.LeaderEpoch, after.ISR, before.LeaderEpoch)
	}
	c.waitMetadata(10*time.Second, "the new leader in the survivors' metadata", topic, c.others(1), func(_ int32, _ *kmsg.MetadataResponse, mt *kmsg.MetadataResponseTopic) error {
		if p := mt.Partitions[0]; p.Leader != after.Leader || p.LeaderEpoch != after.LeaderEpoch {
			return fmt.Errorf("leader %d epoch %d", p.Leader, p.LeaderEpoch)
		}
		return nil
	})
	b := clusterValues("b", nb)
	if offs := clusterProduceSync(t, c.addrs(c.others(1)...), topic, 0, b); offs[0] != na || offs[nb-1] != na+nb-1 {
		t.Fatalf("b records acknowledged by the new leader at offsets %d..%d, want %d..%d", offs[0], offs[nb-1], na, na+nb-1)
	}
	if d := clusterLease + 3*time.Second - time.Since(paused); d > 0 {
		time.Sleep(d) // keep broker 1 frozen past its lease plus a margin
	}
	if err := old.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	t.Logf("broker 1 resumed after %v frozen", time.Since(paused).Round(time.Millisecond))

	// The stale acks=all write is never acknowledged.
	rAll := rawProducePartition(t, conn.recv(staleAll, corrAll).(*kmsg.ProduceResponse))
	rOne := rawProducePartition(t, conn.recv(staleOne, corrOne).(*kmsg.ProduceResponse))
	switch rAll.ErrorCode {
	case kerr.NotLeaderForPartition.Code, kerr.NotEnoughReplicas.Code, kerr.RequestTimedOut.Code:
	default:
		t.Fatalf("stale acks=all produce to the frozen old leader answered %s (base offset %d), want NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS or REQUEST_TIMED_OUT", apiCode(rAll.ErrorCode), rAll.BaseOffset)
	}
	t.Logf("stale produce answers from the old leader: acks=all %s, acks=1 %s (base offset %d)", apiCode(rAll.ErrorCode), apiCode(rOne.ErrorCode), rOne.BaseOffset)

	// Broker 1 follows the new leader, rejoins the ISR, is registered
	// again and takes its preferred leadership back.
	c.waitStates(30*time.Second, "broker 1 back in the ISR", topic, func(sts []coordinator.PartitionState) error {
		if st := sts[0]; !slices.Contains(st.ISR, 1) {
			return fmt.Errorf("leader %d ISR %v", st.Leader, st.ISR)
		}
		return nil
	})
	want := append(slices.Clone(a), b...)
	readFrom := func(id int32) {
		t.Helper()
		recs, err := clusterRead(t, c.bs[id].Addr, topic, 0, int64(len(want)), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		clusterWantValues(t, fmt.Sprintf("partition 0 read from broker %d", id), recs, want)
	}
	// The leader elected while broker 1 was frozen, as long as it leads.
	if st := c.states(topic)[0]; st.Leader == after.Leader {
		readFrom(after.Leader)
	}
	c.waitMetadata(20*time.Second, "broker 1 registered again (listed in every broker's metadata)", topic, c.ids, func(_ int32, md *kmsg.MetadataResponse, _ *kmsg.MetadataResponseTopic) error {
		for _, mb := range md.Brokers {
			if mb.NodeID == 1 {
				return nil
			}
		}
		return fmt.Errorf("broker 1 not among the brokers %v", md.Brokers)
	})
	restored := c.waitStates(20*time.Second, "broker 1, the preferred replica, leading again", topic, func(sts []coordinator.PartitionState) error {
		if st := sts[0]; st.Leader != 1 || len(st.ISR) != 3 {
			return fmt.Errorf("leader %d ISR %v", st.Leader, st.ISR)
		}
		return nil
	})[0]
	if restored.LeaderEpoch <= after.LeaderEpoch {
		t.Fatalf("broker 1 leads again in epoch %d, not above %d", restored.LeaderEpoch, after.LeaderEpoch)
	}
	readFrom(1)
	// Every other broker, made leader in turn by compare-and-swap in etcd
	// (the controller moves leadership back to broker 1 within 2 s, so a
	// read that loses the race is retried).
	for _, id := range c.others(1) {
		var err error
		for try := 0; try < 5; try++ {
			replMoveLeader(t, c.store, topic, id, -1)
			var recs []rawFetched
			if recs, err = clusterRead(t, c.bs[id].Addr, topic, 0, int64(len(want)), 3*time.Second); err == nil {
				clusterWantValues(t, fmt.Sprintf("partition 0 read from broker %d", id), recs, want)
				break
			}
		}
		if err != nil {
			t.Fatalf("broker %d made leader 5 times, never read whole: %v", id, err)
		}
	}
	t.Logf("no stale record on any broker; test took %v", time.Since(start).Round(time.Millisecond))
}

// clusterWaitStopped waits until every thread of process pid is stopped
// (state T in /proc): SIGSTOP takes effect asynchronously, and a request
// written before it has may still be served.
func clusterWaitStopped(t *testing.T, pid int) {
	t.Helper()
	apiEventually(t, 5*time.Second, fmt.Sprintf("process %d stopped", pid), func() error {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(tasks) == 0 {
			return fmt.Errorf("no threads under /proc/%d/task (%v)", pid, err)
		}
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			// pid (comm) state ...: comm may hold spaces, state follows the last ')'.
			i := bytes.LastIndexByte(b, ')')
			if i < 0 || i+2 >= len(b) {
				return fmt.Errorf("%s: malformed", f)
			}
			if st := b[i+2]; st != 'T' && st != 't' {
				return fmt.Errorf("%s: state %c", f, st)
			}
		}
		return nil
	})
}

// clusterMember is one franz-go group consumer (autocommit of what it
// processed, rebalances only between polls) run by its own goroutine.
type clusterMember struct {
	name   string
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	errs      []string
	tolerated int
	lastTol   string
}

// clusterTolerated are member errors expected while brokers restart:
// connection errors, and UNKNOWN_MEMBER_ID when the group's coordinator
// moves in the middle of a rebalance: the new coordinator resumes the group
// as of its last Stable state (see TestGroupsFailover), so a member that
// joined since is unknown there and rejoins.
var clusterTolerated = []string{"connection refused", "EOF", "connection reset", "broken pipe", "use of closed network connection", kerr.UnknownMemberID.Message}

func clusterStartMember(t *testing.T, name string, seeds []string, group, topic string, process func(*kgo.Record)) *clusterMember {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.ClientID(name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(200*time.Millisecond),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.RetryTimeout(40*time.Second),
		kgo.RequestTimeoutOverhead(5*time.Second),
		kgo.MetadataMinAge(100*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("member %s: kgo.NewClient: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	m := &clusterMember{name: name, cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		defer cl.Close() // leaves the group
		for ctx.Err() == nil {
			fs := cl.PollRecords(ctx, 1000)
			fs.EachError(func(tp string, p int32, err error) {
				if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, kgo.ErrClientClosed) {
					m.errorf("fetch %s/%d: %v", tp, p, err)
				}
			})
			rs := fs.Records()
			for _, r := range rs {
				process(r)
			}
			cl.MarkCommitRecords(rs...)
			cl.AllowRebalance()
		}
		cl.AllowRebalance()
		cctx, ccancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer ccancel()
		if err := cl.CommitMarkedOffsets(cctx); err != nil {
			m.errorf("final commit: %v", err)
		}
	}()
	t.Cleanup(m.stop)
	return m
}

func (m *clusterMember) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range clusterTolerated {
		if strings.Contains(msg, s) {
			m.tolerated++
			m.lastTol = msg
			return
		}
	}
	if len(m.errs) < 10 {
		m.errs = append(m.errs, msg)
	}
}

// stop ends the member (final commit, then leave) and waits for it.
func (m *clusterMember) stop() {
	m.cancel()
	<-m.done
}

func (m *clusterMember) check(t *testing.T) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.errs {
		t.Errorf("member %s: %s", m.name, e)
	}
	if m.tolerated > 0 {
		t.Logf("member %s: %d expected errors while brokers restarted, the last: %s", m.name, m.tolerated, m.lastTol)
	}
}

func TestClusterRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: three brokers restarted one by one under load")
	}
	start := time.Now()
	c := clusterStart(t, 3, "--replica.fetch.wait.max.ms=200", "--leader.imbalance.check.interval.seconds=2", "--group.initial.rebalance.delay.ms=0")
	const topic, group, parts, n, rate = "cluster-rolling", "cluster-rolling-group", int32(6), 40_000, 800
	c.createTopic(topic, parts, 3, map[string]string{"min.insync.replicas": "2"})

	// What the group processed: partition -> offset -> value.
	var cmu sync.Mutex
	consumed := map[int32]map[int64]string{}
	var processed, conflicts atomic.Int64
	var conflict atomic.Value
	process := func(r *kgo.Record) {
		processed.Add(1)
		cmu.Lock()
		defer cmu.Unlock()
		m := consumed[r.Partition]
		if m == nil {
			m = map[int64]string{}
			consumed[r.Partition] = m
		}
		if v, ok := m[r.Offset]; ok && v != string(r.Value) {
			conflicts.Add(1)
			conflict.Store(fmt.Sprintf("%s/%d@%d consumed as %q and as %q", r.Topic, r.Partition, r.Offset, v, r.Value))
		}
		m[r.Offset] = string(r.Value)
	}
	distinct := func() int {
		cmu.Lock()
		defer cmu.Unlock()
		k := 0
		for _, m := range consumed {
			k += len(m)
		}
		return k
	}

	s := &clusterStream{acked: map[int32][]clusterStreamAck{}}
	cl := clusterProducer(t, c.addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.run(ctx, cl, topic, parts, n, rate, stop)
	}()
	stopOnce := sync.OnceFunc(func() { close(stop) })
	defer wg.Wait()
	defer stopOnce()

	m1 := clusterStartMember(t, "m1", c.addrs(), group, topic, process)
	m2 := clusterStartMember(t, "m2", c.addrs(), group, topic, process)
	admin := clientKgo(t, c.bs[1].Addr)
	groupsWaitStable(t, admin, group, topic, 2, 30*time.Second)
	clientEventually(t, 20*time.Second, "the group consuming", func() (bool, string) {
		return distinct() > 1000, fmt.Sprintf("%d distinct records consumed", distinct())
	})

	for _, id := range c.ids {
		// Each broker leads its preferred partitions when it goes down.
		before := c.waitStates(20*time.Second, "preferred leaders with full ISRs", topic, func(sts []coordinator.PartitionState) error {
			for _, st := range sts {
				if st.Leader != st.Replicas[0] || len(st.ISR) != 3 {
					return fmt.Errorf("partition %d: leader %d (preferred %d) ISR %v", st.Partition, st.Leader, st.Replicas[0], st.ISR)
				}
			}
			return nil
		})
		_, ackedBefore, _ := s.counts()
		consumedBefore := distinct()
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		err := c.bs[id].Restart(ctx) // SIGTERM (controlled shutdown), wait, start, /healthz
		cancel()
		if err != nil {
			t.Fatalf("rolling restart of broker %d: %v", id, err)
		}
		up := time.Since(began)
		led := 0
		c.waitStates(30*time.Second, fmt.Sprintf("broker %d back in every ISR", id), topic, func(sts []coordinator.PartitionState) error {
			led = 0
			for i, st := range sts {
				if len(st.ISR) != 3 || st.Leader < 1 {
					return fmt.Errorf("partition %d: leader %d ISR %v", st.Partition, st.Leader, st.ISR)
				}
				if before[i].Leader == id {
					led++
					if st.LeaderEpoch <= before[i].LeaderEpoch {
						t.Fatalf("partition %d: leader epoch %d after broker %d, its leader, restarted; was %d (controlled shutdown moved nothing)", i, st.LeaderEpoch, id, before[i].LeaderEpoch)
					}
				}
			}
			return nil
		})
		if led == 0 {
			t.Fatalf("broker %d led no partition when restarted: %+v", id, before)
		}
		clientEventually(t, 20*time.Second, fmt.Sprintf("producer and group progressing after broker %d restarted", id), func() (bool, string) {
			_, acked, _ := s.counts()
			k := distinct()
			return acked >= ackedBefore+1000 && k >= consumedBefore+1000, fmt.Sprintf("acked %d (was %d), consumed %d distinct (was %d)", acked, ackedBefore, k, consumedBefore)
		})
		sent, acked, failed := s.counts()
		t.Logf("broker %d (leading %d partitions): restarted in %v, back in every ISR after %v; sent %d acked %d failed %d; consumed %d distinct",
			id, led, up.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), sent, acked, failed, distinct())
	}
	stopOnce()
	wg.Wait()
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := cl.Flush(fctx)
	fcancel()
	sent, acked, failed := s.counts()
	if err != nil {
		t.Fatalf("flush the producer: %v (sent %d acked %d failed %d)", err, sent, acked, failed)
	}
	t.Logf("producer: %d sent, %d acknowledged, %d failed %v", sent, acked, failed, s.errs)
	if acked+failed != sent || failed > 5 {
		t.Fatalf("producer: %d sent, %d acknowledged, %d failed (at most 5 allowed): %v", sent, acked, failed, s.errs)
	}

	// Every acknowledged record is consumed; then the group commits the
	// end offsets.
	missing := func() (int, string) {
		cmu.Lock()
		defer cmu.Unlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		k, first := 0, ""
		for p, as := range s.acked {
			for _, a := range as {
				if v, ok := consumed[p][a.offset]; !ok || v != clusterValue(a.seq) {
					if k == 0 {
						first = fmt.Sprintf("record %d acknowledged at %s/%d@%d: consumed %q", a.seq, topic, p, a.offset, v)
					}
					k++
				}
			}
		}
		return k, first
	}
	clientEventually(t, 30*time.Second, "every acknowledged record consumed by the group", func() (bool, string) {
		k, first := missing()
		return k == 0, fmt.Sprintf("%d missing, the first: %s", k, first)
	})
	if k := conflicts.Load(); k > 0 {
		t.Fatalf("%d offsets consumed with two different values, e.g. %v", k, conflict.Load())
	}
	ends := map[int32]int64{}
	total := int64(0)
	for p := int32(0); p < parts; p++ {
		ends[p] = c.stableEnd(topic, p, 20*time.Second)
		total += ends[p]
	}
	if total < int64(acked) {
		t.Fatalf("end offsets %v sum to %d, below the %d acknowledged records", ends, total, acked)
	}
	groupsWantCommitted(t, clientKgo(t, c.bs[3].Addr), group, topic, ends, 30*time.Second)
	m1.stop()
	m2.stop()
	m1.check(t)
	m2.check(t)
	groupsWantCommitted(t, clientKgo(t, c.bs[2].Addr), group, topic, ends, 10*time.Second)
	if d := distinct(); int64(d) != total {
		t.Fatalf("the group consumed %d distinct offsets, the partitions hold %d (end offsets %v)", d, total, ends)
	}
	t.Logf("group consumed %d records (%d distinct) and committed the end offsets %v; test took %v",
		processed.Load(), distinct(), ends, time.Since(start).Round(time.Millisecond))
}
