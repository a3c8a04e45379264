package broker

// Fetch (key 1), v4–12, for consumers.
//
// Reads whole record batches from the local log up to the high watermark
// (which is also the last stable offset: there are no transactions), within
// the partition's max bytes and the response's max bytes; the first batch
// of the first non-empty partition is returned even when larger (KIP-74).
// The request long-polls until min_bytes have accumulated or max_wait_ms
// passes; an append to any of the fetched partitions wakes it. Errors
// answer at once. Fetch sessions (KIP-227) are not kept: every answer has
// session id 0, which makes clients send full fetches. Rack-aware
// preferred read replicas (v11) are not chosen: the field is always -1.
//
// Follower fetches (replica id ≥ 0, from a replica of the partition) are
// served up to the log end, not the high watermark. Each one records the
// follower's fetch offset as its log end before reading, which moves the
// high watermark and may add the follower to the ISR (see replication.go).
// A follower fetching below a tiered partition's local log start gets
// OFFSET_MOVED_TO_TIERED_STORAGE; one fetching from a broker that does not
// hold it as a replica gets NOT_LEADER_OR_FOLLOWER.

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/broker/locallog"
)

func (s *Server) handleFetch(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.FetchRequest)
	wait := time.Duration(max(req.MaxWaitMillis, 0)) * time.Millisecond
	deadline := time.Now().Add(wait)
	if req.ReplicaID >= 0 {
		s.recordFollowerFetches(req)
	}
	for {
		wakes := make([]<-chan struct{}, 0, 8)
		resp, size, failed := s.readFetch(ctx, req, &wakes)
		if size >= int(req.MinBytes) || failed || wait <= 0 || !time.Now().Before(deadline) || len(wakes) == 0 {
			return resp
		}
		resp.Release() // never sent: the chunks it viewed may be reused
		if !waitAny(ctx, wakes, time.Until(deadline)) {
			// Deadline or shutdown: answer with whatever there is now.
			resp, _, _ = s.readFetch(ctx, req, nil)
			return resp
		}
	}
}

// readFetch builds one Fetch answer from the logs. When wakes is not nil it
// collects, before reading, the channels that an append to each partition
// closes, so that no append between reading and waiting is missed.
func (s *Server) readFetch(ctx context.Context, req *kmsg.FetchRequest, wakes *[]<-chan struct{}) (*fetchResponse, int, bool) {
	resp := &fetchResponse{FetchResponse: req.ResponseKind().(*kmsg.FetchResponse)}
	resp.SessionID = 0
	remaining := int(req.MaxBytes)
	if remaining <= 0 {
		remaining = 1 << 30
	}
	total, failed := 0, false
	var cold []*remoteRead
	for _, rt := range req.Topics {
		ot := kmsg.NewFetchResponseTopic()
		ot.Topic = rt.Topic
		ot.TopicID = rt.TopicID
		// Fixed capacity: cold reads keep pointers into this slice.
		ot.Partitions = make([]kmsg.FetchResponseTopicPartition, 0, len(rt.Partitions))
		t := s.topic(rt.Topic)
		for _, rp := range rt.Partitions {
			op := kmsg.NewFetchResponseTopicPartition()
			op.Partition = rp.Partition
			op.HighWatermark, op.LastStableOffset, op.LogStartOffset = -1, -1, -1
			op.PreferredReadReplica = -1
			// Never null: librdkafka 2.0.2 rejects a null record set
			// ("invalid MessageSetSize -1") and retries forever.
			op.RecordBatches = []byte{}
			p, code := leaderOf(t, rp.Partition, s.opts.BrokerID)
			if code == 0 {
				code = checkLeaderEpoch(p, rp.CurrentLeaderEpoch)
			}
			if code == 0 && req.ReplicaID >= 0 {
				code = s.checkFollowerFetch(p, req.ReplicaID, rp, &op)
			}
			if code != 0 {
				op.ErrorCode = code
				failed = true
				ot.Partitions = append(ot.Partitions, op)
				continue
			}
			if req.ReplicaID < 0 {
				if r := s.coldRead(p, rp, &op); r != nil {
					ot.Partitions = append(ot.Partitions, op)
					r.op = &ot.Partitions[len(ot.Partitions)-1]
					cold = append(cold, r)
					continue
				}
			}
			if wakes != nil {
				*wakes = append(*wakes, p.waitChan())
			}
			n, code := s.readPartition(p, rp, &op, remaining, total == 0, req.ReplicaID >= 0)
			if code != 0 {
				op.ErrorCode = code
				failed = true
			}
			total += n
			remaining -= n
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	if len(cold) > 0 {
		var f bool
		total, f = s.readRemote(ctx, resp, cold, total, remaining)
		failed = failed || f
	}
	return resp, total, failed
}

// coldRead returns the remote read for a fetch below the local log start
// of a tiered partition (filling the offsets of op), or nil.
func (s *Server) coldRead(p *partition, rp kmsg.FetchRequestTopicPartition, op *kmsg.FetchResponseTopicPartition) *remoteRead {
	if !s.tiered(p) {
		return nil
	}
	l := p.getLog()
	if l == nil {
		return nil
	}
	hw := p.highWatermark()
	ls, local := l.LogStartOffset(), l.LocalLogStartOffset()
	if rp.FetchOffset < ls || rp.FetchOffset >= local || rp.FetchOffset >= hw {
		return nil
	}
	op.HighWatermark, op.LastStableOffset, op.LogStartOffset = hw, hw, ls
	limit := max(int(rp.PartitionMaxBytes), 0)
	return &remoteRead{p: p, offset: rp.FetchOffset, limit: limit, hw: hw}
}

// readPartition reads one partition for a consumer (up to the high
// watermark) or a follower (up to the log end).
func (s *Server) readPartition(p *partition, rp kmsg.FetchRequestTopicPartition, op *kmsg.FetchResponseTopicPartition, remaining int, first, follower bool) (int, int16) {
	l := p.getLog()
	if l == nil {
		return 0, kerr.NotLeaderForPartition.Code
	}
	hw := p.highWatermark()
	op.HighWatermark, op.LastStableOffset, op.LogStartOffset = hw, hw, l.LogStartOffset()
	leo := l.LogEndOffset()
	if rp.FetchOffset < l.LogStartOffset() || rp.FetchOffset > leo {
		return 0, kerr.OffsetOutOfRange.Code
	}
	upTo := hw
	if follower {
		upTo = leo
	}
	if rp.FetchOffset >= upTo || remaining <= 0 {
		return 0, 0
	}
	limit := min(int(rp.PartitionMaxBytes), remaining)
	if limit < 0 {
		limit = 0
	}
	data, err := l.Read(rp.FetchOffset, limit, upTo, first)
	if err != nil {
		if errors.Is(err, locallog.ErrOffsetTiered) {
			// Local retention moved the local log start since coldRead
			// looked: answer empty; the client's next fetch goes remote.
			return 0, 0
		}
		if errors.Is(err, locallog.ErrOffsetOutOfRange) {
			return 0, kerr.OffsetOutOfRange.Code
		}
		s.log.Error("read", "topic", p.topic, "partition", p.index, "offset", rp.FetchOffset, "err", err)
		return 0, kerr.KafkaStorageError.Code
	}
	if data != nil {
		op.RecordBatches = data
	}
	s.metrics.fetched.WithLabelValues(p.topic).Add(float64(len(data)))
	return len(data), 0
}

// recordFollowerFetches notes, once per follower Fetch, each partition's
// fetch offset as that follower's log end (moving high watermarks) and
// proposes the ISR expansions it earns.
func (s *Server) recordFollowerFetches(req *kmsg.FetchRequest) {
	now := time.Now()
	for _, rt := range req.Topics {
		t := s.topic(rt.Topic)
		for _, rp := range rt.Partitions {
			p, code := leaderOf(t, rp.Partition, s.opts.BrokerID)
			if code != 0 || checkLeaderEpoch(p, rp.CurrentLeaderEpoch) != 0 {
				continue
			}
			l := p.getLog()
			if l == nil {
				continue
			}
			leo := l.LogEndOffset()
			if rp.FetchOffset < l.LocalLogStartOffset() || rp.FetchOffset > leo {
				continue // answered with an error; not a log end to trust
			}
			if isr, _ := p.recordFollowerFetch(req.ReplicaID, rp.FetchOffset, leo, now); isr != nil {
				s.log.Info("follower caught up; adding it to the ISR", "topic", p.topic, "partition", p.index, "follower", req.ReplicaID, "log_end", rp.FetchOffset)
				s.proposeISR(p, isr)
			}
		}
	}
}

// checkFollowerFetch refuses a follower fetch from a broker that is not a
// replica, or below a tiered partition's local log start.
func (s *Server) checkFollowerFetch(p *partition, replica int32, rp kmsg.FetchRequestTopicPartition, op *kmsg.FetchResponseTopicPartition) int16 {
	if !p.isReplica(replica) {
		return kerr.NotLeaderForPartition.Code
	}
	l := p.getLog()
	if l == nil {
		return kerr.NotLeaderForPartition.Code
	}
	ls, local := l.LogStartOffset(), l.LocalLogStartOffset()
	if rp.FetchOffset >= ls && rp.FetchOffset < local {
		hw := p.highWatermark()
		op.HighWatermark, op.LastStableOffset, op.LogStartOffset = hw, hw, ls
		return kerr.OffsetMovedToTieredStorage.Code
	}
	return 0
}

// waitAny blocks until one of chans is closed (true), or d passes or ctx
// ends (false).
func waitAny(ctx context.Context, chans []<-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	if len(chans) == 1 {
		select {
		case <-chans[0]:
			return true
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	woke := make(chan struct{}, 1)
	stop := make(chan struct{})
	defer close(stop)
	for _, ch := range chans {
		go func(ch <-chan struct{}) {
			select {
			case <-ch:
				select {
				case woke <- struct{}{}:
				default:
				}
			case <-stop:
			}
		}(ch)
	}
	select {
	case <-woke:
		return true
	case <-timer.C:
		return false
	case <-ctx.Done():
		return false
	}
}
