package broker

// FindCoordinator (key 10), v0–4.
//
// v1 adds the key type (0 group, 1 transaction), v4 batches several keys.
// A group key is answered with the broker that owns the group in etcd; an
// unowned group goes to the live broker a stable hash of its id picks, and
// is claimed at once when that is this broker (see broker/groups).
// Transactions are not supported, so transaction keys get
// COORDINATOR_NOT_AVAILABLE.
//
// librdkafka (2.0.2, Debian's kcat) enables LZ4 only when FindCoordinator v0
// is advertised, so this API matters even to plain producers.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleFindCoordinator(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	answer := func(keyType int8, key string) (nodeID int32, host string, port int32, code int16, msg *string) {
		switch keyType {
		case 0:
			if key == "" {
				return s.opts.BrokerID, s.advHost, s.advPort, 0, nil
			}
			id, err := s.groups.Coordinator(ctx, key)
			if err != nil {
				m := err.Error()
				return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &m
			}
			if id == s.opts.BrokerID {
				return s.opts.BrokerID, s.advHost, s.advPort, 0, nil
			}
			for _, b := range s.liveBrokers(ctx) {
				if b.ID == id {
					return b.ID, b.Host, b.Port, 0, nil
				}
			}
			m := "the group's coordinator is not registered"
			return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &m
		case 1:
			m := "transactions are not supported by this broker"
			return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &m
		}
		m := "unknown coordinator key type"
		return -1, "", -1, kerr.InvalidRequest.Code, &m
	}
	if req.Version >= 4 {
		for _, key := range req.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key = key
			c.NodeID, c.Host, c.Port, c.ErrorCode, c.ErrorMessage = answer(req.CoordinatorType, key)
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return resp
	}
	resp.NodeID, resp.Host, resp.Port, resp.ErrorCode, resp.ErrorMessage = answer(req.CoordinatorType, req.CoordinatorKey)
	return resp
}
