package broker

// Heartbeat (key 12), v0–4: keeps a member's session alive. During a
// rebalance members are told REBALANCE_IN_PROGRESS; ILLEGAL_GENERATION,
// UNKNOWN_MEMBER_ID and (v3+ static members) FENCED_INSTANCE_ID as Kafka.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleHeartbeat(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	return s.groups.Heartbeat(ctx, kreq.(*kmsg.HeartbeatRequest))
}
