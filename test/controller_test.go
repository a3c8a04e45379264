package test

// The controller: three broker processes on one etcd. Killing (kill -9)
// the controller, which also leads a partition, must within the broker
// lease TTL (10 s) plus a margin elect a new leader from the ISR with a
// higher leader epoch and move the controller to a survivor. Killing the
// broker serving CreateTopics mid-request must leave the topic whole or
// absent (one etcd transaction).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
	"github.com/stratabroker/strata/internal/harness"
)

// ctlCluster starts n brokers (ids 1..n) on one etcd.
func ctlCluster(t *testing.T, n int) ([]string, map[int32]*harness.Broker) {
	t.Helper()
	eps := etcdtest.Start(t)
	root := t.TempDir()
	bs := map[int32]*harness.Broker{}
	for id := int32(1); id <= int32(n); id++ {
		bs[id] = harness.StartT(t, harness.BrokerConfig{DataDir: filepath.Join(root, fmt.Sprintf("b%d", id)), BrokerID: id, EtcdEndpoints: eps})
	}
	return eps, bs
}

// ctlControllers asks every listed broker for the controller (Metadata and
// DescribeCluster) and requires one agreed, live answer.
func ctlControllers(t *testing.T, bs map[int32]*harness.Broker, ask []int32) (int32, error) {
	t.Helper()
	ctrl := int32(-2)
	for _, id := range ask {
		md := apiMetadata(t, bs[id].Addr, 12, false, []string{})
		dreq := kmsg.NewPtrDescribeClusterRequest()
		dreq.Version = 1
		dreq.EndpointType = 1
		dc := rawReq[*kmsg.DescribeClusterResponse](t, bs[id].Addr, dreq)
		if md.ControllerID != dc.ControllerID {
			return -1, fmt.Errorf("broker %d: Metadata controller %d, DescribeCluster %d", id, md.ControllerID, dc.ControllerID)
		}
		if ctrl != -2 && md.ControllerID != ctrl {
			return -1, fmt.Errorf("brokers disagree on the controller: %d vs %d", ctrl, md.ControllerID)
		}
		ctrl = md.ControllerID
	}
	if !slices.Contains(ask, ctrl) {
		return -1, fmt.Errorf("controller %d is not among the live brokers %v", ctrl, ask)
	}
	return ctrl, nil
}

func ctlCreateTopic(t *testing.T, addr, topic string, parts int32, rf int16) {
	t.Helper()
	apiEventually(t, 20*time.Second, "create "+topic, func() error {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Version = 5
		req.TimeoutMillis = 10_000
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, parts, rf
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

func TestControllerFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: three brokers, waits for a broker lease (10 s) to expire")
	}
	_, bs := ctlCluster(t, 3)
	all := []int32{1, 2, 3}

	const topic = "controller-failover"
	ctlCreateTopic(t, bs[1].Addr, topic, 3, 3)
	// RF above the live brokers is refused.
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Version = 5
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "controller-rf4", 1, 4
	req.Topics = append(req.Topics, rt)
	if resp := rawReq[*kmsg.CreateTopicsResponse](t, bs[2].Addr, req); len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.InvalidReplicationFactor.Code {
		t.Fatalf("RF 4 on 3 brokers: %+v, want INVALID_REPLICATION_FACTOR", resp.Topics)
	}

	var before kmsg.MetadataResponseTopic
	apiEventually(t, 20*time.Second, topic+" complete with 3 in-sync replicas everywhere", func() error {
		for _, id := range all {
			mt := apiFindTopic(apiMetadata(t, bs[id].Addr, 12, false, []string{topic}), topic)
			if mt == nil || len(mt.Partitions) != 3 {
				return fmt.Errorf("broker %d: topic not complete", id)
			}
			leaders := map[int32]bool{}
			for _, p := range mt.Partitions {
				if p.ErrorCode != 0 || p.Leader < 1 || len(p.Replicas) != 3 || len(p.ISR) != 3 {
					return fmt.Errorf("broker %d: partition %d leader %d replicas %v isr %v %s", id, p.Partition, p.Leader, p.Replicas, p.ISR, apiCode(p.ErrorCode))
				}
				leaders[p.Leader] = true
			}
			if len(leaders) != 3 {
				return fmt.Errorf("leaders not spread over the 3 brokers: %v", leaders)
			}
			before = *mt
		}
		return nil
	})
	var ctrl int32
	apiEventually(t, 15*time.Second, "one controller agreed by all brokers", func() (err error) {
		ctrl, err = ctlControllers(t, bs, all)
		return err
	})

	// Kill the controller; it leads one of the partitions.
	var victim kmsg.MetadataResponseTopicPartition
	for _, p := range before.Partitions {
		if p.Leader == ctrl {
			victim = p
		}
	}
	if victim.Leader != ctrl {
		t.Fatalf("controller %d leads no partition of %s", ctrl, topic)
	}
	killed := time.Now()
	if err := bs[ctrl].Kill(); err != nil {
		t.Fatal(err)
	}
	var survivors []int32
	for _, id := range all {
		if id != ctrl {
			survivors = append(survivors, id)
		}
	}
	apiEventually(t, 25*time.Second, fmt.Sprintf("partition %d re-elected after killing broker %d", victim.Partition, ctrl), func() error {
		for _, id := range survivors {
			mt := apiFindTopic(apiMetadata(t, bs[id].Addr, 12, false, []string{topic}), topic)
			if mt == nil || len(mt.Partitions) != 3 {
				return fmt.Errorf("broker %d: topic not complete", id)
			}
			for _, p := range mt.Partitions {
				if p.Leader == ctrl {
					return fmt.Errorf("broker %d: partition %d still led by the dead broker %d", id, p.Partition, ctrl)
				}
			}
			p := mt.Partitions[victim.Partition]
			switch {
			case p.ErrorCode != 0 || !slices.Contains(survivors, p.Leader):
				return fmt.Errorf("broker %d: leader %d %s", id, p.Leader, apiCode(p.ErrorCode))
			case !slices.Contains(victim.ISR, p.Leader):
				t.Fatalf("new leader %d was not in the ISR %v", p.Leader, victim.ISR)
			case p.LeaderEpoch <= victim.LeaderEpoch:
				return fmt.Errorf("broker %d: leader epoch %d, was %d", id, p.LeaderEpoch, victim.LeaderEpoch)
			case slices.Contains(p.ISR, ctrl) || !slices.Contains(p.ISR, p.Leader):
				return fmt.Errorf("broker %d: ISR %v with leader %d", id, p.ISR, p.Leader)
			}
		}
		return nil
	})
	t.Logf("partition %d re-elected %s after kill -9 of controller %d", victim.Partition, time.Since(killed).Round(time.Millisecond), ctrl)
	apiEventually(t, 10*time.Second, "the controller moved to a survivor", func() error {
		c, err := ctlControllers(t, bs, survivors)
		if err == nil && c == ctrl {
			err = errors.New("controller did not move")
		}
		return err
	})
}

// ctlSendOnly writes req to addr and does not wait for an answer.
func ctlSendOnly(addr string, req kmsg.Request) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	buf := kmsg.NewRequestFormatter(kmsg.FormatterClientID("strata-controller-test")).AppendRequest(nil, req, 1)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(buf); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func TestControllerKilledDuringCreateTopics(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: kills and restarts brokers")
	}
	eps, bs := ctlCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	store, err := coordinator.Open(ctx, coordinator.Config{Endpoints: eps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	const parts = 300
	created, absent := 0, 0
	for round, delay := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 30 * time.Millisecond} {
		var ctrl int32
		apiEventually(t, 20*time.Second, "controller known", func() (err error) {
			ctrl, err = ctlControllers(t, bs, []int32{1, 2})
			return err
		})
		topic := fmt.Sprintf("controller-kill-create-%d", round)
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Version = 5
		req.TimeoutMillis = 10_000
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, parts, 2
		req.Topics = append(req.Topics, rt)
		c, err := ctlSendOnly(bs[ctrl].Addr, req)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		if err := bs[ctrl].Kill(); err != nil {
			t.Fatal(err)
		}
		c.Close()

		got, err := store.Topic(ctx, topic)
		switch {
		case errors.Is(err, coordinator.ErrTopicNotFound):
			absent++
		case err != nil:
			t.Fatalf("round %d: read %s: %v", round, topic, err)
		default:
			created++
			if len(got.Partitions) != parts {
				t.Fatalf("round %d: %s has %d partitions, want %d", round, topic, len(got.Partitions), parts)
			}
			for i, p := range got.Partitions {
				if p.Partition != int32(i) || len(p.Replicas) != 2 || len(p.ISR) != 2 || p.Leader != p.Replicas[0] {
					t.Fatalf("round %d: %s partition %d incomplete: %+v", round, topic, i, p)
				}
			}
			// The survivor serves it whole too.
			other := 3 - ctrl
			apiEventually(t, 20*time.Second, topic+" whole on the survivor", func() error {
				mt := apiFindTopic(apiMetadata(t, bs[other].Addr, 12, false, []string{topic}), topic)
				if mt == nil {
					return fmt.Errorf("broker %d: topic unknown", other)
				}
				if mt.ErrorCode != 0 || len(mt.Partitions) != parts {
					return fmt.Errorf("broker %d: %s with %d partitions", other, apiCode(mt.ErrorCode), len(mt.Partitions))
				}
				return nil
			})
		}
		if err := bs[ctrl].Restart(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("CreateTopics killed mid-request: %d rounds created the topic whole, %d left nothing", created, absent)
}
