package broker

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Setting describes one broker-level setting. Names are Kafka's broker
// config names wherever Kafka has one, so operators can carry their
// server.properties knowledge over; the binary exposes each as a flag
// (--name=value), an environment variable (STRATA_NAME_WITH_UNDERSCORES)
// and a key in the optional properties file.
type Setting struct {
	Name    string
	Default string
	Doc     string
	check   func(string) error
}

// Settings is the table of broker settings, sorted by name.
var Settings = sortSettings([]Setting{
	{"auto.create.topics.enable", "true", "create a topic when a client asks for metadata of, or produces to, an unknown topic", isBool},
	{"broker.rack", "", "rack of this broker (for rack-aware replica placement)", nil},
	{"default.replication.factor", "1", "replication factor of automatically created topics and of CreateTopics with -1", intRange(1, 32767)},
	{"group.initial.rebalance.delay.ms", "3000", "how long a new group waits for more members before its first rebalance completes", intRange(0, math.MaxInt32)},
	{"group.max.session.timeout.ms", "1800000", "largest session timeout a group member may ask for", intRange(1, math.MaxInt32)},
	{"group.min.session.timeout.ms", "6000", "smallest session timeout a group member may ask for", intRange(1, math.MaxInt32)},
	{"offsets.retention.check.interval.ms", "600000", "how often offsets of empty groups are checked for expiry", intRange(1, math.MaxInt64)},
	{"offsets.retention.minutes", "10080", "committed offsets of a group are deleted once it has been empty this long", intRange(1, math.MaxInt32)},
	{"log.flush.group.commit", "false", "fsync before acknowledging produce requests; concurrent producers share one fsync (opt-in durability against machine crashes)", isBool},
	{"log.flush.interval.messages", strconv.FormatInt(math.MaxInt64, 10), "fsync a partition after this many messages (default: never, rely on the page cache and replication, like Kafka)", intRange(1, math.MaxInt64)},
	{"log.flush.interval.ms", "-1", "fsync a partition when its oldest unflushed write is this old; -1 = never", intRange(-1, math.MaxInt64)},
	{"log.index.interval.bytes", "4096", "bytes of log between two sparse index entries", intRange(0, math.MaxInt32)},
	{"log.index.size.max.bytes", "10485760", "maximum size of one offset index (a segment rolls when it is full)", intRange(4096, math.MaxInt32)},
	{"log.local.retention.bytes", "-2", "default local.retention.bytes of tiered topics; -2 = same as retention.bytes", intRange(-2, math.MaxInt64)},
	{"log.local.retention.ms", "-2", "default local.retention.ms of tiered topics; -2 = same as retention.ms", intRange(-2, math.MaxInt64)},
	{"log.message.timestamp.type", "CreateTime", "default message.timestamp.type (CreateTime or LogAppendTime)", oneOf("CreateTime", "LogAppendTime")},
	{"log.retention.bytes", "-1", "default retention.bytes; -1 = unlimited", intRange(-1, math.MaxInt64)},
	{"log.retention.check.interval.ms", "300000", "how often retention is enforced", intRange(1, math.MaxInt64)},
	{"log.retention.hours", "168", "default retention in hours (used when log.retention.ms is not set)", intRange(-1, math.MaxInt32)},
	{"log.retention.ms", "", "default retention.ms; overrides log.retention.hours; -1 = forever", optional(intRange(-1, math.MaxInt64))},
	{"log.roll.hours", "168", "default segment.ms in hours (used when log.roll.ms is not set)", intRange(1, math.MaxInt32)},
	{"log.roll.ms", "", "default segment.ms; overrides log.roll.hours", optional(intRange(1, math.MaxInt64))},
	{"log.segment.bytes", "1073741824", "default segment.bytes", intRange(14, math.MaxInt32)},
	{"message.max.bytes", "1048588", "default max.message.bytes: the largest record batch a topic accepts", intRange(0, math.MaxInt32)},
	{"min.insync.replicas", "1", "default min.insync.replicas", intRange(1, 32767)},
	{"num.partitions", "1", "partitions of automatically created topics and of CreateTopics with -1", intRange(1, 1000000)},
	{"log.remote.storage.enable", "true", "default remote.storage.enable of new topics when the broker has a remote tier (--remote): object-store first", isBool},
	{"num.replica.fetchers", "1", "replica fetcher goroutines (each with its own connection) per leader broker", intRange(1, 64)},
	{"replica.fetch.max.bytes", "1048576", "bytes a follower asks for per partition in one fetch (the first batch comes whole even when larger)", intRange(1024, math.MaxInt32)},
	{"replica.fetch.min.bytes", "1", "bytes a follower fetch waits for before the leader answers", intRange(1, math.MaxInt32)},
	{"replica.fetch.wait.max.ms", "500", "longest a follower fetch waits at the leader for data", intRange(1, math.MaxInt32)},
	{"replica.lag.time.max.ms", "30000", "a follower that has not caught up with the leader's log end for this long leaves the ISR", intRange(1, math.MaxInt32)},
	{"remote.fetch.max.wait.ms", "500", "longest a fetch waits for remote (cold) reads before answering without them", intRange(1, math.MaxInt32)},
	{"remote.log.chunk.cache.size.bytes", "268435456", "bound of the chunk cache of remote segment data", intRange(1<<20, math.MaxInt64)},
	{"producer.id.expiration.ms", "86400000", "an idempotent producer idle this long is forgotten by each partition (its next batch not at sequence 0 gets UNKNOWN_PRODUCER_ID); -1 never", intRange(-1, math.MaxInt64)},
	{"remote.log.chunk.cache.type", "memory", "where cached remote chunks live: memory, or disk (files under <data-dir>/remote-cache, emptied at start)", oneOf("memory", "disk")},
	{"remote.log.chunk.size.bytes", "8388608", "size of one ranged GET of remote segment data", intRange(64<<10, 1<<30)},
	{"remote.log.index.file.cache.total.size.bytes", "67108864", "memory cache of remote manifests and indexes", intRange(1<<20, math.MaxInt64)},
	{"remote.log.manager.copier.thread.pool.size", "10", "partitions uploading segments at once", intRange(1, 1024)},
	{"remote.log.manager.copy.max.bytes.per.second", "-1", "upload rate limit of the whole broker; -1 = unlimited", intRange(-1, math.MaxInt64)},
	{"remote.log.manager.task.interval.ms", "30000", "how often each tiered partition uploads sealed segments and applies remote retention", intRange(10, math.MaxInt32)},
	{"remote.log.prefetch.chunks", "2", "chunks read ahead for a sequential cold reader", intRange(0, 64)},
	{"remote.log.reader.threads", "16", "concurrent remote GETs (cold reads and prefetch)", intRange(1, 1024)},
	{"socket.request.max.bytes", "104857600", "largest request frame accepted; larger frames close the connection before any allocation", intRange(1024, math.MaxInt32)},
	{"unclean.leader.election.enable", "false", "default unclean.leader.election.enable", isBool},
})

func sortSettings(s []Setting) []Setting {
	sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	return s
}

// BrokerConfig holds the typed broker settings.
type BrokerConfig struct {
	AutoCreateTopics            bool
	Rack                        string
	DefaultReplicationFactor    int16
	GroupCommit                 bool
	ProducerIDExpirationMs      int64
	FlushIntervalMessages       int64
	FlushIntervalMs             int64
	IndexIntervalBytes          int
	IndexSizeMaxBytes           int
	LocalRetentionBytes         int64
	LocalRetentionMs            int64
	MessageTimestampType        string
	RetentionBytes              int64
	RetentionCheckInterval      time.Duration
	RetentionMs                 int64
	SegmentMs                   int64
	SegmentBytes                int64
	MessageMaxBytes             int32
	MinInsyncReplicas           int16
	NumPartitions               int32
	SocketRequestMaxBytes       int32
	UncleanLeaderElectionEnable bool
	GroupInitialRebalanceDelay  time.Duration
	GroupMinSessionTimeout      time.Duration
	GroupMaxSessionTimeout      time.Duration
	OffsetsRetention            time.Duration
	OffsetsRetentionCheck       time.Duration
	RemoteTier                  bool // the broker has a remote tier (--remote); set by the wiring, not a setting
	RemoteStorageDefault        bool
	RemoteFetchMaxWait          time.Duration
	RemoteChunkCacheBytes       int64
	RemoteChunkCacheMemory      bool
	RemoteChunkBytes            int64
	RemoteIndexCacheBytes       int64
	RemoteCopyConcurrency       int
	RemoteCopyBytesPerSecond    int64
	RemoteTaskInterval          time.Duration
	RemotePrefetchChunks        int
	RemoteReaderThreads         int
	NumReplicaFetchers          int
	ReplicaFetchMaxBytes        int32
	ReplicaFetchMinBytes        int32
	ReplicaFetchWaitMax         time.Duration
	ReplicaLagTimeMax           time.Duration

	raw map[string]string
}

// ParseBrokerConfig validates values (by setting name) over the defaults.
// Unknown names are an error: a typo must not silently fall back.
func ParseBrokerConfig(values map[string]string) (BrokerConfig, error) {
	raw := make(map[string]string, len(Settings))
	known := make(map[string]Setting, len(Settings))
	for _, s := range Settings {
		raw[s.Name] = s.Default
		known[s.Name] = s
	}
	for k, v := range values {
		s, ok := known[k]
		if !ok {
			return BrokerConfig{}, fmt.Errorf("unknown broker setting %q", k)
		}
		v = strings.TrimSpace(v)
		if s.check != nil {
			if err := s.check(v); err != nil {
				return BrokerConfig{}, fmt.Errorf("broker setting %s=%q: %w", k, v, err)
			}
		}
		raw[k] = v
	}
	i64 := func(k string) int64 { n, _ := strconv.ParseInt(raw[k], 10, 64); return n }
	b := func(k string) bool { v, _ := strconv.ParseBool(raw[k]); return v }
	c := BrokerConfig{
		AutoCreateTopics:            b("auto.create.topics.enable"),
		Rack:                        raw["broker.rack"],
		DefaultReplicationFactor:    int16(i64("default.replication.factor")),
		GroupCommit:                 b("log.flush.group.commit"),
		ProducerIDExpirationMs:      i64("producer.id.expiration.ms"),
		FlushIntervalMessages:       i64("log.flush.interval.messages"),
		FlushIntervalMs:             i64("log.flush.interval.ms"),
		IndexIntervalBytes:          int(i64("log.index.interval.bytes")),
		IndexSizeMaxBytes:           int(i64("log.index.size.max.bytes")),
		LocalRetentionBytes:         i64("log.local.retention.bytes"),
		LocalRetentionMs:            i64("log.local.retention.ms"),
		MessageTimestampType:        raw["log.message.timestamp.type"],
		RetentionBytes:              i64("log.retention.bytes"),
		RetentionCheckInterval:      time.Duration(i64("log.retention.check.interval.ms")) * time.Millisecond,
		RetentionMs:                 i64("log.retention.hours") * 3600 * 1000,
		SegmentMs:                   i64("log.roll.hours") * 3600 * 1000,
		SegmentBytes:                i64("log.segment.bytes"),
		MessageMaxBytes:             int32(i64("message.max.bytes")),
		MinInsyncReplicas:           int16(i64("min.insync.replicas")),
		NumPartitions:               int32(i64("num.partitions")),
		SocketRequestMaxBytes:       int32(i64("socket.request.max.bytes")),
		UncleanLeaderElectionEnable: b("unclean.leader.election.enable"),
		GroupInitialRebalanceDelay:  time.Duration(i64("group.initial.rebalance.delay.ms")) * time.Millisecond,
		GroupMinSessionTimeout:      time.Duration(i64("group.min.session.timeout.ms")) * time.Millisecond,
		GroupMaxSessionTimeout:      time.Duration(i64("group.max.session.timeout.ms")) * time.Millisecond,
		OffsetsRetention:            time.Duration(i64("offsets.retention.minutes")) * time.Minute,
		OffsetsRetentionCheck:       time.Duration(i64("offsets.retention.check.interval.ms")) * time.Millisecond,
		RemoteStorageDefault:        b("log.remote.storage.enable"),
		RemoteFetchMaxWait:          time.Duration(i64("remote.fetch.max.wait.ms")) * time.Millisecond,
		RemoteChunkCacheBytes:       i64("remote.log.chunk.cache.size.bytes"),
		RemoteChunkCacheMemory:      raw["remote.log.chunk.cache.type"] == "memory",
		RemoteChunkBytes:            i64("remote.log.chunk.size.bytes"),
		RemoteIndexCacheBytes:       i64("remote.log.index.file.cache.total.size.bytes"),
		RemoteCopyConcurrency:       int(i64("remote.log.manager.copier.thread.pool.size")),
		RemoteCopyBytesPerSecond:    i64("remote.log.manager.copy.max.bytes.per.second"),
		RemoteTaskInterval:          time.Duration(i64("remote.log.manager.task.interval.ms")) * time.Millisecond,
		RemotePrefetchChunks:        int(i64("remote.log.prefetch.chunks")),
		RemoteReaderThreads:         int(i64("remote.log.reader.threads")),
		NumReplicaFetchers:          int(i64("num.replica.fetchers")),
		ReplicaFetchMaxBytes:        int32(i64("replica.fetch.max.bytes")),
		ReplicaFetchMinBytes:        int32(i64("replica.fetch.min.bytes")),
		ReplicaFetchWaitMax:         time.Duration(i64("replica.fetch.wait.max.ms")) * time.Millisecond,
		ReplicaLagTimeMax:           time.Duration(i64("replica.lag.time.max.ms")) * time.Millisecond,
		raw:                         raw,
	}
	if raw["log.retention.hours"] == "-1" {
		c.RetentionMs = -1
	}
	if raw["log.retention.ms"] != "" {
		c.RetentionMs = i64("log.retention.ms")
	}
	if raw["log.roll.ms"] != "" {
		c.SegmentMs = i64("log.roll.ms")
	}
	return c, nil
}

// Raw returns the effective string value of a setting.
func (c BrokerConfig) Raw(name string) (string, bool) {
	v, ok := c.raw[name]
	return v, ok
}

func isBool(v string) error {
	if _, err := strconv.ParseBool(v); err != nil {
		return fmt.Errorf("not a boolean")
	}
	return nil
}

func intRange(lo, hi int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer")
		}
		if n < lo || n > hi {
			return fmt.Errorf("must be in [%d, %d]", lo, hi)
		}
		return nil
	}
}

func optional(f func(string) error) func(string) error {
	return func(v string) error {
		if v == "" {
			return nil
		}
		return f(v)
	}
}

func oneOf(vals ...string) func(string) error {
	return func(v string) error {
		for _, x := range vals {
			if v == x {
				return nil
			}
		}
		return fmt.Errorf("must be one of %s", strings.Join(vals, ", "))
	}
}
