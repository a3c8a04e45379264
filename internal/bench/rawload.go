package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/kafkaproto"
)

// The P1 load generator. P1 measures what one broker stores per second;
// on a 2-core machine a franz-go producer building, and for P1-lz4
// compressing, every batch in the same run takes as much CPU as the broker
// and P1 ends up measuring the generator. So P1 builds its batches once, as
// a client would (1 KiB records, 1 MiB of them per batch, compressed with
// the run's codec, non-idempotent), and sends them again and again in
// Produce requests (acks=1, one batch per partition), rawInFlight requests
// in flight per client connection, through franz-go's request API. The
// broker does exactly the work a real client's batches cost it: it
// validates each batch (CRC, records, codec), stamps its offsets and
// appends it — never decompressing it.

// FigWireMBps: P1's stored (on-the-wire, compressed) MB/s beside mb_s,
// which counts record value bytes.
const FigWireMBps = "wire_mb_s"

const (
	// rawBatchBytes bounds a batch's record value bytes: with the records'
	// framing the whole uncompressed batch stays under max.message.bytes
	// (1 MiB + 12), as franz-go's 1 MiB batches do.
	rawBatchBytes = 1000 << 10
	rawBatches    = 8 // distinct batches per codec
	rawInFlight   = 4 // requests in flight per client
)

// rawBatch is one prebuilt batch and the value bytes it carries.
type rawBatch struct {
	b      []byte
	values int64
}

// buildRawBatches builds rawBatches batches of recs (cycling through them)
// compressed with codec ("none" or "lz4").
func buildRawBatches(recs [][]byte, codec string) ([]rawBatch, error) {
	c := kafkaproto.CodecNone
	switch codec {
	case "none":
	case "lz4":
		c = kafkaproto.CodecLZ4
	default:
		return nil, fmt.Errorf("bench: unknown codec %q", codec)
	}
	if len(recs) == 0 {
		return nil, errors.New("bench: no records to build batches of")
	}
	now := time.Now().UnixMilli()
	out := make([]rawBatch, 0, rawBatches)
	next := 0
	for range rawBatches {
		var rs []kafkaproto.Record
		var values int64
		for {
			v := recs[next%len(recs)]
			if values+int64(len(v)) > rawBatchBytes && len(rs) > 0 {
				break
			}
			next++
			rs = append(rs, kafkaproto.Record{OffsetDelta: int32(len(rs)), Value: v})
			values += int64(len(v))
		}
		b, err := kafkaproto.BuildBatch(kafkaproto.BatchHeader{
			BaseTimestamp: now, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
		}, rs, c)
		if err != nil {
			return nil, err
		}
		out = append(out, rawBatch{b: b, values: values})
	}
	return out, nil
}

// measureProduceRaw is measureProduce with the prebuilt-batch generator.
func measureProduceRaw(ctx context.Context, p loadParams, recs [][]byte, pids []int, warmup, duration time.Duration) (Rep, error) {
	batches, err := buildRawBatches(recs, p.codec)
	if err != nil {
		return nil, err
	}
	clients := make([]*kgo.Client, max(p.clients, 1))
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range clients {
		if clients[i], err = kgo.NewClient(kgo.SeedBrokers(p.addr), kgo.ProducerBatchMaxBytes(64<<20),
			kgo.BrokerMaxWriteBytes(128<<20)); err != nil {
			return nil, err
		}
	}
	lctx, cancel := context.WithTimeout(ctx, warmup+duration+30*time.Second)
	defer cancel()
	var (
		acked, wire, errs atomic.Int64
		mu                sync.Mutex
		firstErr          error
		wg                sync.WaitGroup
	)
	fail := func(err error) {
		errs.Add(1)
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	for i, cl := range clients {
		for j := range rawInFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k := i*rawInFlight + j
				for lctx.Err() == nil {
					req := kmsg.NewPtrProduceRequest()
					req.Acks, req.TimeoutMillis = 1, 30_000
					rt := kmsg.NewProduceRequestTopic()
					rt.Topic = p.topic
					var values, size int64
					of := func(part int32) rawBatch { return batches[(k+int(part))%len(batches)] }
					for part := range p.partitions {
						b := of(part)
						rp := kmsg.NewProduceRequestTopicPartition()
						rp.Partition, rp.Records = part, b.b
						rt.Partitions = append(rt.Partitions, rp)
						values += b.values
						size += int64(len(b.b))
					}
					req.Topics = append(req.Topics, rt)
					resp, err := req.RequestWith(lctx, cl)
					if err != nil {
						if lctx.Err() == nil {
							fail(err)
						}
						continue
					}
					for _, t := range resp.Topics {
						for _, rp := range t.Partitions {
							if e := kerr.ErrorForCode(rp.ErrorCode); e != nil {
								fail(fmt.Errorf("produce %s/%d: %w", t.Topic, rp.Partition, e))
								values -= of(rp.Partition).values
								size -= int64(len(of(rp.Partition).b))
							}
						}
					}
					k++
					acked.Add(max(values, 0))
					wire.Add(max(size, 0))
				}
			}()
		}
	}
	defer wg.Wait()
	defer cancel() // stop producing before waiting

	return measureWindow(lctx, pids, warmup, duration, &acked, &wire, &errs, func() error {
		mu.Lock()
		defer mu.Unlock()
		return firstErr
	})
}
