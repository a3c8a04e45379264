package broker

// AlterConfigs (key 33), v0–2.
//
// Replaces a topic's whole set of overrides (configs not named return to
// their defaults), validated first; validate_only writes nothing. The write
// is a compare-and-swap on the topic's etcd revision. Broker resources are
// refused: Strata has no dynamic broker configs.

import (
	"context"
	"errors"
	"maps"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
)

func (s *Server) handleAlterConfigs(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	changed := false
	for _, rr := range req.Resources {
		or := kmsg.NewAlterConfigsResponseResource()
		or.ResourceType, or.ResourceName = rr.ResourceType, rr.ResourceName
		code, msg := s.alterTopicConfigs(ctx, rr.ResourceType, rr.ResourceName, req.ValidateOnly, func(map[string]string) (map[string]string, error) {
			next := make(map[string]string)
			for _, c := range rr.Configs {
				if c.Value != nil {
					next[c.Name] = *c.Value
				}
			}
			return next, nil
		})
		or.ErrorCode = code
		if msg != "" {
			m := msg
			or.ErrorMessage = &m
		}
		changed = changed || (code == 0 && !req.ValidateOnly)
		resp.Resources = append(resp.Resources, or)
	}
	if changed {
		s.refreshTopics(ctx)
	}
	return resp
}

// alterTopicConfigs applies edit to a topic's overrides, validates the
// result and stores it with a compare-and-swap, retrying a few times when
// another writer got there first.
func (s *Server) alterTopicConfigs(ctx context.Context, typ kmsg.ConfigResourceType, name string, validateOnly bool, edit func(cur map[string]string) (map[string]string, error)) (int16, string) {
	switch typ {
	case resourceTopic:
	case resourceBroker:
		return kerr.InvalidRequest.Code, "dynamic broker configs are not supported; set broker " + name + "'s settings by flag, environment or config file"
	default:
		return kerr.InvalidRequest.Code, "unsupported resource type " + strconv.Itoa(int(typ))
	}
	for attempt := 0; attempt < 5; attempt++ {
		t, err := s.store.Topic(ctx, name)
		if errors.Is(err, coordinator.ErrTopicNotFound) {
			return kerr.UnknownTopicOrPartition.Code, ""
		}
		if err != nil {
			return kerr.UnknownServerError.Code, err.Error()
		}
		next, err := edit(maps.Clone(t.Configs))
		if err != nil {
			return kerr.InvalidConfig.Code, err.Error()
		}
		if err := ValidateTopicConfigs(next, s.cfg); err != nil {
			return kerr.InvalidConfig.Code, err.Error()
		}
		if err := validateTopicChange(t.Configs, next, s.cfg); err != nil {
			return kerr.InvalidConfig.Code, err.Error()
		}
		if validateOnly {
			return 0, ""
		}
		err = s.store.SetTopicConfigs(ctx, name, next, t.Revision)
		if errors.Is(err, coordinator.ErrConflict) {
			continue
		}
		if errors.Is(err, coordinator.ErrTopicNotFound) {
			return kerr.UnknownTopicOrPartition.Code, ""
		}
		if err != nil {
			return kerr.UnknownServerError.Code, err.Error()
		}
		s.log.Info("altered topic configs", "topic", name, "configs", next)
		return 0, ""
	}
	return kerr.ConcurrentTransactions.Code, "topic configs changed concurrently; retry"
}
