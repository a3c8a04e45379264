package test

// Restart tests: topics (with their ids and non-default configs) and data
// survive a clean stop/start and a kill -9/start; two brokers on one
// external etcd see the same topics with the same ids.

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stratabroker/strata/internal/etcdtest"
	"github.com/stratabroker/strata/internal/harness"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func clientStrPtr(s string) *string { return &s }

// clientTopicIDs returns id and partition count of every listed topic.
func clientTopicIDs(t *testing.T, cl *kgo.Client, topics ...string) map[string]kadm.TopicDetail {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	td, err := kadm.NewClient(cl).ListTopics(ctx, topics...)
	if err != nil {
		t.Fatalf("list topics %v: %v", topics, err)
	}
	out := map[string]kadm.TopicDetail{}
	for name, d := range td {
		if d.Err != nil {
			t.Fatalf("list topics: %s: %v", name, d.Err)
		}
		out[name] = d
	}
	return out
}

// clientTopicConfig returns the value of each named config of topic.
func clientTopicConfig(t *testing.T, cl *kgo.Client, topic string, names ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("describe configs of %s: %v", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe configs of %s: %v %v", topic, err, rc.Err)
	}
	out := map[string]string{}
	for _, c := range rc.Configs {
		for _, n := range names {
			if c.Key == n && c.Value != nil {
				out[n] = *c.Value
			}
		}
	}
	return out
}

// clientProduceNumbered produces n records "topic-i" over the partitions
// with acks=all and returns them per partition in offset order.
func clientProduceNumbered(t *testing.T, cl *kgo.Client, topic string, parts int32, from, n int) map[int32][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Topic: topic, Partition: int32((from + i) % int(parts)), Value: []byte(fmt.Sprintf("%s-%d", topic, from+i))}
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
	out := map[int32][]string{}
	for _, r := range rs {
		out[r.Partition] = append(out[r.Partition], string(r.Value))
	}
	return out
}

func TestRestartKeepsTopicsConfigsData(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: restarts the broker twice")
	}
	b := clientStartBroker(t)
	cl := clientKgo(t, b.Addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const parts = 3
	topics := map[string]map[string]*string{
		"keep-configured": {"retention.ms": clientStrPtr("123456789"), "segment.bytes": clientStrPtr("2097152")},
		"keep-default":    nil,
	}
	ids := map[string][16]byte{}
	want := map[string]map[int32][]string{}
	for name, cfg := range topics {
		ids[name] = clientCreateTopic(t, cl, name, parts, cfg).ID
		want[name] = clientProduceNumbered(t, cl, name, parts, 0, 150)
	}
	// A config changed after creation must persist too.
	ctx := clientCtx(t, 20*time.Second)
	alt, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.bytes", Value: clientStrPtr("987654321")}}, "keep-configured")
	if err != nil {
		t.Fatalf("alter configs: %v", err)
	}
	for _, r := range alt {
		if r.Err != nil {
			t.Fatalf("alter configs of %s: %v (%s)", r.Name, r.Err, r.ErrMessage)
		}
	}
	wantCfg := map[string]string{"retention.ms": "123456789", "segment.bytes": "2097152", "retention.bytes": "987654321"}
	if got := clientTopicConfig(t, cl, "keep-configured", "retention.ms", "segment.bytes", "retention.bytes"); fmt.Sprint(got) != fmt.Sprint(wantCfg) {
		t.Fatalf("configs before restart: %v, want %v", got, wantCfg)
	}

	for round, how := range []string{"stop", "kill"} {
		switch how {
		case "stop":
			if err := b.Stop(); err != nil {
				t.Fatalf("stop: %v", err)
			}
			if code := b.ExitCode(); code != 0 {
				t.Fatalf("graceful stop: exit code %d, want 0", code)
			}
		case "kill":
			if err := b.Kill(); err != nil {
				t.Fatalf("kill: %v", err)
			}
			if code := b.ExitCode(); code != 128+int(syscall.SIGKILL) {
				t.Fatalf("kill: exit code %d", code)
			}
		}
		rctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
		err := b.Restart(rctx)
		cancel()
		if err != nil {
			t.Fatalf("restart after %s: %v", how, err)
		}
		cl2 := clientKgo(t, b.Addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		details := clientTopicIDs(t, cl2)
		for name := range topics {
			d, ok := details[name]
			if !ok {
				t.Fatalf("after %s: topic %s missing; have %v", how, name, kadm.TopicDetails(details).Names())
			}
			if d.ID != ids[name] || len(d.Partitions) != parts {
				t.Errorf("after %s: topic %s id %x with %d partitions, want %x with %d", how, name, d.ID, len(d.Partitions), ids[name], parts)
			}
		}
		if got := clientTopicConfig(t, cl2, "keep-configured", "retention.ms", "segment.bytes", "retention.bytes"); fmt.Sprint(got) != fmt.Sprint(wantCfg) {
			t.Errorf("after %s: configs %v, want %v", how, got, wantCfg)
		}
		for name := range topics {
			ends := clientEndOffsets(t, cl2, name)
			got := clientConsumeAll(t, b.Addr, name, ends, 20*time.Second)
			for p := int32(0); p < parts; p++ {
				var vals []string
				for j, r := range got[p] {
					if r.Offset != int64(j) {
						t.Errorf("after %s: %s/%d record #%d at offset %d", how, name, p, j, r.Offset)
					}
					vals = append(vals, string(r.Value))
				}
				if fmt.Sprint(vals) != fmt.Sprint(want[name][p]) {
					t.Errorf("after %s: %s/%d holds %d records %.200v, want %d %.200v", how, name, p, len(vals), vals, len(want[name][p]), want[name][p])
				}
			}
			// Appends continue at the old end.
			more := clientProduceNumbered(t, cl2, name, parts, 150*(round+1)+1000, 9)
			for p, vs := range more {
				want[name][p] = append(want[name][p], vs...)
			}
		}
		cl2.Close()
	}
}

func TestRestartSharedEtcdTopics(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: starts etcd and two brokers")
	}
	endpoints := etcdtest.Start(t)
	root := t.TempDir()
	b1 := harness.StartT(t, harness.BrokerConfig{DataDir: filepath.Join(root, "b1"), BrokerID: 1, EtcdEndpoints: endpoints})
	cl1 := clientKgo(t, b1.Addr)
	ids := map[string][16]byte{}
	for i, name := range []string{"shared-a", "shared-b"} {
		ids[name] = clientCreateTopic(t, cl1, name, int32(i+1), map[string]*string{"retention.ms": clientStrPtr("7200000")}).ID
	}

	b2 := harness.StartT(t, harness.BrokerConfig{DataDir: filepath.Join(root, "b2"), BrokerID: 2, EtcdEndpoints: endpoints})
	cl2 := clientKgo(t, b2.Addr)
	var details kadm.TopicDetails
	var brokers kadm.BrokerDetails
	clientEventually(t, 15*time.Second, "broker 2 to list both topics with ids", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, err := kadm.NewClient(cl2).Metadata(ctx)
		if err != nil {
			return false, err.Error()
		}
		details, brokers = m.Topics, m.Brokers
		status := fmt.Sprintf("brokers %v, topics %v", brokers.NodeIDs(), details.Names())
		for name := range ids {
			if d, ok := details[name]; !ok || d.ID == [16]byte{} {
				return false, status
			}
		}
		return true, status
	})
	for i, name := range []string{"shared-a", "shared-b"} {
		d := details[name]
		if d.ID != ids[name] {
			t.Errorf("broker 2: topic %s id %x, broker 1 created %x", name, d.ID, ids[name])
		}
		if len(d.Partitions) != i+1 {
			t.Errorf("broker 2: topic %s has %d partitions, want %d", name, len(d.Partitions), i+1)
		}
	}
	if got := clientTopicConfig(t, cl2, "shared-a", "retention.ms"); got["retention.ms"] != "7200000" {
		t.Errorf("broker 2: shared-a retention.ms %v, want 7200000", got)
	}
	listed := brokers.NodeIDs()
	t.Logf("broker 2 metadata lists brokers %v", listed)
	if !slices.Contains(listed, 2) {
		t.Errorf("broker 2 metadata lists brokers %v, without itself", listed)
	}
	for name, d := range details {
		for _, p := range d.Partitions {
			if p.Leader != 1 && p.Leader != 2 {
				t.Errorf("broker 2: %s/%d has leader %d, not a started broker", name, p.Partition, p.Leader)
			}
		}
	}
}
