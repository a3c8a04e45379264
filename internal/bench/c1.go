package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// C1: hot consume. Prepare starts one broker, creates a 6-partition topic
// and produces Options.C1Bytes into it (not measured). Each repetition then
// reads every partition from its log start to the high watermark found
// after the preload with a lean fetcher: raw FetchRequests for all
// partitions at once on one connection whose receive buffer is reused
// (fetchconn.go), counting record-batch bytes without decoding records,
// only checking each batch header (see WalkBatches).

const (
	c1Partitions     = 6
	c1FetchMaxBytes  = 50 << 20
	c1PartitionBytes = 8 << 20
)

// ErrBadBatch: a fetched record batch header was not sane.
var ErrBadBatch = errors.New("bench: bad record batch")

// Record batch v2 header, as far as WalkBatches reads it (big endian):
//
//	+0  baseOffset            int64
//	+8  batchLength           int32   bytes after this field
//	+12 partitionLeaderEpoch  int32
//	+16 magic                 int8    = 2
//	+17 crc                   uint32
//	+21 attributes            int16
//	+23 lastOffsetDelta       int32
//	+27 … records             (to +12+batchLength)
//	61  bytes of header in all
const (
	batchHeaderLen = 61
	batchLenPrefix = 12 // baseOffset + batchLength
)

// WalkBatches walks the complete record batches at the start of data, which
// a fetch at offset want returned. The first batch must start exactly at
// want and each next one where the previous ended; each must be magic 2
// with a sane length. A truncated batch at the end (the broker cuts at
// max bytes) is not counted. It returns the offset after the last complete
// batch, the bytes of complete batches and their number.
func WalkBatches(data []byte, want int64) (next int64, bytes int64, n int, err error) {
	next = want
	for len(data) >= batchLenPrefix {
		base := int64(binary.BigEndian.Uint64(data[0:]))
		blen := int64(int32(binary.BigEndian.Uint32(data[8:])))
		if blen < batchHeaderLen-batchLenPrefix {
			return next, bytes, n, fmt.Errorf("%w: batch %d at offset %d: length %d < header", ErrBadBatch, n, base, blen)
		}
		total := batchLenPrefix + blen
		if total > int64(len(data)) || len(data) < batchHeaderLen {
			break // truncated tail
		}
		if magic := data[16]; magic != 2 {
			return next, bytes, n, fmt.Errorf("%w: batch %d at offset %d: magic %d", ErrBadBatch, n, base, magic)
		}
		if base != next {
			return next, bytes, n, fmt.Errorf("%w: batch %d: base offset %d, want %d", ErrBadBatch, n, base, next)
		}
		delta := int64(int32(binary.BigEndian.Uint32(data[23:])))
		if delta < 0 {
			return next, bytes, n, fmt.Errorf("%w: batch %d at offset %d: last offset delta %d", ErrBadBatch, n, base, delta)
		}
		next = base + delta + 1
		bytes += total
		n++
		data = data[total:]
	}
	return next, bytes, n, nil
}

type c1Runner struct {
	env   *Env
	bp    *brokerProc // nil when the broker is not ours
	pids  []int
	cl    *kgo.Client
	ti    topicInfo
	start []int64 // log start offsets
	end   []int64 // high watermarks after the preload
	name  string  // in errors: "C1", "C2"

	// Per repetition, filled by consume: each fetch's latency (ms) and the
	// time to the first record bytes.
	fetchMs []float64
	ttfb    time.Duration

	// in is the consumer's response buffer, kept across repetitions: made
	// and touched before the first clock starts (see fetchConn).
	in []byte
}

func prepareC1(ctx context.Context, env *Env) (Runner, error) {
	bp, err := env.startBroker(ctx, "c1", 0, fmt.Sprintf("--num.partitions=%d", c1Partitions))
	if err != nil {
		return nil, err
	}
	r, err := newC1Runner(ctx, env, bp.b.Addr, []int{bp.b.PID()})
	if err != nil {
		bp.stop()
		return nil, err
	}
	r.bp = bp
	return r, nil
}

// newC1Runner creates the topic on the broker at addr and fills it with
// env.Opts.C1Bytes; pids are the broker processes whose CPU is counted.
func newC1Runner(ctx context.Context, env *Env, addr string, pids []int) (_ *c1Runner, err error) {
	r := &c1Runner{env: env, pids: pids, name: "C1"}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.cl, err = adminClient(addr); err != nil {
		return nil, err
	}
	const topic = "bench-c1"
	if r.ti, err = createTopic(ctx, r.cl, topic, c1Partitions, 1, nil); err != nil {
		return nil, err
	}
	total := env.Opts.C1Bytes
	timeout := 60*time.Second + time.Duration(float64(total)/4e6*float64(time.Second))
	env.logf("C1: producing %d bytes (bounded by %v)", total, timeout.Round(time.Second))
	t0 := time.Now()
	if err := produceBytes(ctx, loadParams{addr: addr, topic: topic, partitions: c1Partitions,
		clients: p1Clients, codec: "none"}, GenerateRecords(p1Records, 2), total, timeout); err != nil {
		return nil, fmt.Errorf("bench: C1 preload: %w", err)
	}
	env.logf("C1: produced in %v", time.Since(t0).Round(time.Millisecond))
	if r.start, err = listOffsets(ctx, r.cl, r.ti, -2); err != nil {
		return nil, err
	}
	if r.end, err = listOffsets(ctx, r.cl, r.ti, -1); err != nil {
		return nil, err
	}
	var recs int64
	for p := range r.end {
		recs += r.end[p] - r.start[p]
	}
	if want := (total + RecordSize - 1) / RecordSize; recs != want {
		return nil, fmt.Errorf("bench: C1 preload: offsets span %d records, produced %d", recs, want)
	}
	return r, nil
}

func (r *c1Runner) Close() error {
	if r.cl != nil {
		r.cl.Close()
		r.cl = nil
	}
	if r.bp == nil {
		return nil
	}
	err := r.bp.stop()
	r.bp = nil
	return err
}

func (r *c1Runner) alive() error {
	if r.bp == nil {
		return nil
	}
	return r.bp.alive()
}

func (r *c1Runner) Rep(ctx context.Context, i int) (Rep, error) {
	if err := r.alive(); err != nil {
		return nil, err
	}
	c0, t0 := snapshotCPU(r.pids), time.Now()
	bytes, err := r.consume(ctx)
	c1, t1 := snapshotCPU(r.pids), time.Now()
	if err != nil {
		return nil, err
	}
	rep := throughputRep(bytes, t1.Sub(t0).Seconds(), cpuSeconds(c0, c1), 0)
	return rep, r.alive()
}

// consume reads every partition from start to end once and returns the
// record-batch bytes read. Bounded by an iteration count and a deadline.
func (r *c1Runner) consume(ctx context.Context) (int64, error) {
	var want int64
	for p := range r.end {
		want += r.end[p] - r.start[p]
	}
	deadline := 60*time.Second + time.Duration(float64(r.env.Opts.C1Bytes)/10e6*float64(time.Second))
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	maxIter := 10_000 + int(want)
	offs := append([]int64(nil), r.start...)
	r.fetchMs, r.ttfb = r.fetchMs[:0], 0
	if r.in == nil {
		r.in = touchedBuffer(c1FetchMaxBytes + 1<<20)
	}
	t0 := time.Now()
	leader := r.ti.leaders[0]
	for _, l := range r.ti.leaders {
		if l != leader {
			return 0, fmt.Errorf("bench: %s: partitions have different leaders; lean fetcher expects one broker", r.name)
		}
	}
	addr, err := brokerAddr(ctx, r.cl, leader)
	if err != nil {
		return 0, fmt.Errorf("bench: %s: %w", r.name, err)
	}
	fc, err := dialFetch(ctx, addr)
	if err != nil {
		return 0, fmt.Errorf("bench: %s: %w", r.name, err)
	}
	defer fc.Close()
	fc.in = r.in
	defer func() { r.in = fc.in }()
	var total int64
	for it := 0; ; it++ {
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis, req.MinBytes, req.MaxBytes = 500, 1, c1FetchMaxBytes
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = r.ti.name, r.ti.id
		for p := range offs {
			if offs[p] >= r.end[p] {
				continue
			}
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = int32(p), offs[p], c1PartitionBytes
			rt.Partitions = append(rt.Partitions, rp)
		}
		if len(rt.Partitions) == 0 {
			return total, nil
		}
		if it >= maxIter {
			return total, fmt.Errorf("bench: %s: not done after %d fetches", r.name, it)
		}
		req.Topics = append(req.Topics, rt)
		ft := time.Now()
		resp, err := fc.fetch(ctx, req)
		r.fetchMs = append(r.fetchMs, float64(time.Since(ft).Microseconds())/1000)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
				return total, fmt.Errorf("bench: %s: %w: %d of %d bytes after %v: %v", r.name, ErrTimeout, total, r.env.Opts.C1Bytes, deadline, err)
			}
			return total, fmt.Errorf("bench: %s: fetch: %w", r.name, err)
		}
		if e := kerr.ErrorForCode(resp.ErrorCode); e != nil {
			return total, fmt.Errorf("bench: %s: fetch: %w", r.name, e)
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.Partition < 0 || int(p.Partition) >= len(offs) {
					return total, fmt.Errorf("bench: %s: fetch: partition %d out of range", r.name, p.Partition)
				}
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil {
					return total, fmt.Errorf("bench: %s: fetch partition %d at %d: %w", r.name, p.Partition, offs[p.Partition], e)
				}
				next, n, _, err := WalkBatches(p.RecordBatches, offs[p.Partition])
				if err != nil {
					return total, fmt.Errorf("bench: %s: fetch partition %d at %d: %w", r.name, p.Partition, offs[p.Partition], err)
				}
				if next > r.end[p.Partition] && offs[p.Partition] < r.end[p.Partition] {
					// Fine: nothing was produced since, but be strict.
					return total, fmt.Errorf("bench: %s: partition %d: read to %d past high watermark %d", r.name, p.Partition, next, r.end[p.Partition])
				}
				offs[p.Partition] = next
				if total == 0 && n > 0 {
					r.ttfb = time.Since(t0)
				}
				total += n
			}
		}
	}
}
