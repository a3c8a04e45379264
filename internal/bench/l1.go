package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// L1: end-to-end latency on P2's cluster (3 brokers, RF=3,
// min.insync.replicas=2, acks=all).
//
// Prepare starts the cluster; each repetition creates its own topic, starts
// one consumer tailing it from the start, and produces l1Rate records per
// second open-loop: record i has an intended send time start + i/l1Rate and
// is handed to the producer (linger 1 ms) at that time, whether or not
// earlier records were acknowledged — so a stall is charged to every record
// that should have gone out during it, not hidden (no coordinated
// omission). The intended time travels in the record's first 8 bytes.
//
//   - produce-ack latency = acknowledgement time − intended send time;
//   - end-to-end latency  = consumer receive time − intended send time.
//
// Records intended within [warm-up, warm-up+window) are measured; the
// window is l1Window (the -duration of a -quick run). After it, sending
// stops and the consumer gets l1Drain to receive the window's records;
// one not received by then counts as missing (an error). The goal is on
// the end-to-end p99 against L_fsync p99 (≤ 3 ×, a ceiling); p50 ≤ 5 ms is
// reported beside it as e2e_p50_goal (≤ 1 meets it).
//
// The floor: after each repetition the same producer and consumer run for
// a third of the window against one more broker, alone, on a topic with
// one replica — no follower fetch, no high watermark waiting on others.
// What it measures (floor_e2e_p50_ms / floor_e2e_p99_ms) is what the
// workload costs on this machine without replication: the producer's 1 ms
// linger, the client libraries and one broker. floor_ratio is its p99
// against L_fsync p99, like the ratio; vs_floor_p99 is e2e p99 / floor p99.

const (
	l1Rate       = 5000 // records per second
	l1Partitions = 6
	l1ValueSize  = 256 // bytes per record value
	l1Window     = 60 * time.Second
	l1Drain      = 10 * time.Second
	l1P50GoalMs  = 5.0
)

// L1 figure names.
const (
	FigAckP50    = "ack_p50_ms"
	FigAckP99    = "ack_p99_ms"
	FigAckP999   = "ack_p999_ms"
	FigE2EP50    = "e2e_p50_ms"
	FigE2EP99    = "e2e_p99_ms"
	FigE2EP999   = "e2e_p999_ms"
	FigSent      = "sent"         // records intended in the window
	FigMissing   = "missing"      // window records the consumer never received
	FigE2EP50Gol = "e2e_p50_goal" // e2e p50 / 5 ms (≤ 1 meets it)
	FigFloorP50  = "floor_e2e_p50_ms"
	FigFloorP99  = "floor_e2e_p99_ms"
	FigFloorRat  = "floor_ratio"  // floor p99 / L1's limit (L_fsync p99), like the ratio
	FigVsFloor   = "vs_floor_p99" // e2e p99 / floor p99
)

// l1Shown are the figures of L1's row in the printed table.
var l1Shown = []string{FigAckP50, FigAckP99, FigAckP999, FigE2EP50, FigE2EP99, FigE2EP999, FigE2EP50Gol, FigFloorP50, FigFloorP99, FigFloorRat, FigVsFloor, FigRatio}

type l1Runner struct {
	env   *Env
	c     *cluster
	alone *brokerProc // the floor's single broker
}

func prepareL1(ctx context.Context, env *Env) (Runner, error) {
	c, err := env.startCluster(ctx, "l1", clusterSize)
	if err != nil {
		return nil, err
	}
	alone, err := env.startBroker(ctx, "l1-alone", 0)
	if err != nil {
		c.stop()
		return nil, err
	}
	return &l1Runner{env: env, c: c, alone: alone}, nil
}

func (r *l1Runner) Close() error {
	err := r.c.stop()
	r.c = nil
	if r.alone != nil {
		err = errors.Join(err, r.alone.stop())
		r.alone = nil
	}
	return err
}

// floor runs the latency loop against the single broker on a fresh topic
// with one replica and returns the floor figures.
func (r *l1Runner) floor(ctx context.Context, i int) (Rep, error) {
	admin, err := adminClient(r.alone.b.Addr)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	topic := fmt.Sprintf("bench-l1-floor-r%d", i+1)
	if _, err := createTopic(ctx, admin, topic, l1Partitions, 1, nil); err != nil {
		return nil, err
	}
	fr, err := measureLatency(ctx, r.alone.b.Addr, topic, []int{r.alone.b.PID()}, r.env.Opts.Warmup, max(r.window()/3, time.Second))
	if err != nil {
		return nil, fmt.Errorf("bench: L1 floor: %w", err)
	}
	return Rep{FigFloorP50: fr[FigE2EP50], FigFloorP99: fr[FigE2EP99]}, nil
}

func (r *l1Runner) window() time.Duration {
	if r.env.Opts.Quick {
		return r.env.Opts.Duration
	}
	return l1Window
}

func (r *l1Runner) Rep(ctx context.Context, i int) (Rep, error) {
	if err := r.c.alive(); err != nil {
		return nil, err
	}
	topic := fmt.Sprintf("bench-l1-r%d", i+1)
	if _, err := createReplicatedTopic(ctx, r.c, topic, l1Partitions); err != nil {
		return nil, err
	}
	rep, err := measureLatency(ctx, r.c.addr(), topic, r.c.pids(), r.env.Opts.Warmup, r.window())
	if aerr := r.c.alive(); aerr != nil {
		return rep, aerr
	}
	if err != nil {
		return rep, err
	}
	fl, err := r.floor(ctx, i)
	if err != nil {
		return rep, err
	}
	for f, v := range fl {
		rep[f] = v
	}
	if e, f := rep[FigE2EP99], rep[FigFloorP99]; e.OK() && f.OK() && *f.V > 0 {
		rep[FigVsFloor] = Measured(*e.V / *f.V, "")
	}
	return rep, r.alone.alive()
}

// latencySamples collects the latencies (ms) of the records intended in
// the window.
type latencySamples struct {
	mu       sync.Mutex
	ack, e2e []float64
	seen     map[int64]bool // window records received (by intended time), to count each once
	errs     int64
	firstErr error
}

func (s *latencySamples) fail(err error) {
	s.mu.Lock()
	s.errs++
	if s.firstErr == nil {
		s.firstErr = err
	}
	s.mu.Unlock()
}

// measureLatency runs L1's open-loop producer and tailing consumer against
// addr and returns the figures of the window.
func measureLatency(ctx context.Context, addr, topic string, pids []int, warmup, window time.Duration) (Rep, error) {
	prod, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MaxBufferedRecords(1<<20),
		kgo.RecordDeliveryTimeout(30*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("bench: L1 producer: %w", err)
	}
	defer prod.Close()
	cons, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond), // Kafka's fetch.max.wait.ms default
	)
	if err != nil {
		return nil, fmt.Errorf("bench: L1 consumer: %w", err)
	}
	defer cons.Close()

	lctx, cancel := context.WithTimeout(ctx, warmup+window+l1Drain+30*time.Second)
	defer cancel()
	start := time.Now().Add(50 * time.Millisecond)
	winStart, winEnd := start.Add(warmup), start.Add(warmup+window)
	inWindow := func(ns int64) bool { return ns >= winStart.UnixNano() && ns < winEnd.UnixNano() }
	s := &latencySamples{seen: make(map[int64]bool)}
	var received, expected atomic.Int64 // window records received / intended

	// The consumer: one poll loop until the window's records are in or
	// the drain ends.
	consDone := make(chan struct{})
	cctx, ccancel := context.WithCancel(lctx)
	defer ccancel()
	go func() {
		defer close(consDone)
		for cctx.Err() == nil {
			fs := cons.PollFetches(cctx)
			now := time.Now().UnixNano()
			fs.EachError(func(t string, p int32, err error) {
				if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
					s.fail(fmt.Errorf("consume %s/%d: %w", t, p, err))
				}
			})
			s.mu.Lock()
			fs.EachRecord(func(rec *kgo.Record) {
				if len(rec.Value) < 8 {
					return
				}
				intended := int64(binary.BigEndian.Uint64(rec.Value))
				if !inWindow(intended) || s.seen[intended] {
					return
				}
				s.seen[intended] = true
				s.e2e = append(s.e2e, float64(now-intended)/1e6)
				received.Add(1)
			})
			s.mu.Unlock()
		}
	}()

	// The open-loop producer.
	period := time.Second / l1Rate
	var c0 cpuSnapshot
	c0Taken := false
	var sent sync.WaitGroup
	for i := int64(0); i < 1<<40; i++ {
		intended := start.Add(time.Duration(i) * period)
		if !intended.Before(winEnd) || lctx.Err() != nil {
			break
		}
		if d := time.Until(intended); d > 0 {
			if err := sleepCtx(lctx, d); err != nil {
				break
			}
		}
		if !c0Taken && !intended.Before(winStart) {
			c0, c0Taken = snapshotCPU(pids), true
		}
		ns := intended.UnixNano()
		v := make([]byte, l1ValueSize)
		binary.BigEndian.PutUint64(v, uint64(ns))
		measured := inWindow(ns)
		if measured {
			expected.Add(1)
		}
		sent.Add(1)
		prod.Produce(lctx, &kgo.Record{Topic: topic, Partition: int32(i % l1Partitions), Value: v}, func(_ *kgo.Record, err error) {
			defer sent.Done()
			if err != nil {
				s.fail(fmt.Errorf("produce: %w", err))
				return
			}
			if measured {
				lat := float64(time.Now().UnixNano()-ns) / 1e6
				s.mu.Lock()
				s.ack = append(s.ack, lat)
				s.mu.Unlock()
			}
		})
	}
	c1 := snapshotCPU(pids)
	if !c0Taken {
		c0 = cpuSnapshot{err: errors.New("bench: L1: window never started")}
	}
	sent.Wait() // every promise ends by the delivery timeout
	// Drain: the consumer gets l1Drain to receive the window's records.
	deadline := time.Now().Add(l1Drain)
	for received.Load() < expected.Load() && time.Now().Before(deadline) && lctx.Err() == nil {
		sleepCtx(lctx, 20*time.Millisecond)
	}
	ccancel()
	<-consDone

	s.mu.Lock()
	defer s.mu.Unlock()
	missing := expected.Load() - received.Load()
	rep := l1Figures(s.ack, s.e2e, expected.Load(), missing, window.Seconds(), cpuSeconds(c0, c1), s.errs)
	switch {
	case len(s.ack) == 0 && s.firstErr != nil:
		return rep, fmt.Errorf("bench: L1: nothing acknowledged in the window; first error: %w", s.firstErr)
	case len(s.ack) == 0:
		return rep, errors.New("bench: L1: nothing acknowledged in the window")
	case len(s.e2e) == 0:
		return rep, errors.New("bench: L1: the consumer received nothing of the window")
	}
	return rep, nil
}

// l1Figures turns the latencies (ms) of the window's records into L1's
// figures. Missing records count as errors.
func l1Figures(ack, e2e []float64, sent, missing int64, seconds float64, cpu Value, errs int64) Rep {
	r := Rep{
		FigSent:       Measured(float64(sent), ""),
		FigMissing:    Measured(float64(missing), ""),
		FigSeconds:    Measured(seconds, "s"),
		FigCPUSeconds: cpu,
		FigErrors:     Measured(float64(errs+max(missing, 0)), ""),
	}
	pcts := func(samples []float64, names [3]string, what string) {
		for k, p := range []float64{50, 99, 99.9} {
			if v, err := Percentile(samples, p); err == nil && len(samples) > 0 {
				r[names[k]] = Measured(v, "ms")
			} else {
				r[names[k]] = Unmeasured("ms", "no "+what+" in the window")
			}
		}
	}
	pcts(ack, [3]string{FigAckP50, FigAckP99, FigAckP999}, "acknowledgement")
	pcts(e2e, [3]string{FigE2EP50, FigE2EP99, FigE2EP999}, "record consumed")
	if v := r[FigE2EP50]; v.OK() {
		r[FigE2EP50Gol] = Measured(*v.V/l1P50GoalMs, "")
	} else {
		r[FigE2EP50Gol] = Unmeasured("", v.Reason)
	}
	return r
}
