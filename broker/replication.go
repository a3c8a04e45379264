package broker

// Replication, leader side: the high watermark, the ISR and the fencing of a
// leader that lost its etcd lease (DESIGN.md path 3, invariants 1 and 6).
//
// A partition this broker leads keeps a replicaSet: the assignment and the
// committed ISR as last read from etcd, the ISR change in flight (if any),
// and per follower its log end offset (the offset of its latest fetch) and
// the last time it was caught up with the leader. The high watermark is the
// smallest log end offset over the maximal ISR — the committed ISR plus a
// member being added — and never moves back while the epoch lasts (Kafka's
// KIP-497 rule: an expansion counts before it is committed, a shrink only
// after). acks=all checks min.insync.replicas against the committed ISR.
//
// ISR changes are compare-and-swaps on the partition epoch in etcd
// (UpdatePartitionFenced): a follower whose log end reaches the high
// watermark (and the start of the leader's epoch) joins; one not caught up
// for replica.lag.time.max.ms leaves. The leader never removes itself. One
// change per partition is in flight at a time; a lost CAS is dropped and the
// next fetch or lag check proposes again from the state etcd delivers.
//
// Lock order: partition.repMu is a leaf (no I/O, no other lock under it).

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/stratabroker/strata/coordinator"
)

// followerState is what the leader knows of one follower.
type followerState struct {
	leo          int64     // log end offset: offset of its latest fetch; -1 unknown
	caughtUp     time.Time // last time its log end reached the leader's
	lastFetch    time.Time
	lastFetchLEO int64 // leader's log end at lastFetch
}

// replicaSet is the leader's view of its replicas. Guarded by partition.repMu.
type replicaSet struct {
	leading    bool
	state      coordinator.PartitionState // as committed in etcd (ISR, partition epoch)
	epochStart int64                      // leader's log end when it took this epoch
	pending    []int32                    // proposed ISR while a CAS is in flight; nil otherwise
	followers  map[int32]*followerState
}

// maximalISR is the committed ISR plus members a pending change adds.
func (r *replicaSet) maximalISR() []int32 {
	isr := slices.Clone(r.state.ISR)
	for _, id := range r.pending {
		if !slices.Contains(isr, id) {
			isr = append(isr, id)
		}
	}
	return isr
}

// becomeLeader resets the replica set for a new leader epoch: the high
// watermark starts where it is (capped at the log end); ISR members count as
// caught up now, their log ends unknown until they fetch.
func (p *partition) becomeLeader(st coordinator.PartitionState, leo int64, now time.Time) {
	p.repMu.Lock()
	r := &p.rep
	r.leading = true
	r.state = cloneState(st)
	r.epochStart = leo
	r.pending = nil
	r.followers = make(map[int32]*followerState, len(st.Replicas))
	for _, id := range st.Replicas {
		if id == p.self {
			continue
		}
		f := &followerState{leo: -1, lastFetchLEO: -1}
		if slices.Contains(st.ISR, id) {
			f.caughtUp = now
		}
		r.followers[id] = f
	}
	p.isrSize.Store(int32(len(st.ISR)))
	p.maxISRSize.Store(int32(len(r.maximalISR())))
	if hw := p.hw.Load(); hw > leo {
		p.hw.Store(leo)
	}
	p.repMu.Unlock()
	p.maybeAdvanceHW()
}

// updateLeaderState applies a newer state of the same leader epoch (an ISR
// or assignment change committed in etcd, by us or by the controller).
func (p *partition) updateLeaderState(st coordinator.PartitionState, now time.Time) {
	p.repMu.Lock()
	r := &p.rep
	if !r.leading || st.PartitionEpoch < r.state.PartitionEpoch {
		p.repMu.Unlock()
		return
	}
	if st.PartitionEpoch > r.state.PartitionEpoch {
		r.pending = nil
	}
	r.state = cloneState(st)
	for id := range r.followers {
		if !slices.Contains(st.Replicas, id) {
			delete(r.followers, id)
		}
	}
	for _, id := range st.Replicas {
		if id != p.self && r.followers[id] == nil {
			r.followers[id] = &followerState{leo: -1, lastFetchLEO: -1}
		}
	}
	for _, id := range st.ISR {
		// A member added by someone else counts as caught up from now.
		if f := r.followers[id]; f != nil && f.caughtUp.IsZero() {
			f.caughtUp = now
		}
	}
	p.isrSize.Store(int32(len(st.ISR)))
	p.maxISRSize.Store(int32(len(r.maximalISR())))
	p.repMu.Unlock()
	p.maybeAdvanceHW()
}

// resignLeader forgets the replica set (the partition became a follower or
// lost its leader).
func (p *partition) resignLeader() {
	p.repMu.Lock()
	p.rep = replicaSet{}
	p.repMu.Unlock()
	p.notify() // acks=all waiters notice the change of role
}

// recordFollowerFetch notes that follower id fetched at fetchOffset (its log
// end) and moves the high watermark. It returns the ISR to propose when the
// follower has caught up and is not a member yet (nil otherwise), and false
// when id is not a replica of this partition.
func (p *partition) recordFollowerFetch(id int32, fetchOffset, leaderLEO int64, now time.Time) (propose []int32, known bool) {
	p.repMu.Lock()
	r := &p.rep
	f := r.followers[id]
	if !r.leading || f == nil {
		p.repMu.Unlock()
		return nil, false
	}
	f.leo = fetchOffset
	switch {
	case fetchOffset >= leaderLEO:
		f.caughtUp = now
	case fetchOffset >= f.lastFetchLEO && f.lastFetchLEO >= 0:
		if f.lastFetch.After(f.caughtUp) {
			f.caughtUp = f.lastFetch
		}
	}
	f.lastFetch, f.lastFetchLEO = now, leaderLEO
	if r.pending == nil && !slices.Contains(r.state.ISR, id) &&
		fetchOffset >= p.hw.Load() && fetchOffset >= r.epochStart {
		propose = append(slices.Clone(r.state.ISR), id)
		slices.Sort(propose)
		r.pending = propose
		p.maxISRSize.Store(int32(len(r.maximalISR())))
	}
	p.repMu.Unlock()
	p.maybeAdvanceHW()
	return propose, true
}

// laggingISR returns the ISR without the followers not caught up within
// maxLag, and claims the pending slot for it; nil when nothing changes or a
// change is already in flight.
func (p *partition) laggingISR(now time.Time, maxLag time.Duration) []int32 {
	p.repMu.Lock()
	defer p.repMu.Unlock()
	r := &p.rep
	if !r.leading || r.pending != nil {
		return nil
	}
	keep := make([]int32, 0, len(r.state.ISR))
	for _, id := range r.state.ISR {
		f := r.followers[id]
		if id != p.self && (f == nil || now.Sub(f.caughtUp) > maxLag) {
			continue
		}
		keep = append(keep, id)
	}
	if len(keep) == len(r.state.ISR) {
		return nil
	}
	if !slices.Contains(keep, p.self) {
		keep = append(keep, p.self) // never remove the leader itself
		slices.Sort(keep)
	}
	r.pending = keep
	return keep
}

// isrChangeDone ends the pending ISR change: on success the new state is
// committed locally at once (the etcd watch confirms it later).
func (p *partition) isrChangeDone(committed *coordinator.PartitionState) {
	p.repMu.Lock()
	r := &p.rep
	r.pending = nil
	if committed != nil && r.leading && committed.LeaderEpoch == r.state.LeaderEpoch && committed.PartitionEpoch > r.state.PartitionEpoch {
		r.state = cloneState(*committed)
		now := time.Now()
		for _, id := range committed.ISR {
			if f := r.followers[id]; f != nil && f.caughtUp.IsZero() {
				f.caughtUp = now
			}
		}
		p.isrSize.Store(int32(len(committed.ISR)))
	}
	p.maxISRSize.Store(int32(len(r.maximalISR())))
	p.repMu.Unlock()
	p.maybeAdvanceHW()
}

// maybeAdvanceHW sets the high watermark to the smallest log end offset over
// the maximal ISR (the leader's own included), never moving it back, and
// wakes fetches and acks=all waiters when it moves.
func (p *partition) maybeAdvanceHW() {
	l := p.getLog()
	if l == nil {
		return
	}
	leo := l.LogEndOffset()
	p.repMu.Lock()
	r := &p.rep
	if !r.leading {
		p.repMu.Unlock()
		return
	}
	hw := leo
	for _, id := range r.maximalISR() {
		if id == p.self {
			continue
		}
		f := r.followers[id]
		if f == nil {
			continue // not a replica any more; the next ISR change drops it
		}
		hw = min(hw, f.leo)
	}
	p.repMu.Unlock()
	if hw > p.hw.Load() {
		p.advanceHighWatermark(hw)
		p.notify()
	}
}

// isReplica reports whether id is a follower this leader knows.
func (p *partition) isReplica(id int32) bool {
	p.repMu.Lock()
	defer p.repMu.Unlock()
	return p.rep.leading && p.rep.followers[id] != nil
}

// committedISRState returns the committed partition state while leading.
func (p *partition) committedISRState() (coordinator.PartitionState, bool) {
	p.repMu.Lock()
	defer p.repMu.Unlock()
	return cloneState(p.rep.state), p.rep.leading
}

func cloneState(st coordinator.PartitionState) coordinator.PartitionState {
	st.Replicas = slices.Clone(st.Replicas)
	st.ISR = slices.Clone(st.ISR)
	return st
}

// proposeISR writes isr for p to etcd with a compare-and-swap on the
// partition epoch, off the caller's goroutine.
func (s *Server) proposeISR(p *partition, isr []int32) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		st, leading := p.committedISRState()
		if !leading {
			p.isrChangeDone(nil)
			return
		}
		next := st
		next.ISR = isr
		next.PartitionEpoch = st.PartitionEpoch + 1
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		err := s.store.UpdatePartitionFenced(ctx, p.topic, p.topicID, next, st.PartitionEpoch)
		cancel()
		if err != nil {
			if errors.Is(err, coordinator.ErrConflict) {
				s.log.Info("ISR change lost to a newer partition state; waiting for it", "topic", p.topic, "partition", p.index, "isr", isr)
			} else if s.ctx.Err() == nil {
				s.log.Warn("ISR change", "topic", p.topic, "partition", p.index, "isr", isr, "err", err)
			}
			p.isrChangeDone(nil)
			return
		}
		s.log.Info("ISR changed", "topic", p.topic, "partition", p.index, "from", st.ISR, "to", isr, "partition_epoch", next.PartitionEpoch)
		p.isrChangeDone(&next)
	}()
}

// isrLoop shrinks the ISR of led partitions whose followers fell behind.
func (s *Server) isrLoop(ctx context.Context) {
	lag := s.replicaLagMax()
	t := time.NewTicker(max(lag/4, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, p := range s.allPartitions() {
				if isr := p.laggingISR(now, lag); isr != nil {
					s.proposeISR(p, isr)
				}
			}
		}
	}
}

func (s *Server) replicaLagMax() time.Duration {
	if s.cfg.ReplicaLagTimeMax <= 0 {
		return 30 * time.Second
	}
	return s.cfg.ReplicaLagTimeMax
}

// applyRole makes p play the role st gives this broker. Called under
// applyMu whenever a partition state is applied.
func (s *Server) applyRole(p *partition, st coordinator.PartitionState) {
	prevLeader, prevEpoch := p.leader.Load(), p.leaderEpoch.Load()
	p.leader.Store(st.Leader)
	p.leaderEpoch.Store(st.LeaderEpoch)
	l := p.getLog()
	if l == nil {
		return
	}
	now := time.Now()
	switch {
	case st.Leader == s.opts.BrokerID:
		s.fetchers.remove(p)
		if p.roleSet && prevLeader == st.Leader && prevEpoch == st.LeaderEpoch {
			p.updateLeaderState(st, now)
			return
		}
		s.log.Info("becoming leader", "topic", p.topic, "partition", p.index, "leader_epoch", st.LeaderEpoch, "isr", st.ISR, "log_end", l.LogEndOffset(), "hw", p.highWatermark())
		p.becomeLeader(st, l.LogEndOffset(), now)
		// Segments sealed as a follower upload once the new leader's HW
		// passes them.
		p.noteSealed(l.ActiveBase())
		if s.tiered(p) {
			// Resume uploading now rather than at the next task interval.
			s.tier.KickPartition(p.topicID, p.index)
		}
	default:
		p.resignLeader()
		p.isrSize.Store(int32(len(st.ISR)))
		p.maxISRSize.Store(int32(len(st.ISR)))
		if st.Leader < 0 {
			s.fetchers.remove(p)
		} else {
			s.fetchers.assign(p, st.Leader, st.LeaderEpoch)
		}
	}
	p.roleSet = true
}

// fenceOnLeaseLoss watches this broker's etcd registration: once its lease
// is lost, every partition it leads stops acknowledging writes in its
// current leader epoch (invariant 6: fenced, not obeyed). A later epoch in
// which it leads again lifts the fence. Then it registers the broker again
// (rejoin), as a restarted broker would.
func (s *Server) fenceOnLeaseLoss(ctx context.Context) {
	var seen <-chan struct{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		lost := s.store.RegistrationLost()
		if lost != nil && lost != seen {
			select {
			case <-lost:
				seen = lost
				n := 0
				for _, p := range s.allPartitions() {
					if p.leader.Load() == s.opts.BrokerID {
						p.fencedEpoch.Store(p.leaderEpoch.Load())
						p.notify()
						n++
					}
				}
				s.log.Error("etcd lease lost: no longer acknowledging writes as leader", "partitions", n)
				s.rejoin(ctx)
				continue
			case <-ctx.Done():
				return
			case <-t.C:
				continue // re-check: the registration may have been renewed
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// brokerInfo is this broker's registration in etcd.
func (s *Server) brokerInfo() coordinator.BrokerInfo {
	return coordinator.BrokerInfo{ID: s.opts.BrokerID, Host: s.advHost, Port: s.advPort, Rack: s.cfg.Rack, DirID: s.opts.DirID, ReplicaAddr: s.opts.AdvertiseReplicas}
}

// rejoin registers this broker again after its lease was lost (a process
// frozen or cut off from etcd longer than the lease TTL), retrying until
// it succeeds or ctx ends. Without it the broker would stay out of the
// registry for good while still serving: missing from Metadata, never
// controller, never elected leader or given its preferred leadership back,
// refusing to coordinate groups. The controller has meanwhile elected new
// leaders for what it led; should the broker register again before the
// controller noticed it was gone, a partition etcd still shows it leading,
// in the epoch it is fenced in, would stay fenced for good — so each such
// partition gets a new leader epoch (compare-and-swap on the partition
// epoch, leader and ISR kept: nobody else led in between), which lifts the
// fence and ends any write of the old epoch still waiting for replication.
func (s *Server) rejoin(ctx context.Context) {
	for attempt := 1; ; attempt++ {
		err := s.store.RegisterBroker(ctx, s.brokerInfo())
		if err == nil {
			s.log.Info("registered again after the lost lease", "broker", s.opts.BrokerID, "attempts", attempt)
			break
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("register again after the lost lease; retrying", "err", err, "retry_in", controllerRetry)
		sleepOrDone(ctx, controllerRetry)
	}
	self := s.opts.BrokerID
	for _, t := range s.allTopics() {
		s.mu.RLock()
		states, parts := slices.Clone(t.states), slices.Clone(t.parts)
		s.mu.RUnlock()
		for i, st := range states {
			if st.Leader != self || parts[i] == nil || !parts[i].fenced() {
				continue
			}
			s.changePartition(ctx, nil, t.name, t.id, st, func(cur coordinator.PartitionState) (coordinator.PartitionState, string, bool) {
				next, ok := rejoinMove(cur, self)
				return next, "new epoch after the lost lease", ok
			})
		}
	}
}

// rejoinMove is the rule of rejoin for one partition (a pure function): a
// partition self still leads gets the next leader epoch with leader and ISR
// kept; ok=false when another broker leads it (the controller moved it).
func rejoinMove(st coordinator.PartitionState, self int32) (coordinator.PartitionState, bool) {
	if st.Leader != self {
		return st, false
	}
	next := cloneState(st)
	next.LeaderEpoch, next.PartitionEpoch = st.LeaderEpoch+1, st.PartitionEpoch+1
	return next, true
}
