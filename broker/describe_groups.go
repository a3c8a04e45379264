package broker

// DescribeGroups (key 15), v0–5: state, protocol and members (metadata and
// assignment only when Stable) of groups this broker coordinates; others get
// NOT_COORDINATOR. A group known only by committed offsets is Empty, an
// unknown one Dead. Authorized operations (v3+) are not computed (no ACLs).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleDescribeGroups(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	return s.groups.DescribeGroups(ctx, kreq.(*kmsg.DescribeGroupsRequest))
}
