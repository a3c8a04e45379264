package broker

// The controller (DESIGN.md path 8).
//
// Every broker campaigns for the controller key in etcd (coordinator.Store
// Campaign: a key bound to the broker's registration lease, so a dead
// controller is replaced within the lease TTL). The elected broker runs the
// controller loop until it loses the key: it follows the live brokers and
// the topics in etcd and
//
//   - elects a new leader for every partition whose leader is not live: the
//     first replica (in replica order) that is in the ISR and live; if none
//     and unclean.leader.election.enable is true, the first live replica;
//     else leader -1 with the ISR kept, so that the last ISR member can come
//     back as leader. The new ISR is ISR ∩ live (never empty: it keeps the
//     chosen leader);
//   - every leader.imbalance.check.interval.seconds, when
//     auto.leader.rebalance.enable is true, moves leadership back to the
//     preferred replica (Replicas[0]) when it is live and in the ISR.
//
// Each decision bumps the leader epoch and the partition epoch in one
// UpdatePartitionFenced compare-and-swap on the partition epoch; a lost CAS
// re-reads the partition and decides again (bounded).
//
// Controlled shutdown (Server.controlledShutdown, called first thing by
// Close): before the logs close, every partition this broker leads is
// handed to another live ISR member (epoch+1) and this broker leaves the ISR
// of every partition it is in, bounded to controlledShutdownTimeout.
//
// Goroutines: controllerLoop (campaign, then run; started by Start through
// goLoop) and, inside it, watchControllerID; both stop with the server
// context, and a controller that stops resigns so another takes over at once.

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/stratabroker/strata/coordinator"
)

const (
	// controlledShutdownTimeout bounds the whole controlled shutdown.
	controlledShutdownTimeout = 10 * time.Second
	// controllerRetry is the pause between failed campaigns.
	controllerRetry = time.Second
	// casAttempts bounds re-read-and-decide rounds of one partition change.
	casAttempts = 5
)

func init() {
	// Controller settings, registered here so that the controller is one
	// file; they are ordinary broker settings (flag, env, properties file).
	Settings = sortSettings(append(Settings,
		Setting{"auto.leader.rebalance.enable", "true", "the controller moves leadership back to each partition's preferred replica (the first) when it is live and in sync", isBool},
		Setting{"leader.imbalance.check.interval.seconds", "10", "how often the controller restores preferred leaders (Kafka's default is 300)", intRange(1, math.MaxInt32)},
	))
}

// controllerState is the broker's view of the controller; fields are
// atomics, owned by controllerLoop.
type controllerState struct {
	id     atomic.Int32 // elected controller's broker id as last seen; -1 none
	active atomic.Bool  // this broker is the controller
	known  atomic.Bool  // id has been read at least once
}

// autoLeaderRebalance reports auto.leader.rebalance.enable.
func (s *Server) autoLeaderRebalance() bool {
	v, ok := s.cfg.Raw("auto.leader.rebalance.enable")
	if !ok {
		return true
	}
	b, err := strconv.ParseBool(v)
	return err != nil || b
}

// leaderImbalanceInterval reports leader.imbalance.check.interval.seconds.
func (s *Server) leaderImbalanceInterval() time.Duration {
	v, ok := s.cfg.Raw("leader.imbalance.check.interval.seconds")
	n, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil || n <= 0 {
		return 10 * time.Second
	}
	return time.Duration(n) * time.Second
}

// controllerID answers Metadata and DescribeCluster: the elected controller
// when it is among the live brokers bs; otherwise (none elected yet, or the
// broker list is stale) the lowest live broker, so that clients always have
// a broker to send admin requests to (any Strata broker serves them).
func (s *Server) controllerID(bs []coordinator.BrokerInfo) int32 {
	if s.ctrl.known.Load() {
		id := s.ctrl.id.Load()
		for _, b := range bs {
			if b.ID == id {
				return id
			}
		}
	}
	return lowestBroker(bs)
}

func lowestBroker(bs []coordinator.BrokerInfo) int32 {
	if len(bs) == 0 {
		return -1
	}
	id := bs[0].ID
	for _, b := range bs {
		id = min(id, b.ID)
	}
	return id
}

// controllerLoop campaigns for the controller key and runs the controller
// while elected, until ctx ends.
func (s *Server) controllerLoop(ctx context.Context) {
	s.ctrl.id.Store(-1)
	done := make(chan struct{})
	go func() { // owned here: waited for below
		defer close(done)
		s.watchControllerID(ctx)
	}()
	defer func() { <-done }()
	self := s.opts.BrokerID
	for ctx.Err() == nil {
		term, err := s.store.CampaignTerm(ctx, self)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("controller campaign failed; retrying", "err", err, "retry_in", controllerRetry)
				sleepOrDone(ctx, controllerRetry)
			}
			continue
		}
		s.log.Info("this broker is now the controller", "broker", self)
		s.ctrl.active.Store(true)
		s.ctrl.id.Store(self)
		s.ctrl.known.Store(true)
		s.runController(ctx, term)
		s.ctrl.active.Store(false)
		// Resign (a no-op when the key is already gone) so that another
		// broker takes over at once rather than after the lease TTL.
		rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := s.store.Resign(rctx, self); err != nil {
			s.log.Warn("resign controller", "err", err)
		}
		cancel()
		s.log.Info("no longer the controller", "broker", self)
	}
}

func (s *Server) watchControllerID(ctx context.Context) {
	for id := range s.store.WatchController(ctx) {
		prev := s.ctrl.id.Swap(id)
		s.ctrl.known.Store(true)
		if prev != id {
			s.log.Info("controller changed", "controller", id, "previous", prev)
			s.invalidateBrokers()
		}
	}
}

func sleepOrDone(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// runController is the controller's work while it holds the key.
func (s *Server) runController(parent context.Context, term coordinator.ControllerTerm) {
	lost := term.Lost
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	brokersCh := s.store.WatchBrokers(ctx)
	topicsCh := s.store.WatchTopics(ctx)
	defer func() { // the watch goroutines close their channels on ctx
		cancel()
		for range brokersCh {
		}
		for range topicsCh {
		}
	}()
	rebalance := s.autoLeaderRebalance()
	tick := time.NewTicker(s.leaderImbalanceInterval())
	defer tick.Stop()

	var live map[int32]bool
	var topics []coordinator.Topic
	haveB, haveT := false, false
	for {
		preferred := false
		select {
		case <-lost:
			return
		case <-ctx.Done():
			return
		case bs, ok := <-brokersCh:
			if !ok {
				return
			}
			live = make(map[int32]bool, len(bs))
			for _, b := range bs {
				live[b.ID] = true
			}
			haveB = true
		case ts, ok := <-topicsCh:
			if !ok {
				return
			}
			topics, haveT = ts, true
		case <-tick.C:
			preferred = rebalance
		}
		if haveB && haveT {
			s.reconcile(ctx, term, topics, live, preferred)
		}
	}
}

// reconcile elects leaders where the leader is not live and, when asked,
// restores preferred leaders.
func (s *Server) reconcile(ctx context.Context, term coordinator.ControllerTerm, topics []coordinator.Topic, live map[int32]bool, preferred bool) {
	for _, t := range topics {
		unclean := s.uncleanElection(t)
		for _, st := range t.Partitions {
			if ctx.Err() != nil {
				return
			}
			decide := func(cur coordinator.PartitionState) (coordinator.PartitionState, string, bool) {
				if next, ok := electLeader(cur, live, unclean); ok {
					return next, "leader not live", true
				}
				if preferred {
					if next, ok := preferredLeader(cur, live); ok {
						return next, "preferred leader restored", true
					}
				}
				return coordinator.PartitionState{}, "", false
			}
			if _, _, ok := decide(st); ok {
				s.changePartition(ctx, &term, t.Name, t.ID, st, decide)
			}
		}
	}
}

func (s *Server) uncleanElection(t coordinator.Topic) bool {
	cfg, err := ResolveTopicConfig(t.Configs, s.cfg)
	if err != nil {
		return s.cfg.UncleanLeaderElectionEnable
	}
	return cfg.UncleanLeaderElection
}

// changePartition applies decide to the partition's state with a CAS on its
// partition epoch; on a lost CAS it re-reads the partition and decides
// again, at most casAttempts times. It reports whether a change was written.
// With a controller term (the controller's own decisions) the write is
// also fenced on that term: a deposed controller's write is refused.
func (s *Server) changePartition(ctx context.Context, term *coordinator.ControllerTerm, topic string, id [16]byte, cur coordinator.PartitionState,
	decide func(coordinator.PartitionState) (coordinator.PartitionState, string, bool)) bool {
	for attempt := 0; attempt < casAttempts; attempt++ {
		next, why, ok := decide(cur)
		if !ok {
			return false
		}
		var err error
		if term != nil {
			err = s.store.UpdatePartitionAsController(ctx, *term, topic, id, next, cur.PartitionEpoch)
		} else {
			err = s.store.UpdatePartitionFenced(ctx, topic, id, next, cur.PartitionEpoch)
		}
		if err == nil {
			s.log.Info("partition leadership changed", "topic", topic, "partition", next.Partition, "reason", why,
				"leader", next.Leader, "previous_leader", cur.Leader, "leader_epoch", next.LeaderEpoch,
				"isr", next.ISR, "previous_isr", cur.ISR, "partition_epoch", next.PartitionEpoch)
			return true
		}
		if !errors.Is(err, coordinator.ErrConflict) {
			if ctx.Err() == nil && !errors.Is(err, coordinator.ErrTopicNotFound) {
				s.log.Warn("partition change failed", "topic", topic, "partition", next.Partition, "reason", why, "err", err)
			}
			return false
		}
		t, err := s.store.Topic(ctx, topic)
		if err != nil || t.ID != id || int(cur.Partition) >= len(t.Partitions) {
			return false
		}
		cur = t.Partitions[cur.Partition]
	}
	s.log.Warn("partition change still contended; leaving it for the next round", "topic", topic, "partition", cur.Partition)
	return false
}

// electLeader is the controller's election rule for one partition (a pure
// function). ok=false when nothing changes: the leader is live, or there is
// still no leader to elect. Candidates are taken in replica order, so the
// preferred replica wins when it qualifies.
func electLeader(st coordinator.PartitionState, live map[int32]bool, unclean bool) (coordinator.PartitionState, bool) {
	if st.Leader >= 0 && live[st.Leader] {
		return st, false
	}
	leader := int32(-1)
	for _, r := range st.Replicas {
		if live[r] && slices.Contains(st.ISR, r) {
			leader = r
			break
		}
	}
	isr := slices.Clone(st.ISR)
	if leader >= 0 {
		isr = isr[:0]
		for _, r := range st.ISR {
			if live[r] {
				isr = append(isr, r)
			}
		}
	} else if unclean {
		for _, r := range st.Replicas {
			if live[r] {
				leader, isr = r, []int32{r}
				break
			}
		}
	}
	if leader < 0 && st.Leader < 0 {
		return st, false // still nobody to elect; the ISR is kept
	}
	next := cloneState(st)
	next.Leader = leader
	next.ISR = isr
	next.LeaderEpoch = st.LeaderEpoch + 1
	next.PartitionEpoch = st.PartitionEpoch + 1
	return next, true
}

// preferredLeader moves leadership back to Replicas[0] when it is live, in
// the ISR and not already leading (a pure function).
func preferredLeader(st coordinator.PartitionState, live map[int32]bool) (coordinator.PartitionState, bool) {
	if len(st.Replicas) == 0 {
		return st, false
	}
	pref := st.Replicas[0]
	if st.Leader == pref || !live[pref] || !slices.Contains(st.ISR, pref) {
		return st, false
	}
	next := cloneState(st)
	next.Leader = pref
	next.LeaderEpoch = st.LeaderEpoch + 1
	next.PartitionEpoch = st.PartitionEpoch + 1
	return next, true
}

// shutdownMove is the controlled-shutdown rule for one partition (a pure
// function): a partition self leads goes to the first live ISR member other
// than self (replica order), with self removed from the ISR and the leader
// epoch bumped; a partition self follows in the ISR loses self from its
// ISR (leader epoch kept) when others remain. ok=false when nothing changes
// (self leads with nobody to take over, or is not in the ISR).
func shutdownMove(st coordinator.PartitionState, self int32, live map[int32]bool) (coordinator.PartitionState, bool) {
	if !slices.Contains(st.ISR, self) && st.Leader != self {
		return st, false
	}
	without := make([]int32, 0, len(st.ISR))
	for _, r := range st.ISR {
		if r != self {
			without = append(without, r)
		}
	}
	next := cloneState(st)
	if st.Leader == self {
		leader := int32(-1)
		for _, r := range st.Replicas {
			if r != self && live[r] && slices.Contains(without, r) {
				leader = r
				break
			}
		}
		if leader < 0 {
			return st, false
		}
		next.Leader = leader
		next.LeaderEpoch = st.LeaderEpoch + 1
	} else if len(without) == 0 || st.Leader < 0 {
		// The last ISR member, or no leader to shrink for: keep it, so the
		// partition can come back with this broker.
		return st, false
	}
	next.ISR = without
	next.PartitionEpoch = st.PartitionEpoch + 1
	return next, true
}

// controlledShutdown hands leadership away before the broker stops (Close
// calls it first). Bounded by controlledShutdownTimeout; failures are
// logged, never fatal: the lease expiry and the controller cover them.
func (s *Server) controlledShutdown() {
	if s.ctx == nil || !s.ready.Load() {
		return // never started
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), controlledShutdownTimeout)
	defer cancel()
	self := s.opts.BrokerID
	bs, err := s.store.Brokers(ctx)
	if err != nil {
		s.log.Warn("controlled shutdown: cannot list live brokers; skipping", "err", err)
		return
	}
	live := make(map[int32]bool, len(bs))
	for _, b := range bs {
		live[b.ID] = b.ID != self
	}
	moved, shrunk, stuck := 0, 0, 0
	for _, t := range s.allTopics() {
		s.mu.RLock()
		states := slices.Clone(t.states)
		s.mu.RUnlock()
		for _, st := range states {
			if ctx.Err() != nil {
				break
			}
			if st.Leader != self && !slices.Contains(st.ISR, self) {
				continue
			}
			led := st.Leader == self
			decide := func(cur coordinator.PartitionState) (coordinator.PartitionState, string, bool) {
				next, ok := shutdownMove(cur, self, live)
				return next, "controlled shutdown", ok
			}
			changed := s.changePartition(ctx, nil, t.name, t.id, st, decide)
			switch {
			case changed && led:
				moved++
			case led:
				stuck++
				s.log.Warn("controlled shutdown: no live in-sync replica took over; keeping leadership", "topic", t.name, "partition", st.Partition, "isr", st.ISR)
			case changed:
				shrunk++
			}
		}
	}
	s.log.Info("controlled shutdown done", "leadership_moved", moved, "kept", stuck, "isr_left", shrunk, "took", time.Since(start).Round(time.Millisecond),
		slog.Bool("timed_out", ctx.Err() != nil))
}
