package broker

// OffsetDelete (key 47), v0: deletes committed offsets of an Empty group, or
// of topics an active consumer group does not subscribe to (read from the
// members' consumer protocol metadata); subscribed partitions get
// GROUP_SUBSCRIBED_TO_TOPIC, and a non-empty group whose subscriptions
// cannot be read NON_EMPTY_GROUP.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleOffsetDelete(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	return s.groups.OffsetDelete(ctx, kreq.(*kmsg.OffsetDeleteRequest))
}
