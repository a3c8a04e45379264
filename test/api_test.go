package test

// Kafka API conformance against a real strata process: each API at its lowest
// and highest advertised version where they differ in shape, with exact error
// codes, offsets and contents. Version-pinned requests go through the raw
// client (rawclient_test.go); requests at the negotiated highest version go
// through kgo.Client.Request.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/internal/harness"
)

const apiBrokerID = 1

// apiStartBroker starts one strata process with extra broker flags. These
// tests check Kafka's config semantics on ordinary topics, so new topics are
// not tiered by default here (tiering has its own tests).
func apiStartBroker(t *testing.T, args ...string) *harness.Broker {
	t.Helper()
	args = append([]string{"--log.remote.storage.enable=false"}, args...)
	bin, err := harness.Binary()
	if err != nil {
		t.Fatalf("strata binary: %v", err)
	}
	return harness.StartT(t, harness.BrokerConfig{
		Bin:      bin,
		DataDir:  t.TempDir(),
		BrokerID: apiBrokerID,
		Args:     args,
	})
}

// apiEventually polls f until it returns nil or d passes.
func apiEventually(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	backoff := 20 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %v", what, d, err)
		}
		time.Sleep(backoff) // poll interval of a bounded wait, not a bare sleep
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
}

// apiKgo returns a franz-go client for addr, closed at cleanup.
func apiKgo(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.RequestRetries(2),
		kgo.RetryTimeout(10 * time.Second),
	}, opts...)...)
	if err != nil {
		t.Fatalf("kgo client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func apiCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func apiCode(code int16) string {
	if code == 0 {
		return "0 (NONE)"
	}
	return fmt.Sprintf("%d (%v)", code, kerr.ErrorForCode(code))
}

func apiWantCode(t testing.TB, what string, got int16, want ...*kerr.Error) {
	t.Helper()
	for _, w := range want {
		if (w == nil && got == 0) || (w != nil && got == w.Code) {
			return
		}
	}
	names := make([]string, len(want))
	for i, w := range want {
		if w == nil {
			names[i] = "NONE"
		} else {
			names[i] = fmt.Sprintf("%d (%s)", w.Code, w.Message)
		}
	}
	t.Fatalf("%s: error code %s, want %s", what, apiCode(got), strings.Join(names, " or "))
}

// apiCreateTopicsReq builds a one-topic CreateTopics request.
func apiCreateTopicsReq(version int16, validateOnly bool, name string, partitions int32, rf int16, configs map[string]string) *kmsg.CreateTopicsRequest {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Version = version
	req.TimeoutMillis = 15000
	req.ValidateOnly = validateOnly
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = name
	rt.NumPartitions = partitions
	rt.ReplicationFactor = rf
	keys := make([]string, 0, len(configs))
	for k := range configs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name = k
		c.Value = kmsg.StringPtr(configs[k])
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	return req
}

// apiCreateTopic creates a topic through kgo (highest negotiated version),
// waits until every partition has a leader and returns its topic id.
func apiCreateTopic(t testing.TB, addr, name string, partitions int32, configs map[string]string) [16]byte {
	t.Helper()
	cl := apiKgo(t, addr)
	resp, err := apiCreateTopicsReq(0, false, name, partitions, 1, configs).RequestWith(apiCtx(t), cl)
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	if len(resp.Topics) != 1 {
		t.Fatalf("create topic %s: %d topics in response", name, len(resp.Topics))
	}
	apiWantCode(t, "create topic "+name, resp.Topics[0].ErrorCode, nil)
	apiWaitTopic(t, addr, name, partitions)
	return apiTopicID(t, addr, name)
}

// apiMetadata issues Metadata at version v for topics (nil = all topics).
func apiMetadata(t testing.TB, addr string, v int16, autoCreate bool, topics []string) *kmsg.MetadataResponse {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	req.Version = v
	req.AllowAutoTopicCreation = autoCreate
	if topics != nil {
		req.Topics = []kmsg.MetadataRequestTopic{}
		for _, tp := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(tp)
			req.Topics = append(req.Topics, rt)
		}
	}
	return rawReq[*kmsg.MetadataResponse](t, addr, req)
}

func apiFindTopic(resp *kmsg.MetadataResponse, name string) *kmsg.MetadataResponseTopic {
	for i := range resp.Topics {
		if tp := resp.Topics[i].Topic; tp != nil && *tp == name {
			return &resp.Topics[i]
		}
	}
	return nil
}

// apiTopicReady reports nil when name has n partitions, each with a leader.
func apiTopicReady(t testing.TB, addr, name string, n int32) error {
	resp := apiMetadata(t, addr, 12, false, []string{name})
	tp := apiFindTopic(resp, name)
	if tp == nil {
		return fmt.Errorf("topic %s absent from metadata", name)
	}
	if tp.ErrorCode != 0 {
		return fmt.Errorf("topic %s: %s", name, apiCode(tp.ErrorCode))
	}
	if int32(len(tp.Partitions)) != n {
		return fmt.Errorf("topic %s: %d partitions, want %d", name, len(tp.Partitions), n)
	}
	for _, p := range tp.Partitions {
		if p.ErrorCode != 0 || p.Leader < 0 {
			return fmt.Errorf("topic %s partition %d: leader %d, %s", name, p.Partition, p.Leader, apiCode(p.ErrorCode))
		}
	}
	return nil
}

func apiWaitTopic(t testing.TB, addr, name string, n int32) {
	t.Helper()
	apiEventually(t, 15*time.Second, "topic "+name+" ready", func() error { return apiTopicReady(t, addr, name, n) })
}

// apiTopicID returns the id Metadata v12 reports for name.
func apiTopicID(t testing.TB, addr, name string) [16]byte {
	t.Helper()
	tp := apiFindTopic(apiMetadata(t, addr, 12, false, []string{name}), name)
	if tp == nil || tp.ErrorCode != 0 {
		t.Fatalf("topic %s missing from metadata", name)
	}
	return tp.TopicID
}

// apiLeaderEpoch returns partition p's leader epoch from Metadata v12.
func apiLeaderEpoch(t testing.TB, addr, name string, p int32) int32 {
	t.Helper()
	tp := apiFindTopic(apiMetadata(t, addr, 12, false, []string{name}), name)
	if tp == nil || int(p) >= len(tp.Partitions) {
		t.Fatalf("topic %s partition %d missing from metadata", name, p)
	}
	for _, pp := range tp.Partitions {
		if pp.Partition == p {
			return pp.LeaderEpoch
		}
	}
	t.Fatalf("topic %s partition %d missing from metadata", name, p)
	return 0
}

// apiProduce writes one batch of values (acks=all, Produce v11) and returns
// its base offset.
func apiProduce(t testing.TB, addr, topic string, partition int32, spec rawBatchSpec, recs ...rawRecord) int64 {
	t.Helper()
	resp := rawReq[*kmsg.ProduceResponse](t, addr, rawProduceReq(11, -1, topic, partition, rawBatch(spec, recs...)))
	p := rawProducePartition(t, resp)
	apiWantCode(t, fmt.Sprintf("produce to %s/%d", topic, partition), p.ErrorCode, nil)
	return p.BaseOffset
}

// apiListOffsetsReq builds a one-partition ListOffsets request.
func apiListOffsetsReq(v int16, topic string, partition int32, ts int64, currentEpoch int32) *kmsg.ListOffsetsRequest {
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = v
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition = partition
	rp.Timestamp = ts
	rp.CurrentLeaderEpoch = currentEpoch
	rp.MaxNumOffsets = 1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// apiListOffset returns (error code, offset, timestamp) of one ListOffsets query.
func apiListOffset(t testing.TB, addr string, v int16, topic string, partition int32, ts int64) (int16, int64, int64) {
	t.Helper()
	resp := rawReq[*kmsg.ListOffsetsResponse](t, addr, apiListOffsetsReq(v, topic, partition, ts, -1))
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("list offsets %s/%d: %d topics in response", topic, partition, len(resp.Topics))
	}
	p := resp.Topics[0].Partitions[0]
	return p.ErrorCode, p.Offset, p.Timestamp
}

// apiHighWatermark returns the latest offset of a partition (ListOffsets -1).
func apiHighWatermark(t testing.TB, addr, topic string, partition int32) int64 {
	t.Helper()
	code, off, _ := apiListOffset(t, addr, 9, topic, partition, -1)
	apiWantCode(t, "list offsets latest "+topic, code, nil)
	return off
}

// apiFetchAll fetches a partition from offset with Fetch v12 and returns the
// records at or after offset.
func apiFetchAll(t testing.TB, addr, topic string, partition int32, offset int64) []rawFetched {
	t.Helper()
	p := rawFetchPartition(t, rawReq[*kmsg.FetchResponse](t, addr, rawFetchReq(12, topic, partition, offset, 0, 0)))
	apiWantCode(t, "fetch "+topic, p.ErrorCode, nil)
	recs, _, err := rawParseBatches(p.RecordBatches)
	if err != nil {
		t.Fatalf("fetch %s: %v", topic, err)
	}
	out := recs[:0]
	for _, r := range recs {
		if r.Offset >= offset {
			out = append(out, r)
		}
	}
	return out
}

func apiWantValues(t testing.TB, what string, got []rawFetched, firstOffset int64, values ...string) {
	t.Helper()
	if len(got) != len(values) {
		t.Fatalf("%s: %d records, want %d (%q)", what, len(got), len(values), values)
	}
	for i, r := range got {
		if r.Offset != firstOffset+int64(i) || string(r.Value) != values[i] {
			t.Fatalf("%s: record %d = offset %d value %q, want offset %d value %q", what, i, r.Offset, r.Value, firstOffset+int64(i), values[i])
		}
	}
}

// apiDescribeConfigs describes a topic (or broker) at version v and returns
// the configs by name.
func apiDescribeConfigs(t testing.TB, addr string, v int16, rtype kmsg.ConfigResourceType, name string, keys ...string) (int16, map[string]kmsg.DescribeConfigsResponseResourceConfig) {
	t.Helper()
	req := kmsg.NewPtrDescribeConfigsRequest()
	req.Version = v
	rr := kmsg.NewDescribeConfigsRequestResource()
	rr.ResourceType = rtype
	rr.ResourceName = name
	rr.ConfigNames = keys
	req.Resources = append(req.Resources, rr)
	resp := rawReq[*kmsg.DescribeConfigsResponse](t, addr, req)
	if len(resp.Resources) != 1 {
		t.Fatalf("describe configs %s: %d resources in response", name, len(resp.Resources))
	}
	out := map[string]kmsg.DescribeConfigsResponseResourceConfig{}
	for _, c := range resp.Resources[0].Configs {
		if _, dup := out[c.Name]; dup {
			t.Fatalf("describe configs %s: %s listed twice", name, c.Name)
		}
		out[c.Name] = c
	}
	return resp.Resources[0].ErrorCode, out
}

// apiTopicConfigs returns the topic's configs (v4) as name → (value, source).
func apiTopicConfigs(t testing.TB, addr, topic string) map[string]kmsg.DescribeConfigsResponseResourceConfig {
	t.Helper()
	code, cfgs := apiDescribeConfigs(t, addr, 4, kmsg.ConfigResourceTypeTopic, topic)
	apiWantCode(t, "describe configs "+topic, code, nil)
	return cfgs
}

// apiWantConfig asserts a config's value and whether it is a topic override.
func apiWantConfig(t testing.TB, cfgs map[string]kmsg.DescribeConfigsResponseResourceConfig, name, value string, override bool) {
	t.Helper()
	c, ok := cfgs[name]
	if !ok {
		t.Fatalf("config %s not described", name)
	}
	if c.Value == nil || *c.Value != value {
		got := "<null>"
		if c.Value != nil {
			got = *c.Value
		}
		t.Fatalf("config %s = %q, want %q", name, got, value)
	}
	if isOverride := c.Source == kmsg.ConfigSourceDynamicTopicConfig; isOverride != override {
		t.Fatalf("config %s source %v, want topic override = %v", name, c.Source, override)
	}
}

func apiCfgValue(cfgs map[string]kmsg.DescribeConfigsResponseResourceConfig, name string) string {
	if c, ok := cfgs[name]; ok && c.Value != nil {
		return *c.Value
	}
	return "<absent>"
}

// Advertised ranges that KAFKA-COMPAT.md fixes.
var apiWantRanges = []struct{ key, min, max int16 }{
	{0, 0, 11}, // Produce
	{1, 4, 12}, // Fetch
	{2, 1, 9},  // ListOffsets
	{3, 0, 12}, // Metadata
	{18, 0, 4}, // ApiVersions
	{19, 2, 7}, // CreateTopics
	{20, 1, 6}, // DeleteTopics
	{21, 0, 2}, // DeleteRecords
	{23, 2, 4}, // OffsetForLeaderEpoch
	{32, 1, 4}, // DescribeConfigs
	{33, 0, 2}, // AlterConfigs
	{44, 0, 1}, // IncrementalAlterConfigs
	{37, 0, 3}, // CreatePartitions
	{60, 0, 1}, // DescribeCluster
}

// Keys that must not be advertised: SASL, transactions, KIP-848.
var apiNotAdvertised = []int16{17, 24, 25, 26, 28, 36, 68}

func apiCheckRanges(t testing.TB, keys []kmsg.ApiVersionsResponseApiKey) {
	t.Helper()
	got := map[int16]kmsg.ApiVersionsResponseApiKey{}
	for _, k := range keys {
		if _, dup := got[k.ApiKey]; dup {
			t.Fatalf("api key %d advertised twice", k.ApiKey)
		}
		if k.MinVersion > k.MaxVersion {
			t.Fatalf("api key %d: min %d > max %d", k.ApiKey, k.MinVersion, k.MaxVersion)
		}
		got[k.ApiKey] = k
	}
	for _, w := range apiWantRanges {
		k, ok := got[w.key]
		if !ok {
			t.Fatalf("%s (%d) not advertised", kmsg.NameForKey(w.key), w.key)
		}
		if k.MinVersion != w.min || k.MaxVersion != w.max {
			t.Errorf("%s (%d) advertised %d–%d, want %d–%d", kmsg.NameForKey(w.key), w.key, k.MinVersion, k.MaxVersion, w.min, w.max)
		}
	}
	for _, key := range apiNotAdvertised {
		if k, ok := got[key]; ok {
			t.Errorf("%s (%d) advertised %d–%d, must not be", kmsg.NameForKey(key), key, k.MinVersion, k.MaxVersion)
		}
	}
}

// TestAPI runs the conformance cases against one broker with auto-creation
// on and three default partitions.
func TestAPI(t *testing.T) {
	b := apiStartBroker(t, "--auto.create.topics.enable=true", "--num.partitions=3", "--default.replication.factor=1")
	addr := b.Addr
	port := int32(b.Config.Port)

	t.Run("ApiVersions", func(t *testing.T) {
		t.Parallel()
		for _, v := range []int16{0, 3, 4} {
			req := kmsg.NewPtrApiVersionsRequest()
			req.Version = v
			req.ClientSoftwareName = "strata-apitest"
			req.ClientSoftwareVersion = "1.0.0"
			resp := rawReq[*kmsg.ApiVersionsResponse](t, addr, req)
			apiWantCode(t, fmt.Sprintf("ApiVersions v%d", v), resp.ErrorCode, nil)
			apiCheckRanges(t, resp.ApiKeys)
		}
		// v99: answered in v0 encoding with UNSUPPORTED_VERSION and our ranges (KIP-511).
		c := rawDial(t, addr)
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 99
		req.ClientSoftwareName = "strata-apitest"
		req.ClientSoftwareVersion = "1.0.0"
		body := c.recvBody(c.send(req))
		resp, err := rawDecode(req, 0, body)
		if err != nil {
			t.Fatalf("ApiVersions v99 answer is not v0-encoded: %v", err)
		}
		av := resp.(*kmsg.ApiVersionsResponse)
		apiWantCode(t, "ApiVersions v99", av.ErrorCode, kerr.UnsupportedVersion)
		found := false
		for _, k := range av.ApiKeys {
			if k.ApiKey == 18 {
				found = k.MinVersion == 0 && k.MaxVersion == 4
			}
		}
		if !found {
			t.Fatalf("ApiVersions v99 answer lacks ApiVersions 0–4: %+v", av.ApiKeys)
		}
		// The connection stays usable: the client retries at v0.
		req0 := kmsg.NewPtrApiVersionsRequest()
		apiWantCode(t, "ApiVersions v0 after v99", c.do(req0).(*kmsg.ApiVersionsResponse).ErrorCode, nil)
	})

	t.Run("ProduceVersions", func(t *testing.T) {
		t.Parallel()
		topic := "api-produce-versions"
		apiCreateTopic(t, addr, topic, 1, nil)
		c := rawDial(t, addr)
		for _, v := range []int16{0, 1, 2} {
			resp := c.do(rawProduceReq(v, 1, topic, 0, rawBatch(rawBatchSpec{}, rawValues("old")...))).(*kmsg.ProduceResponse)
			apiWantCode(t, fmt.Sprintf("produce v%d", v), rawProducePartition(t, resp).ErrorCode, kerr.UnsupportedVersion)
		}
		apiWantCode(t, "ApiVersions after produce v0-2", c.do(kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse).ErrorCode, nil)
		for i, v := range []int16{3, 11} {
			val := fmt.Sprintf("v%d", v)
			p := rawProducePartition(t, c.do(rawProduceReq(v, 1, topic, 0, rawBatch(rawBatchSpec{}, rawValues(val)...))).(*kmsg.ProduceResponse))
			apiWantCode(t, "produce "+val, p.ErrorCode, nil)
			if p.BaseOffset != int64(i) {
				t.Fatalf("produce %s: base offset %d, want %d", val, p.BaseOffset, i)
			}
		}
		apiWantValues(t, "fetch after produce", apiFetchAll(t, addr, topic, 0, 0), 0, "v3", "v11")
	})

	t.Run("ProduceAcks0", func(t *testing.T) {
		t.Parallel()
		topic := "api-acks0"
		apiCreateTopic(t, addr, topic, 1, nil)
		c := rawDial(t, addr)
		c.send(rawProduceReq(11, 0, topic, 0, rawBatch(rawBatchSpec{}, rawValues("fire-and-forget")...)))
		av := kmsg.NewPtrApiVersionsRequest()
		av.Version = 3
		av.ClientSoftwareName, av.ClientSoftwareVersion = "strata-apitest", "1.0.0"
		corr := c.send(av)
		frame, err := c.readFrame(rawIOTimeout)
		if err != nil {
			t.Fatalf("read after acks=0 produce: %v", err)
		}
		if got := int32(frame[0])<<24 | int32(frame[1])<<16 | int32(frame[2])<<8 | int32(frame[3]); got != corr {
			t.Fatalf("first frame after acks=0 produce has correlation id %d, want the ApiVersions' %d", got, corr)
		}
		apiEventually(t, 10*time.Second, "acks=0 record visible", func() error {
			if hw := apiHighWatermark(t, addr, topic, 0); hw != 1 {
				return fmt.Errorf("high watermark %d, want 1", hw)
			}
			return nil
		})
		apiWantValues(t, "acks=0 record", apiFetchAll(t, addr, topic, 0, 0), 0, "fire-and-forget")
	})

	t.Run("Pipelining", func(t *testing.T) {
		t.Parallel()
		topic := "api-pipeline"
		apiCreateTopic(t, addr, topic, 1, nil)
		c := rawDial(t, addr)
		var reqs []kmsg.Request
		var wire []byte
		var corrs []int32
		for i := 0; i < 20; i++ {
			var req kmsg.Request
			switch i % 5 {
			case 0: // a long-poll fetch on an empty partition: later answers must wait for it
				req = rawFetchReq(12, topic, 0, 0, 300, 1)
			case 1:
				av := kmsg.NewPtrApiVersionsRequest()
				av.Version = 3
				av.ClientSoftwareName, av.ClientSoftwareVersion = "strata-apitest", "1.0.0"
				req = av
			case 2:
				md := kmsg.NewPtrMetadataRequest()
				md.Version = 12
				req = md
			case 3:
				req = apiListOffsetsReq(9, topic, 0, -2, -1)
			case 4:
				dc := kmsg.NewPtrDescribeClusterRequest()
				dc.Version = 1
				req = dc
			}
			b, corr := c.encode(req)
			wire = append(wire, b...)
			reqs = append(reqs, req)
			corrs = append(corrs, corr)
		}
		if err := c.write(wire); err != nil {
			t.Fatalf("write 20 pipelined requests: %v", err)
		}
		for i, req := range reqs {
			resp := c.recv(req, corrs[i]) // fails on an out-of-order correlation id
			switch r := resp.(type) {
			case *kmsg.ApiVersionsResponse:
				apiWantCode(t, "pipelined ApiVersions", r.ErrorCode, nil)
			case *kmsg.FetchResponse:
				apiWantCode(t, "pipelined Fetch", rawFetchPartition(t, r).ErrorCode, nil)
			case *kmsg.ListOffsetsResponse:
				apiWantCode(t, "pipelined ListOffsets", r.Topics[0].Partitions[0].ErrorCode, nil)
			case *kmsg.DescribeClusterResponse:
				apiWantCode(t, "pipelined DescribeCluster", r.ErrorCode, nil)
			}
		}
	})

	t.Run("Metadata", func(t *testing.T) {
		t.Parallel()
		idA := apiCreateTopic(t, addr, "api-md-a", 2, nil)
		apiCreateTopic(t, addr, "api-md-b", 1, nil)

		// v0: an empty list means all topics.
		for _, tc := range []struct {
			v        int16
			topics   []string
			wantAll  bool
			wantNone bool
		}{
			{v: 0, topics: []string{}, wantAll: true},
			{v: 1, topics: nil, wantAll: true},
			{v: 1, topics: []string{}, wantNone: true},
			{v: 12, topics: nil, wantAll: true},
			{v: 12, topics: []string{}, wantNone: true},
		} {
			resp := apiMetadata(t, addr, tc.v, false, tc.topics)
			a, bb := apiFindTopic(resp, "api-md-a"), apiFindTopic(resp, "api-md-b")
			if tc.wantAll && (a == nil || bb == nil) {
				t.Fatalf("Metadata v%d topics=%v: want all topics, got %d topics without api-md-a/b", tc.v, tc.topics, len(resp.Topics))
			}
			if tc.wantNone && len(resp.Topics) != 0 {
				t.Fatalf("Metadata v%d empty list: want no topics, got %d", tc.v, len(resp.Topics))
			}
		}

		// Highest version: ids, leader epochs, cluster id, controller, brokers.
		resp := apiMetadata(t, addr, 12, false, []string{"api-md-a"})
		if resp.ClusterID == nil || *resp.ClusterID == "" {
			t.Fatal("Metadata v12: no cluster id")
		}
		if resp.ControllerID != apiBrokerID {
			t.Fatalf("Metadata v12: controller %d, want %d", resp.ControllerID, apiBrokerID)
		}
		if len(resp.Brokers) != 1 || resp.Brokers[0].NodeID != apiBrokerID || resp.Brokers[0].Host != "127.0.0.1" || resp.Brokers[0].Port != port {
			t.Fatalf("Metadata v12 brokers = %+v, want [{%d 127.0.0.1 %d}]", resp.Brokers, apiBrokerID, port)
		}
		a := apiFindTopic(resp, "api-md-a")
		if a == nil || a.TopicID == ([16]byte{}) || a.TopicID != idA {
			t.Fatalf("Metadata v12 api-md-a: topic id missing or changed: %+v", a)
		}
		if len(a.Partitions) != 2 {
			t.Fatalf("api-md-a: %d partitions, want 2", len(a.Partitions))
		}
		for _, p := range a.Partitions {
			if p.Leader != apiBrokerID || p.LeaderEpoch < 0 || !slices.Equal(p.Replicas, []int32{apiBrokerID}) || !slices.Equal(p.ISR, []int32{apiBrokerID}) {
				t.Fatalf("api-md-a partition %+v: want leader, replicas and ISR = broker %d and epoch ≥ 0", p, apiBrokerID)
			}
		}
		// v7: leader epochs appear, equal to v12's.
		r7 := apiMetadata(t, addr, 7, false, []string{"api-md-a"})
		if a7 := apiFindTopic(r7, "api-md-a"); a7 == nil || len(a7.Partitions) != 2 || a7.Partitions[0].LeaderEpoch != a.Partitions[0].LeaderEpoch {
			t.Fatalf("Metadata v7 api-md-a: %+v, want leader epoch %d", a7, a.Partitions[0].LeaderEpoch)
		}
		// v1: cluster id absent from the wire, but controller and topics are there.
		if r1 := apiMetadata(t, addr, 1, false, []string{"api-md-b"}); r1.ControllerID != apiBrokerID || apiFindTopic(r1, "api-md-b") == nil {
			t.Fatalf("Metadata v1: controller %d, topics %d", r1.ControllerID, len(r1.Topics))
		}

		// v4+: allow_auto_topic_creation false → unknown, true → created with defaults.
		if tp := apiFindTopic(apiMetadata(t, addr, 12, false, []string{"api-md-noauto"}), "api-md-noauto"); tp == nil || tp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("Metadata v12 no auto-create: %+v, want UNKNOWN_TOPIC_OR_PARTITION", tp)
		}
		for _, v := range []int16{4, 12} {
			name := fmt.Sprintf("api-md-auto-v%d", v)
			tp := apiFindTopic(apiMetadata(t, addr, v, true, []string{name}), name)
			if tp == nil {
				t.Fatalf("Metadata v%d auto-create %s: topic absent from answer", v, name)
			}
			apiWantCode(t, "Metadata auto-create "+name, tp.ErrorCode, nil, kerr.LeaderNotAvailable)
			apiWaitTopic(t, addr, name, 3)
		}
		if tp := apiFindTopic(apiMetadata(t, addr, 12, false, []string{"api-md-noauto"}), "api-md-noauto"); tp == nil || tp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("api-md-noauto was created by a request without allow_auto_topic_creation")
		}
	})

	t.Run("CreateTopics", func(t *testing.T) {
		t.Parallel()
		// Highest version with broker defaults (-1, -1).
		resp := rawReq[*kmsg.CreateTopicsResponse](t, addr, apiCreateTopicsReq(7, false, "api-ct-defaults", -1, -1, nil))
		if len(resp.Topics) != 1 {
			t.Fatalf("CreateTopics v7: %d topics", len(resp.Topics))
		}
		ct := resp.Topics[0]
		apiWantCode(t, "CreateTopics v7 defaults", ct.ErrorCode, nil)
		if ct.NumPartitions != 3 || ct.ReplicationFactor != 1 || ct.TopicID == ([16]byte{}) {
			t.Fatalf("CreateTopics v7 defaults: partitions %d rf %d id %x, want 3, 1, non-zero", ct.NumPartitions, ct.ReplicationFactor, ct.TopicID)
		}
		apiWaitTopic(t, addr, "api-ct-defaults", 3)
		if id := apiTopicID(t, addr, "api-ct-defaults"); id != ct.TopicID {
			t.Fatalf("CreateTopics returned id %x, Metadata %x", ct.TopicID, id)
		}

		// Lowest version, explicit count and configs.
		resp = rawReq[*kmsg.CreateTopicsResponse](t, addr, apiCreateTopicsReq(2, false, "api-ct-v2", 2, 1,
			map[string]string{"retention.ms": "3600000", "cleanup.policy": "compact"}))
		apiWantCode(t, "CreateTopics v2", resp.Topics[0].ErrorCode, nil)
		apiWaitTopic(t, addr, "api-ct-v2", 2)
		cfgs := apiTopicConfigs(t, addr, "api-ct-v2")
		apiWantConfig(t, cfgs, "retention.ms", "3600000", true)
		apiWantConfig(t, cfgs, "cleanup.policy", "compact", true)

		// Validate-only creates nothing.
		resp = rawReq[*kmsg.CreateTopicsResponse](t, addr, apiCreateTopicsReq(7, true, "api-ct-validate", 2, 1, nil))
		apiWantCode(t, "CreateTopics validate-only", resp.Topics[0].ErrorCode, nil)
		if tp := apiFindTopic(apiMetadata(t, addr, 12, false, []string{"api-ct-validate"}), "api-ct-validate"); tp == nil || tp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("validate-only CreateTopics created the topic: %+v", tp)
		}

		for _, tc := range []struct {
			name    string
			topic   string
			parts   int32
			rf      int16
			configs map[string]string
			want    *kerr.Error
		}{
			{"duplicate", "api-ct-v2", 1, 1, nil, kerr.TopicAlreadyExists},
			{"dots", "..", 1, 1, nil, kerr.InvalidTopicException},
			{"dot", ".", 1, 1, nil, kerr.InvalidTopicException},
			{"slash", "a/b", 1, 1, nil, kerr.InvalidTopicException},
			{"too long", strings.Repeat("a", 250), 1, 1, nil, kerr.InvalidTopicException},
			{"empty", "", 1, 1, nil, kerr.InvalidTopicException},
			{"rf 3 on one broker", "api-ct-rf3", 1, 3, nil, kerr.InvalidReplicationFactor},
			{"zero partitions", "api-ct-zero", 0, 1, nil, kerr.InvalidPartitions},
			{"retention.ms=abc", "api-ct-badcfg1", 1, 1, map[string]string{"retention.ms": "abc"}, kerr.InvalidConfig},
			{"cleanup.policy=bogus", "api-ct-badcfg2", 1, 1, map[string]string{"cleanup.policy": "bogus"}, kerr.InvalidConfig},
			{"unknown config", "api-ct-badcfg3", 1, 1, map[string]string{"no.such.config": "1"}, kerr.InvalidConfig},
		} {
			for _, v := range []int16{2, 7} {
				resp := rawReq[*kmsg.CreateTopicsResponse](t, addr, apiCreateTopicsReq(v, false, tc.topic, tc.parts, tc.rf, tc.configs))
				if len(resp.Topics) != 1 {
					t.Fatalf("%s v%d: %d topics in response", tc.name, v, len(resp.Topics))
				}
				apiWantCode(t, fmt.Sprintf("CreateTopics v%d %s", v, tc.name), resp.Topics[0].ErrorCode, tc.want)
			}
			if tc.want != kerr.TopicAlreadyExists && tc.topic != "" {
				if tp := apiFindTopic(apiMetadata(t, addr, 12, false, []string{tc.topic}), tc.topic); tp != nil && tp.ErrorCode == 0 {
					t.Fatalf("CreateTopics %s: topic %q exists after a rejected create", tc.name, tc.topic)
				}
			}
		}
	})

	t.Run("DeleteTopics", func(t *testing.T) {
		t.Parallel()
		del := func(v int16, name string) int16 {
			req := kmsg.NewPtrDeleteTopicsRequest()
			req.Version = v
			req.TimeoutMillis = 15000
			if v >= 6 {
				dt := kmsg.NewDeleteTopicsRequestTopic()
				dt.Topic = kmsg.StringPtr(name)
				req.Topics = append(req.Topics, dt)
			} else {
				req.TopicNames = []string{name}
			}
			resp := rawReq[*kmsg.DeleteTopicsResponse](t, addr, req)
			if len(resp.Topics) != 1 {
				t.Fatalf("DeleteTopics v%d %s: %d topics in response", v, name, len(resp.Topics))
			}
			return resp.Topics[0].ErrorCode
		}
		for _, v := range []int16{1, 6} {
			name := fmt.Sprintf("api-dt-v%d", v)
			id1 := apiCreateTopic(t, addr, name, 1, nil)
			apiProduce(t, addr, name, 0, rawBatchSpec{}, rawValues("a", "b")...)
			apiWantCode(t, fmt.Sprintf("DeleteTopics v%d", v), del(v, name), nil)
			apiEventually(t, 10*time.Second, name+" gone", func() error {
				tp := apiFindTopic(apiMetadata(t, addr, 12, false, []string{name}), name)
				if tp != nil && tp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
					return fmt.Errorf("still in metadata: %s", apiCode(tp.ErrorCode))
				}
				return nil
			})
			apiWantCode(t, fmt.Sprintf("DeleteTopics v%d unknown", v), del(v, "api-dt-never-existed"), kerr.UnknownTopicOrPartition)
			// Recreate: a new id and an empty log.
			var id2 [16]byte
			apiEventually(t, 10*time.Second, "recreate "+name, func() error {
				resp := rawReq[*kmsg.CreateTopicsResponse](t, addr, apiCreateTopicsReq(7, false, name, 1, 1, nil))
				if c := resp.Topics[0].ErrorCode; c != 0 {
					return fmt.Errorf("create: %s", apiCode(c))
				}
				id2 = resp.Topics[0].TopicID
				return nil
			})
			apiWaitTopic(t, addr, name, 1)
			if id2 == id1 || id2 == ([16]byte{}) {
				t.Fatalf("recreated %s has id %x, old %x: want a new non-zero id", name, id2, id1)
			}
			for _, ts := range []int64{-1, -2} {
				code, off, _ := apiListOffset(t, addr, 9, name, 0, ts)
				apiWantCode(t, "list offsets recreated", code, nil)
				if off != 0 {
					t.Fatalf("recreated %s: offset(%d) = %d, want 0 (empty log)", name, ts, off)
				}
			}
			if recs := apiFetchAll(t, addr, name, 0, 0); len(recs) != 0 {
				t.Fatalf("recreated %s still holds %d records", name, len(recs))
			}
		}
	})

	t.Run("CreatePartitions", func(t *testing.T) {
		t.Parallel()
		cp := func(v int16, topic string, count int32, validate bool) int16 {
			req := kmsg.NewPtrCreatePartitionsRequest()
			req.Version = v
			req.TimeoutMillis = 15000
			req.ValidateOnly = validate
			rt := kmsg.NewCreatePartitionsRequestTopic()
			rt.Topic = topic
			rt.Count = count
			req.Topics = append(req.Topics, rt)
			resp := rawReq[*kmsg.CreatePartitionsResponse](t, addr, req)
			if len(resp.Topics) != 1 {
				t.Fatalf("CreatePartitions v%d: %d topics in response", v, len(resp.Topics))
			}
			return resp.Topics[0].ErrorCode
		}
		for _, v := range []int16{0, 3} {
			name := fmt.Sprintf("api-cp-v%d", v)
			apiCreateTopic(t, addr, name, 3, nil)
			apiWantCode(t, "CreatePartitions validate-only", cp(v, name, 5, true), nil)
			if err := apiTopicReady(t, addr, name, 3); err != nil {
				t.Fatalf("after validate-only CreatePartitions: %v", err)
			}
			apiWantCode(t, "CreatePartitions 3→5", cp(v, name, 5, false), nil)
			apiWaitTopic(t, addr, name, 5)
			for _, p := range []int32{3, 4} {
				if off := apiProduce(t, addr, name, p, rawBatchSpec{}, rawValues(fmt.Sprintf("p%d", p))...); off != 0 {
					t.Fatalf("produce to new partition %d: base offset %d, want 0", p, off)
				}
				apiWantValues(t, "new partition", apiFetchAll(t, addr, name, p, 0), 0, fmt.Sprintf("p%d", p))
			}
			apiWantCode(t, "CreatePartitions 5→2", cp(v, name, 2, false), kerr.InvalidPartitions)
			apiWantCode(t, "CreatePartitions 5→5", cp(v, name, 5, false), kerr.InvalidPartitions)
			apiWantCode(t, "CreatePartitions unknown topic", cp(v, "api-cp-unknown", 5, false), kerr.UnknownTopicOrPartition)
			if err := apiTopicReady(t, addr, name, 5); err != nil {
				t.Fatalf("after rejected CreatePartitions: %v", err)
			}
		}
	})

	t.Run("DescribeConfigs", func(t *testing.T) {
		t.Parallel()
		topic := "api-dc"
		apiCreateTopic(t, addr, topic, 1, map[string]string{"retention.ms": "3600000", "max.message.bytes": "20000"})
		for _, v := range []int16{1, 4} {
			code, cfgs := apiDescribeConfigs(t, addr, v, kmsg.ConfigResourceTypeTopic, topic)
			apiWantCode(t, fmt.Sprintf("DescribeConfigs v%d", v), code, nil)
			apiWantConfig(t, cfgs, "retention.ms", "3600000", true)
			apiWantConfig(t, cfgs, "max.message.bytes", "20000", true)
			apiWantConfig(t, cfgs, "cleanup.policy", "delete", false)
			apiWantConfig(t, cfgs, "min.insync.replicas", "1", false)
			apiWantConfig(t, cfgs, "message.timestamp.type", "CreateTime", false)
			for _, name := range []string{"segment.bytes", "retention.bytes", "segment.ms", "local.retention.ms", "local.retention.bytes", "remote.storage.enable", "unclean.leader.election.enable"} {
				c, ok := cfgs[name]
				if !ok || c.Value == nil {
					t.Fatalf("DescribeConfigs v%d: %s missing", v, name)
				}
				if c.Source == kmsg.ConfigSourceDynamicTopicConfig {
					t.Fatalf("DescribeConfigs v%d: %s reported as a topic override", v, name)
				}
				if c.Source != kmsg.ConfigSourceDefaultConfig && c.Source != kmsg.ConfigSourceStaticBrokerConfig && c.Source != kmsg.ConfigSourceDynamicDefaultBrokerConfig {
					t.Fatalf("DescribeConfigs v%d: %s source %v, want a default source", v, name, c.Source)
				}
			}
			if n, err := strconv.ParseInt(apiCfgValue(cfgs, "segment.bytes"), 10, 64); err != nil || n <= 0 {
				t.Fatalf("segment.bytes = %q", apiCfgValue(cfgs, "segment.bytes"))
			}

			// Specific keys: exactly those.
			code, some := apiDescribeConfigs(t, addr, v, kmsg.ConfigResourceTypeTopic, topic, "retention.ms", "cleanup.policy")
			apiWantCode(t, "DescribeConfigs keys", code, nil)
			if len(some) != 2 || apiCfgValue(some, "retention.ms") != "3600000" || apiCfgValue(some, "cleanup.policy") != "delete" {
				t.Fatalf("DescribeConfigs v%d keys: got %d configs (%v)", v, len(some), some)
			}

			// Broker resource.
			code, bcfgs := apiDescribeConfigs(t, addr, v, kmsg.ConfigResourceTypeBroker, strconv.Itoa(apiBrokerID))
			apiWantCode(t, "DescribeConfigs broker", code, nil)
			if len(bcfgs) == 0 {
				t.Fatalf("DescribeConfigs v%d broker %d: no configs", v, apiBrokerID)
			}
			if val := apiCfgValue(bcfgs, "num.partitions"); val != "<absent>" && val != "3" {
				t.Fatalf("broker num.partitions = %q, want 3 (from the flag)", val)
			}
			if val := apiCfgValue(bcfgs, "auto.create.topics.enable"); val != "<absent>" && val != "true" {
				t.Fatalf("broker auto.create.topics.enable = %q, want true (from the flag)", val)
			}

			// Unknown topic.
			code, _ = apiDescribeConfigs(t, addr, v, kmsg.ConfigResourceTypeTopic, "api-dc-unknown")
			apiWantCode(t, "DescribeConfigs unknown topic", code, kerr.UnknownTopicOrPartition)
		}
	})

	t.Run("AlterConfigs", func(t *testing.T) {
		t.Parallel()
		alter := func(v int16, topic string, validate bool, kv ...string) int16 {
			req := kmsg.NewPtrAlterConfigsRequest()
			req.Version = v
			req.ValidateOnly = validate
			rr := kmsg.NewAlterConfigsRequestResource()
			rr.ResourceType = kmsg.ConfigResourceTypeTopic
			rr.ResourceName = topic
			for i := 0; i+1 < len(kv); i += 2 {
				c := kmsg.NewAlterConfigsRequestResourceConfig()
				c.Name = kv[i]
				c.Value = kmsg.StringPtr(kv[i+1])
				rr.Configs = append(rr.Configs, c)
			}
			req.Resources = append(req.Resources, rr)
			resp := rawReq[*kmsg.AlterConfigsResponse](t, addr, req)
			if len(resp.Resources) != 1 {
				t.Fatalf("AlterConfigs v%d: %d resources in response", v, len(resp.Resources))
			}
			return resp.Resources[0].ErrorCode
		}
		for _, v := range []int16{0, 2} {
			topic := fmt.Sprintf("api-ac-v%d", v)
			apiCreateTopic(t, addr, topic, 1, map[string]string{"cleanup.policy": "compact", "retention.ms": "3600000"})
			// The whole set is replaced: cleanup.policy falls back to its default.
			apiWantCode(t, "AlterConfigs", alter(v, topic, false, "retention.ms", "7200000"), nil)
			cfgs := apiTopicConfigs(t, addr, topic)
			apiWantConfig(t, cfgs, "retention.ms", "7200000", true)
			apiWantConfig(t, cfgs, "cleanup.policy", "delete", false)

			for _, bad := range [][]string{
				{"retention.ms", "abc"},
				{"cleanup.policy", "bogus"},
				{"no.such.config", "1"},
				{"retention.ms", "60000", "min.insync.replicas", "x"},
			} {
				apiWantCode(t, fmt.Sprintf("AlterConfigs v%d %v", v, bad), alter(v, topic, false, bad...), kerr.InvalidConfig)
			}
			apiWantCode(t, "AlterConfigs validate-only", alter(v, topic, true, "retention.ms", "1000", "cleanup.policy", "compact"), nil)
			apiWantCode(t, "AlterConfigs unknown topic", alter(v, "api-ac-unknown", false, "retention.ms", "1000"), kerr.UnknownTopicOrPartition)
			cfgs = apiTopicConfigs(t, addr, topic)
			apiWantConfig(t, cfgs, "retention.ms", "7200000", true)
			apiWantConfig(t, cfgs, "cleanup.policy", "delete", false)
			apiWantConfig(t, cfgs, "min.insync.replicas", "1", false)
		}
	})

	t.Run("IncrementalAlterConfigs", func(t *testing.T) {
		t.Parallel()
		type op struct {
			name  string
			op    kmsg.IncrementalAlterConfigOp
			value string
		}
		inc := func(v int16, topic string, validate bool, ops ...op) int16 {
			req := kmsg.NewPtrIncrementalAlterConfigsRequest()
			req.Version = v
			req.ValidateOnly = validate
			rr := kmsg.NewIncrementalAlterConfigsRequestResource()
			rr.ResourceType = kmsg.ConfigResourceTypeTopic
			rr.ResourceName = topic
			for _, o := range ops {
				c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
				c.Name = o.name
				c.Op = o.op
				if o.op != kmsg.IncrementalAlterConfigOpDelete {
					c.Value = kmsg.StringPtr(o.value)
				}
				rr.Configs = append(rr.Configs, c)
			}
			req.Resources = append(req.Resources, rr)
			resp := rawReq[*kmsg.IncrementalAlterConfigsResponse](t, addr, req)
			if len(resp.Resources) != 1 {
				t.Fatalf("IncrementalAlterConfigs v%d: %d resources in response", v, len(resp.Resources))
			}
			return resp.Resources[0].ErrorCode
		}
		set, del := kmsg.IncrementalAlterConfigOpSet, kmsg.IncrementalAlterConfigOpDelete
		appendOp, subtract := kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract
		listEq := func(got string, want ...string) bool {
			g := strings.Split(got, ",")
			for i := range g {
				g[i] = strings.TrimSpace(g[i])
			}
			sort.Strings(g)
			sort.Strings(want)
			return slices.Equal(g, want)
		}
		for _, v := range []int16{0, 1} {
			topic := fmt.Sprintf("api-iac-v%d", v)
			apiCreateTopic(t, addr, topic, 1, map[string]string{"retention.ms": "3600000"})

			apiWantCode(t, "SET", inc(v, topic, false, op{"cleanup.policy", set, "delete"}, op{"segment.ms", set, "600000"}), nil)
			cfgs := apiTopicConfigs(t, addr, topic)
			apiWantConfig(t, cfgs, "cleanup.policy", "delete", true)
			apiWantConfig(t, cfgs, "segment.ms", "600000", true)
			apiWantConfig(t, cfgs, "retention.ms", "3600000", true) // untouched

			apiWantCode(t, "APPEND", inc(v, topic, false, op{"cleanup.policy", appendOp, "compact"}), nil)
			if got := apiCfgValue(apiTopicConfigs(t, addr, topic), "cleanup.policy"); !listEq(got, "delete", "compact") {
				t.Fatalf("after APPEND compact: cleanup.policy = %q, want delete,compact", got)
			}
			apiWantCode(t, "SUBTRACT", inc(v, topic, false, op{"cleanup.policy", subtract, "delete"}), nil)
			apiWantConfig(t, apiTopicConfigs(t, addr, topic), "cleanup.policy", "compact", true)

			for _, bad := range [][]op{
				{{"retention.ms", set, "abc"}},
				{{"cleanup.policy", set, "bogus"}},
				{{"cleanup.policy", appendOp, "bogus"}},
				{{"no.such.config", set, "1"}},
				{{"segment.ms", set, "1200000"}, {"min.insync.replicas", set, "x"}},
			} {
				apiWantCode(t, fmt.Sprintf("IncrementalAlterConfigs v%d %v", v, bad), inc(v, topic, false, bad...), kerr.InvalidConfig)
			}
			apiWantCode(t, "validate-only", inc(v, topic, true, op{"retention.ms", set, "1000"}, op{"segment.ms", del, ""}), nil)
			cfgs = apiTopicConfigs(t, addr, topic)
			apiWantConfig(t, cfgs, "cleanup.policy", "compact", true)
			apiWantConfig(t, cfgs, "segment.ms", "600000", true)
			apiWantConfig(t, cfgs, "retention.ms", "3600000", true)

			apiWantCode(t, "DELETE", inc(v, topic, false, op{"retention.ms", del, ""}, op{"cleanup.policy", del, ""}), nil)
			cfgs = apiTopicConfigs(t, addr, topic)
			apiWantConfig(t, cfgs, "retention.ms", "604800000", false)
			apiWantConfig(t, cfgs, "cleanup.policy", "delete", false)
			apiWantConfig(t, cfgs, "segment.ms", "600000", true)
		}
	})

	t.Run("ListOffsets", func(t *testing.T) {
		t.Parallel()
		topic := "api-lo"
		apiCreateTopic(t, addr, topic, 1, nil)
		base := time.Now().Add(-time.Hour).UnixMilli()
		// One batch per record: timestamps base+0, +100, ..., +400.
		for i := int64(0); i < 5; i++ {
			if off := apiProduce(t, addr, topic, 0, rawBatchSpec{BaseTimestamp: base + 100*i}, rawValues(fmt.Sprint(i))...); off != i {
				t.Fatalf("produce %d: base offset %d", i, off)
			}
		}
		for _, tc := range []struct {
			name     string
			v        int16
			ts       int64
			off, rts int64 // rts < -1: timestamp not checked
		}{
			{"v1 earliest", 1, -2, 0, -2},
			{"v1 latest", 1, -1, 5, -2},
			{"v1 timestamp", 1, base + 150, 2, base + 200},
			{"v9 earliest", 9, -2, 0, -2},
			{"v9 latest", 9, -1, 5, -2},
			{"v9 exact timestamp", 9, base + 300, 3, base + 300},
			{"v9 timestamp between", 9, base + 150, 2, base + 200},
			{"v9 timestamp before all", 9, base - 1000, 0, base},
			{"v9 timestamp beyond", 9, base + 1000, -1, -1},
			{"v7 max timestamp", 7, -3, 4, base + 400},
			{"v8 earliest local", 8, -4, 0, -2},
			{"v9 latest tiered (untiered topic)", 9, -5, -1, -2},
		} {
			code, off, ts := apiListOffset(t, addr, tc.v, topic, 0, tc.ts)
			apiWantCode(t, "ListOffsets "+tc.name, code, nil)
			if off != tc.off || (tc.rts >= -1 && ts != tc.rts) {
				t.Errorf("ListOffsets %s: offset %d ts %d, want offset %d ts %d", tc.name, off, ts, tc.off, tc.rts)
			}
		}

		// Max timestamp is not the last record's.
		topic2 := "api-lo-maxts"
		apiCreateTopic(t, addr, topic2, 1, nil)
		for i, d := range []int64{0, 300, 500, 200} {
			apiProduce(t, addr, topic2, 0, rawBatchSpec{BaseTimestamp: base + d}, rawValues(fmt.Sprint(i))...)
		}
		code, off, ts := apiListOffset(t, addr, 9, topic2, 0, -3)
		apiWantCode(t, "ListOffsets max timestamp", code, nil)
		if off != 2 || ts != base+500 {
			t.Fatalf("ListOffsets -3: offset %d ts %d, want offset 2 ts %d", off, ts, base+500)
		}
		// Within one batch, too: records 0..3 with deltas 0, 300, 500, 200.
		topic3 := "api-lo-maxts-batch"
		apiCreateTopic(t, addr, topic3, 1, nil)
		apiProduce(t, addr, topic3, 0, rawBatchSpec{BaseTimestamp: base},
			rawRecord{Value: []byte("a")}, rawRecord{Value: []byte("b"), TsDelta: 300},
			rawRecord{Value: []byte("c"), TsDelta: 500}, rawRecord{Value: []byte("d"), TsDelta: 200})
		code, off, ts = apiListOffset(t, addr, 9, topic3, 0, -3)
		apiWantCode(t, "ListOffsets max timestamp in one batch", code, nil)
		if off != 2 || ts != base+500 {
			t.Fatalf("ListOffsets -3 in one batch: offset %d ts %d, want offset 2 ts %d", off, ts, base+500)
		}

		// v4+ current leader epoch: the leader's own passes, a newer one is unknown.
		epoch := apiLeaderEpoch(t, addr, topic, 0)
		for _, tc := range []struct {
			current int32
			want    *kerr.Error
		}{{-1, nil}, {epoch, nil}, {epoch + 1, kerr.UnknownLeaderEpoch}} {
			resp := rawReq[*kmsg.ListOffsetsResponse](t, addr, apiListOffsetsReq(9, topic, 0, -1, tc.current))
			p := resp.Topics[0].Partitions[0]
			apiWantCode(t, fmt.Sprintf("ListOffsets v9 current epoch %d (leader %d)", tc.current, epoch), p.ErrorCode, tc.want)
			if tc.want == nil && (p.Offset != 5 || p.LeaderEpoch != epoch) {
				t.Fatalf("ListOffsets v9 latest: offset %d epoch %d, want 5 and %d", p.Offset, p.LeaderEpoch, epoch)
			}
		}

		// Unknown topic / partition.
		code, _, _ = apiListOffset(t, addr, 9, "api-lo-unknown", 0, -1)
		apiWantCode(t, "ListOffsets unknown topic", code, kerr.UnknownTopicOrPartition)
		code, _, _ = apiListOffset(t, addr, 9, topic, 7, -1)
		apiWantCode(t, "ListOffsets unknown partition", code, kerr.UnknownTopicOrPartition)
	})

	t.Run("DeleteRecords", func(t *testing.T) {
		t.Parallel()
		topic := "api-dr"
		apiCreateTopic(t, addr, topic, 1, nil)
		for i := 0; i < 10; i++ {
			apiProduce(t, addr, topic, 0, rawBatchSpec{}, rawValues(fmt.Sprint(i))...)
		}
		dr := func(v int16, offset int64) kmsg.DeleteRecordsResponseTopicPartition {
			req := kmsg.NewPtrDeleteRecordsRequest()
			req.Version = v
			req.TimeoutMillis = 15000
			rt := kmsg.NewDeleteRecordsRequestTopic()
			rt.Topic = topic
			rp := kmsg.NewDeleteRecordsRequestTopicPartition()
			rp.Partition = 0
			rp.Offset = offset
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp := rawReq[*kmsg.DeleteRecordsResponse](t, addr, req)
			if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
				t.Fatalf("DeleteRecords v%d: malformed response", v)
			}
			return resp.Topics[0].Partitions[0]
		}
		p := dr(0, 4)
		apiWantCode(t, "DeleteRecords v0 to 4", p.ErrorCode, nil)
		if p.LowWatermark != 4 {
			t.Fatalf("DeleteRecords to 4: low watermark %d", p.LowWatermark)
		}
		if code, off, _ := apiListOffset(t, addr, 9, topic, 0, -2); code != 0 || off != 4 {
			t.Fatalf("ListOffsets earliest after DeleteRecords: %s offset %d, want 4", apiCode(code), off)
		}
		fp := rawFetchPartition(t, rawReq[*kmsg.FetchResponse](t, addr, rawFetchReq(12, topic, 0, 2, 0, 0)))
		apiWantCode(t, "fetch below log start", fp.ErrorCode, kerr.OffsetOutOfRange)
		apiWantValues(t, "fetch from new log start", apiFetchAll(t, addr, topic, 0, 4), 4, "4", "5", "6", "7", "8", "9")
		fp = rawFetchPartition(t, rawReq[*kmsg.FetchResponse](t, addr, rawFetchReq(12, topic, 0, 4, 0, 0)))
		if fp.LogStartOffset != 4 || fp.HighWatermark != 10 {
			t.Fatalf("fetch after DeleteRecords: log start %d hw %d, want 4 and 10", fp.LogStartOffset, fp.HighWatermark)
		}

		p = dr(2, 11)
		apiWantCode(t, "DeleteRecords beyond high watermark", p.ErrorCode, kerr.OffsetOutOfRange)
		p = dr(2, -1)
		apiWantCode(t, "DeleteRecords -1", p.ErrorCode, nil)
		if p.LowWatermark != 10 {
			t.Fatalf("DeleteRecords -1: low watermark %d, want the high watermark 10", p.LowWatermark)
		}
		if code, off, _ := apiListOffset(t, addr, 9, topic, 0, -2); code != 0 || off != 10 {
			t.Fatalf("ListOffsets earliest after DeleteRecords -1: %s offset %d, want 10", apiCode(code), off)
		}
		if off := apiProduce(t, addr, topic, 0, rawBatchSpec{}, rawValues("after")...); off != 10 {
			t.Fatalf("produce after deleting everything: offset %d, want 10", off)
		}
	})

	t.Run("OffsetForLeaderEpoch", func(t *testing.T) {
		t.Parallel()
		topic := "api-ofle"
		apiCreateTopic(t, addr, topic, 1, nil)
		apiProduce(t, addr, topic, 0, rawBatchSpec{}, rawValues("a", "b", "c")...)
		epoch := apiLeaderEpoch(t, addr, topic, 0)
		ofle := func(v int16, current, leaderEpoch int32) kmsg.OffsetForLeaderEpochResponseTopicPartition {
			req := kmsg.NewPtrOffsetForLeaderEpochRequest()
			req.Version = v
			req.ReplicaID = -1
			rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
			rt.Topic = topic
			rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
			rp.Partition = 0
			rp.CurrentLeaderEpoch = current
			rp.LeaderEpoch = leaderEpoch
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp := rawReq[*kmsg.OffsetForLeaderEpochResponse](t, addr, req)
			if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
				t.Fatalf("OffsetForLeaderEpoch v%d: malformed response", v)
			}
			return resp.Topics[0].Partitions[0]
		}
		for _, v := range []int16{2, 4} {
			for _, current := range []int32{-1, epoch} {
				p := ofle(v, current, epoch)
				apiWantCode(t, fmt.Sprintf("OffsetForLeaderEpoch v%d epoch %d", v, epoch), p.ErrorCode, nil)
				if p.LeaderEpoch != epoch || p.EndOffset != 3 {
					t.Fatalf("OffsetForLeaderEpoch v%d epoch %d: (epoch %d, end %d), want (%d, 3)", v, epoch, p.LeaderEpoch, p.EndOffset, epoch)
				}
			}
			// A requested epoch newer than any known: undefined (-1, -1), no error.
			p := ofle(v, -1, epoch+5)
			apiWantCode(t, "OffsetForLeaderEpoch future epoch", p.ErrorCode, nil)
			if p.LeaderEpoch != -1 || p.EndOffset != -1 {
				t.Errorf("OffsetForLeaderEpoch v%d future epoch: (epoch %d, end %d), want (-1, -1)", v, p.LeaderEpoch, p.EndOffset)
			}
			// current_leader_epoch newer than the leader's → UNKNOWN_LEADER_EPOCH.
			apiWantCode(t, "OffsetForLeaderEpoch newer current epoch", ofle(v, epoch+1, epoch).ErrorCode, kerr.UnknownLeaderEpoch)
			if epoch > 0 {
				apiWantCode(t, "OffsetForLeaderEpoch older current epoch", ofle(v, epoch-1, epoch).ErrorCode, kerr.FencedLeaderEpoch)
			} else {
				t.Logf("leader epoch is 0: FENCED_LEADER_EPOCH is checked in TestAPIRestart after the epoch moves")
			}
		}
	})

	t.Run("FetchLongPoll", func(t *testing.T) {
		t.Parallel()
		topic := "api-fetch-poll"
		apiCreateTopic(t, addr, topic, 1, nil)

		// Nothing arrives: answered empty after about max_wait.
		start := time.Now()
		p := rawFetchPartition(t, rawReq[*kmsg.FetchResponse](t, addr, rawFetchReq(12, topic, 0, 0, 1500, 1)))
		el := time.Since(start)
		apiWantCode(t, "empty long-poll", p.ErrorCode, nil)
		if len(p.RecordBatches) != 0 || p.HighWatermark != 0 {
			t.Fatalf("empty long-poll: %d bytes, hw %d", len(p.RecordBatches), p.HighWatermark)
		}
		if el < 1200*time.Millisecond || el > 5*time.Second {
			t.Fatalf("empty long-poll with max_wait 1.5 s answered after %v, want ≥ 1.2 s", el)
		}

		// A record arrives 300 ms into a 2 s wait: answered promptly with it.
		c := rawDial(t, addr)
		req := rawFetchReq(12, topic, 0, 0, 2000, 1)
		start = time.Now()
		corr := c.send(req)
		produced := make(chan error, 1)
		timer := time.AfterFunc(300*time.Millisecond, func() {
			_, err := rawProduceOnce(addr, topic, 0, "wake-up")
			produced <- err
		})
		defer timer.Stop()
		resp := c.recv(req, corr).(*kmsg.FetchResponse)
		el = time.Since(start)
		if err := <-produced; err != nil {
			t.Fatalf("produce during long-poll: %v", err)
		}
		p = rawFetchPartition(t, resp)
		apiWantCode(t, "woken long-poll", p.ErrorCode, nil)
		recs, _, err := rawParseBatches(p.RecordBatches)
		if err != nil {
			t.Fatal(err)
		}
		apiWantValues(t, "woken long-poll", recs, 0, "wake-up")
		if el > 1500*time.Millisecond {
			t.Fatalf("long-poll answered %v after start, want soon after the produce at 300 ms (max_wait 2 s)", el)
		}
	})

	t.Run("FetchLimits", func(t *testing.T) {
		t.Parallel()
		topic := "api-fetch-limits"
		apiCreateTopic(t, addr, topic, 1, nil)
		big := strings.Repeat("x", 1000)
		var batchLen int
		for i := 0; i < 5; i++ {
			b := rawBatch(rawBatchSpec{}, rawRecord{Value: []byte(fmt.Sprintf("%d%s", i, big))})
			batchLen = len(b)
			p := rawProducePartition(t, rawReq[*kmsg.ProduceResponse](t, addr, rawProduceReq(11, -1, topic, 0, b)))
			apiWantCode(t, "produce", p.ErrorCode, nil)
		}
		for _, tc := range []struct {
			name              string
			v                 int16
			maxBytes, partMax int32
			wantBatches       int
		}{
			{"max_bytes 1.5 batches", 12, int32(batchLen * 3 / 2), 1 << 20, 1},
			{"partition max 2.5 batches", 12, 1 << 20, int32(batchLen * 5 / 2), 2},
			{"max_bytes 10: still one batch", 12, 10, 1 << 20, 1},
			{"partition max 10: still one batch", 12, 1 << 20, 10, 1},
			{"v4 max_bytes 1.5 batches", 4, int32(batchLen * 3 / 2), 1 << 20, 1},
			{"unlimited", 12, 1 << 20, 1 << 20, 5},
		} {
			req := rawFetchReq(tc.v, topic, 0, 0, 0, 0)
			req.MaxBytes = tc.maxBytes
			req.Topics[0].Partitions[0].PartitionMaxBytes = tc.partMax
			p := rawFetchPartition(t, rawReq[*kmsg.FetchResponse](t, addr, req))
			apiWantCode(t, "fetch "+tc.name, p.ErrorCode, nil)
			recs, n, err := rawParseBatches(p.RecordBatches)
			if err != nil {
				t.Fatalf("fetch %s: %v", tc.name, err)
			}
			if n != tc.wantBatches || len(recs) != tc.wantBatches || string(recs[0].Value[:1]) != "0" {
				t.Fatalf("fetch %s: %d complete batches (%d bytes), want %d", tc.name, n, len(p.RecordBatches), tc.wantBatches)
			}
			if limit := min(int(tc.maxBytes), int(tc.partMax)); len(p.RecordBatches) > max(limit, batchLen) {
				t.Fatalf("fetch %s: %d bytes returned, limit %d", tc.name, len(p.RecordBatches), limit)
			}
			if p.HighWatermark != 5 || p.LastStableOffset != 5 {
				t.Fatalf("fetch %s: hw %d lso %d, want 5", tc.name, p.HighWatermark, p.LastStableOffset)
			}
			if tc.v >= 5 && p.LogStartOffset != 0 {
				t.Fatalf("fetch %s: log start %d, want 0", tc.name, p.LogStartOffset)
			}
		}
		// v4 read_committed: no transactions, so everything below the LSO.
		req := rawFetchReq(4, topic, 0, 3, 0, 0)
		req.IsolationLevel = 1
		p := rawFetchPartition(t, rawReq[*kmsg.FetchResponse](t, addr, req))
		apiWantCode(t, "fetch v4 read_committed", p.ErrorCode, nil)
		recs, _, err := rawParseBatches(p.RecordBatches)
		if err != nil || len(recs) < 2 || recs[len(recs)-2].Offset != 3 || recs[len(recs)-1].Offset != 4 {
			t.Fatalf("fetch v4 read_committed from 3: %d records, %v", len(recs), err)
		}
		if p.LastStableOffset != 5 || len(p.AbortedTransactions) != 0 {
			t.Fatalf("fetch v4 read_committed: lso %d, %d aborted txns", p.LastStableOffset, len(p.AbortedTransactions))
		}

		// v9+ current leader epoch.
		epoch := apiLeaderEpoch(t, addr, topic, 0)
		for _, tc := range []struct {
			current int32
			want    *kerr.Error
		}{
			{-1, nil},
			{epoch, nil},
			{epoch + 1, kerr.UnknownLeaderEpoch},
		} {
			req := rawFetchReq(12, topic, 0, 0, 0, 0)
			req.Topics[0].Partitions[0].CurrentLeaderEpoch = tc.current
			p := rawFetchPartition(t, rawReq[*kmsg.FetchResponse](t, addr, req))
			apiWantCode(t, fmt.Sprintf("fetch v12 current epoch %d (leader %d)", tc.current, epoch), p.ErrorCode, tc.want)
		}
		if epoch > 0 {
			req := rawFetchReq(12, topic, 0, 0, 0, 0)
			req.Topics[0].Partitions[0].CurrentLeaderEpoch = epoch - 1
			p := rawFetchPartition(t, rawReq[*kmsg.FetchResponse](t, addr, req))
			apiWantCode(t, "fetch v12 older current epoch", p.ErrorCode, kerr.FencedLeaderEpoch)
		}
	})

	t.Run("DescribeCluster", func(t *testing.T) {
		t.Parallel()
		md := apiMetadata(t, addr, 12, false, []string{})
		for _, v := range []int16{0, 1} {
			req := kmsg.NewPtrDescribeClusterRequest()
			req.Version = v
			resp := rawReq[*kmsg.DescribeClusterResponse](t, addr, req)
			apiWantCode(t, fmt.Sprintf("DescribeCluster v%d", v), resp.ErrorCode, nil)
			if md.ClusterID == nil || resp.ClusterID != *md.ClusterID {
				t.Fatalf("DescribeCluster v%d cluster id %q, Metadata says %v", v, resp.ClusterID, md.ClusterID)
			}
			if resp.ControllerID != apiBrokerID {
				t.Fatalf("DescribeCluster v%d controller %d, want %d", v, resp.ControllerID, apiBrokerID)
			}
			if len(resp.Brokers) != 1 || resp.Brokers[0].NodeID != apiBrokerID || resp.Brokers[0].Host != "127.0.0.1" || resp.Brokers[0].Port != port {
				t.Fatalf("DescribeCluster v%d brokers %+v", v, resp.Brokers)
			}
			if v >= 1 && resp.EndpointType != 1 {
				t.Fatalf("DescribeCluster v1 endpoint type %d, want 1 (brokers)", resp.EndpointType)
			}
		}
	})

	t.Run("KgoRequestHighest", func(t *testing.T) {
		t.Parallel()
		// The same APIs through a real client at the negotiated (highest) versions.
		cl := apiKgo(t, addr)
		ctx := apiCtx(t)
		topic := "api-kgo"
		apiCreateTopic(t, addr, topic, 2, nil)
		md := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		md.Topics = append(md.Topics, rt)
		mresp, err := md.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("kgo Metadata: %v", err)
		}
		if mresp.Version != 12 || len(mresp.Topics) != 1 || len(mresp.Topics[0].Partitions) != 2 {
			t.Fatalf("kgo Metadata v%d: %+v", mresp.Version, mresp.Topics)
		}
		r := kgo.StringRecord("via-kgo")
		r.Topic = topic
		r.Partition = 1
		pcl := apiKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DisableIdempotentWrite())
		if err := pcl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("kgo produce: %v", err)
		}
		lo := apiListOffsetsReq(0, topic, 1, -1, -1)
		lresp, err := lo.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("kgo ListOffsets: %v", err)
		}
		if lresp.Version != 9 || lresp.Topics[0].Partitions[0].Offset != 1 {
			t.Fatalf("kgo ListOffsets v%d: %+v", lresp.Version, lresp.Topics)
		}
	})
}

// TestAPIRestart checks what must survive a restart (topic ids, altered
// configs), the no-auto-create path, and FENCED_LEADER_EPOCH once the leader
// epoch has moved.
func TestAPIRestart(t *testing.T) {
	b := apiStartBroker(t, "--auto.create.topics.enable=false", "--num.partitions=2")
	addr := b.Addr

	// Auto-creation off: even allow_auto_topic_creation gets UNKNOWN_TOPIC_OR_PARTITION.
	for _, v := range []int16{4, 12} {
		tp := apiFindTopic(apiMetadata(t, addr, v, true, []string{"api-rs-noauto"}), "api-rs-noauto")
		if tp == nil || tp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("Metadata v%d with auto-creation disabled: %+v, want UNKNOWN_TOPIC_OR_PARTITION", v, tp)
		}
	}

	idA := apiCreateTopic(t, addr, "api-rs-a", 2, map[string]string{"cleanup.policy": "compact"})
	idB := apiCreateTopic(t, addr, "api-rs-b", 1, map[string]string{"retention.ms": "3600000"})
	apiProduce(t, addr, "api-rs-a", 0, rawBatchSpec{}, rawRecord{Key: []byte("k"), Value: []byte("v0")}, rawRecord{Key: []byte("k2"), Value: []byte("v1")})

	inc := kmsg.NewPtrIncrementalAlterConfigsRequest()
	inc.Version = 1
	ir := kmsg.NewIncrementalAlterConfigsRequestResource()
	ir.ResourceType = kmsg.ConfigResourceTypeTopic
	ir.ResourceName = "api-rs-a"
	for _, kv := range [][2]string{{"retention.ms", "123456"}, {"max.message.bytes", "50000"}} {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = kv[0], kmsg.StringPtr(kv[1])
		ir.Configs = append(ir.Configs, c)
	}
	inc.Resources = append(inc.Resources, ir)
	apiWantCode(t, "IncrementalAlterConfigs", rawReq[*kmsg.IncrementalAlterConfigsResponse](t, addr, inc).Resources[0].ErrorCode, nil)

	ac := kmsg.NewPtrAlterConfigsRequest()
	ac.Version = 2
	ar := kmsg.NewAlterConfigsRequestResource()
	ar.ResourceType = kmsg.ConfigResourceTypeTopic
	ar.ResourceName = "api-rs-b"
	acc := kmsg.NewAlterConfigsRequestResourceConfig()
	acc.Name, acc.Value = "segment.ms", kmsg.StringPtr("900000")
	ar.Configs = append(ar.Configs, acc)
	ac.Resources = append(ac.Resources, ar)
	apiWantCode(t, "AlterConfigs", rawReq[*kmsg.AlterConfigsResponse](t, addr, ac).Resources[0].ErrorCode, nil)

	check := func(when string) {
		t.Helper()
		a := apiTopicConfigs(t, addr, "api-rs-a")
		apiWantConfig(t, a, "cleanup.policy", "compact", true)
		apiWantConfig(t, a, "retention.ms", "123456", true)
		apiWantConfig(t, a, "max.message.bytes", "50000", true)
		bc := apiTopicConfigs(t, addr, "api-rs-b")
		apiWantConfig(t, bc, "segment.ms", "900000", true)
		apiWantConfig(t, bc, "retention.ms", "604800000", false) // replaced by AlterConfigs
		if id := apiTopicID(t, addr, "api-rs-a"); id != idA || id == ([16]byte{}) {
			t.Fatalf("%s: api-rs-a id %x, was %x", when, id, idA)
		}
		if id := apiTopicID(t, addr, "api-rs-b"); id != idB || id == ([16]byte{}) {
			t.Fatalf("%s: api-rs-b id %x, was %x", when, id, idB)
		}
	}
	check("before restart")
	epoch0 := apiLeaderEpoch(t, addr, "api-rs-a", 0)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.Restart(ctx); err != nil {
		t.Fatalf("restart: %v\n%s", err, b.LogTail(40))
	}
	apiWaitTopic(t, addr, "api-rs-a", 2)
	apiWaitTopic(t, addr, "api-rs-b", 1)
	check("after restart")
	apiWantValues(t, "records after restart", apiFetchAll(t, addr, "api-rs-a", 0, 0), 0, "v0", "v1")

	epoch := apiLeaderEpoch(t, addr, "api-rs-a", 0)
	if epoch < epoch0 {
		t.Fatalf("leader epoch went back from %d to %d across a restart", epoch0, epoch)
	}
	if epoch == 0 {
		t.Logf("leader epoch still 0 after restart: FENCED_LEADER_EPOCH cannot be provoked on one broker")
		return
	}
	ofle := kmsg.NewPtrOffsetForLeaderEpochRequest()
	ofle.Version = 2
	ot := kmsg.NewOffsetForLeaderEpochRequestTopic()
	ot.Topic = "api-rs-a"
	op := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
	op.Partition, op.CurrentLeaderEpoch, op.LeaderEpoch = 0, epoch-1, epoch-1
	ot.Partitions = append(ot.Partitions, op)
	ofle.Topics = append(ofle.Topics, ot)
	oresp := rawReq[*kmsg.OffsetForLeaderEpochResponse](t, addr, ofle)
	apiWantCode(t, "OffsetForLeaderEpoch v2 older current epoch", oresp.Topics[0].Partitions[0].ErrorCode, kerr.FencedLeaderEpoch)
	// The old epoch's end offset is where the new one started: 2.
	op.CurrentLeaderEpoch = epoch
	ofle.Topics[0].Partitions[0] = op
	oresp = rawReq[*kmsg.OffsetForLeaderEpochResponse](t, addr, ofle)
	if p := oresp.Topics[0].Partitions[0]; p.ErrorCode != 0 || p.EndOffset != 2 {
		t.Fatalf("OffsetForLeaderEpoch v2 epoch %d: %s end %d, want end 2", epoch-1, apiCode(p.ErrorCode), p.EndOffset)
	}

	freq := rawFetchReq(12, "api-rs-a", 0, 0, 0, 0)
	freq.Topics[0].Partitions[0].CurrentLeaderEpoch = epoch - 1
	apiWantCode(t, "fetch v12 older current epoch", rawFetchPartition(t, rawReq[*kmsg.FetchResponse](t, addr, freq)).ErrorCode, kerr.FencedLeaderEpoch)
}

// TestAPICreateTopicsConcurrently creates topics from many connections at
// once and produces five records to each as soon as it accepts writes: every
// acknowledged record must keep its offset and still be there afterwards (a
// topic created in between must never make the broker drop another topic's
// partition).
func TestAPICreateTopicsConcurrently(t *testing.T) {
	b := apiStartBroker(t, "--auto.create.topics.enable=false")
	addr := b.Addr
	const n, perTopic = 32, 5
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			name := fmt.Sprintf("api-conc-%d", i)
			if err := rawCreateTopicOnce(addr, name, 1); err != nil {
				errs <- err
				return
			}
			deadline := time.Now().Add(15 * time.Second)
			for j := int64(0); j < perTopic; {
				off, err := rawProduceOnce(addr, name, 0, fmt.Sprintf("%s/%d", name, j))
				if err == nil {
					if off != j {
						errs <- fmt.Errorf("%s: record %d acknowledged at offset %d: earlier acknowledged records were lost", name, j, off)
						return
					}
					j++
					continue
				}
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("%s: record %d: %w", name, j, err)
					return
				}
				time.Sleep(20 * time.Millisecond) // retry interval while the new topic gets its leader
			}
			errs <- nil
		}()
	}
	failed := 0
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
			failed++
		}
	}
	if failed > 0 {
		return
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("api-conc-%d", i)
		want := make([]string, perTopic)
		for j := range want {
			want[j] = fmt.Sprintf("%s/%d", name, j)
		}
		if hw := apiHighWatermark(t, addr, name, 0); hw != perTopic {
			t.Errorf("%s: high watermark %d after %d acknowledged records", name, hw, perTopic)
			continue
		}
		apiWantValues(t, name, apiFetchAll(t, addr, name, 0, 0), 0, want...)
	}
}
