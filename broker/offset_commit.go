package broker

// OffsetCommit (key 8), v2–9: a member's commit is checked against the
// current generation (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
// FENCED_INSTANCE_ID, REBALANCE_IN_PROGRESS while completing a rebalance);
// generation −1 with no member id is a simple commit, allowed while the
// group has no members. The request is written to etcd atomically and
// fenced (NOT_COORDINATOR if another broker took the group), without an etcd
// read first, in one transaction shared with the other groups' commits
// waiting at the same time (coordinator.OffsetWriter); it is answered after
// etcd has fsynced it.
// Leader epochs (v6+) and metadata are kept; the v2–4 retention time is
// ignored as in Kafka ≥ 2.1. Unknown partitions get
// UNKNOWN_TOPIC_OR_PARTITION, metadata above 4096 bytes
// OFFSET_METADATA_TOO_LARGE.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleOffsetCommit(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	return s.groups.OffsetCommit(ctx, kreq.(*kmsg.OffsetCommitRequest))
}
