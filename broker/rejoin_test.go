package broker

import (
	"testing"

	"github.com/stratabroker/strata/coordinator"
)

func TestRejoinMove(t *testing.T) {
	tests := []struct {
		name   string
		st     coordinator.PartitionState
		want   coordinator.PartitionState
		change bool
	}{
		{"moved by the controller meanwhile: no change", pstate(2, 4, ids(1, 2, 3), ids(2, 3), 8), coordinator.PartitionState{}, false},
		{"no leader: no change", pstate(-1, 4, ids(1, 2, 3), ids(1), 8), coordinator.PartitionState{}, false},
		{"still led by self (the controller had not noticed): next epoch, leader and ISR kept",
			pstate(1, 4, ids(1, 2, 3), ids(1, 2, 3), 8), pstate(1, 5, ids(1, 2, 3), ids(1, 2, 3), 9), true},
		{"single replica led by self: next epoch", pstate(1, 0, ids(1), ids(1), 0), pstate(1, 1, ids(1), ids(1), 1), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := cloneState(tc.st)
			got, ok := rejoinMove(tc.st, 1)
			if ok != tc.change {
				t.Fatalf("changed = %v, want %v (state %+v)", ok, tc.change, got)
			}
			sameState(t, tc.st, before) // input untouched
			if ok {
				sameState(t, got, tc.want)
				p := testPartition(t, tc.st.ISR)
				p.leaderEpoch.Store(tc.st.LeaderEpoch)
				p.fencedEpoch.Store(tc.st.LeaderEpoch) // lease lost in the old epoch
				p.leaderEpoch.Store(got.LeaderEpoch)
				if p.fenced() {
					t.Fatalf("still fenced in the new epoch %d", got.LeaderEpoch)
				}
			}
		})
	}
}
