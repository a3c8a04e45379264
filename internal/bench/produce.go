package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"
)

// loadParams configures the produce load generator.
type loadParams struct {
	addr       string
	topic      string
	partitions int32
	clients    int     // independent kgo clients, one producing goroutine each
	codec      string  // "none" or "lz4"
	maxRecords int64   // stop after this many records in total; 0 = until ctx ends
	acksAll    bool    // acks=all (-1) instead of acks=1
	rate       float64 // value bytes per second over all clients; 0 = saturating
}

// loadGen is a saturating franz-go producer. Records are generated up
// front; the loop only hands them to kgo. Acknowledged value bytes are
// counted as promises succeed.
type loadGen struct {
	clients []*kgo.Client
	recs    [][]byte
	p       loadParams

	acked    atomic.Int64 // value bytes acknowledged
	ackedN   atomic.Int64 // records acknowledged
	errs     atomic.Int64
	firstErr atomic.Pointer[error]
	sent     atomic.Int64 // records handed to kgo

	wg sync.WaitGroup
}

func codecOf(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none", "":
		return kgo.NoCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("bench: unknown codec %q", name)
}

func newLoadGen(p loadParams, recs [][]byte) (*loadGen, error) {
	codec, err := codecOf(p.codec)
	if err != nil {
		return nil, err
	}
	g := &loadGen{recs: recs, p: p}
	acks := kgo.LeaderAck()
	if p.acksAll {
		acks = kgo.AllISRAcks()
	}
	for range p.clients {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(p.addr),
			kgo.DefaultProduceTopic(p.topic),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.ProducerLinger(5*time.Millisecond),
			kgo.ProducerBatchMaxBytes(1<<20),
			kgo.RequiredAcks(acks),
			kgo.DisableIdempotentWrite(),
			kgo.MaxProduceRequestsInflightPerBroker(5),
			kgo.ProducerBatchCompression(codec),
			kgo.MaxBufferedRecords(16<<10),
			kgo.RecordDeliveryTimeout(60*time.Second),
			kgo.ProduceRequestTimeout(30*time.Second),
		)
		if err != nil {
			g.close()
			return nil, fmt.Errorf("bench: producer for %s: %w", p.addr, err)
		}
		g.clients = append(g.clients, cl)
	}
	return g, nil
}

func (g *loadGen) promise(r *kgo.Record, err error) {
	if err != nil {
		g.errs.Add(1)
		g.firstErr.CompareAndSwap(nil, &err)
		return
	}
	g.acked.Add(int64(len(r.Value)))
	g.ackedN.Add(1)
}

// start launches one producing goroutine per client; they stop when ctx
// ends or maxRecords have been handed over. Records still buffered when
// ctx ends fail.
func (g *loadGen) start(ctx context.Context) { g.startUntil(ctx, ctx) }

// startUntil is start with the goroutines stopping when loop ends, and
// the records they handed over sent unless ctx ends (flush waits for them).
func (g *loadGen) startUntil(ctx, loop context.Context) {
	var lim *rate.Limiter
	if g.p.rate > 0 {
		lim = rate.NewLimiter(rate.Limit(g.p.rate), 1<<20)
	}
	rctx := ctx
	ctx = loop
	for ci, cl := range g.clients {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			// Each client walks the records from its own place, spreading
			// records round-robin over the partitions.
			for i := ci * 7919; i < 1<<62; i++ {
				if ctx.Err() != nil {
					return
				}
				if g.p.maxRecords > 0 && g.sent.Add(1) > g.p.maxRecords {
					return
				}
				rec := &kgo.Record{
					Topic:     g.p.topic,
					Partition: int32(i % int(g.p.partitions)),
					Value:     g.recs[i%len(g.recs)],
				}
				if lim != nil && lim.WaitN(ctx, len(rec.Value)) != nil {
					return
				}
				cl.Produce(rctx, rec, g.promise)
			}
		}()
	}
}

// wait waits for the producing goroutines to return.
func (g *loadGen) wait() { g.wg.Wait() }

// flush waits until everything handed over is acknowledged or failed.
func (g *loadGen) flush(ctx context.Context) error {
	for _, cl := range g.clients {
		if err := cl.Flush(ctx); err != nil {
			return fmt.Errorf("bench: flush producer: %w", err)
		}
	}
	return nil
}

func (g *loadGen) lastErr() error {
	if p := g.firstErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (g *loadGen) close() {
	for _, cl := range g.clients {
		cl.Close()
	}
}

// produceBytes produces at least total value bytes (in RecordSize records)
// to the topic and waits until all are acknowledged, bounded by timeout.
func produceBytes(ctx context.Context, p loadParams, recs [][]byte, total int64, timeout time.Duration) error {
	p.maxRecords = (total + RecordSize - 1) / RecordSize
	g, err := newLoadGen(p, recs)
	if err != nil {
		return err
	}
	defer g.close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	g.start(ctx)
	g.wait()
	if err := g.flush(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("bench: produce %d bytes: %d acknowledged after %v: %w", total, g.acked.Load(), timeout, ErrTimeout)
		}
		return err
	}
	if n := g.errs.Load(); n > 0 {
		return fmt.Errorf("bench: produce %d bytes: %d records failed, first: %w", total, n, g.lastErr())
	}
	if got := g.ackedN.Load(); got != p.maxRecords {
		return fmt.Errorf("bench: produce %d bytes: %d of %d records acknowledged", total, got, p.maxRecords)
	}
	return nil
}
