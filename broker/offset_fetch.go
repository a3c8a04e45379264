package broker

// OffsetFetch (key 9), v1–9: committed offsets with leader epoch and
// metadata; v2+ with null topics returns every committed partition, v8+
// batches groups. An unknown group or partition gets offset −1 and no error.
// require_stable (v7+) never waits: there are no transactions, so nothing is
// pending.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleOffsetFetch(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	return s.groups.OffsetFetch(ctx, kreq.(*kmsg.OffsetFetchRequest))
}
