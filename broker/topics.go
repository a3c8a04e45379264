package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/stratabroker/strata/broker/locallog"
	"github.com/stratabroker/strata/coordinator"
)

// topicState is this broker's view of one topic, rebuilt from etcd.
type topicState struct {
	name      string
	id        [16]byte
	overrides map[string]string
	cfg       TopicConfig
	revision  int64
	states    []coordinator.PartitionState
	parts     []*partition // parallel to states; nil where this broker holds no replica
}

// topicIDFile sits in every partition directory and names the topic id the
// data belongs to, so a topic deleted and re-created under the same name
// never inherits old data.
const topicIDFile = "topic-id"

func (s *Server) topic(name string) *topicState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.topics[name]
}

func (s *Server) topicByID(id [16]byte) *topicState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byID[id]
}

func (s *Server) allTopics() []*topicState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*topicState, 0, len(s.topics))
	for _, t := range s.topics {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *topicState) int { return cmpString(a.name, b.name) })
	return out
}

func (s *Server) allPartitions() []*partition {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*partition
	for _, t := range s.topics {
		for _, p := range t.parts {
			if p != nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// leaderPartition finds a partition this broker leads, or the Kafka error
// a client acts on.
func (s *Server) leaderPartition(topic string, index int32) (*partition, int16) {
	t := s.topic(topic)
	return leaderOf(t, index, s.opts.BrokerID)
}

func leaderOf(t *topicState, index int32, self int32) (*partition, int16) {
	if t == nil || index < 0 || int(index) >= len(t.states) {
		return nil, kerr.UnknownTopicOrPartition.Code
	}
	if t.states[index].Leader != self || t.parts[index] == nil || t.parts[index].getLog() == nil {
		return nil, kerr.NotLeaderForPartition.Code
	}
	return t.parts[index], 0
}

// checkLeaderEpoch applies the fencing rules for a client's current leader
// epoch (-1 = no check).
func checkLeaderEpoch(p *partition, clientEpoch int32) int16 {
	if clientEpoch < 0 {
		return 0
	}
	cur := p.leaderEpoch.Load()
	switch {
	case clientEpoch < cur:
		return kerr.FencedLeaderEpoch.Code
	case clientEpoch > cur:
		return kerr.UnknownLeaderEpoch.Code
	}
	return 0
}

func (s *Server) watchTopics(ctx context.Context) {
	for ts := range s.store.WatchTopics(ctx) {
		if err := s.applyTopics(ts, false); err != nil {
			s.log.Error("apply topic metadata", "err", err)
		}
	}
}

// applyTopics makes the local partition table match the topic set from
// etcd: opens logs of new local replicas, applies config changes, and
// removes topics that are gone. At startup it also removes partition
// directories whose topic no longer exists (deleted while we were down).
func (s *Server) applyTopics(topics []coordinator.Topic, startup bool) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()

	s.mu.RLock()
	cur := make(map[string]*topicState, len(s.topics))
	for k, v := range s.topics {
		cur[k] = v
	}
	s.mu.RUnlock()

	next := make(map[string]*topicState, len(topics))
	var stale []*partition
	var gone []*topicState
	for _, t := range topics {
		old := cur[t.Name]
		if old != nil && old.id != t.ID {
			if !s.confirmGone(old) {
				// The list is older than what we hold: keep ours.
				next[t.Name] = old
				continue
			}
			stale = append(stale, nonNil(old.parts)...)
			gone = append(gone, old)
			old = nil
		}
		if old != nil && t.Revision < old.revision {
			next[t.Name] = old // an older view than the one applied
			continue
		}
		if old != nil && old.revision == t.Revision && samePartitionStates(old.states, t.Partitions) {
			next[t.Name] = old
			continue
		}
		ts, err := s.buildTopicState(t, old)
		if err != nil {
			return err
		}
		next[t.Name] = ts
	}
	for name, old := range cur {
		if _, ok := next[name]; ok {
			continue
		}
		if !s.confirmGone(old) {
			next[name] = old
			continue
		}
		stale = append(stale, nonNil(old.parts)...)
		gone = append(gone, old)
	}

	byID := make(map[[16]byte]*topicState, len(next))
	for _, t := range next {
		byID[t.id] = t
	}
	s.mu.Lock()
	s.topics = next
	s.byID = byID
	s.mu.Unlock()

	for _, p := range stale {
		s.fetchers.remove(p)
		s.untier(p)
		s.log.Info("removing deleted partition", "topic", p.topic, "partition", p.index)
		if err := p.remove(); err != nil {
			s.log.Error("remove partition", "topic", p.topic, "partition", p.index, "err", err)
		}
	}
	if startup {
		s.removeOrphanDirs(next)
	}
	for _, t := range gone {
		s.deleteRemoteData(t)
	}
	return nil
}

// confirmGone asks etcd (a linearizable read) whether the topic we hold is
// really gone — deleted, or replaced by a new topic of the same name —
// before any of its data is removed. Topic lists can arrive out of order
// (the watch and a handler's refresh race); data must never be deleted on
// the word of a stale one. When etcd cannot answer, the data stays.
func (s *Server) confirmGone(t *topicState) bool {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	cur, err := s.store.Topic(ctx, t.name)
	switch {
	case errors.Is(err, coordinator.ErrTopicNotFound):
		return true
	case err != nil:
		s.log.Warn("cannot confirm topic deletion; keeping its data for now", "topic", t.name, "err", err)
		return false
	}
	return cur.ID != t.id
}

func (s *Server) buildTopicState(t coordinator.Topic, old *topicState) (*topicState, error) {
	cfg, err := ResolveTopicConfig(t.Configs, s.cfg)
	if err != nil {
		// A config another broker accepted but we cannot parse must not stop
		// us serving the topic; fall back to defaults and say so.
		s.log.Error("topic config invalid here; using broker defaults", "topic", t.Name, "err", err)
		cfg, _ = ResolveTopicConfig(nil, s.cfg)
	}
	ts := &topicState{
		name:      t.Name,
		id:        t.ID,
		overrides: t.Configs,
		cfg:       cfg,
		revision:  t.Revision,
		states:    slices.Clone(t.Partitions),
		parts:     make([]*partition, len(t.Partitions)),
	}
	for i, st := range t.Partitions {
		var p *partition
		if old != nil && i < len(old.parts) {
			p = old.parts[i]
		}
		if !slices.Contains(st.Replicas, s.opts.BrokerID) {
			if p != nil {
				s.fetchers.remove(p)
				s.untier(p)
				if err := p.remove(); err != nil {
					s.log.Error("remove partition moved away", "topic", t.Name, "partition", i, "err", err)
				}
			}
			continue
		}
		if p == nil {
			p, err = s.openPartition(t.Name, t.ID, int32(i), cfg, len(st.Replicas))
			if err != nil {
				return nil, err
			}
		} else {
			p.getLog().UpdateConfig(logConfig(cfg, s.cfg))
		}
		c := cfg
		p.cfg.Store(&c)
		s.applyRole(p, st)
		ts.parts[i] = p
		s.syncTiering(p)
	}
	return ts, nil
}

func (s *Server) partitionDir(topic string, index int32) string {
	return filepath.Join(s.logDir, fmt.Sprintf("%s-%d", topic, index))
}

func (s *Server) openPartition(topic string, id [16]byte, index int32, cfg TopicConfig, replicas int) (*partition, error) {
	dir := s.partitionDir(topic, index)
	idPath := filepath.Join(dir, topicIDFile)
	if have, err := os.ReadFile(idPath); err == nil {
		if u, perr := uuid.ParseBytes(bytes.TrimSpace(have)); perr != nil || [16]byte(u) != id {
			s.log.Warn("partition directory belongs to an older topic of the same name; removing it", "dir", dir)
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("broker: remove stale partition dir %s: %w", dir, err)
			}
		}
	}
	l, err := locallog.Open(dir, logConfig(cfg, s.cfg), s.log.With("topic", topic, "partition", index))
	if err != nil {
		return nil, fmt.Errorf("broker: open log %s-%d: %w", topic, index, err)
	}
	if err := writeFileAtomic(idPath, []byte(uuid.UUID(id).String()+"\n")); err != nil {
		l.Close()
		return nil, fmt.Errorf("broker: write %s: %w", idPath, err)
	}
	p := &partition{topic: topic, topicID: id, index: index, self: s.opts.BrokerID}
	p.log.Store(l)
	p.fencedEpoch.Store(-1)
	p.maxISRSize.Store(1)
	if s.tier != nil {
		// A sealed segment uploads once committed, not at the next task
		// round (remote.log.manager.task.interval.ms, 30 s by default). A
		// no-op for a partition that is not tiered (not registered).
		p.sealedCommitted = func() { s.tier.KickPartition(id, index) }
	}
	p.initHighWatermark(l, replicas, s.log) // partition.go
	return p, nil
}

// removeOrphanDirs deletes partition directories of topics that no longer
// exist. Only directories carrying a topic-id file are touched.
func (s *Server) removeOrphanDirs(topics map[string]*topicState) {
	entries, err := os.ReadDir(s.logDir)
	if err != nil {
		return
	}
	live := make(map[string]bool)
	for _, t := range topics {
		for i, p := range t.parts {
			if p != nil {
				live[filepath.Base(s.partitionDir(t.name, int32(i)))] = true
			}
		}
	}
	for _, e := range entries {
		if !e.IsDir() || live[e.Name()] {
			continue
		}
		dir := filepath.Join(s.logDir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, topicIDFile)); err != nil {
			continue
		}
		s.log.Info("removing partition directory of a deleted topic", "dir", dir)
		os.RemoveAll(dir)
	}
}

func (s *Server) retentionLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.RetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, p := range s.allPartitions() {
				l := p.getLog()
				if l == nil {
					continue
				}
				active := l.ActiveBase()
				n, err := l.EnforceRetention(now)
				if b := l.ActiveBase(); b != active {
					p.noteSealed(b) // rolled by segment.ms: upload it once committed
				}
				if err != nil {
					s.log.Error("retention", "topic", p.topic, "partition", p.index, "err", err)
				} else if n > 0 {
					s.log.Info("retention deleted segments", "topic", p.topic, "partition", p.index, "segments", n, "log_start", l.LogStartOffset())
				}
			}
		}
	}
}

// flushLoop applies flush.ms to partitions that went quiet: the append
// path checks it only when the next write arrives. Every
// hwCheckpointTicks it checkpoints the high watermarks (partition.go).
func (s *Server) flushLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if tick%hwCheckpointTicks == 0 {
				s.checkpointHighWatermarks()
			}
			for _, p := range s.allPartitions() {
				cfg, l := p.config(), p.getLog()
				if l == nil || cfg == nil || cfg.FlushMs <= 0 || cfg.FlushMs >= math.MaxInt64/2 {
					continue
				}
				if err := l.FlushIfDue(now); err != nil && s.ctx.Err() == nil {
					s.log.Error("timed flush", "topic", p.topic, "partition", p.index, "err", err)
				}
			}
		}
	}
}

// logConfig maps a topic's config onto the local log's.
func logConfig(tc TopicConfig, bc BrokerConfig) locallog.Config {
	c := locallog.Config{
		SegmentBytes:           tc.SegmentBytes,
		SegmentMs:              tc.SegmentMs,
		RetentionMs:            tc.RetentionMs,
		RetentionBytes:         tc.RetentionBytes,
		IndexIntervalBytes:     tc.IndexIntervalBytes,
		SegmentIndexBytes:      tc.SegmentIndexBytes,
		FlushIntervalMessages:  tc.FlushMessages,
		FlushIntervalMs:        tc.FlushMs,
		GroupCommit:            bc.GroupCommit,
		ProducerIDExpirationMs: bc.ProducerIDExpirationMs,
		Tiered:                 tc.RemoteStorage && bc.RemoteTier,
		LocalRetentionMs:       tc.LocalRetentionMs,
		LocalRetentionBytes:    tc.LocalRetentionBytes,
	}
	if tc.LogAppendTime {
		c.TimestampType = 1
	}
	if !slices.Contains(tc.CleanupPolicy, "delete") {
		// Compaction is not performed yet; a compact-only topic keeps everything.
		c.RetentionMs, c.RetentionBytes = -1, -1
	}
	return c
}

func samePartitionStates(a, b []coordinator.PartitionState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Leader != y.Leader || x.LeaderEpoch != y.LeaderEpoch || x.PartitionEpoch != y.PartitionEpoch ||
			!slices.Equal(x.Replicas, y.Replicas) || !slices.Equal(x.ISR, y.ISR) {
			return false
		}
	}
	return true
}

func nonNil(ps []*partition) []*partition {
	var out []*partition
	for _, p := range ps {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// writeFileAtomic writes tmp, fsyncs, renames over path and fsyncs the
// directory.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
