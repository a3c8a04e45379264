package broker

// ListGroups (key 16), v0–5: the groups this broker coordinates, plus
// unclaimed groups known only by offsets that hash to this broker, so a
// client asking every broker sees each group once. v4 filters by state, v5
// by type (every group is "classic").

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleListGroups(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	return s.groups.ListGroups(ctx, kreq.(*kmsg.ListGroupsRequest))
}
