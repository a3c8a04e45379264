package broker

import (
	"slices"
	"testing"

	"github.com/stratabroker/strata/coordinator"
)

func brokerInfos(ids ...int32) []coordinator.BrokerInfo {
	out := make([]coordinator.BrokerInfo, len(ids))
	for i, id := range ids {
		out[i] = coordinator.BrokerInfo{ID: id, Host: "127.0.0.1", Port: 9000 + id}
	}
	return out
}

func liveSet(ids ...int32) map[int32]bool {
	m := make(map[int32]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func pstate(leader, le int32, reps, isr []int32, pe int32) coordinator.PartitionState {
	return coordinator.PartitionState{Partition: 0, Replicas: reps, Leader: leader, LeaderEpoch: le, ISR: isr, PartitionEpoch: pe}
}

func ids(v ...int32) []int32 { return v }

func sameState(t *testing.T, got, want coordinator.PartitionState) {
	t.Helper()
	if got.Partition != want.Partition || got.Leader != want.Leader || got.LeaderEpoch != want.LeaderEpoch ||
		got.PartitionEpoch != want.PartitionEpoch || !slices.Equal(got.Replicas, want.Replicas) || !slices.Equal(got.ISR, want.ISR) {
		t.Fatalf("state = %+v, want %+v", got, want)
	}
}

func TestElectLeader(t *testing.T) {
	tests := []struct {
		name    string
		st      coordinator.PartitionState
		live    map[int32]bool
		unclean bool
		want    coordinator.PartitionState
		change  bool
	}{
		{"leader live: no change", pstate(1, 3, ids(1, 2, 3), ids(1, 2, 3), 7), liveSet(1, 2), false, coordinator.PartitionState{}, false},
		{"leader dead: next ISR member in replica order, ISR shrinks to live",
			pstate(1, 3, ids(1, 2, 3), ids(3, 1, 2), 7), liveSet(2, 3), false, pstate(2, 4, ids(1, 2, 3), ids(3, 2), 8), true},
		{"dead leader's ISR member that is not live is skipped",
			pstate(1, 0, ids(1, 2, 3), ids(1, 2), 0), liveSet(3), false, pstate(-1, 1, ids(1, 2, 3), ids(1, 2), 1), true},
		{"out-of-sync live replica is not elected when clean",
			pstate(1, 5, ids(1, 2, 3), ids(1), 9), liveSet(2, 3), false, pstate(-1, 6, ids(1, 2, 3), ids(1), 10), true},
		{"unclean: first live replica, ISR is it alone",
			pstate(1, 5, ids(1, 2, 3), ids(1), 9), liveSet(3, 2), true, pstate(2, 6, ids(1, 2, 3), ids(2), 10), true},
		{"no leader and still nobody: no change (no epoch churn)",
			pstate(-1, 6, ids(1, 2, 3), ids(1), 10), liveSet(2, 3), false, coordinator.PartitionState{}, false},
		{"no leader, last ISR member back: it leads",
			pstate(-1, 6, ids(1, 2, 3), ids(1), 10), liveSet(1, 2, 3), false, pstate(1, 7, ids(1, 2, 3), ids(1), 11), true},
		{"no leader and unclean with nobody live: no change",
			pstate(-1, 6, ids(1, 2), ids(1), 10), liveSet(), true, coordinator.PartitionState{}, false},
		{"single replica dead: leader -1, ISR kept",
			pstate(4, 0, ids(4), ids(4), 0), liveSet(1), false, pstate(-1, 1, ids(4), ids(4), 1), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := cloneState(tc.st)
			got, ok := electLeader(tc.st, tc.live, tc.unclean)
			if ok != tc.change {
				t.Fatalf("changed = %v, want %v (state %+v)", ok, tc.change, got)
			}
			sameState(t, tc.st, before) // input untouched
			if ok {
				sameState(t, got, tc.want)
				if got.Leader >= 0 && !slices.Contains(got.ISR, got.Leader) {
					t.Fatalf("leader %d not in ISR %v", got.Leader, got.ISR)
				}
				if len(got.ISR) == 0 {
					t.Fatal("empty ISR")
				}
			}
		})
	}
}

func TestPreferredLeader(t *testing.T) {
	tests := []struct {
		name   string
		st     coordinator.PartitionState
		live   map[int32]bool
		want   coordinator.PartitionState
		change bool
	}{
		{"preferred live and in sync: restored", pstate(2, 4, ids(1, 2, 3), ids(2, 3, 1), 8), liveSet(1, 2, 3), pstate(1, 5, ids(1, 2, 3), ids(2, 3, 1), 9), true},
		{"already preferred", pstate(1, 4, ids(1, 2, 3), ids(1, 2, 3), 8), liveSet(1, 2, 3), coordinator.PartitionState{}, false},
		{"preferred not in ISR", pstate(2, 4, ids(1, 2, 3), ids(2, 3), 8), liveSet(1, 2, 3), coordinator.PartitionState{}, false},
		{"preferred not live", pstate(2, 4, ids(1, 2, 3), ids(1, 2, 3), 8), liveSet(2, 3), coordinator.PartitionState{}, false},
		{"no leader, preferred eligible", pstate(-1, 4, ids(1, 2), ids(1), 8), liveSet(1), pstate(1, 5, ids(1, 2), ids(1), 9), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := preferredLeader(tc.st, tc.live)
			if ok != tc.change {
				t.Fatalf("changed = %v, want %v (state %+v)", ok, tc.change, got)
			}
			if ok {
				sameState(t, got, tc.want)
			}
		})
	}
}

func TestElectShutdownMove(t *testing.T) {
	const self = 1
	tests := []struct {
		name   string
		st     coordinator.PartitionState
		live   map[int32]bool // without self
		want   coordinator.PartitionState
		change bool
	}{
		{"leader hands over to first live ISR member", pstate(1, 2, ids(1, 2, 3), ids(1, 3, 2), 5), liveSet(2, 3), pstate(2, 3, ids(1, 2, 3), ids(3, 2), 6), true},
		{"skips a dead ISR member", pstate(1, 2, ids(1, 2, 3), ids(1, 2, 3), 5), liveSet(3), pstate(3, 3, ids(1, 2, 3), ids(2, 3), 6), true},
		{"no other live ISR member: keeps leadership", pstate(1, 2, ids(1, 2, 3), ids(1, 2), 5), liveSet(3), coordinator.PartitionState{}, false},
		{"follower in ISR leaves it", pstate(2, 2, ids(2, 1, 3), ids(2, 1, 3), 5), liveSet(2, 3), pstate(2, 2, ids(2, 1, 3), ids(2, 3), 6), true},
		{"follower not in ISR: nothing", pstate(2, 2, ids(2, 1), ids(2), 5), liveSet(2), coordinator.PartitionState{}, false},
		{"last ISR member without a leader stays", pstate(-1, 2, ids(2, 1), ids(1), 5), liveSet(2), coordinator.PartitionState{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := shutdownMove(tc.st, self, tc.live)
			if ok != tc.change {
				t.Fatalf("changed = %v, want %v (state %+v)", ok, tc.change, got)
			}
			if ok {
				sameState(t, got, tc.want)
			}
		})
	}
}

func TestAssignRackAware(t *testing.T) {
	racks := map[int32]string{1: "a", 2: "a", 3: "b", 4: "b", 5: "c", 6: "c"}
	var bs []coordinator.BrokerInfo
	for _, b := range brokerInfos(6, 5, 4, 3, 2, 1) {
		b.Rack = racks[b.ID]
		bs = append(bs, b)
	}
	for start := 0; start < 6; start++ {
		parts := placeReplicas(0, 24, 3, bs, start)
		leaders := map[int32]int{}
		replicas := map[int32]int{}
		for i, p := range parts {
			if p.Partition != int32(i) || len(p.Replicas) != 3 || p.Leader != p.Replicas[0] || !slices.Equal(p.ISR, p.Replicas) {
				t.Fatalf("start %d partition %d: %+v", start, i, p)
			}
			seenRack := map[string]bool{}
			for _, r := range p.Replicas {
				if seenRack[racks[r]] {
					t.Fatalf("start %d partition %d: replicas %v share rack %q", start, i, p.Replicas, racks[r])
				}
				seenRack[racks[r]] = true
				replicas[r]++
			}
			leaders[p.Leader]++
		}
		for id := int32(1); id <= 6; id++ {
			if leaders[id] != 4 || replicas[id] != 12 {
				t.Fatalf("start %d: unbalanced: leaders %v replicas %v", start, leaders, replicas)
			}
		}
	}

	// Two racks, RF 3: both racks used, brokers distinct.
	two := []coordinator.BrokerInfo{{ID: 1, Rack: "x"}, {ID: 2, Rack: "x"}, {ID: 3, Rack: "y"}, {ID: 4, Rack: "y"}}
	for _, p := range placeReplicas(0, 8, 3, two, 1) {
		rs := map[string]int{}
		for _, r := range p.Replicas {
			rs[two[r-1].Rack]++
		}
		if len(p.Replicas) != 3 || rs["x"] == 0 || rs["y"] == 0 || hasDup(p.Replicas) {
			t.Fatalf("partition %d: replicas %v (racks %v)", p.Partition, p.Replicas, rs)
		}
	}

	// Rack order alternates: a1 b3 c5 a2 b4 c6 — consecutive leaders on different racks.
	parts := placeReplicas(0, 6, 1, bs, 0)
	var got []int32
	for _, p := range parts {
		got = append(got, p.Leader)
	}
	if want := ids(1, 3, 5, 2, 4, 6); !slices.Equal(got, want) {
		t.Fatalf("leaders = %v, want %v", got, want)
	}
}

func TestAssignNoRacksRoundRobin(t *testing.T) {
	parts := placeReplicas(0, 6, 2, brokerInfos(3, 1, 2), 1)
	want := [][]int32{{2, 3}, {3, 1}, {1, 2}, {2, 1}, {3, 2}, {1, 3}}
	for i, p := range parts {
		if !slices.Equal(p.Replicas, want[i]) {
			t.Fatalf("partition %d replicas %v, want %v", i, p.Replicas, want[i])
		}
	}
	// RF = broker count: every partition has every broker once.
	for _, p := range placeReplicas(5, 4, 3, brokerInfos(7, 8, 9), 2) {
		if len(p.Replicas) != 3 || hasDup(p.Replicas) || p.Partition < 5 {
			t.Fatalf("bad partition %+v", p)
		}
	}
	// Mixed: brokers without a rack count as a rack of their own.
	mixed := []coordinator.BrokerInfo{{ID: 1, Rack: "r"}, {ID: 2, Rack: "r"}, {ID: 3}}
	for _, p := range placeReplicas(0, 3, 2, mixed, 0) {
		if hasDup(p.Replicas) || !slices.Contains(p.Replicas, 3) {
			t.Fatalf("partition %d replicas %v should use both the rack and the rackless broker", p.Partition, p.Replicas)
		}
	}
}

func hasDup(v []int32) bool {
	seen := map[int32]bool{}
	for _, x := range v {
		if seen[x] {
			return true
		}
		seen[x] = true
	}
	return false
}

func TestControllerSettings(t *testing.T) {
	s := &Server{cfg: defaultBrokerConfig(t)}
	if !s.autoLeaderRebalance() || s.leaderImbalanceInterval().Seconds() != 10 {
		t.Fatalf("defaults: rebalance %v interval %v", s.autoLeaderRebalance(), s.leaderImbalanceInterval())
	}
	bc, err := ParseBrokerConfig(map[string]string{"auto.leader.rebalance.enable": "false", "leader.imbalance.check.interval.seconds": "3"})
	if err != nil {
		t.Fatal(err)
	}
	s = &Server{cfg: bc}
	if s.autoLeaderRebalance() || s.leaderImbalanceInterval().Seconds() != 3 {
		t.Fatalf("set: rebalance %v interval %v", s.autoLeaderRebalance(), s.leaderImbalanceInterval())
	}
	if _, err := ParseBrokerConfig(map[string]string{"leader.imbalance.check.interval.seconds": "0"}); err == nil {
		t.Fatal("interval 0 accepted")
	}
}

func TestControllerIDFallback(t *testing.T) {
	s := &Server{}
	bs := brokerInfos(3, 2, 5)
	if got := s.controllerID(bs); got != 2 {
		t.Fatalf("no controller known: %d, want lowest live 2", got)
	}
	s.ctrl.known.Store(true)
	s.ctrl.id.Store(5)
	if got := s.controllerID(bs); got != 5 {
		t.Fatalf("controller 5: got %d", got)
	}
	s.ctrl.id.Store(9) // elected but not in the (cached) live list
	if got := s.controllerID(bs); got != 2 {
		t.Fatalf("controller not live: got %d, want 2", got)
	}
	if got := s.controllerID(nil); got != -1 {
		t.Fatalf("no brokers: got %d", got)
	}
}
