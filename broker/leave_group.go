package broker

// LeaveGroup (key 13), v0–5: v0–2 remove one member (top-level error code);
// v3+ remove several, by member id or group.instance.id, each with its own
// code. The group rebalances without them.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleLeaveGroup(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	return s.groups.LeaveGroup(ctx, kreq.(*kmsg.LeaveGroupRequest))
}
