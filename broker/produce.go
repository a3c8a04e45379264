package broker

// Produce (key 0), v0–11.
//
// v0–2 stay in the advertised range only because librdkafka before 2.11.1
// turns compression off unless the range contains 0; they carry the old
// message-set format, so every partition is answered UNSUPPORTED_VERSION.
// v3+ carry record batch v2: each partition's batches are validated (magic,
// CRC32C, lengths, record counts, codec, max.message.bytes) without
// decompressing, then appended as they came — offsets and leader epoch are
// stamped in place, the CRC is untouched. A bad batch fails its whole
// partition and nothing of that partition is written. acks=0 gets no
// response. Transactions are not supported: transactional batches are
// refused.
//
// Idempotent batches (producer id >= 0) are checked by the partition log
// against its producer state under the append lock: a retried duplicate of
// one of the producer's last five batches is answered success with its
// original base offset (LogAppendTime -1) and stored once; a sequence gap or
// a new epoch not starting at 0 gets OUT_OF_ORDER_SEQUENCE_NUMBER, an older
// epoch INVALID_PRODUCER_EPOCH, a producer unknown to the partition starting
// above sequence 0 UNKNOWN_PRODUCER_ID.
//
// acks=all (-1): the committed ISR must hold at least min.insync.replicas
// before anything is appended (NOT_ENOUGH_REPLICAS); after the append the
// answer waits, up to the request's timeout, until the high watermark
// passes the batch — then NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR
// shrank below min.insync.replicas meanwhile, REQUEST_TIMED_OUT if it never
// did, NOT_LEADER_OR_FOLLOWER if leadership moved. acks=1 answers after the
// local append. A leader that lost its etcd lease answers
// NOT_LEADER_OR_FOLLOWER until a later epoch makes it leader again. The
// wait does not hold up the connection: later requests on it are handled
// meanwhile, and their responses are written after this one (conn.go).

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/broker/locallog"
	"github.com/stratabroker/strata/kafkaproto"
)

func (s *Server) handleProduce(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	var waits []pendingAck
	for _, rt := range req.Topics {
		ot := kmsg.NewProduceResponseTopic()
		ot.Topic = rt.Topic
		ot.TopicID = rt.TopicID
		// Fixed capacity: pending acks keep pointers into this slice.
		ot.Partitions = make([]kmsg.ProduceResponseTopicPartition, 0, len(rt.Partitions))
		for _, rp := range rt.Partitions {
			op := kmsg.NewProduceResponseTopicPartition()
			op.Partition = rp.Partition
			op.BaseOffset, op.LogAppendTime, op.LogStartOffset = -1, -1, -1
			var wait pendingAck
			code, msg := s.producePartition(req, rt.Topic, rp, &op, &wait)
			setProduceError(req, &op, code, msg)
			ot.Partitions = append(ot.Partitions, op)
			if wait.p != nil {
				wait.op = &ot.Partitions[len(ot.Partitions)-1]
				waits = append(waits, wait)
			}
		}
		resp.Topics = append(resp.Topics, ot)
	}
	if req.Acks == 0 {
		return nil
	}
	if len(waits) > 0 {
		// Every partition is appended before any waits, so their
		// replication overlaps. The connection goes on with the requests
		// behind this one while the waits run (see deferredResponse).
		deadline := time.Now().Add(time.Duration(max(req.TimeoutMillis, 0)) * time.Millisecond)
		return &deferredResponse{Response: resp, wait: func() {
			for _, w := range waits {
				code, msg := s.awaitReplication(ctx, w.p, w.epoch, w.end, deadline)
				setProduceError(req, w.op, code, msg)
			}
		}}
	}
	return resp
}

func setProduceError(req *kmsg.ProduceRequest, op *kmsg.ProduceResponseTopicPartition, code int16, msg string) {
	op.ErrorCode = code
	if code != 0 && msg != "" && req.Version >= 8 {
		m := msg
		op.ErrorMessage = &m
	}
}

func (s *Server) producePartition(req *kmsg.ProduceRequest, topic string, rp kmsg.ProduceRequestTopicPartition, op *kmsg.ProduceResponseTopicPartition, wait *pendingAck) (int16, string) {
	if req.Version < 3 {
		return kerr.UnsupportedVersion.Code, "produce v0-2 (message format v0/v1) is not supported; use v3+"
	}
	if req.Acks != 0 && req.Acks != 1 && req.Acks != -1 {
		return kerr.InvalidRequiredAcks.Code, ""
	}
	p, code := s.leaderPartition(topic, rp.Partition)
	if code != 0 {
		return code, ""
	}
	if p.fenced() {
		return kerr.NotLeaderForPartition.Code, "this broker lost its etcd lease and is fenced"
	}
	epoch := p.leaderEpoch.Load()
	cfg := p.config()
	headers, err := kafkaproto.ValidateProduceRecords(rp.Records, int(cfg.MaxMessageBytes))
	if err != nil {
		var be *kafkaproto.BatchError
		if errors.As(err, &be) {
			return be.Code, be.Msg
		}
		return kerr.CorruptMessage.Code, err.Error()
	}
	for _, h := range headers {
		if h.IsTransactional() {
			return kerr.InvalidTxnState.Code, "transactions are not supported by this broker"
		}
	}
	if req.Acks == -1 && p.isrSize.Load() < int32(cfg.MinInsyncReplicas) {
		return kerr.NotEnoughReplicas.Code, ""
	}
	res, err := p.appendAsLeader(rp.Records)
	if err != nil {
		switch {
		case errors.Is(err, locallog.ErrOutOfOrderSequence):
			return kerr.OutOfOrderSequenceNumber.Code, err.Error()
		case errors.Is(err, locallog.ErrInvalidProducerEpoch):
			return kerr.InvalidProducerEpoch.Code, err.Error()
		case errors.Is(err, locallog.ErrUnknownProducerID):
			return kerr.UnknownProducerID.Code, err.Error()
		}
		s.log.Error("append", "topic", topic, "partition", rp.Partition, "err", err)
		if errors.Is(err, errPartitionClosed) {
			return kerr.NotLeaderForPartition.Code, ""
		}
		return kerr.KafkaStorageError.Code, err.Error()
	}
	if !res.Duplicate {
		s.metrics.produced.WithLabelValues(topic).Add(float64(len(rp.Records)))
	}
	op.BaseOffset = res.FirstOffset
	op.LogAppendTime = res.LogAppendTime
	op.LogStartOffset = res.LogStartOffset
	if req.Acks == -1 {
		*wait = pendingAck{p: p, epoch: epoch, end: res.LastOffset + 1}
	}
	return 0, ""
}

// pendingAck is an acks=all partition appended and waiting for its high
// watermark.
type pendingAck struct {
	p     *partition
	epoch int32
	end   int64
	op    *kmsg.ProduceResponseTopicPartition
}

// awaitReplication waits until p's high watermark reaches end (acks=all).
func (s *Server) awaitReplication(ctx context.Context, p *partition, epoch int32, end int64, deadline time.Time) (int16, string) {
	if p.highWatermark() >= end {
		return ackedCode(p)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		ch := p.waitChan()
		switch {
		case p.leaderEpoch.Load() != epoch || p.leader.Load() != s.opts.BrokerID || p.getLog() == nil:
			return kerr.NotLeaderForPartition.Code, "leadership moved before the batch was replicated"
		case p.fenced():
			return kerr.NotLeaderForPartition.Code, "this broker lost its etcd lease and is fenced"
		case p.highWatermark() >= end:
			return ackedCode(p)
		}
		select {
		case <-ch:
		case <-timer.C:
			return kerr.RequestTimedOut.Code, "the in-sync replicas did not replicate the batch in time"
		case <-ctx.Done():
			return kerr.RequestTimedOut.Code, "shutting down"
		}
	}
}

func ackedCode(p *partition) (int16, string) {
	if min := p.config().MinInsyncReplicas; p.isrSize.Load() < int32(min) {
		return kerr.NotEnoughReplicasAfterAppend.Code, ""
	}
	return 0, ""
}
