package test

// Crash tests: a non-idempotent franz-go producer writes sequence-numbered
// records while the broker is killed with SIGKILL and restarted, twice.
// Afterwards every acknowledged record must be at the offset it was
// acknowledged at, offsets must be dense from 0, and every stored batch
// must parse with a valid CRC. Duplicates from retries are allowed.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type clientAck struct {
	partition int32
	offset    int64
}

// clientCrashProducer produces "seq-%09d" records round-robin over the
// partitions (20 every 2 ms at most) until stop is closed, remembering each
// acknowledged record.
type clientCrashProducer struct {
	mu     sync.Mutex
	acked  map[int64]clientAck
	failed int
	sent   int64
}

func (p *clientCrashProducer) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

func (p *clientCrashProducer) run(ctx context.Context, cl *kgo.Client, topic string, parts int32, stop <-chan struct{}) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for seq := int64(0); seq < 5_000_000; {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if cl.BufferedProduceRecords() > 4000 {
			continue // broker down: do not block in Produce
		}
		for i := 0; i < 20; i++ {
			s := seq
			r := &kgo.Record{Topic: topic, Partition: int32(s % int64(parts)), Value: []byte(fmt.Sprintf("seq-%09d", s))}
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				p.mu.Lock()
				defer p.mu.Unlock()
				if err != nil {
					p.failed++
					return
				}
				p.acked[s] = clientAck{r.Partition, r.Offset}
			})
			seq++
			p.mu.Lock()
			p.sent = seq
			p.mu.Unlock()
		}
	}
}

func TestCrashKillDuringProduce(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: kills and restarts brokers under load")
	}
	for _, tc := range []struct {
		name string
		acks kgo.Acks
	}{
		{"acks=1", kgo.LeaderAck()},
		{"acks=all", kgo.AllISRAcks()},
	} {
		t.Run(tc.name, func(t *testing.T) { clientCrashRun(t, tc.acks) })
	}
}

func clientCrashRun(t *testing.T, acks kgo.Acks) {
	const topic, parts, kills = "crash", int32(3), 2
	b := clientStartBroker(t)
	admin := clientKgo(t, b.Addr)
	clientCreateTopic(t, admin, topic, parts, nil)

	prodCl := clientKgo(t, b.Addr,
		kgo.DisableIdempotentWrite(),
		kgo.RequiredAcks(acks),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.RecordDeliveryTimeout(20*time.Second),
		kgo.ProduceRequestTimeout(5*time.Second),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
	)
	prod := &clientCrashProducer{acked: map[int64]clientAck{}}
	prodCtx, cancelProd := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancelProd()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		prod.run(prodCtx, prodCl, topic, parts, stop)
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

	// Some load before each kill, and proof of progress after each restart.
	loadStart := time.Now()
	for k := 0; k < kills; k++ {
		before := prod.ackedCount()
		clientEventually(t, 20*time.Second, fmt.Sprintf("kill %d: 1500 more acknowledged records and 1.5 s of load", k+1), func() (bool, string) {
			n := prod.ackedCount()
			return n >= before+1500 && time.Since(loadStart) > 1500*time.Millisecond, fmt.Sprintf("%d acknowledged, %d before", n, before)
		})
		if err := b.Kill(); err != nil {
			t.Fatalf("kill %d: %v", k+1, err)
		}
		if code := b.ExitCode(); code != 128+int(syscall.SIGKILL) {
			t.Fatalf("kill %d: exit code %d, want %d", k+1, code, 128+int(syscall.SIGKILL))
		}
		t.Logf("kill %d after %d acknowledged records", k+1, prod.ackedCount())
		ctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
		err := b.Restart(ctx)
		cancel()
		if err != nil {
			t.Fatalf("restart %d: %v", k+1, err)
		}
		loadStart = time.Now()
	}
	after := prod.ackedCount()
	clientEventually(t, 25*time.Second, "1000 acknowledgements after the last restart", func() (bool, string) {
		n := prod.ackedCount()
		return n >= after+1000, fmt.Sprintf("%d acknowledged, %d at restart", n, after)
	})
	stopProducer()
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), 25*time.Second)
	if err := prodCl.Flush(flushCtx); err != nil {
		t.Logf("flush: %v (unflushed records are simply not acknowledged)", err)
	}
	cancelFlush()
	prod.mu.Lock()
	acked := make(map[int64]clientAck, len(prod.acked))
	for s, a := range prod.acked {
		acked[s] = a
	}
	t.Logf("sent %d, acknowledged %d, failed %d", prod.sent, len(acked), prod.failed)
	prod.mu.Unlock()

	ends := clientEndOffsets(t, admin, topic)
	got := clientConsumeAll(t, b.Addr, topic, ends, 30*time.Second)
	present := map[clientAck]int64{} // (partition, offset) -> seq
	dups := 0
	for p := int32(0); p < parts; p++ {
		seen := map[int64]bool{}
		for j, r := range got[p] {
			if r.Offset != int64(j) {
				t.Fatalf("partition %d: record #%d at offset %d; offsets not dense from 0", p, j, r.Offset)
			}
			s, err := strconv.ParseInt(strings.TrimPrefix(string(r.Value), "seq-"), 10, 64)
			if err != nil || !strings.HasPrefix(string(r.Value), "seq-") {
				t.Fatalf("partition %d offset %d: unexpected value %q", p, r.Offset, r.Value)
			}
			if int32(s%int64(parts)) != p {
				t.Errorf("partition %d offset %d: seq %d belongs to partition %d", p, r.Offset, s, s%int64(parts))
			}
			if seen[s] {
				dups++
			}
			seen[s] = true
			present[clientAck{p, r.Offset}] = s
		}
		if int64(len(got[p])) != ends[p] {
			t.Errorf("partition %d: consumed %d records, high watermark %d", p, len(got[p]), ends[p])
		}
	}
	missing := 0
	for s, a := range acked {
		if present[a] != s {
			if missing < 10 {
				if v, ok := present[a]; ok {
					t.Errorf("acknowledged seq %d at %d/%d: that offset now holds seq %d", s, a.partition, a.offset, v)
				} else {
					t.Errorf("acknowledged seq %d at %d/%d: offset missing (partition end %d)", s, a.partition, a.offset, ends[a.partition])
				}
			}
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged records lost", missing, len(acked))
	}
	t.Logf("end offsets %v, %d duplicates from retries", ends, dups)

	for p := int32(0); p < parts; p++ {
		batches, hwm := clientFetchRawBatches(t, admin, topic, p)
		if hwm != ends[p] {
			t.Errorf("partition %d: raw fetch high watermark %d, listed %d", p, hwm, ends[p])
		}
		clientCheckBatches(t, fmt.Sprintf("%s/%d", topic, p), batches, hwm)
	}
}
