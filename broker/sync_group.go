package broker

// SyncGroup (key 14), v0–5: the leader hands in the assignments, which the
// broker distributes without reading them; followers wait for the leader.
// v5 checks the protocol type and name (INCONSISTENT_GROUP_PROTOCOL).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleSyncGroup(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	return s.groups.SyncGroup(ctx, kreq.(*kmsg.SyncGroupRequest))
}
