package test

// Consumer-group failover: two brokers on one etcd, a topic whose
// partitions all live on broker 2, a group whose coordinator is broker 1.
// Broker 1 is killed with SIGKILL mid-consumption; once its etcd lease
// (10 s TTL) expires broker 2 takes the group over with its saved
// membership, as Kafka's new coordinator loads it: the member keeps its
// id (no UNKNOWN_MEMBER_ID), its commits go on, and every record is
// processed once. (franz-go rejoins after its heartbeats failed; the
// restored group takes it back under the same id.)

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratabroker/strata/internal/etcdtest"
	"github.com/stratabroker/strata/internal/harness"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupsCoordinatorOf asks the broker at addr for group's coordinator
// (FindCoordinator v3) and returns its node id and error code.
func groupsCoordinatorOf(t *testing.T, addr, group string) (int32, int16) {
	t.Helper()
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.Version = 3
	req.CoordinatorKey, req.CoordinatorType = group, 0
	resp := rawReq[*kmsg.FindCoordinatorResponse](t, addr, req)
	return resp.NodeID, resp.ErrorCode
}

func TestGroupsFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: two brokers on one etcd, waits for a lease to expire")
	}
	endpoints := etcdtest.Start(t)
	root := t.TempDir()
	args := groupsBrokerArgs(t)
	b1 := harness.StartT(t, harness.BrokerConfig{DataDir: filepath.Join(root, "b1"), BrokerID: 1, EtcdEndpoints: endpoints, Args: args})
	groupsRequire(t, b1.Addr)
	b2 := harness.StartT(t, harness.BrokerConfig{DataDir: filepath.Join(root, "b2"), BrokerID: 2, EtcdEndpoints: endpoints, Args: args})

	// A topic whose partitions are all on broker 2.
	const topic, parts, n = "groups-failover", 4, 40_000
	apiEventually(t, 20*time.Second, "create "+topic+" on broker 2 only", func() error {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Version = 5
		req.TimeoutMillis = 10_000
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
		for p := int32(0); p < parts; p++ {
			a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
			a.Partition, a.Replicas = p, []int32{2}
			rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
		}
		req.Topics = append(req.Topics, rt)
		resp := rawReq[*kmsg.CreateTopicsResponse](t, b2.Addr, req)
		if len(resp.Topics) != 1 {
			return fmt.Errorf("%d topics in response", len(resp.Topics))
		}
		if c := resp.Topics[0].ErrorCode; c != 0 && c != kerr.TopicAlreadyExists.Code {
			return fmt.Errorf("CreateTopics: %s", apiCode(c))
		}
		return nil
	})
	apiEventually(t, 20*time.Second, topic+" led by broker 2 in both brokers' metadata", func() error {
		for _, addr := range []string{b1.Addr, b2.Addr} {
			mt := apiFindTopic(apiMetadata(t, addr, 9, false, []string{topic}), topic)
			if mt == nil || len(mt.Partitions) != parts {
				return fmt.Errorf("%s: topic not complete", addr)
			}
			for _, p := range mt.Partitions {
				if p.ErrorCode != 0 || p.Leader != 2 {
					return fmt.Errorf("%s: %s/%d leader %d, %s", addr, topic, p.Partition, p.Leader, apiCode(p.ErrorCode))
				}
			}
		}
		return nil
	})
	want := groupsProduce(t, b2.Addr, topic, parts, n)
	ends := groupsEnds(want)

	// A group both brokers send to broker 1.
	group := ""
	for i := 0; i < 64 && group == ""; i++ {
		g := fmt.Sprintf("g-failover-%d", i)
		n1, c1 := groupsCoordinatorOf(t, b1.Addr, g)
		n2, c2 := groupsCoordinatorOf(t, b2.Addr, g)
		if c1 == 0 && c2 == 0 && n1 == 1 && n2 == 1 {
			group = g
		}
	}
	if group == "" {
		t.Fatalf("FindCoordinator: none of 64 group ids is owned by broker 1 in the answers of both brokers")
	}
	t.Logf("group %s is coordinated by broker 1", group)

	tr := groupsNewTracker(topic, want)
	var gate atomic.Int64
	gate.Store(n / 2)
	admin := clientKgo(t, b2.Addr)
	// Expected once broker 1 is killed: errors dialing it.
	m := groupsStartMemberTolerating(t, "failover", []string{b1.Addr}, []string{b1.Addr, b2.Addr}, group, topic, tr, &gate)
	clientEventually(t, 60*time.Second, "half the records processed and committed", func() (bool, string) {
		total, unique := tr.counts()
		if total < n/2 {
			return false, fmt.Sprintf("processed %d", total)
		}
		got, err := groupsCommitted(t, admin, group, topic, parts)
		if err != nil {
			return false, err.Error()
		}
		var sum int64
		for _, o := range got {
			sum += max(o, 0)
		}
		return sum == int64(unique), fmt.Sprintf("processed %d distinct, committed %v", unique, got)
	})
	processedBefore, _ := tr.counts()
	before, err := groupsDescribe(admin, group)
	if err != nil || len(before.Members) != 1 {
		t.Fatalf("describe %s before the kill: %+v, %v", group, before, err)
	}

	if err := b1.Kill(); err != nil {
		t.Fatalf("kill -9 broker 1: %v", err)
	}
	killed := time.Now()
	gate.Store(1 << 40)
	apiEventually(t, 30*time.Second, "broker 2 to coordinate "+group, func() error {
		node, code := groupsCoordinatorOf(t, b2.Addr, group)
		if code != 0 || node != 2 {
			return fmt.Errorf("FindCoordinator on broker 2: node %d, %s", node, apiCode(code))
		}
		return nil
	})
	t.Logf("broker 2 coordinates %s %v after the kill", group, time.Since(killed).Round(100*time.Millisecond))
	clientEventually(t, 60*time.Second, "every record processed after the failover", func() (bool, string) {
		total, unique := tr.counts()
		return unique == n, fmt.Sprintf("total %d, distinct %d of %d (%s)", total, unique, n, tr.missing())
	})
	// The member keeps running until its commits reach broker 2: a fresh
	// client, as admin still caches broker 1 as the coordinator.
	admin2 := clientKgo(t, b2.Addr)
	groupsWantCommitted(t, admin2, group, topic, ends, 45*time.Second)
	after, err := groupsDescribe(admin2, group)
	if err != nil || len(after.Members) != 1 || after.Members[0].MemberID != before.Members[0].MemberID {
		t.Errorf("member after the failover: %+v, %v; want the member id from before, %s", after.Members, err, before.Members[0].MemberID)
	}
	m.stop()
	m.check(t)
	tr.check(t)
	if total, unique := tr.counts(); total != unique {
		t.Errorf("%d records processed twice after the failover (all %d processed before the kill were committed)", total-unique, processedBefore)
	}

	groupsWantCommitted(t, clientKgo(t, b2.Addr), group, topic, ends, 15*time.Second)
}
