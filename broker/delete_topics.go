package broker

// DeleteTopics (key 20), v1–6.
//
// Deletes by name (v6 also by topic id). The topic record and every
// partition record go in one etcd transaction; each broker then closes the
// partition logs and removes their directories as the change reaches it.

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
)

func (s *Server) handleDeleteTopics(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if req.Version >= 6 {
		for _, t := range req.Topics {
			targets = append(targets, target{t.Topic, t.TopicID})
		}
	} else {
		for _, n := range req.TopicNames {
			n := n
			targets = append(targets, target{name: &n})
		}
	}
	changed := false
	for _, tg := range targets {
		ot := kmsg.NewDeleteTopicsResponseTopic()
		ot.Topic, ot.TopicID = tg.name, tg.id
		var t *topicState
		switch {
		case tg.name != nil:
			t = s.topic(*tg.name)
		case tg.id != [16]byte{}:
			t = s.topicByID(tg.id)
		}
		if t == nil {
			ot.ErrorCode = kerr.UnknownTopicOrPartition.Code
			if tg.name == nil {
				ot.ErrorCode = kerr.UnknownTopicID.Code
			}
			resp.Topics = append(resp.Topics, ot)
			continue
		}
		name := t.name
		ot.Topic, ot.TopicID = &name, t.id
		if err := s.store.DeleteTopic(ctx, t.name); err != nil {
			if errors.Is(err, coordinator.ErrTopicNotFound) {
				ot.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else {
				s.log.Error("delete topic", "topic", t.name, "err", err)
				ot.ErrorCode = kerr.UnknownServerError.Code
				m := err.Error()
				ot.ErrorMessage = &m
			}
		} else {
			s.log.Info("deleted topic", "topic", t.name)
			changed = true
		}
		resp.Topics = append(resp.Topics, ot)
	}
	if changed {
		s.refreshTopics(ctx)
	}
	return resp
}
