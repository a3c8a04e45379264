package tiering

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
	"github.com/stratabroker/strata/kafkaproto"
	"github.com/stratabroker/strata/remote"
)

// fakePart is a partition whose sealed segments are real files of real
// record batches (one batch of 10 records per segment), with no indexes.
type fakePart struct {
	mu       sync.Mutex
	topic    string
	id       [16]byte
	dir      string
	epoch    int32
	leader   bool
	set      Settings
	segs     []LocalSegment
	data     map[int64][]byte // segment base -> bytes
	leo      int64
	logStart int64
	local    int64
	tiered   int64
	history  []ManifestEpoch // nil: epoch 0 from offset 0
}

func newFakePart(t *testing.T, topic string, id [16]byte) *fakePart {
	return &fakePart{topic: topic, id: id, dir: t.TempDir(), epoch: 0, leader: true,
		set: Settings{RemoteEnabled: true, RetentionMs: -1, RetentionBytes: -1}, data: map[int64][]byte{}, tiered: -1}
}

// addSegment seals a segment of one batch of n records with timestamp ts.
func (f *fakePart) addSegment(t *testing.T, n int, ts int64) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	recs := make([]kafkaproto.Record, n)
	for i := range recs {
		recs[i] = kafkaproto.Record{OffsetDelta: int32(i), Value: fmt.Appendf(nil, "v%d", f.leo+int64(i))}
	}
	b, err := kafkaproto.BuildBatch(kafkaproto.BatchHeader{BaseTimestamp: ts, MaxTimestamp: ts, ProducerID: -1, BaseSequence: -1}, recs, kafkaproto.CodecNone)
	if err != nil {
		t.Fatal(err)
	}
	kafkaproto.StampBaseOffset(b, f.leo)
	base := f.leo
	lp := filepath.Join(f.dir, fmt.Sprintf("%020d.log", base))
	ip := filepath.Join(f.dir, fmt.Sprintf("%020d.index", base))
	tp := filepath.Join(f.dir, fmt.Sprintf("%020d.timeindex", base))
	for _, w := range []struct {
		p string
		b []byte
	}{{lp, b}, {ip, nil}, {tp, nil}} {
		if err := os.WriteFile(w.p, w.b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.segs = append(f.segs, LocalSegment{BaseOffset: base, NextOffset: base + int64(n), Size: int64(len(b)), MaxTimestamp: ts,
		LogPath: lp, IndexPath: ip, TimeIndexPath: tp})
	f.data[base] = b
	f.leo += int64(n)
}

func (f *fakePart) Topic() string     { return f.topic }
func (f *fakePart) TopicID() [16]byte { return f.id }
func (f *fakePart) Index() int32      { return 0 }
func (f *fakePart) Leadership() (int32, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.epoch, f.leader
}
func (f *fakePart) Settings() Settings {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.set
}
func (f *fakePart) SealedSegments() []LocalSegment {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []LocalSegment
	for _, s := range f.segs {
		if s.BaseOffset >= f.local {
			out = append(out, s)
		}
	}
	return out
}
func (f *fakePart) LastStableOffset() int64 { f.mu.Lock(); defer f.mu.Unlock(); return f.leo }
func (f *fakePart) LogStartOffset() int64   { f.mu.Lock(); defer f.mu.Unlock(); return f.logStart }
func (f *fakePart) LocalLogStartOffset() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return max(f.local, f.logStart)
}
func (f *fakePart) EpochHistory() []ManifestEpoch {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.history != nil {
		return append([]ManifestEpoch(nil), f.history...)
	}
	return []ManifestEpoch{{Epoch: 0, StartOffset: 0}}
}
func (f *fakePart) EncodeEpochHistory(h []ManifestEpoch) []byte {
	return fmt.Appendf(nil, "%v", h)
}
func (f *fakePart) ProducerSnapshot(offset int64) ([]byte, error) {
	return nil, fmt.Errorf("snapshot %d: %w", offset, os.ErrNotExist)
}
func (f *fakePart) SetTieredOffset(off int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tiered = max(f.tiered, off)
}
func (f *fakePart) AdvanceLogStart(off int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logStart = max(f.logStart, off)
	return nil
}

// dropLocal deletes local segments at or below the tiered offset, as the
// local log's retention would.
func (f *fakePart) dropLocal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.segs {
		if s.NextOffset-1 <= f.tiered && s.BaseOffset >= f.local {
			f.local = s.NextOffset
		}
	}
}

type managerEnv struct {
	m     *Manager
	store remote.Storage
	meta  *coordinator.Store
	part  *fakePart
	fence coordinator.LeaderFence
}

func newManagerEnv(t *testing.T, cfg Config) *managerEnv {
	t.Helper()
	ctx := context.Background()
	meta, err := coordinator.Open(ctx, coordinator.Config{Endpoints: etcdtest.Start(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	// A topic led by broker 1 at epoch 0, as the broker would create it.
	topic := coordinator.Topic{Name: "t", ID: [16]byte{1, 2, 3}, Partitions: []coordinator.PartitionState{{Replicas: []int32{1}, Leader: 1, LeaderEpoch: 0, ISR: []int32{1}}}}
	if err := meta.CreateTopic(ctx, topic); err != nil {
		t.Fatal(err)
	}
	st, err := remote.NewFS(remote.FSConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cfg.BrokerID = 1
	cfg.Reader.CacheDir = t.TempDir()
	m, err := NewManager(cfg, st, meta, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	p := newFakePart(t, "t", topic.ID)
	m.Register(p)
	return &managerEnv{m: m, store: st, meta: meta, part: p, fence: coordinator.LeaderFence{Topic: "t", Partition: 0, BrokerID: 1, LeaderEpoch: 0}}
}

func (e *managerEnv) records(t *testing.T) []coordinator.RemoteSegment {
	t.Helper()
	segs, err := e.meta.RemoteSegments(context.Background(), e.part.id, 0)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

func (e *managerEnv) objects(t *testing.T) []remote.ObjectInfo {
	t.Helper()
	objs, err := e.store.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestManagerUploadsReadsAndExpires(t *testing.T) {
	e := newManagerEnv(t, Config{})
	ctx := context.Background()
	now := time.Now().UnixMilli()
	for i := 0; i < 5; i++ {
		e.part.addSegment(t, 10, now-int64(5-i)*60_000) // one minute apart
	}
	e.m.RunOnce(ctx)
	recs := e.records(t)
	if len(recs) != 5 {
		t.Fatalf("%d records after one round, want 5", len(recs))
	}
	for i, r := range recs {
		if r.State != coordinator.CopyFinished || r.StartOffset != int64(10*i) || r.EndOffset != int64(10*i+9) {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	if got := len(e.objects(t)); got != 15 {
		t.Fatalf("%d objects, want 15", got)
	}
	if e.part.tiered != 49 || e.m.HighestUploadedOffset(e.part.id, 0) != 49 {
		t.Fatalf("tiered offset %d / %d, want 49", e.part.tiered, e.m.HighestUploadedOffset(e.part.id, 0))
	}
	// A second round uploads nothing new.
	e.m.RunOnce(ctx)
	if got := len(e.records(t)); got != 5 {
		t.Fatalf("%d records after a second round", got)
	}
	// Local data gone: reads come from the remote tier, exactly.
	e.part.dropLocal()
	e.m.RunOnce(ctx)
	for off := int64(0); off < 50; off += 7 {
		b, err := e.m.Read(ctx, e.part.id, 0, off, 1<<20, 50, true)
		if err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		base := off / 10 * 10
		var want []byte
		for s := base; s < 50; s += 10 {
			want = append(want, e.part.data[s]...)
		}
		if !bytes.Equal(b, want) {
			t.Fatalf("read %d: %d bytes, want %d", off, len(b), len(want))
		}
	}
	if _, err := e.m.Read(ctx, e.part.id, 0, 50, 1<<20, 60, true); !errors.Is(err, ErrNotTiered) {
		t.Fatalf("read past the remote tier: %v", err)
	}
	// retention.ms of 2.5 minutes: the three oldest segments expire; the
	// log start follows.
	e.part.mu.Lock()
	e.part.set.RetentionMs = 150_000
	e.part.mu.Unlock()
	e.m.RunOnce(ctx)
	recs = e.records(t)
	if len(recs) != 2 || recs[0].StartOffset != 30 {
		t.Fatalf("after retention.ms: %d records, first %+v", len(recs), recs)
	}
	if e.part.logStart != 30 {
		t.Fatalf("log start %d, want 30", e.part.logStart)
	}
	if got := len(e.objects(t)); got != 6 {
		t.Fatalf("%d objects after retention, want 6", got)
	}
	// retention.bytes: keep one segment's worth.
	e.part.mu.Lock()
	e.part.set.RetentionMs = -1
	e.part.set.RetentionBytes = recs[0].SizeBytes
	e.part.mu.Unlock()
	e.m.RunOnce(ctx)
	if recs = e.records(t); len(recs) != 1 || recs[0].StartOffset != 40 || e.part.logStart != 40 {
		t.Fatalf("after retention.bytes: %+v, log start %d", recs, e.part.logStart)
	}
}

// Attempts that never finished are removed with their objects, and the
// segment is uploaded again under a new id; a stale epoch is fenced.
func TestManagerOrphansAndFencing(t *testing.T) {
	e := newManagerEnv(t, Config{})
	ctx := context.Background()
	e.part.addSegment(t, 10, time.Now().UnixMilli())
	e.part.addSegment(t, 10, time.Now().UnixMilli())
	// An interrupted attempt: record copy-started and a stray object.
	orphan := coordinator.RemoteSegment{TopicID: e.part.id, Partition: 0, ID: [16]byte{9}, StartOffset: 0, EndOffset: 9,
		BrokerID: 1, SizeBytes: 10, State: coordinator.CopyStarted, StateTimeMs: time.Now().UnixMilli()}
	if err := e.meta.AddRemoteSegment(ctx, orphan, e.fence); err != nil {
		t.Fatal(err)
	}
	key := SegmentKey("t", e.part.id, 0, 0, orphan.ID, ExtLog)
	if err := e.store.Put(ctx, key, bytes.NewReader([]byte("partial")), 7); err != nil {
		t.Fatal(err)
	}
	e.m.RunOnce(ctx)
	recs := e.records(t)
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %+v", len(recs), recs)
	}
	for _, r := range recs {
		if r.ID == orphan.ID || r.State != coordinator.CopyFinished {
			t.Fatalf("record %+v", r)
		}
	}
	for _, o := range e.objects(t) {
		if o.Key == key {
			t.Fatalf("orphan object %s still there", key)
		}
	}
	// The partition's epoch moves on in etcd but the local view is stale:
	// the upload is fenced and nothing is recorded.
	topic, err := e.meta.Topic(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	ps := topic.Partitions[0]
	ps.LeaderEpoch++
	ps.PartitionEpoch++
	if err := e.meta.UpdatePartition(ctx, "t", ps, topic.Partitions[0].PartitionEpoch); err != nil {
		t.Fatal(err)
	}
	e.part.addSegment(t, 10, time.Now().UnixMilli())
	e.m.RunOnce(ctx)
	if got := len(e.records(t)); got != 2 {
		t.Fatalf("a fenced leader recorded a segment: %d records", got)
	}
	if got := len(e.objects(t)); got != 6 {
		t.Fatalf("a fenced leader wrote objects: %d", got)
	}
}

// countingPart counts the tasks run for a partition (each reads Settings
// once).
type countingPart struct {
	*fakePart
	tasks atomic.Int64
}

func (c *countingPart) Settings() Settings {
	c.tasks.Add(1)
	return c.fakePart.Settings()
}

// TestRegisterRunsOnlyThatPartition: registering a partition runs its task
// at once and no other's (a topic of thousands of partitions registers them
// one by one; a round over all of them per registration was quadratic),
// KickPartition only the one it names, while Kick runs every partition's.
func TestRegisterRunsOnlyThatPartition(t *testing.T) {
	e := newManagerEnv(t, Config{TaskInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitTasks := func(c *countingPart, n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for c.tasks.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("partition %x: %d tasks, want %d", c.id, c.tasks.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	first := &countingPart{fakePart: newFakePart(t, "first", [16]byte{9, 9})}
	e.m.Register(first)
	waitTasks(first, 1)
	time.Sleep(50 * time.Millisecond) // let the round that ran it end
	before := first.tasks.Load()

	var later []*countingPart
	for i := range 40 {
		c := &countingPart{fakePart: newFakePart(t, fmt.Sprintf("p%d", i), [16]byte{7, byte(i)})}
		later = append(later, c)
		e.m.Register(c)
	}
	for _, c := range later {
		waitTasks(c, 1)
	}
	time.Sleep(50 * time.Millisecond)
	if got := first.tasks.Load(); got != before {
		t.Fatalf("registering 40 other partitions ran the first one's task %d more times, want 0", got-before)
	}
	for _, c := range later {
		if n := c.tasks.Load(); n != 1 {
			t.Fatalf("partition %x: %d tasks after its registration, want 1", c.id, n)
		}
	}

	e.m.KickPartition(later[3].id, 0)
	waitTasks(later[3], 2)
	time.Sleep(50 * time.Millisecond)
	if got := first.tasks.Load(); got != before {
		t.Fatalf("KickPartition of another partition ran the first one's task")
	}
	e.m.KickPartition([16]byte{0xee}, 0) // not registered: nothing to run

	e.m.Kick()
	waitTasks(first, before+1)
	for i, c := range later {
		n := int64(2)
		if i == 3 {
			n = 3
		}
		waitTasks(c, n)
	}
}

// gatedStore holds every Put of a key containing hold until the gate is
// opened.
type gatedStore struct {
	remote.Storage
	hold string
	gate chan struct{}
	held atomic.Int64
}

func (g *gatedStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if strings.Contains(key, g.hold) {
		g.held.Add(1)
		select {
		case <-g.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Storage.Put(ctx, key, r, size)
}

// TestRunDoesNotQueueBehindSlowUploads: a partition whose upload is stuck
// does not hold up the task another partition is kicked for, and a kick
// that arrives while a partition's own task runs gets it one more task (a
// segment sealed meanwhile is uploaded without waiting for the interval).
func TestRunDoesNotQueueBehindSlowUploads(t *testing.T) {
	ctx := context.Background()
	meta, err := coordinator.Open(ctx, coordinator.Config{Endpoints: etcdtest.Start(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	slow := newFakePart(t, "slow", [16]byte{5, 1})
	fast := newFakePart(t, "fast", [16]byte{5, 2})
	for _, p := range []*fakePart{slow, fast} {
		topic := coordinator.Topic{Name: p.topic, ID: p.id, Partitions: []coordinator.PartitionState{{Replicas: []int32{1}, Leader: 1, LeaderEpoch: 0, ISR: []int32{1}}}}
		if err := meta.CreateTopic(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := remote.NewFS(remote.FSConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	st := &gatedStore{Storage: fs, hold: "slow-", gate: make(chan struct{})}
	m, err := NewManager(Config{BrokerID: 1, TaskInterval: time.Hour, Reader: ReaderConfig{CacheDir: t.TempDir()}}, st, meta, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); m.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	tiered := func(p *fakePart) int64 { p.mu.Lock(); defer p.mu.Unlock(); return p.tiered }
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("after 10 s: %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	slow.addSegment(t, 10, 1000)
	m.Register(slow)
	eventually("the slow partition's upload is under way", func() bool { return st.held.Load() > 0 })

	fast.addSegment(t, 10, 1000)
	m.Register(fast)
	eventually("the fast partition uploaded while the slow one is stuck", func() bool { return tiered(fast) == 9 })
	fast.addSegment(t, 5, 2000)
	m.KickPartition(fast.id, 0)
	eventually("the fast partition's second segment uploaded on its kick", func() bool { return tiered(fast) == 14 })
	if got := tiered(slow); got != -1 {
		t.Fatalf("slow partition tiered to %d while its upload is held", got)
	}

	// Sealed while the slow partition's task runs, past the list it took.
	slow.addSegment(t, 7, 3000)
	m.KickPartition(slow.id, 0)
	close(st.gate)
	eventually("the slow partition uploaded both segments with no interval", func() bool { return tiered(slow) == 16 })
	segs, err := meta.RemoteSegments(ctx, slow.id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 2 || segs[0].StartOffset != 0 || segs[1].StartOffset != 10 || segs[1].EndOffset != 16 {
		t.Fatalf("slow partition's records: %+v", segs)
	}
	for _, r := range segs {
		if r.State != coordinator.CopyFinished {
			t.Fatalf("segment %d: state %v, want copy-finished", r.StartOffset, r.State)
		}
	}
}

// TestTaskQueue: asked-for partitions run before the round's, a partition
// is queued once however often it is asked for, one asked for while it
// runs runs once more after, and close ends the workers' waits.
func TestTaskQueue(t *testing.T) {
	k := func(i byte) partKey { return partKey{id: [16]byte{i}} }
	q := newTaskQueue()
	pop := func() partKey {
		t.Helper()
		got, ok := q.pop()
		if !ok {
			t.Fatal("pop: queue closed")
		}
		return got
	}
	q.push([]partKey{k(1), k(2), k(3)}, false)
	q.push([]partKey{k(3), k(4), k(3)}, true)
	q.push([]partKey{k(1), k(4)}, false) // already queued: no second entry
	var order []byte
	for range 4 {
		order = append(order, pop().id[0])
	}
	if fmt.Sprint(order) != "[3 4 1 2]" {
		t.Fatalf("pop order %v, want [3 4 1 2]", order)
	}
	// All four are running. Asked for again: 2 once more after it ends;
	// 1 not, since it ends first.
	q.done(k(1))
	q.push([]partKey{k(2), k(2), k(1)}, false)
	q.done(k(3))
	q.done(k(4))
	q.done(k(2))
	got := []byte{pop().id[0], pop().id[0]}
	if fmt.Sprint(got) != "[2 1]" && fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("after the reruns popped %v, want 1 and 2", got)
	}
	q.done(k(1))
	q.done(k(2))
	ended := make(chan bool)
	go func() { _, ok := q.pop(); ended <- ok }()
	select {
	case <-ended:
		t.Fatal("pop returned with nothing queued")
	case <-time.After(50 * time.Millisecond):
	}
	q.close()
	if ok := <-ended; ok {
		t.Fatal("pop after close returned a partition")
	}
}
