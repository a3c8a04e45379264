package broker

// ListOffsets (key 2), v1–9.
//
// Special timestamps: -1 latest (the high watermark; also the last stable
// offset for read_committed, as there are no transactions), -2 earliest
// (the log start over all tiers), -3 the record with the largest timestamp
// (v7+), -4 earliest local (v8+, KIP-405), -5 latest tiered (v9+, KIP-1005:
// -1 until the partition has uploaded data). Any other timestamp finds the
// first record with a timestamp at or after it through the time index, or
// answers offset -1 when there is none. v4+ check the client's current
// leader epoch and report the epoch of the returned offset.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleListOffsets(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		ot := kmsg.NewListOffsetsResponseTopic()
		ot.Topic = rt.Topic
		t := s.topic(rt.Topic)
		for _, rp := range rt.Partitions {
			op := kmsg.NewListOffsetsResponseTopicPartition()
			op.Partition = rp.Partition
			op.Timestamp, op.Offset, op.LeaderEpoch = -1, -1, -1
			op.ErrorCode = s.listOffset(t, req.Version, rp, &op)
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return resp
}

func (s *Server) listOffset(t *topicState, version int16, rp kmsg.ListOffsetsRequestTopicPartition, op *kmsg.ListOffsetsResponseTopicPartition) int16 {
	p, code := leaderOf(t, rp.Partition, s.opts.BrokerID)
	if code != 0 {
		return code
	}
	if code := checkLeaderEpoch(p, rp.CurrentLeaderEpoch); code != 0 {
		return code
	}
	l := p.getLog()
	if l == nil {
		return kerr.NotLeaderForPartition.Code
	}
	var off int64 = -1
	ts := int64(-1)
	switch rp.Timestamp {
	case -1:
		off = p.highWatermark()
	case -2:
		off = l.LogStartOffset()
	case -3:
		if version < 7 {
			return kerr.UnsupportedVersion.Code
		}
		mts, moff, err := l.MaxTimestamp()
		if err != nil {
			return kerr.KafkaStorageError.Code
		}
		if moff >= 0 && moff < p.highWatermark() {
			off, ts = moff, mts
		}
	case -4:
		if version < 8 {
			return kerr.UnsupportedVersion.Code
		}
		off = l.LocalLogStartOffset()
	case -5:
		if version < 9 {
			return kerr.UnsupportedVersion.Code
		}
		off = -1 // -1 when the topic is not tiered or nothing is uploaded yet
		if s.tiered(p) {
			off = s.tier.HighestUploadedOffset(p.topicID, p.index)
		}
	default:
		if rp.Timestamp < 0 {
			return kerr.UnsupportedVersion.Code
		}
		var o, rts int64
		var found bool
		var err error
		if s.tiered(p) && l.LogStartOffset() < l.LocalLogStartOffset() {
			o, rts, found, err = s.remoteOffsetForTimestamp(p, rp.Timestamp)
			if err != nil {
				s.log.Warn("remote timestamp lookup", "topic", p.topic, "partition", p.index, "err", err)
				return kerr.KafkaStorageError.Code
			}
			if found && o < l.LogStartOffset() {
				found = false // below the log start: look locally
			}
		}
		if !found {
			o, rts, found, err = l.OffsetForTimestamp(rp.Timestamp)
			if err != nil {
				return kerr.KafkaStorageError.Code
			}
		}
		if found && o < p.highWatermark() {
			off, ts = o, rts
		}
	}
	op.Offset, op.Timestamp = off, ts
	if version >= 4 && off >= 0 {
		if rp.Timestamp == -1 {
			op.LeaderEpoch = l.LatestEpoch()
		} else {
			op.LeaderEpoch = l.EpochForOffset(off)
		}
	}
	return 0
}
