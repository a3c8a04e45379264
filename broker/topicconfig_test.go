package broker

import (
	"errors"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func defaultBrokerConfig(t *testing.T) BrokerConfig {
	t.Helper()
	bc, err := ParseBrokerConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	return bc
}

func TestParseBrokerConfig(t *testing.T) {
	bc := defaultBrokerConfig(t)
	if bc.RetentionMs != 168*3600*1000 || bc.NumPartitions != 1 || !bc.AutoCreateTopics || bc.MessageMaxBytes != 1048588 || bc.SocketRequestMaxBytes != 100<<20 {
		t.Fatalf("defaults: %+v", bc)
	}
	bc, err := ParseBrokerConfig(map[string]string{"log.retention.hours": "1", "num.partitions": "6"})
	if err != nil || bc.RetentionMs != 3600*1000 || bc.NumPartitions != 6 {
		t.Fatalf("hours: %+v %v", bc, err)
	}
	bc, err = ParseBrokerConfig(map[string]string{"log.retention.hours": "1", "log.retention.ms": "5000"})
	if err != nil || bc.RetentionMs != 5000 {
		t.Fatalf("ms overrides hours: %d %v", bc.RetentionMs, err)
	}
	for _, bad := range []map[string]string{
		{"num.partitions": "0"},
		{"num.partitions": "x"},
		{"auto.create.topics.enable": "maybe"},
		{"no.such.setting": "1"},
		{"log.message.timestamp.type": "Whenever"},
	} {
		if _, err := ParseBrokerConfig(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestResolveTopicConfig(t *testing.T) {
	bc := defaultBrokerConfig(t)
	tc, err := ResolveTopicConfig(nil, bc)
	if err != nil {
		t.Fatal(err)
	}
	if tc.RetentionMs != bc.RetentionMs || tc.LocalRetentionMs != bc.RetentionMs || tc.SegmentBytes != 1<<30 || tc.MaxMessageBytes != 1048588 || !slices.Equal(tc.CleanupPolicy, []string{"delete"}) {
		t.Fatalf("defaults: %+v", tc)
	}
	tc, err = ResolveTopicConfig(map[string]string{"retention.ms": "1000", "local.retention.ms": "500", "cleanup.policy": "compact,delete", "message.timestamp.type": "LogAppendTime"}, bc)
	if err != nil || tc.RetentionMs != 1000 || tc.LocalRetentionMs != 500 || !tc.Compact || !tc.LogAppendTime {
		t.Fatalf("overrides: %+v %v", tc, err)
	}
	bad := []map[string]string{
		{"retention.ms": "abc"},
		{"retention.ms": "-5"},
		{"cleanup.policy": "bogus"},
		{"cleanup.policy": ""},
		{"no.such.config": "1"},
		{"segment.bytes": "10"},
		{"compression.type": "gzip"},
		{"retention.ms": "1000", "local.retention.ms": "2000"},
		{"retention.bytes": "100", "local.retention.bytes": "-1"},
		{"remote.storage.enable": "true", "cleanup.policy": "compact"},
		{"min.insync.replicas": "0"},
	}
	for _, m := range bad {
		if _, err := ResolveTopicConfig(m, bc); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%v: got %v, want ErrInvalidConfig", m, err)
		}
	}
}

func TestApplyIncremental(t *testing.T) {
	bc := defaultBrokerConfig(t)
	s := func(v string) *string { return &v }
	cur := map[string]string{"retention.ms": "1000", "segment.bytes": "4096"}
	got, err := applyIncremental(cur, []kmsg.IncrementalAlterConfigsRequestResourceConfig{
		{Name: "retention.ms", Op: 0, Value: s("2000")},
		{Name: "segment.bytes", Op: 1},
		{Name: "cleanup.policy", Op: 2, Value: s("compact")},
	}, bc)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"retention.ms": "2000", "cleanup.policy": "delete,compact"}
	if len(got) != len(want) || got["retention.ms"] != "2000" || got["cleanup.policy"] != "delete,compact" {
		t.Fatalf("got %v want %v", got, want)
	}
	got, err = applyIncremental(got, []kmsg.IncrementalAlterConfigsRequestResourceConfig{{Name: "cleanup.policy", Op: 3, Value: s("delete")}}, bc)
	if err != nil || got["cleanup.policy"] != "compact" {
		t.Fatalf("subtract: %v %v", got, err)
	}
	for _, ops := range [][]kmsg.IncrementalAlterConfigsRequestResourceConfig{
		{{Name: "retention.ms", Op: 2, Value: s("1")}},
		{{Name: "nope", Op: 0, Value: s("1")}},
		{{Name: "retention.ms", Op: 9, Value: s("1")}},
		{{Name: "retention.ms", Op: 0}},
		{{Name: "retention.ms", Op: 0, Value: s("1")}, {Name: "retention.ms", Op: 1}},
	} {
		if _, err := applyIncremental(map[string]string{}, ops, bc); err == nil {
			t.Errorf("%+v accepted", ops)
		}
	}
}

func TestValidateTopicName(t *testing.T) {
	for name, ok := range map[string]bool{
		"events": true, "a.b_c-D9": true, "": false, ".": false, "..": false, "a/b": false, "a b": false,
		string(make([]byte, 250)): false, "x" + string(make([]byte, 0)): true,
	} {
		if err := validateTopicName(name); (err == nil) != ok {
			t.Errorf("%q: err=%v want ok=%v", name, err, ok)
		}
	}
	long := make([]byte, 249)
	for i := range long {
		long[i] = 'a'
	}
	if err := validateTopicName(string(long)); err != nil {
		t.Errorf("249 chars refused: %v", err)
	}
}

func TestAssignReplicas(t *testing.T) {
	parts := assignReplicas(0, 12, 3, brokerInfos(3, 1, 2))
	if len(parts) != 12 {
		t.Fatalf("%d partitions", len(parts))
	}
	leaders := map[int32]int{}
	for i, p := range parts {
		if p.Partition != int32(i) || len(p.Replicas) != 3 || p.Leader != p.Replicas[0] || !slices.Equal(p.ISR, p.Replicas) {
			t.Fatalf("partition %d: %+v", i, p)
		}
		seen := map[int32]bool{}
		for _, r := range p.Replicas {
			if seen[r] {
				t.Fatalf("partition %d: duplicate replica %v", i, p.Replicas)
			}
			seen[r] = true
		}
		leaders[p.Leader]++
	}
	for _, id := range []int32{1, 2, 3} {
		if leaders[id] != 4 {
			t.Fatalf("leaders unbalanced: %v", leaders)
		}
	}
}
