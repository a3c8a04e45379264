package test

// Bad input end to end (DESIGN.md invariant 7): malformed or oversized
// frames, bad record batches, unknown APIs and versions, invalid configs get
// the Kafka error code or a closed connection — never a crash, a hang or
// written data — while a healthy franz-go client keeps producing and
// consuming on the same broker.

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawHealth is a well-behaved producer and consumer of one topic.
type rawHealth struct {
	topic    string
	producer *kgo.Client
	consumer *kgo.Client
	n        int
}

func rawNewHealth(t *testing.T, addr, topic string) *rawHealth {
	t.Helper()
	return &rawHealth{
		topic:    topic,
		producer: apiKgo(t, addr, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite()), // idempotence is not what is tested here
		consumer: apiKgo(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())),
	}
}

// check produces one fresh record and consumes until it shows up.
func (h *rawHealth) check(t *testing.T) {
	t.Helper()
	h.n++
	want := fmt.Sprintf("healthy-%d", h.n)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := h.producer.ProduceSync(ctx, kgo.StringRecord(want)).FirstErr(); err != nil {
		t.Fatalf("healthy client: produce %s: %v", want, err)
	}
	for ctx.Err() == nil {
		fs := h.consumer.PollFetches(ctx)
		for _, e := range fs.Errors() {
			if e.Err != context.DeadlineExceeded && e.Err != context.Canceled {
				t.Fatalf("healthy client: fetch %s/%d: %v", e.Topic, e.Partition, e.Err)
			}
		}
		found := false
		fs.EachRecord(func(r *kgo.Record) { found = found || string(r.Value) == want })
		if found {
			return
		}
	}
	t.Fatalf("healthy client: %s produced but not consumed within 15 s", want)
}

func TestBadInput(t *testing.T) {
	b := apiStartBroker(t, "--auto.create.topics.enable=false", "--num.partitions=1")
	addr := b.Addr
	apiCreateTopic(t, addr, "bad-healthy", 1, nil)
	h := rawNewHealth(t, addr, "bad-healthy")
	h.check(t)

	// alive asserts the broker process still answers on a fresh connection.
	alive := func(t *testing.T) {
		t.Helper()
		resp := rawReq[*kmsg.ApiVersionsResponse](t, addr, kmsg.NewPtrApiVersionsRequest())
		apiWantCode(t, "ApiVersions on a fresh connection", resp.ErrorCode, nil)
		h.check(t)
	}

	t.Run("TruncatedFrame", func(t *testing.T) {
		c := rawDial(t, addr)
		frame := []byte{0, 0, 0, 100, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0}
		if err := c.write(frame); err != nil {
			t.Fatalf("write truncated frame: %v", err)
		}
		c.Close()
		alive(t)
	})

	t.Run("OversizedFrame", func(t *testing.T) {
		c := rawDial(t, addr)
		hdr := make([]byte, 4, 4+64<<10)
		binary.BigEndian.PutUint32(hdr, 200<<20) // over socket.request.max.bytes (100 MiB)
		hdr = append(hdr, make([]byte, 64<<10)...)
		_ = c.write(hdr) // the broker may close before reading it all
		c.expectClosed(5 * time.Second)
		rss, err := rawRSSBytes(b.PID())
		if err != nil {
			t.Fatalf("broker RSS: %v", err)
		}
		if rss > 300<<20 {
			t.Fatalf("broker RSS %d MiB after a 200 MiB frame header, want < 300 MiB", rss>>20)
		}
		alive(t)
	})

	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"NegativeSize", []byte{0xff, 0xff, 0xff, 0xff, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff}},
		{"ShortHeader", []byte{0, 0, 0, 3, 0, 18, 0}},
		{"GarbageHeader", []byte{0, 0, 0, 10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"ClientIDPastFrame", []byte{0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0x7f, 0xff}},
		{"UnknownAPIKey999", rawHeaderFrame(999, 0, 1, nil)},
		{"MetadataV99", rawHeaderFrame(3, 99, 1, []byte{0, 0, 0, 0})},
		{"ProduceV12Unadvertised", rawHeaderFrame(0, 12, 1, nil)},
		{"ConsumerGroupHeartbeatUnadvertised", rawHeaderFrame(68, 0, 1, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, addr)
			if err := c.write(tc.frame); err != nil {
				t.Fatalf("write: %v", err)
			}
			c.expectClosed(5 * time.Second)
			alive(t)
		})
	}

	// Bad record batches: the error code, and nothing written to the partition.
	apiCreateTopic(t, addr, "bad-batches", 1, nil)
	apiProduce(t, addr, "bad-batches", 0, rawBatchSpec{}, rawValues("good-0")...)
	five := int32(5)
	good := rawBatch(rawBatchSpec{}, rawValues("x", "y")...)
	for _, tc := range []struct {
		name  string
		batch []byte
		want  []*kerr.Error
	}{
		{"BadCRC", rawBatch(rawBatchSpec{BadCRC: true}, rawValues("x", "y")...), []*kerr.Error{kerr.CorruptMessage}},
		{"BadMagic", func() []byte { b := append([]byte(nil), good...); b[16] = 3; return b }(), []*kerr.Error{kerr.CorruptMessage, kerr.InvalidRecord}},
		{"BadRecordCount", rawBatch(rawBatchSpec{NumRecords: &five}, rawValues("x", "y")...), []*kerr.Error{kerr.CorruptMessage, kerr.InvalidRecord}},
		{"ControlBatchFromClient", rawBatch(rawBatchSpec{Attributes: 0x20}, rawValues("x")...), []*kerr.Error{kerr.CorruptMessage, kerr.InvalidRecord}},
		{"UnknownCodec", rawBatch(rawBatchSpec{Attributes: 0x07}, rawValues("x")...), []*kerr.Error{kerr.CorruptMessage, kerr.InvalidRecord, kerr.UnsupportedCompressionType}},
		{"TruncatedBatch", good[:len(good)-5], []*kerr.Error{kerr.CorruptMessage, kerr.InvalidRecord}},
		{"LengthBeyondRecords", func() []byte {
			b := append([]byte(nil), good...)
			binary.BigEndian.PutUint32(b[8:], binary.BigEndian.Uint32(b[8:])+100)
			return b
		}(), []*kerr.Error{kerr.CorruptMessage, kerr.InvalidRecord}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := apiHighWatermark(t, addr, "bad-batches", 0)
			for _, v := range []int16{3, 11} {
				resp := rawReq[*kmsg.ProduceResponse](t, addr, rawProduceReq(v, -1, "bad-batches", 0, tc.batch))
				apiWantCode(t, fmt.Sprintf("produce v%d %s", v, tc.name), rawProducePartition(t, resp).ErrorCode, tc.want...)
			}
			if after := apiHighWatermark(t, addr, "bad-batches", 0); after != before {
				t.Fatalf("%s: high watermark moved %d → %d", tc.name, before, after)
			}
			alive(t)
		})
	}
	t.Run("BatchesIntact", func(t *testing.T) {
		off := apiProduce(t, addr, "bad-batches", 0, rawBatchSpec{}, rawValues("good-1")...)
		if off != 1 {
			t.Fatalf("good batch after bad ones: offset %d, want 1", off)
		}
		apiWantValues(t, "bad-batches", apiFetchAll(t, addr, "bad-batches", 0, 0), 0, "good-0", "good-1")
	})

	t.Run("InvalidTopicConfig", func(t *testing.T) {
		for _, cfg := range []map[string]string{
			{"retention.ms": "abc"},
			{"cleanup.policy": "bogus"},
			{"max.message.bytes": "-5"},
			{"no.such.config": "1"},
		} {
			resp := rawReq[*kmsg.CreateTopicsResponse](t, addr, apiCreateTopicsReq(7, false, "bad-config", 1, 1, cfg))
			apiWantCode(t, fmt.Sprintf("CreateTopics %v", cfg), resp.Topics[0].ErrorCode, kerr.InvalidConfig)
		}
		if tp := apiFindTopic(apiMetadata(t, addr, 12, false, []string{"bad-config"}), "bad-config"); tp == nil || tp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("bad-config topic exists after invalid creates")
		}
		alive(t)
	})

	t.Run("MessageTooLarge", func(t *testing.T) {
		apiCreateTopic(t, addr, "bad-small", 1, map[string]string{"max.message.bytes": "1000"})
		resp := rawReq[*kmsg.ProduceResponse](t, addr, rawProduceReq(11, -1, "bad-small", 0,
			rawBatch(rawBatchSpec{}, rawRecord{Value: []byte(strings.Repeat("z", 2000))})))
		apiWantCode(t, "produce 2000 bytes to max.message.bytes=1000", rawProducePartition(t, resp).ErrorCode, kerr.MessageTooLarge)
		if hw := apiHighWatermark(t, addr, "bad-small", 0); hw != 0 {
			t.Fatalf("bad-small: high watermark %d after a rejected batch, want 0", hw)
		}
		if off := apiProduce(t, addr, "bad-small", 0, rawBatchSpec{}, rawRecord{Value: []byte(strings.Repeat("s", 500))}); off != 0 {
			t.Fatalf("small record: offset %d, want 0", off)
		}
		alive(t)
	})

	t.Run("FetchPastEnd", func(t *testing.T) {
		apiCreateTopic(t, addr, "bad-oor", 1, nil)
		apiProduce(t, addr, "bad-oor", 0, rawBatchSpec{}, rawValues("a", "b", "c")...)
		for _, v := range []int16{4, 12} {
			p := rawFetchPartition(t, rawReq[*kmsg.FetchResponse](t, addr, rawFetchReq(v, "bad-oor", 0, 13, 0, 0)))
			apiWantCode(t, fmt.Sprintf("fetch v%d offset 13 of 3", v), p.ErrorCode, kerr.OffsetOutOfRange)
			if p.HighWatermark != 3 {
				t.Fatalf("fetch v%d past end: high watermark %d in the response, want 3", v, p.HighWatermark)
			}
			if len(p.RecordBatches) != 0 {
				t.Fatalf("fetch v%d past end: %d bytes of records", v, len(p.RecordBatches))
			}
		}
		// At the end exactly is not out of range.
		p := rawFetchPartition(t, rawReq[*kmsg.FetchResponse](t, addr, rawFetchReq(12, "bad-oor", 0, 3, 0, 0)))
		apiWantCode(t, "fetch at the high watermark", p.ErrorCode, nil)
		alive(t)
	})

	t.Run("ProduceUnknown", func(t *testing.T) {
		for _, tc := range []struct {
			name      string
			topic     string
			partition int32
		}{
			{"unknown topic", "bad-no-such-topic", 0},
			{"unknown partition", "bad-healthy", 99},
			{"negative partition", "bad-healthy", -1},
		} {
			for _, v := range []int16{3, 11} {
				resp := rawReq[*kmsg.ProduceResponse](t, addr, rawProduceReq(v, -1, tc.topic, tc.partition, rawBatch(rawBatchSpec{}, rawValues("x")...)))
				apiWantCode(t, fmt.Sprintf("produce v%d %s", v, tc.name), rawProducePartition(t, resp).ErrorCode, kerr.UnknownTopicOrPartition)
			}
		}
		if tp := apiFindTopic(apiMetadata(t, addr, 12, false, []string{"bad-no-such-topic"}), "bad-no-such-topic"); tp == nil || tp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("produce created bad-no-such-topic with auto-creation disabled")
		}
		alive(t)
	})
}
