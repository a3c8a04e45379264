package broker

// OffsetForLeaderEpoch (key 23), v2–4.
//
// Answers, for each partition, the largest leader epoch at or below the
// requested one and the offset where that epoch ended (the log end for the
// current epoch); -1/-1 when the request is older than anything we hold.
// The client's current leader epoch is checked (older: FENCED_LEADER_EPOCH,
// newer: UNKNOWN_LEADER_EPOCH). librdkafka sends exactly v2.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleOffsetForLeaderEpoch(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range req.Topics {
		ot := kmsg.NewOffsetForLeaderEpochResponseTopic()
		ot.Topic = rt.Topic
		t := s.topic(rt.Topic)
		for _, rp := range rt.Partitions {
			op := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			op.Partition = rp.Partition
			op.LeaderEpoch, op.EndOffset = -1, -1
			p, code := leaderOf(t, rp.Partition, s.opts.BrokerID)
			if code == 0 {
				code = checkLeaderEpoch(p, rp.CurrentLeaderEpoch)
			}
			if code == 0 {
				if l := p.getLog(); l != nil {
					op.LeaderEpoch, op.EndOffset = l.EndOffsetForEpoch(rp.LeaderEpoch)
				}
			}
			op.ErrorCode = code
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return resp
}
