package tiering

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/remote"
)

// Settings of one partition that the manager obeys (topic configs resolved
// by the broker; Kafka names in comments).
type Settings struct {
	RemoteEnabled  bool  // remote.storage.enable
	RetentionMs    int64 // retention.ms over local + remote, -1 = forever
	RetentionBytes int64 // retention.bytes over local + remote, -1 = unlimited
}

// LocalSegment is a sealed local segment offered for upload.
type LocalSegment struct {
	BaseOffset, NextOffset int64 // NextOffset exclusive
	Size                   int64
	MaxTimestamp           int64
	LogPath                string
	IndexPath              string
	TimeIndexPath          string

	// A slice (sliceSegment) is the part of a local segment from byte pos
	// of LogPath, with its own indexes.
	sliced          bool
	pos             int64
	offIdx, timeIdx []byte
}

// Partition is what the manager needs of one local partition replica; the
// broker's partition satisfies it (tiering never imports broker).
type Partition interface {
	Topic() string
	TopicID() [16]byte
	Index() int32
	// Leadership is this broker's leader epoch of the partition and whether
	// it currently leads it.
	Leadership() (epoch int32, leader bool)
	Settings() Settings
	// SealedSegments lists the local segments that are no longer written,
	// oldest first.
	SealedSegments() []LocalSegment
	// LastStableOffset: offsets below it are committed (the high watermark).
	LastStableOffset() int64
	LogStartOffset() int64
	LocalLogStartOffset() int64
	// EpochHistory is the leader-epoch history, oldest first.
	EpochHistory() []ManifestEpoch
	// EncodeEpochHistory renders entries in the local checkpoint format.
	EncodeEpochHistory([]ManifestEpoch) []byte
	// ProducerSnapshot is the raw producer snapshot taken at offset (the
	// next segment's base); an error when there is none.
	ProducerSnapshot(offset int64) ([]byte, error)
	// SetTieredOffset tells the local log the last offset safely uploaded
	// (local deletion is gated on it).
	SetTieredOffset(offset int64)
	// AdvanceLogStart moves the log start (remote retention).
	AdvanceLogStart(offset int64) error
}

// Config configures a Manager (Kafka's broker names in comments).
type Config struct {
	BrokerID int32
	// TaskInterval: remote.log.manager.task.interval.ms (Kafka: 30 s).
	TaskInterval time.Duration
	// CopyBytesPerSecond: remote.log.manager.copy.max.bytes.per.second;
	// <= 0 = unlimited.
	CopyBytesPerSecond int64
	// CopyConcurrency: partitions uploading at once.
	CopyConcurrency int
	Reader          ReaderConfig
	Now             func() time.Time
}

// Metadata is the part of coordinator.Store the manager uses.
type Metadata interface {
	AddRemoteSegment(ctx context.Context, seg coordinator.RemoteSegment, fence coordinator.LeaderFence) error
	UpdateRemoteSegmentState(ctx context.Context, topicID [16]byte, partition int32, id [16]byte, to coordinator.RemoteSegmentState, fence coordinator.LeaderFence) error
	RemoteSegments(ctx context.Context, topicID [16]byte, partition int32) ([]coordinator.RemoteSegment, error)
	DeleteAllRemoteSegments(ctx context.Context, topicID [16]byte) error
}

type partKey struct {
	id [16]byte
	p  int32
}

// partState is the manager's view of one partition's remote tier.
type partState struct {
	p Partition

	mu       sync.Mutex // serializes tasks of this partition
	loaded   bool
	epoch    int32                       // leader epoch the records were loaded under; -1 as a follower
	segs     []coordinator.RemoteSegment // every record, by StartOffset
	lastLoad time.Time

	view sync.RWMutex // guards finished for readers
	fin  []coordinator.RemoteSegment
}

// Manager is KIP-405's RemoteLogManager: it uploads sealed segments of the
// partitions this broker leads, enforces remote retention, removes the
// objects of uploads that never finished, and serves cold reads.
type Manager struct {
	cfg    Config
	store  remote.Storage
	meta   Metadata
	reader *Reader
	logger *slog.Logger
	limit  *rateLimiter

	mu    sync.Mutex
	parts map[partKey]*partState
	// Work asked for before the next interval: the partitions registered
	// since the last round (pending) or all of them (kickAll). kick wakes Run.
	pending map[partKey]bool
	kickAll bool
	kick    chan struct{}
}

// NewManager builds a manager; Run starts its work.
func NewManager(cfg Config, store remote.Storage, meta Metadata, logger *slog.Logger) (*Manager, error) {
	if cfg.TaskInterval <= 0 {
		cfg.TaskInterval = 30 * time.Second
	}
	if cfg.CopyConcurrency <= 0 {
		cfg.CopyConcurrency = 10
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.Default()
	}
	r, err := NewReader(store, cfg.Reader, logger)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg: cfg, store: store, meta: meta, reader: r, logger: logger,
		limit: newRateLimiter(cfg.CopyBytesPerSecond),
		parts: map[partKey]*partState{}, pending: map[partKey]bool{}, kick: make(chan struct{}, 1),
	}
	r.SetSuccessor(func(seg SegmentRef) (SegmentRef, bool) {
		return m.segmentFor(seg.TopicID, seg.Partition, seg.EndOffset+1)
	})
	return m, nil
}

// Reader is the cold-read path.
func (m *Manager) Reader() *Reader { return m.reader }

// Close stops the reader and closes the storage; Run stops with its
// context.
func (m *Manager) Close() error {
	err := m.reader.Close()
	if cerr := m.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// Register adds (or replaces) a partition replica.
func (m *Manager) Register(p Partition) {
	k := partKey{p.TopicID(), p.Index()}
	m.mu.Lock()
	if old, ok := m.parts[k]; ok && old.p == p {
		m.mu.Unlock()
		return
	}
	m.parts[k] = &partState{p: p, epoch: -1}
	// Only this partition's task runs early: a topic of thousands of
	// partitions registers them one by one, and a round over every
	// partition per registration made creating it quadratic.
	m.pending[k] = true
	m.mu.Unlock()
	m.wake()
}

// Unregister forgets a partition replica (closed or moved away).
func (m *Manager) Unregister(topicID [16]byte, index int32) {
	m.mu.Lock()
	delete(m.parts, partKey{topicID, index})
	m.mu.Unlock()
}

// Kick runs every partition's task now instead of at the next interval.
func (m *Manager) Kick() {
	m.mu.Lock()
	m.kickAll = true
	m.mu.Unlock()
	m.wake()
}

// KickPartition runs one registered partition's task now (a new leader
// resumes its uploads at once instead of at the next interval).
func (m *Manager) KickPartition(topicID [16]byte, index int32) {
	k := partKey{topicID, index}
	m.mu.Lock()
	_, ok := m.parts[k]
	if ok {
		m.pending[k] = true
	}
	m.mu.Unlock()
	if ok {
		m.wake()
	}
}

func (m *Manager) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// kicked returns the partitions whose tasks were asked for early (all of
// them after Kick) and forgets the request.
func (m *Manager) kicked() []partKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []partKey
	if m.kickAll {
		for k := range m.parts {
			out = append(out, k)
		}
	} else {
		for k := range m.pending {
			out = append(out, k)
		}
	}
	m.kickAll = false
	clear(m.pending)
	return out
}

func (m *Manager) keys() []partKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]partKey, 0, len(m.parts))
	for k := range m.parts {
		out = append(out, k)
	}
	return out
}

func (m *Manager) state(topicID [16]byte, index int32) *partState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.parts[partKey{topicID, index}]
}

// Run performs every partition's task each TaskInterval until ctx ends,
// and the tasks asked for by Register and Kick in between, on
// CopyConcurrency workers. Asked-for tasks go before the round's: a
// partition draining a long backlog, or a round over thousands of
// partitions, never holds up the task a partition was kicked for (a
// segment just sealed uploads now). Run returns when ctx ends and the
// tasks under way have stopped.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.TaskInterval)
	defer t.Stop()
	q := newTaskQueue()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer q.close()
	for range m.cfg.CopyConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k, ok := q.pop()
				if !ok {
					return
				}
				// Looked up now: a partition registered again since (a new
				// replica object) runs as it is now, and never beside a
				// task of its previous self.
				if s := m.state(k.id, k.p); s != nil && ctx.Err() == nil {
					m.runTask(ctx, s)
				}
				q.done(k)
			}
		}()
	}
	q.push(m.keys(), false)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			q.push(m.keys(), false)
		case <-m.kick:
			q.push(m.kicked(), true)
		}
	}
}

// RunOnce performs one task round over every registered partition, at most
// CopyConcurrency partitions at a time, and returns when all are done.
func (m *Manager) RunOnce(ctx context.Context) {
	sem := make(chan struct{}, m.cfg.CopyConcurrency)
	var wg sync.WaitGroup
	for _, k := range m.keys() {
		s := m.state(k.id, k.p)
		if ctx.Err() != nil {
			break
		}
		if s == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			m.runTask(ctx, s)
		}()
	}
	wg.Wait()
}

// runTask performs one task of s and reports its failure.
func (m *Manager) runTask(ctx context.Context, s *partState) {
	if err := m.task(ctx, s); err != nil && ctx.Err() == nil {
		m.logger.Warn("tiering: partition task failed; retrying next round",
			"topic", s.p.Topic(), "partition", s.p.Index(), "err", err)
		metricTaskErrors.Inc()
	}
}

// taskQueue holds the partitions whose tasks Run's workers are to run:
// the asked-for ones (urgent) before the round's (normal). A partition is
// queued at most once at a time and runs on one worker at a time; asked
// for while it runs, it is queued once more after (what changed meanwhile,
// such as a segment sealed after its task looked, is not missed).
type taskQueue struct {
	mu             sync.Mutex
	cond           *sync.Cond
	urgent, normal []partKey
	state          map[partKey]taskState
	closed         bool
}

type taskState uint8

const (
	taskQueued  taskState = iota + 1
	taskRunning           // and not asked for since it started
	taskRerun             // running, and asked for since it started
)

func newTaskQueue() *taskQueue {
	q := &taskQueue{state: map[partKey]taskState{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *taskQueue) push(keys []partKey, urgent bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, k := range keys {
		switch q.state[k] {
		case 0:
			q.state[k] = taskQueued
			q.enqueue(k, urgent)
		case taskQueued:
			if urgent {
				// Also at the front; pop skips whichever entry comes second.
				q.urgent = append(q.urgent, k)
			}
		case taskRunning:
			q.state[k] = taskRerun
		}
	}
	q.cond.Broadcast()
}

func (q *taskQueue) enqueue(k partKey, urgent bool) {
	if urgent {
		q.urgent = append(q.urgent, k)
	} else {
		q.normal = append(q.normal, k)
	}
}

// pop waits for a queued partition and marks it running; false once the
// queue is closed.
func (q *taskQueue) pop() (partKey, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.closed {
			return partKey{}, false
		}
		for _, l := range []*[]partKey{&q.urgent, &q.normal} {
			for len(*l) > 0 {
				k := (*l)[0]
				*l = (*l)[1:]
				if q.state[k] == taskQueued {
					q.state[k] = taskRunning
					return k, true
				}
			}
		}
		q.cond.Wait()
	}
}

// done ends k's run; asked for during it, k is queued again at the front.
func (q *taskQueue) done(k partKey) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.state[k] == taskRerun {
		q.state[k] = taskQueued
		q.urgent = append(q.urgent, k)
		q.cond.Broadcast()
		return
	}
	delete(q.state, k)
}

func (q *taskQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// task is one round for one partition: on the leader, clean up, upload,
// expire; on a follower, learn what the leader uploaded.
func (m *Manager) task(ctx context.Context, s *partState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.p
	set := p.Settings()
	if !set.RemoteEnabled {
		return nil
	}
	epoch, leader := p.Leadership()
	if !leader {
		// Followers only track the leader's uploads, to gate their own
		// local deletion.
		if !s.loaded || m.cfg.Now().Sub(s.lastLoad) > m.cfg.TaskInterval {
			if err := m.load(ctx, s, -1); err != nil {
				return err
			}
		}
		return nil
	}
	if !s.loaded || s.epoch != epoch {
		if err := m.load(ctx, s, epoch); err != nil {
			return err
		}
	}
	fence := coordinator.LeaderFence{Topic: p.Topic(), Partition: p.Index(), BrokerID: m.cfg.BrokerID, LeaderEpoch: epoch}
	// No upload of this partition is in flight (tasks are serialized), so
	// every copy-started record is an attempt that never finished.
	if err := m.removeUnfinished(ctx, s, fence); err != nil {
		return err
	}
	if err := m.removeForeign(ctx, s, fence); err != nil {
		return err
	}
	if err := m.syncLogStart(s); err != nil {
		return err
	}
	if err := m.upload(ctx, s, fence); err != nil {
		return err
	}
	return m.expire(ctx, s, set, fence)
}

// load reads the partition's records from etcd.
func (m *Manager) load(ctx context.Context, s *partState, epoch int32) error {
	segs, err := m.meta.RemoteSegments(ctx, s.p.TopicID(), s.p.Index())
	if err != nil {
		return fmt.Errorf("list remote segments: %w", err)
	}
	s.segs, s.loaded, s.epoch, s.lastLoad = segs, true, epoch, m.cfg.Now()
	m.publish(s)
	return nil
}

// publish rebuilds the finished view readers use and tells the local log
// how far the remote tier reaches.
// On the leader only the segments of its epoch lineage count.
func (m *Manager) publish(s *partState) {
	var fin []coordinator.RemoteSegment
	var history []ManifestEpoch
	if s.epoch >= 0 {
		history = s.p.EpochHistory()
	}
	up := int64(-1)
	for _, r := range s.segs {
		if r.State == coordinator.CopyFinished && inLineage(r, history) {
			fin = append(fin, r)
			up = max(up, r.EndOffset)
		}
	}
	s.view.Lock()
	s.fin = fin
	s.view.Unlock()
	if up >= 0 {
		s.p.SetTieredOffset(up)
	}
}

// finished returns the readable remote segments of a partition, by offset.
func (s *partState) finished() []coordinator.RemoteSegment {
	s.view.RLock()
	defer s.view.RUnlock()
	return s.fin
}

// highestUploaded is the end offset of the last finished segment, -1 none.
func (s *partState) highestUploaded() int64 {
	up := int64(-1)
	for _, r := range s.finished() {
		up = max(up, r.EndOffset)
	}
	return up
}

// removeUnfinished deletes the objects and records of attempts that never
// finished (copy started) or whose deletion was interrupted (delete
// started). DESIGN.md invariant 4.
func (m *Manager) removeUnfinished(ctx context.Context, s *partState, fence coordinator.LeaderFence) error {
	for _, r := range slices.Clone(s.segs) {
		if r.State != coordinator.CopyStarted && r.State != coordinator.DeleteStarted {
			continue
		}
		m.logger.Info("tiering: removing objects of an unfinished remote segment",
			"topic", s.p.Topic(), "partition", s.p.Index(), "segment", idString(r.ID), "state", r.State.String(), "base", r.StartOffset)
		if err := m.deleteSegment(ctx, s, r, fence); err != nil {
			return err
		}
		metricOrphansRemoved.Inc()
	}
	return nil
}

// deleteSegment walks r through delete-started → objects removed →
// delete-finished and drops it from s.
func (m *Manager) deleteSegment(ctx context.Context, s *partState, r coordinator.RemoteSegment, fence coordinator.LeaderFence) error {
	if r.State != coordinator.DeleteStarted {
		if err := m.meta.UpdateRemoteSegmentState(ctx, r.TopicID, r.Partition, r.ID, coordinator.DeleteStarted, fence); err != nil {
			return fmt.Errorf("mark segment %s delete-started: %w", idString(r.ID), err)
		}
		s.setState(r.ID, coordinator.DeleteStarted)
		m.publish(s)
	}
	for _, ext := range []string{ExtManifest, ExtIndexes, ExtLog} {
		key := SegmentKey(s.p.Topic(), r.TopicID, r.Partition, r.StartOffset, r.ID, ext)
		if err := m.store.Delete(ctx, key); err != nil {
			return fmt.Errorf("delete %s: %w", key, err)
		}
	}
	m.reader.Forget(r.ID)
	if err := m.meta.UpdateRemoteSegmentState(ctx, r.TopicID, r.Partition, r.ID, coordinator.DeleteFinished, fence); err != nil {
		return fmt.Errorf("mark segment %s delete-finished: %w", idString(r.ID), err)
	}
	s.segs = slices.DeleteFunc(s.segs, func(x coordinator.RemoteSegment) bool { return x.ID == r.ID })
	return nil
}

func (s *partState) setState(id [16]byte, st coordinator.RemoteSegmentState) {
	for i := range s.segs {
		if s.segs[i].ID == id {
			s.segs[i].State = st
		}
	}
}

// syncLogStart keeps the log start where the data begins: at the first
// finished remote segment, or at the local log start when the remote tier
// holds nothing below it.
func (m *Manager) syncLogStart(s *partState) error {
	p := s.p
	ls, local := p.LogStartOffset(), p.LocalLogStartOffset()
	if ls >= local {
		return nil
	}
	// The remote tier must hold [ls, local) contiguously; move the log
	// start past any hole at its beginning.
	want := local
	fin := s.finished()
	next := int64(-1)
	for i := len(fin) - 1; i >= 0; i-- {
		r := fin[i]
		if next < 0 {
			if r.EndOffset+1 < local {
				break // the newest remote segment does not reach the local log
			}
		} else if r.EndOffset+1 < next {
			break
		}
		next = r.StartOffset
		want = r.StartOffset
	}
	if want > ls {
		m.logger.Info("tiering: moving the log start to the first remote offset", "topic", p.Topic(), "partition", p.Index(), "from", ls, "to", want)
		return p.AdvanceLogStart(want)
	}
	return nil
}

// upload copies every sealed segment that is committed and not yet in the
// remote tier, oldest first.
func (m *Manager) upload(ctx context.Context, s *partState, fence coordinator.LeaderFence) error {
	p := s.p
	lso := p.LastStableOffset()
	for _, seg := range p.SealedSegments() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		up := s.highestUploaded()
		if seg.NextOffset-1 <= up || seg.Size == 0 {
			continue
		}
		if seg.NextOffset > lso {
			return nil // not committed yet
		}
		if up >= seg.BaseOffset {
			// Our segment straddles what another leader uploaded: send
			// only the rest, so no offset is in the remote log twice.
			part, err := sliceSegment(seg, up+1, sliceIndexInterval)
			if err != nil {
				return err
			}
			m.logger.Info("tiering: uploading the part of a segment past the highest uploaded offset",
				"topic", p.Topic(), "partition", p.Index(), "segment_base", seg.BaseOffset, "from", up+1, "end", seg.NextOffset-1)
			seg = part
		}
		if err := m.copySegment(ctx, s, seg, fence); err != nil {
			return err
		}
	}
	return nil
}

// copySegment uploads one segment under a fresh id: record copy-started,
// put .log, .indexes and .manifest, record copy-finished.
func (m *Manager) copySegment(ctx context.Context, s *partState, seg LocalSegment, fence coordinator.LeaderFence) error {
	p := s.p
	start := m.cfg.Now()
	var id [16]byte
	_, _ = rand.Read(id[:])
	history := p.EpochHistory()
	indexes, man, err := buildIndexes(p, seg, history)
	if err != nil {
		return err
	}
	man.SegmentID = idString(id)
	man.BrokerID = m.cfg.BrokerID
	man.LeaderEpoch = fence.LeaderEpoch
	man.CreatedMs = start.UnixMilli()
	rec := coordinator.RemoteSegment{
		TopicID: p.TopicID(), Partition: p.Index(), ID: id,
		StartOffset: seg.BaseOffset, EndOffset: seg.NextOffset - 1, MaxTimestamp: seg.MaxTimestamp,
		BrokerID: m.cfg.BrokerID, LeaderEpoch: fence.LeaderEpoch, SizeBytes: seg.Size,
		State: coordinator.CopyStarted, StateTimeMs: start.UnixMilli(),
	}
	for _, e := range man.Epochs {
		rec.Epochs = append(rec.Epochs, coordinator.EpochStart{Epoch: e.Epoch, StartOffset: e.StartOffset})
	}
	if err := m.meta.AddRemoteSegment(ctx, rec, fence); err != nil {
		return fmt.Errorf("record copy-started of segment %d: %w", seg.BaseOffset, err)
	}
	s.segs = append(s.segs, rec)
	key := func(ext string) string { return SegmentKey(p.Topic(), p.TopicID(), p.Index(), seg.BaseOffset, id, ext) }
	// The segment and its indexes go up together; the manifest, which
	// makes the set complete, after both.
	idxErr := make(chan error, 1)
	go func() { idxErr <- m.putBytes(ctx, key(ExtIndexes), indexes) }()
	crc, err := m.putFile(ctx, key(ExtLog), seg.LogPath, seg.pos, seg.Size)
	ierr := <-idxErr
	if err != nil {
		return fmt.Errorf("upload segment %d: %w", seg.BaseOffset, err)
	}
	if ierr != nil {
		return fmt.Errorf("upload indexes of segment %d: %w", seg.BaseOffset, ierr)
	}
	man.LogCRC32C = crc
	mb, err := EncodeManifest(man)
	if err != nil {
		return err
	}
	if err := m.putBytes(ctx, key(ExtManifest), mb); err != nil {
		return fmt.Errorf("upload manifest of segment %d: %w", seg.BaseOffset, err)
	}
	if err := m.meta.UpdateRemoteSegmentState(ctx, rec.TopicID, rec.Partition, id, coordinator.CopyFinished, fence); err != nil {
		return fmt.Errorf("record copy-finished of segment %d: %w", seg.BaseOffset, err)
	}
	s.setState(id, coordinator.CopyFinished)
	m.publish(s)
	took := m.cfg.Now().Sub(start)
	metricUploadedSegments.Inc()
	metricUploadedBytes.Add(float64(seg.Size + int64(len(indexes)) + int64(len(mb))))
	metricUploadSeconds.Observe(took.Seconds())
	m.logger.Debug("tiering: segment uploaded", "topic", p.Topic(), "partition", p.Index(),
		"base", seg.BaseOffset, "end", seg.NextOffset-1, "bytes", seg.Size, "segment", man.SegmentID, "took", took)
	return nil
}

// expire applies retention.ms / retention.bytes over both tiers to the
// remote segments, oldest first, and drops those below the log start.
func (m *Manager) expire(ctx context.Context, s *partState, set Settings, fence coordinator.LeaderFence) error {
	p := s.p
	fin := s.finished()
	if len(fin) == 0 {
		return nil
	}
	nowMs := m.cfg.Now().UnixMilli()
	var remoteBytes int64
	for _, r := range fin {
		remoteBytes += r.SizeBytes
	}
	up := s.highestUploaded()
	var localOnly int64 // local bytes not yet in the remote tier
	for _, seg := range p.SealedSegments() {
		if seg.NextOffset-1 > up {
			localOnly += seg.Size
		}
	}
	total := remoteBytes + localOnly
	logStart := p.LogStartOffset()
	for _, r := range fin {
		why := ""
		switch {
		case r.EndOffset < logStart:
			why = "below log start"
		case set.RetentionMs >= 0 && nowMs-r.MaxTimestamp > set.RetentionMs:
			why = "retention.ms"
		case set.RetentionBytes >= 0 && total-r.SizeBytes >= set.RetentionBytes:
			why = "retention.bytes"
		}
		if why == "" {
			break // retention removes a prefix of the log
		}
		if err := m.meta.UpdateRemoteSegmentState(ctx, r.TopicID, r.Partition, r.ID, coordinator.DeleteStarted, fence); err != nil {
			return fmt.Errorf("mark segment %s delete-started: %w", idString(r.ID), err)
		}
		s.setState(r.ID, coordinator.DeleteStarted)
		m.publish(s)
		if r.EndOffset+1 > p.LogStartOffset() {
			if err := p.AdvanceLogStart(r.EndOffset + 1); err != nil {
				return fmt.Errorf("advance log start to %d: %w", r.EndOffset+1, err)
			}
		}
		r.State = coordinator.DeleteStarted
		if err := m.deleteSegment(ctx, s, r, fence); err != nil {
			return err
		}
		total -= r.SizeBytes
		metricExpiredSegments.Inc()
		m.logger.Info("tiering: remote segment expired", "topic", p.Topic(), "partition", p.Index(),
			"base", r.StartOffset, "end", r.EndOffset, "reason", why)
	}
	return nil
}

// HighestUploadedOffset is ListOffsets -5: the last offset in the remote
// tier, -1 when there is none.
func (m *Manager) HighestUploadedOffset(topicID [16]byte, index int32) int64 {
	s := m.state(topicID, index)
	if s == nil {
		return -1
	}
	return s.highestUploaded()
}

// RemoteSize is the bytes of a partition's finished remote segments.
func (m *Manager) RemoteSize(topicID [16]byte, index int32) int64 {
	s := m.state(topicID, index)
	if s == nil {
		return 0
	}
	var n int64
	for _, r := range s.finished() {
		n += r.SizeBytes
	}
	return n
}

// segmentFor finds the finished remote segment holding offset.
func (m *Manager) segmentFor(topicID [16]byte, index int32, offset int64) (SegmentRef, bool) {
	s := m.state(topicID, index)
	if s == nil {
		return SegmentRef{}, false
	}
	fin := s.finished()
	i, _ := slices.BinarySearchFunc(fin, offset, func(r coordinator.RemoteSegment, off int64) int {
		switch {
		case r.EndOffset < off:
			return -1
		case r.StartOffset > off:
			return 1
		}
		return 0
	})
	// Overlapping segments (a re-upload after a leader change) are
	// equivalent; take the first that holds the offset.
	for ; i < len(fin); i++ {
		if r := fin[i]; r.StartOffset <= offset && offset <= r.EndOffset {
			return SegmentRef{Topic: s.p.Topic(), TopicID: r.TopicID, Partition: r.Partition, ID: r.ID,
				BaseOffset: r.StartOffset, EndOffset: r.EndOffset, SizeBytes: r.SizeBytes}, true
		}
		if fin[i].StartOffset > offset {
			break
		}
	}
	return SegmentRef{}, false
}

// Read serves a cold fetch: whole batches from offset (in the remote tier)
// up to maxBytes (at least one batch when minOne), never at or past
// maxOffset. It continues into the next remote segment while budget is
// left. ErrNotTiered when no finished segment holds offset. It is ReadParts
// joined into one slice.
func (m *Manager) Read(ctx context.Context, topicID [16]byte, index int32, offset int64, maxBytes int, maxOffset int64, minOne bool) ([]byte, error) {
	var h Hold
	defer h.Release()
	parts, err := m.ReadParts(ctx, topicID, index, offset, maxBytes, maxOffset, minOne, &h)
	return ownedParts(parts, &h), err
}

// ReadParts is Read answering in consecutive parts of whole batches (views
// of cached chunks, see Reader.ReadParts), which the caller sends in order
// without joining them, then releases hold.
func (m *Manager) ReadParts(ctx context.Context, topicID [16]byte, index int32, offset int64, maxBytes int, maxOffset int64, minOne bool, hold *Hold) ([][]byte, error) {
	var out [][]byte
	n := 0
	for {
		ref, ok := m.segmentFor(topicID, index, offset)
		if !ok {
			if n > 0 {
				return out, nil
			}
			return nil, fmt.Errorf("offset %d of partition %d: %w", offset, index, ErrNotTiered)
		}
		parts, err := m.reader.ReadParts(ctx, ref, offset, maxBytes-n, minOne && n == 0, hold)
		if err != nil {
			if n > 0 && !errors.Is(err, ErrCorrupt) {
				return out, nil
			}
			return nil, err
		}
		parts, last := trimParts(parts, maxOffset)
		got := 0
		for _, p := range parts {
			got += len(p)
		}
		out = append(out, parts...)
		n += got
		metricRemoteReadBytes.Add(float64(got))
		next := ref.EndOffset + 1
		if got == 0 || n >= maxBytes || next >= maxOffset || last < ref.EndOffset {
			return out, nil
		}
		offset = next
	}
}

// trimParts keeps the whole batches of parts below maxOffset (all when
// maxOffset < 0) and returns the last offset kept, -1 if none.
func trimParts(parts [][]byte, maxOffset int64) ([][]byte, int64) {
	for i, p := range parts {
		if t := trimBatches(p, maxOffset); len(t) < len(p) {
			parts = parts[:i]
			if len(t) > 0 {
				parts = append(parts, t)
			}
			break
		}
	}
	if len(parts) == 0 {
		return nil, -1
	}
	return parts, lastOffset(parts[len(parts)-1])
}

// OffsetForTimestamp searches the remote tier for the first offset whose
// timestamp is >= ts.
func (m *Manager) OffsetForTimestamp(ctx context.Context, topicID [16]byte, index int32, ts int64) (offset, timestamp int64, found bool, err error) {
	s := m.state(topicID, index)
	if s == nil {
		return -1, -1, false, nil
	}
	for _, r := range s.finished() {
		if r.MaxTimestamp < ts {
			continue
		}
		ref := SegmentRef{Topic: s.p.Topic(), TopicID: r.TopicID, Partition: r.Partition, ID: r.ID,
			BaseOffset: r.StartOffset, EndOffset: r.EndOffset, SizeBytes: r.SizeBytes}
		off, t, ok, err := m.reader.OffsetForTimestamp(ctx, ref, ts)
		if err != nil || ok {
			return off, t, ok, err
		}
	}
	return -1, -1, false, nil
}

// DeleteTopic removes every object and record of a deleted topic. The
// broker calls it once the topic is gone from etcd.
func (m *Manager) DeleteTopic(ctx context.Context, topic string, topicID [16]byte, partitions int32) error {
	for p := int32(0); p < partitions; p++ {
		objs, err := m.store.List(ctx, PartitionPrefix(topic, topicID, p))
		if err != nil {
			return err
		}
		for _, o := range objs {
			if err := m.store.Delete(ctx, o.Key); err != nil {
				return err
			}
		}
	}
	return m.meta.DeleteAllRemoteSegments(ctx, topicID)
}

// sliceIndexInterval is the bytes between offset index entries of an
// uploaded slice (the local log's index.interval.bytes default).
const sliceIndexInterval = 4096

func idString(id [16]byte) string { return fmt.Sprintf("%x", id[:]) }
