package broker

// JoinGroup (key 11), v0–9: the classic group protocol's join phase, served
// by the consumer-group coordinator (broker/groups).
//
// v4+ members joining without a member id get MEMBER_ID_REQUIRED with a
// generated id and must join again with it; v0–3 get their member id
// directly (kafka-go sends v1/v2 and would hang otherwise). v5+ static
// members (group.instance.id) replace their old member id, which is fenced
// (FENCED_INSTANCE_ID). Session timeouts outside
// group.min/max.session.timeout.ms are INVALID_SESSION_TIMEOUT. A new group
// waits group.initial.rebalance.delay.ms for more members. v9's
// SkipAssignment is never set: a rejoining static leader triggers a
// rebalance instead.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleJoinGroup(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	return s.groups.JoinGroup(ctx, kreq.(*kmsg.JoinGroupRequest), groupClient(rc))
}
