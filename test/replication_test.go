package test

// Leader/follower replication end to end: three broker processes on one
// etcd, a topic with RF=3 and min.insync.replicas=2 led by broker 1.
// franz-go produces with acks=all; broker 1 is killed with SIGKILL and the
// test moves leadership to broker 2 by compare-and-swap in etcd (the
// controller will do this by itself later). Every acknowledged record must
// then be read exactly once, in order, from the new leader, which proves
// the followers held them. Broker 3 must follow the new leader (acks=all
// keeps succeeding with ISR {2,3}); once it is stopped too, the ISR shrinks
// after replica.lag.time.max.ms and acks=all is refused with
// NOT_ENOUGH_REPLICAS.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
	"github.com/stratabroker/strata/internal/harness"
)

func replCreateTopic(t *testing.T, addr, topic string, replicas []int32, configs map[string]string) {
	t.Helper()
	apiEventually(t, 20*time.Second, "create "+topic, func() error {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Version = 5
		req.TimeoutMillis = 10_000
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
		a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		a.Partition, a.Replicas = 0, replicas
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
		for k, v := range configs {
			c := kmsg.NewCreateTopicsRequestTopicConfig()
			c.Name, c.Value = k, kmsg.StringPtr(v)
			rt.Configs = append(rt.Configs, c)
		}
		req.Topics = append(req.Topics, rt)
		resp := rawReq[*kmsg.CreateTopicsResponse](t, addr, req)
		if len(resp.Topics) != 1 {
			return fmt.Errorf("%d topics in response", len(resp.Topics))
		}
		if c := resp.Topics[0].ErrorCode; c != 0 && c != kerr.TopicAlreadyExists.Code {
			return fmt.Errorf("CreateTopics: %s", apiCode(c))
		}
		return nil
	})
}

// replState reads partition 0 of topic from etcd.
func replState(t *testing.T, store *coordinator.Store, topic string) coordinator.PartitionState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tp, err := store.Topic(ctx, topic)
	if err != nil {
		t.Fatalf("read topic %s: %v", topic, err)
	}
	return tp.Partitions[0]
}

// replMoveLeader makes leader the leader of partition 0 in a new epoch,
// dropping broker drop (-1: none) from the ISR, by compare-and-swap with
// fresh reads (a controller may change the state meanwhile).
func replMoveLeader(t *testing.T, store *coordinator.Store, topic string, leader, drop int32) {
	t.Helper()
	apiEventually(t, 20*time.Second, fmt.Sprintf("move leadership of %s to broker %d", topic, leader), func() error {
		st := replState(t, store, topic)
		next := st
		next.Leader, next.LeaderEpoch, next.PartitionEpoch = leader, st.LeaderEpoch+1, st.PartitionEpoch+1
		next.ISR = slices.DeleteFunc(slices.Clone(st.ISR), func(id int32) bool { return id == drop })
		if !slices.Contains(next.ISR, leader) {
			return fmt.Errorf("broker %d is not in the ISR %v", leader, st.ISR)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return store.UpdatePartition(ctx, topic, next, st.PartitionEpoch)
	})
}

// replProduce produces n records "prefix-i" with acks=all through franz-go
// and fails the test on any error.
func replProduce(t *testing.T, seeds []string, topic, prefix string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(time.Millisecond), kgo.RetryTimeout(20*time.Second), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const chunk = 500
	for i := 0; i < n; i += chunk {
		var rs []*kgo.Record
		for j := i; j < min(i+chunk, n); j++ {
			rs = append(rs, &kgo.Record{Partition: 0, Value: []byte(prefix + "-" + strconv.Itoa(j))})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce %s %d..%d with acks=all: %v", prefix, i, i+len(rs)-1, err)
		}
	}
}

func TestReplicationFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: three broker processes on one etcd")
	}
	endpoints := etcdtest.Start(t)
	root := t.TempDir()
	args := []string{"--replica.lag.time.max.ms=2000", "--replica.fetch.wait.max.ms=200"}
	var bs []*harness.Broker
	for id := int32(1); id <= 3; id++ {
		bs = append(bs, harness.StartT(t, harness.BrokerConfig{DataDir: filepath.Join(root, fmt.Sprintf("b%d", id)), BrokerID: id, EtcdEndpoints: endpoints, Args: args}))
	}
	store, err := coordinator.Open(context.Background(), coordinator.Config{Endpoints: endpoints, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("open etcd store: %v", err)
	}
	t.Cleanup(func() { store.Close() })

	const topic = "replicated"
	replCreateTopic(t, bs[0].Addr, topic, []int32{1, 2, 3}, map[string]string{"min.insync.replicas": "2"})
	apiEventually(t, 20*time.Second, topic+" led by broker 1 with ISR 1,2,3 everywhere", func() error {
		for _, b := range bs {
			mt := apiFindTopic(apiMetadata(t, b.Addr, 9, false, []string{topic}), topic)
			if mt == nil || len(mt.Partitions) != 1 {
				return fmt.Errorf("%s: topic not there", b.Addr)
			}
			p := mt.Partitions[0]
			isr := slices.Sorted(slices.Values(p.ISR))
			if p.ErrorCode != 0 || p.Leader != 1 || !slices.Equal(isr, []int32{1, 2, 3}) {
				return fmt.Errorf("%s: leader %d isr %v %s", b.Addr, p.Leader, p.ISR, apiCode(p.ErrorCode))
			}
		}
		return nil
	})

	const n = 3000
	start := time.Now()
	replProduce(t, []string{bs[0].Addr}, topic, "a", n)
	t.Logf("produced %d records with acks=all to RF=3 in %v", n, time.Since(start))

	// Kill the leader; move leadership to broker 2 as the controller will.
	if err := bs[0].Kill(); err != nil {
		t.Fatal(err)
	}
	if st := replState(t, store, topic); st.Leader != 1 || !slices.Contains(st.ISR, 2) {
		t.Fatalf("state before the move: %+v", st)
	}
	replMoveLeader(t, store, topic, 2, 1)
	apiEventually(t, 20*time.Second, "broker 2 leads", func() error {
		mt := apiFindTopic(apiMetadata(t, bs[1].Addr, 9, false, []string{topic}), topic)
		if mt == nil || mt.Partitions[0].Leader != 2 {
			return fmt.Errorf("metadata: %+v", mt)
		}
		return nil
	})

	// Every acknowledged record, once, in order, from the new leader.
	got := clientConsumeAll(t, bs[1].Addr, topic, map[int32]int64{0: n}, 30*time.Second)[0]
	if len(got) != n {
		t.Fatalf("read %d records from the new leader, want %d", len(got), n)
	}
	for i, r := range got {
		if want := "a-" + strconv.Itoa(i); r.Offset != int64(i) || string(r.Value) != want {
			t.Fatalf("record %d: offset %d value %q, want offset %d value %q", i, r.Offset, r.Value, i, want)
		}
	}

	// Broker 3 follows the new leader: acks=all with ISR {2,3} succeeds.
	replProduce(t, []string{bs[1].Addr}, topic, "b", 500)
	ends := clientEndOffsets(t, clientKgo(t, bs[1].Addr), topic)
	if ends[0] != n+500 {
		t.Fatalf("high watermark on broker 2 = %d, want %d", ends[0], n+500)
	}

	// Stop broker 3 as well: once the ISR shrinks to {2}, acks=all is
	// refused with NOT_ENOUGH_REPLICAS and nothing is appended.
	if err := bs[2].Kill(); err != nil {
		t.Fatal(err)
	}
	// Until the shrink, attempts are appended and answered
	// REQUEST_TIMED_OUT or NOT_ENOUGH_REPLICAS_AFTER_APPEND: not
	// acknowledged, but in the log (as in Kafka).
	var lastCode int16
	appendedUnacked := 0
	clientEventually(t, 30*time.Second, "acks=all refused with NOT_ENOUGH_REPLICAS", func() (bool, string) {
		req := rawProduceReq(9, -1, topic, 0, rawBatch(rawBatchSpec{}, rawValues("unacked")...))
		req.TimeoutMillis = 1000
		resp := rawReq[*kmsg.ProduceResponse](t, bs[1].Addr, req)
		lastCode = rawProducePartition(t, resp).ErrorCode
		switch lastCode {
		case kerr.NotEnoughReplicas.Code:
			return true, ""
		case kerr.RequestTimedOut.Code, kerr.NotEnoughReplicasAfterAppend.Code:
			appendedUnacked++
		default:
			t.Fatalf("acks=all with broker 3 gone: %s", apiCode(lastCode))
		}
		return false, apiCode(lastCode)
	})
	t.Logf("%d acks=all attempts appended but not acknowledged before the ISR shrank", appendedUnacked)
	if st := replState(t, store, topic); !slices.Equal(st.ISR, []int32{2}) || st.Leader != 2 {
		t.Fatalf("state after broker 3 stopped: leader %d ISR %v, want leader 2 ISR [2]", st.Leader, st.ISR)
	}
	// acks=1 still works with one replica.
	resp := rawReq[*kmsg.ProduceResponse](t, bs[1].Addr, rawProduceReq(9, 1, topic, 0, rawBatch(rawBatchSpec{}, rawValues("acks1")...)))
	if c := rawProducePartition(t, resp).ErrorCode; c != 0 {
		t.Fatalf("acks=1 with ISR {2}: %s", apiCode(c))
	}
	total := int64(n + 500 + appendedUnacked + 1)

	// Restart both: they truncate to broker 2's history, catch up and
	// rejoin the ISR; acks=all works again.
	for _, b := range []*harness.Broker{bs[0], bs[2]} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := b.Restart(ctx)
		cancel()
		if err != nil {
			t.Fatalf("restart %s: %v", b.Addr, err)
		}
	}
	clientEventually(t, 30*time.Second, "brokers 1 and 3 back in the ISR", func() (bool, string) {
		st := replState(t, store, topic)
		return slices.Equal(st.ISR, []int32{1, 2, 3}), fmt.Sprintf("ISR %v", st.ISR)
	})
	replProduce(t, []string{bs[1].Addr}, topic, "c", 200)
	total += 200
	// Broker 1 (the old leader) now leads from the data it fetched back.
	replMoveLeader(t, store, topic, 1, -1)
	apiEventually(t, 20*time.Second, "broker 1 leads again", func() error {
		mt := apiFindTopic(apiMetadata(t, bs[0].Addr, 9, false, []string{topic}), topic)
		if mt == nil || mt.Partitions[0].Leader != 1 {
			return fmt.Errorf("metadata: %+v", mt)
		}
		return nil
	})
	got = clientConsumeAll(t, bs[0].Addr, topic, map[int32]int64{0: total}, 30*time.Second)[0]
	if int64(len(got)) != total {
		t.Fatalf("read %d records from broker 1, want %d", len(got), total)
	}
	for i, r := range got {
		var want string
		switch {
		case i < n:
			want = "a-" + strconv.Itoa(i)
		case i < n+500:
			want = "b-" + strconv.Itoa(i-n)
		case i < n+500+appendedUnacked:
			want = "unacked"
		case i == n+500+appendedUnacked:
			want = "acks1"
		default:
			want = "c-" + strconv.Itoa(i-n-501-appendedUnacked)
		}
		if r.Offset != int64(i) || string(r.Value) != want {
			t.Fatalf("broker 1 record %d: offset %d value %q, want %q", i, r.Offset, r.Value, want)
		}
	}
}
