package broker

// DeleteGroups (key 42), v0–2: deletes Empty groups with all their committed
// offsets (NON_EMPTY_GROUP while members remain, GROUP_ID_NOT_FOUND for an
// unknown group).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleDeleteGroups(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	return s.groups.DeleteGroups(ctx, kreq.(*kmsg.DeleteGroupsRequest))
}
