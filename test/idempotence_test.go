package test

// Idempotent producer end to end: InitProducerId, deduplication of replayed
// produce requests, the sequence and epoch error codes, and franz-go's
// idempotent producer across a kill -9 of the broker (every acknowledged
// record stored exactly once).

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// idemRawBatch is rawBatch with a producer id, epoch and base sequence.
func idemRawBatch(pid int64, epoch int16, seq int32, values ...string) []byte {
	b := rawBatch(rawBatchSpec{}, rawValues(values...)...)
	binary.BigEndian.PutUint64(b[43:], uint64(pid))
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func idemInitProducerID(t *testing.T, addr string, version int16, txnID *string, pid int64, epoch int16) *kmsg.InitProducerIDResponse {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version = version
	req.TransactionalID = txnID
	req.TransactionTimeoutMillis = 60000
	req.ProducerID, req.ProducerEpoch = pid, epoch
	return rawReq[*kmsg.InitProducerIDResponse](t, addr, req)
}

// idemRequireInitProducerID checks that the broker advertises InitProducerId
// 0-4 (without it franz-go silently produces without idempotence).
func idemRequireInitProducerID(t *testing.T, addr string) {
	t.Helper()
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 0
	for _, k := range rawReq[*kmsg.ApiVersionsResponse](t, addr, req).ApiKeys {
		if k.ApiKey == 22 && k.MinVersion <= 0 && k.MaxVersion >= 4 {
			return
		}
	}
	t.Fatal("InitProducerId 0-4 not advertised")
}

func TestIdempotentProduceRaw(t *testing.T) {
	const topic = "idem"
	b := clientStartBroker(t)
	idemRequireInitProducerID(t, b.Addr)
	if err := rawCreateTopicOnce(b.Addr, topic, 1); err != nil {
		t.Fatal(err)
	}

	// InitProducerId: fresh ids at epoch 0, a KIP-360 bump, transactions refused.
	r1 := idemInitProducerID(t, b.Addr, 0, nil, -1, -1)
	r2 := idemInitProducerID(t, b.Addr, 4, nil, -1, -1)
	if r1.ErrorCode != 0 || r2.ErrorCode != 0 || r1.ProducerID < 0 || r2.ProducerID == r1.ProducerID || r1.ProducerEpoch != 0 || r2.ProducerEpoch != 0 {
		t.Fatalf("init producer id: %+v, %+v", r1, r2)
	}
	pid := r2.ProducerID
	if r := idemInitProducerID(t, b.Addr, 4, nil, pid, 0); r.ErrorCode != 0 || r.ProducerID != pid || r.ProducerEpoch != 1 {
		t.Fatalf("epoch bump of %d/0: %+v", pid, r)
	}
	if r := idemInitProducerID(t, b.Addr, 4, nil, pid, 0); r.ErrorCode != 0 || r.ProducerID == pid || r.ProducerID < 0 || r.ProducerEpoch != 0 {
		t.Fatalf("bump with a stale epoch: %+v, want a fresh id at epoch 0", r)
	}
	txn := "tx"
	if r := idemInitProducerID(t, b.Addr, 4, &txn, -1, -1); r.ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code || r.ProducerID != -1 {
		t.Fatalf("transactional id: %+v", r)
	}

	c := rawDial(t, b.Addr)
	produce := func(batch []byte) kmsg.ProduceResponseTopicPartition {
		t.Helper()
		resp := c.do(rawProduceReq(9, -1, topic, 0, batch)).(*kmsg.ProduceResponse)
		return rawProducePartition(t, resp)
	}
	// The same request replayed byte for byte: stored once, same base offset.
	req := rawProduceReq(9, -1, topic, 0, idemRawBatch(pid, 0, 0, "a0", "a1", "a2"))
	frame, corr := c.encode(req)
	var bases []int64
	for range 2 {
		if err := c.write(frame); err != nil {
			t.Fatal(err)
		}
		resp := c.recv(req, corr).(*kmsg.ProduceResponse)
		p := rawProducePartition(t, resp)
		if p.ErrorCode != 0 {
			t.Fatalf("produce: error %d", p.ErrorCode)
		}
		bases = append(bases, p.BaseOffset)
	}
	if bases[0] != 0 || bases[1] != 0 {
		t.Fatalf("base offsets of the request and its replay: %v, want [0 0]", bases)
	}
	steps := []struct {
		name  string
		batch []byte
		code  int16
		base  int64
	}{
		{"next in sequence", idemRawBatch(pid, 0, 3, "b3", "b4"), 0, 3},
		{"older duplicate", idemRawBatch(pid, 0, 0, "a0", "a1", "a2"), 0, 0},
		{"gap", idemRawBatch(pid, 0, 9, "x"), kerr.OutOfOrderSequenceNumber.Code, -1},
		{"new epoch not at 0", idemRawBatch(pid, 1, 5, "x"), kerr.OutOfOrderSequenceNumber.Code, -1},
		{"new epoch", idemRawBatch(pid, 1, 0, "c5"), 0, 5},
		{"old epoch", idemRawBatch(pid, 0, 5, "x"), kerr.InvalidProducerEpoch.Code, -1},
		{"unknown producer", idemRawBatch(r1.ProducerID, 0, 4, "x"), kerr.UnknownProducerID.Code, -1},
		{"plain batch", rawBatch(rawBatchSpec{}, rawValues("d6")...), 0, 6},
	}
	for _, s := range steps {
		p := produce(s.batch)
		if p.ErrorCode != s.code || p.BaseOffset != s.base {
			t.Fatalf("%s: error %d base %d, want error %d base %d", s.name, p.ErrorCode, p.BaseOffset, s.code, s.base)
		}
	}

	f := rawFetchPartition(t, c.do(rawFetchReq(12, topic, 0, 0, 100, 1)).(*kmsg.FetchResponse))
	recs, _, err := rawParseBatches(f.RecordBatches)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a0", "a1", "a2", "b3", "b4", "c5", "d6"}
	if f.HighWatermark != int64(len(want)) || len(recs) != len(want) {
		t.Fatalf("high watermark %d, %d records, want %d", f.HighWatermark, len(recs), len(want))
	}
	for i, r := range recs {
		if r.Offset != int64(i) || string(r.Value) != want[i] {
			t.Fatalf("record %d: offset %d value %q, want %q", i, r.Offset, r.Value, want[i])
		}
	}
}

func TestIdempotentProducerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: kills and restarts the broker under load")
	}
	const topic, parts = "idem-kill", int32(2)
	b := clientStartBroker(t)
	idemRequireInitProducerID(t, b.Addr)
	admin := clientKgo(t, b.Addr)
	clientCreateTopic(t, admin, topic, parts, nil)

	// franz-go is idempotent by default.
	prodCl := clientKgo(t, b.Addr,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.RecordDeliveryTimeout(25*time.Second),
		kgo.ProduceRequestTimeout(5*time.Second),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
	)
	var (
		mu     sync.Mutex
		acked  = map[int64]clientAck{}
		failed int
	)
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for seq := int64(0); seq < 2_000_000; {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if prodCl.BufferedProduceRecords() > 4000 {
				continue
			}
			for range 20 {
				s := seq
				r := &kgo.Record{Topic: topic, Partition: int32(s % int64(parts)), Value: fmt.Appendf(nil, "seq-%09d", s)}
				prodCl.Produce(ctx, r, func(r *kgo.Record, err error) {
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						failed++
						return
					}
					acked[s] = clientAck{r.Partition, r.Offset}
				})
				seq++
			}
		}
	}()
	stopped := false
	stopProducer := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopProducer()

	clientEventually(t, 15*time.Second, "1500 acknowledged records before the kill", func() (bool, string) {
		n := ackedCount()
		return n >= 1500, fmt.Sprintf("%d acknowledged", n)
	})
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed after %d acknowledged records", ackedCount())
	rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
	err := b.Restart(rctx)
	rcancel()
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	after := ackedCount()
	clientEventually(t, 20*time.Second, "1000 acknowledgements after the restart", func() (bool, string) {
		n := ackedCount()
		return n >= after+1000, fmt.Sprintf("%d acknowledged, %d at restart", n, after)
	})
	stopProducer()
	fctx, fcancel := context.WithTimeout(context.Background(), 20*time.Second)
	if err := prodCl.Flush(fctx); err != nil {
		t.Errorf("flush: %v", err)
	}
	fcancel()
	mu.Lock()
	t.Logf("acknowledged %d, failed %d", len(acked), failed)
	mu.Unlock()

	ends := clientEndOffsets(t, admin, topic)
	got := clientConsumeAll(t, b.Addr, topic, ends, 20*time.Second)
	mu.Lock()
	defer mu.Unlock()
	seen := map[int64]clientAck{}
	for p := int32(0); p < parts; p++ {
		for j, r := range got[p] {
			if r.Offset != int64(j) {
				t.Fatalf("partition %d: record #%d at offset %d; offsets not dense from 0", p, j, r.Offset)
			}
			s, err := strconv.ParseInt(strings.TrimPrefix(string(r.Value), "seq-"), 10, 64)
			if err != nil || !strings.HasPrefix(string(r.Value), "seq-") || int32(s%int64(parts)) != p {
				t.Fatalf("partition %d offset %d: unexpected value %q", p, r.Offset, r.Value)
			}
			if prev, dup := seen[s]; dup {
				t.Fatalf("seq %d stored twice: %d/%d and %d/%d", s, prev.partition, prev.offset, p, r.Offset)
			}
			seen[s] = clientAck{p, r.Offset}
		}
	}
	for s, a := range acked {
		if got, ok := seen[s]; !ok || got != a {
			t.Fatalf("acknowledged seq %d at %d/%d: stored at %+v (present %v)", s, a.partition, a.offset, got, ok)
		}
	}
	if failed != 0 {
		t.Errorf("%d records failed", failed)
	}
}
