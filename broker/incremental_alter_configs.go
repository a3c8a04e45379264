package broker

// IncrementalAlterConfigs (key 44), v0–1.
//
// Applies SET (0), DELETE (1), APPEND (2) and SUBTRACT (3) to a topic's
// overrides; APPEND and SUBTRACT only on list configs (cleanup.policy).
// The result is validated as a whole before the compare-and-swap write;
// validate_only writes nothing. Broker resources are refused.

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleIncrementalAlterConfigs(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	changed := false
	for _, rr := range req.Resources {
		or := kmsg.NewIncrementalAlterConfigsResponseResource()
		or.ResourceType, or.ResourceName = rr.ResourceType, rr.ResourceName
		code, msg := s.alterTopicConfigs(ctx, rr.ResourceType, rr.ResourceName, req.ValidateOnly, func(cur map[string]string) (map[string]string, error) {
			return applyIncremental(cur, rr.Configs, s.cfg)
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

func applyIncremental(cur map[string]string, ops []kmsg.IncrementalAlterConfigsRequestResourceConfig, bc BrokerConfig) (map[string]string, error) {
	if cur == nil {
		cur = map[string]string{}
	}
	seen := map[string]bool{}
	for _, op := range ops {
		if seen[op.Name] {
			return nil, fmt.Errorf("config %q named more than once", op.Name)
		}
		seen[op.Name] = true
		d, ok := topicConfigDefs[op.Name]
		if !ok {
			return nil, fmt.Errorf("unknown topic config name %q", op.Name)
		}
		val := ""
		if op.Value != nil {
			val = *op.Value
		}
		switch op.Op {
		case 0: // SET
			if op.Value == nil {
				return nil, fmt.Errorf("SET %s without a value", op.Name)
			}
			cur[op.Name] = val
		case 1: // DELETE
			delete(cur, op.Name)
		case 2, 3: // APPEND, SUBTRACT
			if d.typ != cfgList {
				return nil, fmt.Errorf("%s is not a list config; APPEND and SUBTRACT need one", op.Name)
			}
			base, ok := cur[op.Name]
			if !ok {
				base = d.brokerDefault(bc)
			}
			items := splitList(base)
			for _, v := range splitList(val) {
				if op.Op == 2 && !slices.Contains(items, v) {
					items = append(items, v)
				}
				if op.Op == 3 {
					items = slices.DeleteFunc(items, func(x string) bool { return x == v })
				}
			}
			cur[op.Name] = strings.Join(items, ",")
		default:
			return nil, fmt.Errorf("unknown operation %d on %s", op.Op, op.Name)
		}
	}
	return cur, nil
}
