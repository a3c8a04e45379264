package groups

import (
	"context"

	"github.com/stratabroker/strata/coordinator"
)

// Owner is a broker's claim on a group (its etcd create revision fences
// every write); Offset is one committed offset.
type (
	Owner  = coordinator.GroupOwner
	Offset = coordinator.CommittedOffset
)

// Store is what the group coordinator needs from the cluster metadata (etcd
// through package coordinator). Contracts:
//
//   - AcquireGroup claims the group for this broker; if another broker holds
//     it, the error wraps coordinator.ErrConflict and the current owner is
//     returned.
//   - CommitOffsets, DeleteOffsets, DeleteGroup and ExpireOffsets are fenced
//     by own: a lost claim is coordinator.ErrConflict and nothing is written.
//     CommitOffsets is atomic for the whole slice.
//   - FetchOffsets of an unknown group is empty, not an error; nil topics
//     means every topic.
//   - SaveGroupState and DeleteGroupState are fenced like CommitOffsets;
//     LoadGroupState returns the last state saved (nil if none); DeleteGroup
//     deletes it too.
//   - Groups lists every group that has committed offsets or a saved state.
//   - Brokers lists the live brokers.
//   - RegistrationLost is closed when this broker's registration ends (nil
//     before it registered).
type Store interface {
	GroupOwnerOf(ctx context.Context, group string) (Owner, bool, error)
	AcquireGroup(ctx context.Context, group string) (Owner, error)
	ReleaseGroup(ctx context.Context, group string, own Owner) error
	CommitOffsets(ctx context.Context, group string, own Owner, offs []Offset) error
	FetchOffsets(ctx context.Context, group string, topics []string) ([]Offset, error)
	DeleteOffsets(ctx context.Context, group string, own Owner, parts map[string][]int32) error
	DeleteGroup(ctx context.Context, group string, own Owner) error
	SaveGroupState(ctx context.Context, group string, own Owner, state []byte) error
	LoadGroupState(ctx context.Context, group string) ([]byte, error)
	DeleteGroupState(ctx context.Context, group string, own Owner) error
	Groups(ctx context.Context) ([]string, error)
	ExpireOffsets(ctx context.Context, group string, own Owner, cutoffMs int64) (int, error)
	Brokers(ctx context.Context) ([]coordinator.BrokerInfo, error)
	RegistrationLost() <-chan struct{}
}

var (
	_ Store = (*coordinator.Store)(nil)
	_ Store = (*coordinator.OffsetWriter)(nil)
)
