package broker

// The broker's side of tiered storage: partitions offer themselves to the
// tiering manager (tiering.Partition), and fetches below the local log
// start are served from the remote tier.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/broker/locallog"
	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/kafkaproto"
	"github.com/stratabroker/strata/remote"
	"github.com/stratabroker/strata/tiering"
)

var _ tiering.Partition = (*partition)(nil)

func (p *partition) Topic() string     { return p.topic }
func (p *partition) TopicID() [16]byte { return p.topicID }
func (p *partition) Index() int32      { return p.index }

func (p *partition) Leadership() (int32, bool) {
	return p.leaderEpoch.Load(), p.leader.Load() == p.self && p.getLog() != nil
}

func (p *partition) Settings() tiering.Settings {
	c := p.config()
	if c == nil {
		return tiering.Settings{}
	}
	return tiering.Settings{RemoteEnabled: c.RemoteStorage, RetentionMs: c.RetentionMs, RetentionBytes: c.RetentionBytes}
}

func (p *partition) SealedSegments() []tiering.LocalSegment {
	l := p.getLog()
	if l == nil {
		return nil
	}
	var out []tiering.LocalSegment
	for _, s := range l.Segments() {
		if s.Active {
			continue
		}
		out = append(out, tiering.LocalSegment{
			BaseOffset: s.BaseOffset, NextOffset: s.NextOffset, Size: s.Size, MaxTimestamp: s.MaxTimestamp,
			LogPath: s.LogPath, IndexPath: s.IndexPath, TimeIndexPath: s.TimeIndexPath,
		})
	}
	return out
}

func (p *partition) LastStableOffset() int64 { return p.highWatermark() }

func (p *partition) LogStartOffset() int64 {
	if l := p.getLog(); l != nil {
		return l.LogStartOffset()
	}
	return 0
}

func (p *partition) LocalLogStartOffset() int64 {
	if l := p.getLog(); l != nil {
		return l.LocalLogStartOffset()
	}
	return 0
}

func (p *partition) EpochHistory() []tiering.ManifestEpoch {
	l := p.getLog()
	if l == nil {
		return nil
	}
	h := l.EpochHistory()
	out := make([]tiering.ManifestEpoch, len(h))
	for i, e := range h {
		out[i] = tiering.ManifestEpoch{Epoch: e.Epoch, StartOffset: e.Start}
	}
	return out
}

func (p *partition) EncodeEpochHistory(h []tiering.ManifestEpoch) []byte {
	in := make([]locallog.EpochStart, len(h))
	for i, e := range h {
		in[i] = locallog.EpochStart{Epoch: e.Epoch, Start: e.StartOffset}
	}
	return locallog.EncodeEpochHistory(in)
}

func (p *partition) ProducerSnapshot(offset int64) ([]byte, error) {
	l := p.getLog()
	if l == nil {
		return nil, errPartitionClosed
	}
	return l.ProducerSnapshot(offset)
}

func (p *partition) SetTieredOffset(offset int64) {
	if l := p.getLog(); l != nil {
		l.SetTieredOffset(offset)
	}
}

func (p *partition) AdvanceLogStart(offset int64) error {
	l := p.getLog()
	if l == nil {
		return errPartitionClosed
	}
	if offset <= l.LogStartOffset() {
		return nil
	}
	return l.DeleteRecordsBefore(min(offset, p.highWatermark()))
}

// tiered reports whether p's offsets below its local log start live in the
// remote tier of this broker.
func (s *Server) tiered(p *partition) bool {
	c := p.config()
	return s.tier != nil && c != nil && c.RemoteStorage
}

// syncTiering registers a partition with the tiering manager when its
// topic is tiered, and withdraws it otherwise.
func (s *Server) syncTiering(p *partition) {
	if s.tier == nil {
		return
	}
	if s.tiered(p) {
		s.tier.Register(p)
	} else {
		s.tier.Unregister(p.topicID, p.index)
	}
}

// remoteRead is one partition of a Fetch to be served from the remote tier.
type remoteRead struct {
	p      *partition
	offset int64
	limit  int
	hw     int64
	op     *kmsg.FetchResponseTopicPartition
	parts  [][]byte     // the batches read, in consecutive parts (views of cached chunks)
	hold   tiering.Hold // keeps the chunks viewed from reuse until the answer is written
	err    error
}

// readRemote serves the cold partitions of one Fetch, all in parallel,
// within remote.fetch.max.wait.ms; then fits them into the response's
// budget in request order. A read that did not finish in time answers with
// no records and no error (the client simply fetches again, and the chunk
// it waited for is cached by then). A partition's records may be several
// parts: the first goes in its RecordBatches, the rest in resp.more.
func (s *Server) readRemote(ctx context.Context, resp *fetchResponse, reads []*remoteRead, total, remaining int) (int, bool) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RemoteFetchMaxWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.parts, r.err = s.tier.ReadParts(ctx, r.p.topicID, r.p.index, r.offset, r.limit, r.hw, true, &r.hold)
		}()
	}
	wg.Wait()
	for _, r := range reads {
		resp.holds = append(resp.holds, &r.hold)
	}
	failed := false
	for _, r := range reads {
		switch {
		case r.err == nil:
		case errors.Is(r.err, context.DeadlineExceeded) && ctx.Err() != nil && s.ctx.Err() == nil:
			continue // timed out: empty answer, the client retries
		case errors.Is(r.err, tiering.ErrNotTiered):
			// Raced with retention or the local log moved: answer from
			// what the log says now.
			if r.offset < r.p.LogStartOffset() {
				r.op.ErrorCode = kerr.OffsetOutOfRange.Code
				failed = true
			}
			continue
		default:
			level := s.log.Warn
			if errors.Is(r.err, tiering.ErrCorrupt) || errors.Is(r.err, remote.ErrNotFound) {
				level = s.log.Error
			}
			level("remote read failed", "topic", r.p.topic, "partition", r.p.index, "offset", r.offset, "err", r.err)
			r.op.ErrorCode = kerr.KafkaStorageError.Code
			failed = true
			continue
		}
		budget := remaining
		if total == 0 && len(r.parts) > 0 {
			budget = max(budget, firstBatchSize(r.parts[0]))
		}
		parts, n := cutParts(r.parts, budget)
		if len(parts) > 0 {
			r.op.RecordBatches = parts[0]
			resp.addParts(r.op, parts[1:])
		}
		s.metrics.fetched.WithLabelValues(r.p.topic).Add(float64(n))
		total += n
		remaining -= n
	}
	return total, failed
}

// cutParts keeps the whole batches of parts that fit in n bytes, and
// returns their size.
func cutParts(parts [][]byte, n int) ([][]byte, int) {
	kept := 0
	for i, p := range parts {
		if t := cutBatches(p, n-kept); len(t) < len(p) {
			parts = parts[:i]
			if len(t) > 0 {
				parts = append(parts, t)
			}
			return parts, kept + len(t)
		}
		kept += len(p)
	}
	return parts, kept
}

// firstBatchSize is the size of the first whole batch of b, 0 if none.
func firstBatchSize(b []byte) int {
	h, err := kafkaproto.ParseBatchHeader(b)
	if err != nil || h.Size() > len(b) {
		return 0
	}
	return h.Size()
}

// cutBatches keeps the whole batches of b that fit in n bytes.
func cutBatches(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	keep := 0
	for keep < len(b) {
		sz := firstBatchSize(b[keep:])
		if sz == 0 || keep+sz > n {
			break
		}
		keep += sz
	}
	return b[:keep]
}

// remoteOffsetForTimestamp searches the remote tier of a tiered partition.
func (s *Server) remoteOffsetForTimestamp(p *partition, ts int64) (int64, int64, bool, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	return s.tier.OffsetForTimestamp(ctx, p.topicID, p.index, ts)
}

// untier withdraws a partition that is going away from the tiering manager.
func (s *Server) untier(p *partition) {
	if s.tier != nil {
		s.tier.Unregister(p.topicID, p.index)
	}
}

// withTieringDefault makes new topics tiered unless told otherwise, when the
// broker has a remote tier (log.remote.storage.enable). The choice is
// stored with the topic so that later broker defaults never flip it.
func (s *Server) withTieringDefault(configs map[string]string) map[string]string {
	if !s.cfg.RemoteTier || !s.cfg.RemoteStorageDefault {
		return configs
	}
	if _, ok := configs["remote.storage.enable"]; ok {
		return configs
	}
	if tc, err := ResolveTopicConfig(configs, s.cfg); err != nil || tc.Compact {
		return configs // compacted topics are not tiered; bad configs are refused later
	}
	out := make(map[string]string, len(configs)+1)
	for k, v := range configs {
		out[k] = v
	}
	out["remote.storage.enable"] = "true"
	return out
}

// deleteRemoteData removes a deleted topic's objects and remote-segment
// records, in the background (every broker that held it tries; deleting is
// idempotent).
func (s *Server) deleteRemoteData(t *topicState) {
	if s.tier == nil || !t.cfg.RemoteStorage {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Minute)
		defer cancel()
		if err := s.tier.DeleteTopic(ctx, t.name, t.id, int32(len(t.states))); err != nil && s.ctx.Err() == nil {
			s.log.Warn("could not remove a deleted topic's remote data", "topic", t.name, "err", err)
			return
		}
		s.log.Info("removed a deleted topic's remote data", "topic", t.name)
	}()
}

// rebuildTimeout bounds one follower rebuild from the remote tier.
const rebuildTimeout = 30 * time.Second

// rebuildFromRemote restarts a follower's log at the leader's local log
// start after the leader answered OFFSET_MOVED_TO_TIERED_STORAGE (KIP-405:
// followers never copy tiered data). It asks the leader for its earliest
// local offset (ListOffsets -4), finds the finished remote segment ending
// just before it, downloads that segment's leader-epoch history and
// producer snapshot, and restarts the log there with the leader's log
// start. The caller (the fetcher's goroutine, holding the fetcher's mutex,
// so no append races the restart; assign and remove of that fetcher wait
// for it, at most rebuildTimeout) fetches from the new log end next.
// leaderLogStart is the log start of the leader's answer.
func (f *replicaFetcher) rebuildFromRemote(ctx context.Context, st *fetchState, leaderLogStart int64) error {
	p := st.p
	s := f.s
	l := p.getLog()
	if l == nil {
		return errPartitionClosed
	}
	if s.tier == nil || s.store == nil {
		return errors.New("this broker has no remote tier (remote.log.storage.system.enable / --remote)")
	}
	ctx, cancel := context.WithTimeout(ctx, rebuildTimeout)
	defer cancel()
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = 8
	req.ReplicaID = s.opts.BrokerID
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = p.topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.CurrentLeaderEpoch, rp.Timestamp = p.index, st.epoch, -4
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	if err := f.conn.roundTrip(req, resp, 10*time.Second); err != nil {
		return err
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return fmt.Errorf("ListOffsets -4: %d topics in the answer", len(resp.Topics))
	}
	ans := resp.Topics[0].Partitions[0]
	if ans.ErrorCode != 0 {
		return fmt.Errorf("ListOffsets -4: %w", kerr.ErrorForCode(ans.ErrorCode))
	}
	localStart := ans.Offset
	if localStart <= 0 || leaderLogStart < 0 || leaderLogStart > localStart {
		return fmt.Errorf("leader's local log start %d, log start %d: nothing to rebuild from", localStart, leaderLogStart)
	}
	if l.LogEndOffset() >= localStart {
		return nil // we reach the leader's local log already
	}
	segs, err := s.store.RemoteSegments(ctx, p.topicID, p.index)
	if err != nil {
		return err
	}
	var seg *coordinator.RemoteSegment
	for i := range segs {
		if r := &segs[i]; r.State == coordinator.CopyFinished && r.EndOffset == localStart-1 {
			seg = r // the newest attempt wins (sorted by state time)
		}
	}
	if seg == nil {
		return fmt.Errorf("no finished remote segment ends at %d (the leader's local log start %d)", localStart-1, localStart)
	}
	rawEpochs, snap, err := s.tier.RemoteLogState(ctx, p.topic, *seg)
	if err != nil {
		return fmt.Errorf("remote state of segment %x: %w", seg.ID[:], err)
	}
	var epochs []locallog.EpochStart
	if len(rawEpochs) > 0 {
		if epochs, err = locallog.DecodeEpochHistory(rawEpochs); err != nil {
			return fmt.Errorf("leader epochs of segment %x: %w", seg.ID[:], err)
		}
	}
	from := l.LogEndOffset()
	if err := l.RestartAt(localStart, leaderLogStart, epochs, snap); err != nil {
		return err
	}
	p.hw.Store(min(p.hw.Load(), localStart))
	s.log.Info("follower rebuilt from the remote tier", "topic", p.topic, "partition", p.index,
		"old_log_end", from, "local_log_start", localStart, "log_start", leaderLogStart,
		"segment", fmt.Sprintf("%x", seg.ID[:]), "epochs", len(epochs), "producer_snapshot_bytes", len(snap))
	return nil
}
