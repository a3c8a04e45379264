package broker

// CreatePartitions (key 37), v0–3.
//
// Raises a topic's partition count (never lowers it: INVALID_PARTITIONS).
// New partitions are assigned like CreateTopics does (rack-aware
// placeReplicas; replication factor above the live brokers is
// INVALID_REPLICATION_FACTOR), or from the given
// assignment. The change is a compare-and-swap on the topic's etcd revision.

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
)

func (s *Server) handleCreatePartitions(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	changed := false
	for _, rt := range req.Topics {
		ot := kmsg.NewCreatePartitionsResponseTopic()
		ot.Topic = rt.Topic
		code, msg := s.createPartitions(ctx, rt, req.ValidateOnly)
		ot.ErrorCode = code
		if code != 0 && msg != "" {
			m := msg
			ot.ErrorMessage = &m
		}
		if code == 0 && !req.ValidateOnly {
			changed = true
		}
		resp.Topics = append(resp.Topics, ot)
	}
	if changed {
		s.refreshTopics(ctx)
	}
	return resp
}

func (s *Server) createPartitions(ctx context.Context, rt kmsg.CreatePartitionsRequestTopic, validateOnly bool) (int16, string) {
	t := s.topic(rt.Topic)
	if t == nil {
		return kerr.UnknownTopicOrPartition.Code, ""
	}
	have := int32(len(t.states))
	if rt.Count <= have {
		return kerr.InvalidPartitions.Code, fmt.Sprintf("topic has %d partitions; the new count %d must be larger", have, rt.Count)
	}
	add := rt.Count - have
	s.invalidateBrokers()
	brokers := s.liveBrokers(ctx)
	var ids []int32
	for _, b := range brokers {
		ids = append(ids, b.ID)
	}
	rf := int16(len(t.states[0].Replicas))
	var parts []coordinator.PartitionState
	if rt.Assignment != nil {
		if int32(len(rt.Assignment)) != add {
			return kerr.InvalidReplicaAssignment.Code, fmt.Sprintf("%d assignments for %d new partitions", len(rt.Assignment), add)
		}
		for i, a := range rt.Assignment {
			if err := checkReplicaList(a.Replicas, ids); err != nil {
				return kerr.InvalidReplicaAssignment.Code, err.Error()
			}
			if int16(len(a.Replicas)) != rf {
				return kerr.InvalidReplicaAssignment.Code, fmt.Sprintf("replication factor must stay %d", rf)
			}
			p := have + int32(i)
			parts = append(parts, coordinator.PartitionState{Partition: p, Replicas: a.Replicas, Leader: a.Replicas[0], ISR: append([]int32(nil), a.Replicas...)})
		}
	} else {
		if int(rf) > len(ids) {
			return kerr.InvalidReplicationFactor.Code, fmt.Sprintf("replication factor %d is larger than the %d available brokers", rf, len(ids))
		}
		parts = assignReplicas(have, add, rf, brokers)
	}
	if validateOnly {
		return 0, ""
	}
	if err := s.store.AddPartitions(ctx, t.name, parts, t.revision); err != nil {
		if errors.Is(err, coordinator.ErrConflict) {
			return kerr.ConcurrentTransactions.Code, "topic changed concurrently; retry"
		}
		if errors.Is(err, coordinator.ErrTopicNotFound) {
			return kerr.UnknownTopicOrPartition.Code, ""
		}
		return kerr.UnknownServerError.Code, err.Error()
	}
	s.log.Info("added partitions", "topic", t.name, "from", have, "to", rt.Count)
	return 0, ""
}
