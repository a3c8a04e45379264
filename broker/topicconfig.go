package broker

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// ErrInvalidConfig marks a topic config that Kafka would refuse with
// INVALID_CONFIG.
var ErrInvalidConfig = errors.New("broker: invalid config")

// Config types as DescribeConfigs v3+ reports them.
const (
	cfgBoolean int8 = 1
	cfgString  int8 = 2
	cfgInt     int8 = 3
	cfgLong    int8 = 5
	cfgList    int8 = 7
)

// topicConfigDef describes one topic config: its Kafka name and type, the
// broker setting that supplies its default, and how values are checked.
type topicConfigDef struct {
	name    string
	typ     int8
	broker  string // broker setting that provides the default ("" = fixed default)
	fixed   string // default when broker == ""
	doc     string
	check   func(string) error
	convert func(string) string // broker value → topic value (e.g. hours → ms); nil = same
}

var topicConfigDefs = func() map[string]topicConfigDef {
	defs := []topicConfigDef{
		{name: "cleanup.policy", typ: cfgList, fixed: "delete", doc: "delete, compact, or both (compaction is not performed yet: compacted topics keep all data)", check: listOf("delete", "compact")},
		{name: "compression.type", typ: cfgString, fixed: "producer", doc: "Strata stores batches exactly as produced; only producer is supported", check: oneOf("producer")},
		{name: "delete.retention.ms", typ: cfgLong, fixed: "86400000", doc: "how long delete tombstones are kept (compacted topics)", check: intRange(0, math.MaxInt64)},
		{name: "file.delete.delay.ms", typ: cfgLong, fixed: "60000", doc: "accepted for compatibility", check: intRange(0, math.MaxInt64)},
		{name: "flush.messages", typ: cfgLong, broker: "log.flush.interval.messages", doc: "fsync after this many messages", check: intRange(1, math.MaxInt64)},
		{name: "flush.ms", typ: cfgLong, broker: "log.flush.interval.ms", doc: "fsync when the oldest unflushed write is this old", check: intRange(-1, math.MaxInt64),
			convert: func(v string) string {
				if v == "-1" {
					return strconv.FormatInt(math.MaxInt64, 10)
				}
				return v
			}},
		{name: "index.interval.bytes", typ: cfgInt, broker: "log.index.interval.bytes", doc: "bytes between sparse index entries", check: intRange(0, math.MaxInt32)},
		{name: "local.retention.bytes", typ: cfgLong, broker: "log.local.retention.bytes", doc: "bytes kept on local disk when tiered; -2 = retention.bytes", check: intRange(-2, math.MaxInt64)},
		{name: "local.retention.ms", typ: cfgLong, broker: "log.local.retention.ms", doc: "time kept on local disk when tiered; -2 = retention.ms", check: intRange(-2, math.MaxInt64)},
		{name: "max.compaction.lag.ms", typ: cfgLong, fixed: strconv.FormatInt(math.MaxInt64, 10), doc: "accepted for compatibility", check: intRange(1, math.MaxInt64)},
		{name: "max.message.bytes", typ: cfgInt, broker: "message.max.bytes", doc: "largest record batch accepted", check: intRange(0, math.MaxInt32)},
		{name: "message.timestamp.type", typ: cfgString, broker: "log.message.timestamp.type", doc: "CreateTime or LogAppendTime", check: oneOf("CreateTime", "LogAppendTime")},
		{name: "min.cleanable.dirty.ratio", typ: cfgString, fixed: "0.5", doc: "accepted for compatibility", check: isRatio},
		{name: "min.compaction.lag.ms", typ: cfgLong, fixed: "0", doc: "accepted for compatibility", check: intRange(0, math.MaxInt64)},
		{name: "min.insync.replicas", typ: cfgInt, broker: "min.insync.replicas", doc: "replicas that must have a write before acks=all succeeds", check: intRange(1, math.MaxInt32)},
		{name: "remote.storage.enable", typ: cfgBoolean, fixed: "false", doc: "upload sealed segments to the remote tier", check: isBool},
		{name: "retention.bytes", typ: cfgLong, broker: "log.retention.bytes", doc: "bytes kept per partition over all tiers; -1 = unlimited", check: intRange(-1, math.MaxInt64)},
		{name: "retention.ms", typ: cfgLong, broker: "log.retention.ms", doc: "time kept over all tiers; -1 = forever", check: intRange(-1, math.MaxInt64)},
		{name: "segment.bytes", typ: cfgInt, broker: "log.segment.bytes", doc: "segment size", check: intRange(14, math.MaxInt32)},
		{name: "segment.index.bytes", typ: cfgInt, broker: "log.index.size.max.bytes", doc: "size of a segment's offset index", check: intRange(4096, math.MaxInt32)},
		{name: "segment.jitter.ms", typ: cfgLong, fixed: "0", doc: "accepted for compatibility", check: intRange(0, math.MaxInt64)},
		{name: "segment.ms", typ: cfgLong, broker: "log.roll.ms", doc: "roll a segment when its first record is this old", check: intRange(1, math.MaxInt64)},
		{name: "unclean.leader.election.enable", typ: cfgBoolean, broker: "unclean.leader.election.enable", doc: "elect an out-of-sync replica when no in-sync one is left", check: isBool},
	}
	m := make(map[string]topicConfigDef, len(defs))
	for _, d := range defs {
		m[d.name] = d
	}
	return m
}()

// topicConfigNames is the sorted list of supported topic configs.
var topicConfigNames = func() []string {
	var names []string
	for n := range topicConfigDefs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}()

// brokerDefault returns the value a topic config takes when the topic does
// not override it.
func (d topicConfigDef) brokerDefault(bc BrokerConfig) string {
	if d.broker == "" {
		return d.fixed
	}
	switch d.broker {
	case "log.retention.ms":
		return strconv.FormatInt(bc.RetentionMs, 10)
	case "log.roll.ms":
		return strconv.FormatInt(bc.SegmentMs, 10)
	}
	v, _ := bc.Raw(d.broker)
	if d.convert != nil {
		v = d.convert(v)
	}
	return v
}

// TopicConfig is the resolved, typed configuration of one topic.
type TopicConfig struct {
	CleanupPolicy         []string
	Compact               bool
	FlushMessages         int64
	FlushMs               int64
	IndexIntervalBytes    int
	LocalRetentionBytes   int64
	LocalRetentionMs      int64
	MaxMessageBytes       int32
	LogAppendTime         bool
	MinInsyncReplicas     int16
	RemoteStorage         bool
	RetentionBytes        int64
	RetentionMs           int64
	SegmentBytes          int64
	SegmentIndexBytes     int
	SegmentMs             int64
	UncleanLeaderElection bool
}

// ValidateTopicConfigs checks topic overrides: every name known, every value
// well formed, and the cross-config rules Kafka applies. The error wraps
// ErrInvalidConfig and names the offending config.
func ValidateTopicConfigs(overrides map[string]string, bc BrokerConfig) error {
	tc, err := ResolveTopicConfig(overrides, bc)
	if err == nil && tc.RemoteStorage && !bc.RemoteTier {
		err = fmt.Errorf("%w: remote.storage.enable=true needs a remote tier: start the broker with --remote", ErrInvalidConfig)
	}
	return err
}

// validateTopicChange applies the rules on changing a topic's configs from
// cur to next beyond those on next alone: tiering, once on, stays on (the
// remote tier's data would become unreadable; as in Kafka before KIP-950).
func validateTopicChange(cur, next map[string]string, bc BrokerConfig) error {
	was, err1 := ResolveTopicConfig(cur, bc)
	now, err2 := ResolveTopicConfig(next, bc)
	if err1 == nil && err2 == nil && was.RemoteStorage && !now.RemoteStorage {
		return fmt.Errorf("%w: remote.storage.enable cannot be turned off once enabled (AlterConfigs replaces every config: include remote.storage.enable=true); delete the topic instead", ErrInvalidConfig)
	}
	return nil
}

// ResolveTopicConfig merges overrides over the broker defaults.
func ResolveTopicConfig(overrides map[string]string, bc BrokerConfig) (TopicConfig, error) {
	eff := make(map[string]string, len(topicConfigDefs))
	for name, d := range topicConfigDefs {
		eff[name] = d.brokerDefault(bc)
	}
	for k, v := range overrides {
		d, ok := topicConfigDefs[k]
		if !ok {
			return TopicConfig{}, fmt.Errorf("%w: unknown topic config name %q", ErrInvalidConfig, k)
		}
		v = strings.TrimSpace(v)
		if err := d.check(v); err != nil {
			return TopicConfig{}, fmt.Errorf("%w: %s=%q: %v", ErrInvalidConfig, k, v, err)
		}
		eff[k] = v
	}
	i64 := func(k string) int64 { n, _ := strconv.ParseInt(eff[k], 10, 64); return n }
	b := func(k string) bool { v, _ := strconv.ParseBool(eff[k]); return v }
	tc := TopicConfig{
		CleanupPolicy:         splitList(eff["cleanup.policy"]),
		FlushMessages:         i64("flush.messages"),
		FlushMs:               i64("flush.ms"),
		IndexIntervalBytes:    int(i64("index.interval.bytes")),
		LocalRetentionBytes:   i64("local.retention.bytes"),
		LocalRetentionMs:      i64("local.retention.ms"),
		MaxMessageBytes:       int32(i64("max.message.bytes")),
		LogAppendTime:         eff["message.timestamp.type"] == "LogAppendTime",
		MinInsyncReplicas:     int16(min(i64("min.insync.replicas"), math.MaxInt16)),
		RemoteStorage:         b("remote.storage.enable"),
		RetentionBytes:        i64("retention.bytes"),
		RetentionMs:           i64("retention.ms"),
		SegmentBytes:          i64("segment.bytes"),
		SegmentIndexBytes:     int(i64("segment.index.bytes")),
		SegmentMs:             i64("segment.ms"),
		UncleanLeaderElection: b("unclean.leader.election.enable"),
	}
	for _, p := range tc.CleanupPolicy {
		if p == "compact" {
			tc.Compact = true
		}
	}
	// Kafka's rules for tiered storage (KIP-405): local retention must not
	// exceed the total, -1 locally needs an infinite total, and compacted
	// topics cannot be tiered.
	if tc.RemoteStorage && tc.Compact {
		return TopicConfig{}, fmt.Errorf("%w: remote.storage.enable=true is not allowed with cleanup.policy=compact", ErrInvalidConfig)
	}
	if err := checkLocalRetention("local.retention.ms", tc.LocalRetentionMs, "retention.ms", tc.RetentionMs); err != nil {
		return TopicConfig{}, err
	}
	if err := checkLocalRetention("local.retention.bytes", tc.LocalRetentionBytes, "retention.bytes", tc.RetentionBytes); err != nil {
		return TopicConfig{}, err
	}
	if tc.LocalRetentionMs == -2 {
		tc.LocalRetentionMs = tc.RetentionMs
	}
	if tc.LocalRetentionBytes == -2 {
		tc.LocalRetentionBytes = tc.RetentionBytes
	}
	return tc, nil
}

func checkLocalRetention(local string, lv int64, total string, tv int64) error {
	switch {
	case lv == -2:
		return nil
	case lv == -1 && tv != -1:
		return fmt.Errorf("%w: %s=-1 (unlimited) needs %s=-1, have %d", ErrInvalidConfig, local, total, tv)
	case tv != -1 && lv > tv:
		return fmt.Errorf("%w: %s=%d must not exceed %s=%d", ErrInvalidConfig, local, lv, total, tv)
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func listOf(vals ...string) func(string) error {
	return func(v string) error {
		parts := splitList(v)
		if len(parts) == 0 {
			return fmt.Errorf("must list at least one of %s", strings.Join(vals, ", "))
		}
		for _, p := range parts {
			if err := oneOf(vals...)(p); err != nil {
				return err
			}
		}
		return nil
	}
}

func isRatio(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1 {
		return fmt.Errorf("must be a number in [0, 1]")
	}
	return nil
}
