package broker

// DeleteRecords (key 21), v0–2.
//
// Moves a partition's log start to the requested offset (-1 = the high
// watermark); whole segments below it are deleted. An offset beyond the
// high watermark is OFFSET_OUT_OF_RANGE. The answer carries the new low
// watermark.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleDeleteRecords(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		ot := kmsg.NewDeleteRecordsResponseTopic()
		ot.Topic = rt.Topic
		t := s.topic(rt.Topic)
		for _, rp := range rt.Partitions {
			op := kmsg.NewDeleteRecordsResponseTopicPartition()
			op.Partition = rp.Partition
			op.LowWatermark = -1
			p, code := leaderOf(t, rp.Partition, s.opts.BrokerID)
			if code == 0 {
				code = s.deleteRecords(p, rp.Offset, &op)
			}
			op.ErrorCode = code
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return resp
}

func (s *Server) deleteRecords(p *partition, offset int64, op *kmsg.DeleteRecordsResponseTopicPartition) int16 {
	l := p.getLog()
	if l == nil {
		return kerr.NotLeaderForPartition.Code
	}
	hw := p.highWatermark()
	if offset == -1 {
		offset = hw
	}
	if offset < 0 || offset > hw {
		return kerr.OffsetOutOfRange.Code
	}
	if offset > l.LogStartOffset() {
		if err := l.DeleteRecordsBefore(offset); err != nil {
			s.log.Error("delete records", "topic", p.topic, "partition", p.index, "offset", offset, "err", err)
			return kerr.KafkaStorageError.Code
		}
	}
	op.LowWatermark = l.LogStartOffset()
	if s.tiered(p) {
		s.tier.Kick() // drop remote segments below the new log start
	}
	return 0
}
