package test

// Shared helpers of the client, crash and restart tests. Every name here is
// prefixed with "client" so it cannot collide with other files of this
// package.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratabroker/strata/internal/harness"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// clientStartBroker starts a broker with an embedded etcd in a fresh
// t.TempDir() on free ports; extra flags are appended.
func clientStartBroker(t *testing.T, args ...string) *harness.Broker {
	t.Helper()
	return harness.StartT(t, harness.BrokerConfig{
		DataDir:  filepath.Join(t.TempDir(), "broker1"),
		BrokerID: 1,
		Args:     args,
	})
}

// clientKgo returns a franz-go client for addr, closed on cleanup.
func clientKgo(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	base := []kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.RetryTimeout(15 * time.Second),
		kgo.RequestTimeoutOverhead(5 * time.Second),
		kgo.MetadataMinAge(100 * time.Millisecond),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// clientCtx returns a context bounded by d, cancelled on cleanup.
func clientCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// clientCreateTopic creates topic with the given partition count and
// configs (replication factor 1) and fails the test on any error.
func clientCreateTopic(t *testing.T, cl *kgo.Client, topic string, partitions int32, configs map[string]*string) kadm.CreateTopicResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, configs, topic)
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if resp.Err != nil {
		t.Fatalf("create topic %s: %v (%s)", topic, resp.Err, resp.ErrMessage)
	}
	if resp.ID == [16]byte{} {
		t.Errorf("create topic %s: zero topic id", topic)
	}
	return resp
}

// clientEndOffsets returns the high watermark of every partition of topic.
func clientEndOffsets(t *testing.T, cl *kgo.Client, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	if err := listed.Error(); err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	if len(out) == 0 {
		t.Fatalf("list end offsets of %s: no partitions", topic)
	}
	return out
}

// clientConsumeAll reads every partition of topic from offset 0 up to the
// given end offsets (exclusive) with a fresh franz-go consumer and returns
// the records per partition in the order received. It fails the test if the
// ends are not reached within d.
func clientConsumeAll(t *testing.T, addr, topic string, ends map[int32]int64, d time.Duration) map[int32][]*kgo.Record {
	t.Helper()
	parts := map[int32]kgo.Offset{}
	for p, end := range ends {
		if end > 0 {
			parts[p] = kgo.NewOffset().At(0)
		}
	}
	out := map[int32][]*kgo.Record{}
	if len(parts) == 0 {
		return out
	}
	cl := clientKgo(t, addr,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := func() bool {
		for p, end := range ends {
			rs := out[p]
			if end > 0 && (len(rs) == 0 || rs[len(rs)-1].Offset < end-1) {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			got := map[int32]int{}
			for p, rs := range out {
				got[p] = len(rs)
			}
			t.Fatalf("consume %s: ends %v not reached in %v; got counts %v", topic, ends, d, got)
		}
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				t.Errorf("consume %s/%d: %v", tp, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { out[r.Partition] = append(out[r.Partition], r) })
	}
	return out
}

// clientBatch is one record batch (magic 2) as stored by the broker.
type clientBatch struct {
	BaseOffset      int64
	LastOffsetDelta int32
	Attributes      int16
	RecordCount     int32
	Magic           int8
	CRCValid        bool
}

// Codec returns the compression codec id (attributes bits 0–2).
func (b clientBatch) Codec() int8 { return int8(b.Attributes & 0x7) }

// LastOffset is the offset of the batch's last record.
func (b clientBatch) LastOffset() int64 { return b.BaseOffset + int64(b.LastOffsetDelta) }

var clientCastagnoli = crc32.MakeTable(crc32.Castagnoli)

// clientParseBatches parses the record batches in a fetch response's record
// set. A truncated final batch (allowed by the protocol) is ignored; a
// batch whose header is malformed is an error.
//
//	 0 base offset i64 | 8 batch length i32 | 12 leader epoch i32 | 16 magic i8
//	17 crc u32 | 21 attributes i16 | 23 last offset delta i32 | 27 base ts i64
//	35 max ts i64 | 43 producer id i64 | 51 producer epoch i16 | 53 base seq i32
//	57 record count i32 | 61 records…   (crc = CRC32C of bytes 21..end)
func clientParseBatches(raw []byte) ([]clientBatch, error) {
	var out []clientBatch
	for len(raw) >= 12 {
		length := int32(binary.BigEndian.Uint32(raw[8:]))
		if length < 49 {
			return out, fmt.Errorf("batch at offset %d: length %d below header size", int64(binary.BigEndian.Uint64(raw)), length)
		}
		total := 12 + int(length)
		if total > len(raw) {
			break // truncated tail
		}
		b := raw[:total]
		raw = raw[total:]
		cb := clientBatch{
			BaseOffset:      int64(binary.BigEndian.Uint64(b[0:])),
			Magic:           int8(b[16]),
			Attributes:      int16(binary.BigEndian.Uint16(b[21:])),
			LastOffsetDelta: int32(binary.BigEndian.Uint32(b[23:])),
			RecordCount:     int32(binary.BigEndian.Uint32(b[57:])),
		}
		cb.CRCValid = crc32.Checksum(b[21:], clientCastagnoli) == binary.BigEndian.Uint32(b[17:])
		out = append(out, cb)
	}
	return out, nil
}

// clientFetchRawBatches fetches partition p of topic from offset 0 up to
// its high watermark with raw Fetch requests and returns every batch. It
// fails the test on a fetch error, a malformed batch, or no progress.
func clientFetchRawBatches(t *testing.T, cl *kgo.Client, topic string, p int32) (batches []clientBatch, hwm int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Fetch v13+ addresses topics by id, older versions by name: set both.
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil || td[topic].Err != nil {
		t.Fatalf("raw fetch %s: look up topic id: %v %v", topic, err, td[topic].Err)
	}
	topicID := td[topic].ID
	next := int64(0)
	for i := 0; i < 100000; i++ {
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis = 100
		req.MinBytes = 1
		req.MaxBytes = 8 << 20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rt.TopicID = topicID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = p
		rp.FetchOffset = next
		rp.PartitionMaxBytes = 4 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("raw fetch %s/%d at %d: %v", topic, p, next, err)
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			t.Fatalf("raw fetch %s/%d at %d: top-level %v", topic, p, next, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("raw fetch %s/%d: response has %d topics", topic, p, len(resp.Topics))
		}
		rpart := resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(rpart.ErrorCode); err != nil {
			t.Fatalf("raw fetch %s/%d at %d: %v", topic, p, next, err)
		}
		hwm = rpart.HighWatermark
		if next >= hwm {
			return batches, hwm
		}
		got, err := clientParseBatches(rpart.RecordBatches)
		if err != nil {
			t.Fatalf("raw fetch %s/%d at %d: %v", topic, p, next, err)
		}
		if len(got) == 0 {
			t.Fatalf("raw fetch %s/%d at %d below high watermark %d: no complete batch (%d bytes)", topic, p, next, hwm, len(rpart.RecordBatches))
		}
		for _, b := range got {
			if b.LastOffset() < next {
				continue // a batch that starts before the fetch offset
			}
			batches = append(batches, b)
			next = b.LastOffset() + 1
		}
	}
	t.Fatalf("raw fetch %s/%d: too many rounds", topic, p)
	return nil, 0
}

// clientCheckBatches asserts that batches are magic 2, have valid CRCs,
// record counts matching their offset deltas, and cover offsets 0..hwm-1
// densely and in order.
func clientCheckBatches(t *testing.T, name string, batches []clientBatch, hwm int64) {
	t.Helper()
	next := int64(0)
	for i, b := range batches {
		if b.Magic != 2 {
			t.Errorf("%s: batch %d (base %d): magic %d, want 2", name, i, b.BaseOffset, b.Magic)
		}
		if !b.CRCValid {
			t.Errorf("%s: batch %d (base %d): CRC32C mismatch", name, i, b.BaseOffset)
		}
		if b.RecordCount != b.LastOffsetDelta+1 {
			t.Errorf("%s: batch %d (base %d): %d records but last offset delta %d", name, i, b.BaseOffset, b.RecordCount, b.LastOffsetDelta)
		}
		if b.BaseOffset != next {
			t.Errorf("%s: batch %d: base offset %d, want %d (offsets not dense)", name, i, b.BaseOffset, next)
		}
		next = b.LastOffset() + 1
	}
	if next != hwm {
		t.Errorf("%s: batches end at %d, high watermark %d", name, next, hwm)
	}
}

// clientEventually polls cond every 50 ms until it holds or d passes; on
// timeout it fails the test with what and cond's last status.
func clientEventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, status := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", d, what, status)
		}
		<-tick.C
	}
}
