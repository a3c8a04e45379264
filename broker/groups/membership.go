package groups

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Client identifies who sent a request (for DescribeGroups).
type Client struct {
	ID   string
	Host string
}

// JoinGroup serves JoinGroup v0–9. It blocks until the join phase completes,
// the member is fenced or removed, or ctx ends.
func (m *Manager) JoinGroup(ctx context.Context, req *kmsg.JoinGroupRequest, cl Client) *kmsg.JoinGroupResponse {
	errResp := func(code int16, memberID string) *kmsg.JoinGroupResponse {
		return (&group{}).joinError(req.Version, code, memberID)
	}
	if req.Group == "" {
		return errResp(kerr.InvalidGroupID.Code, req.MemberID)
	}
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	if session < m.cfg.MinSessionTimeout || session > m.cfg.MaxSessionTimeout {
		return errResp(kerr.InvalidSessionTimeout.Code, req.MemberID)
	}
	rebalance := time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	if req.Version == 0 {
		rebalance = session
	}
	if req.Version < 5 {
		req.InstanceID = nil
	}
	g, code := m.lookup(ctx, req.Group)
	if code != 0 {
		return errResp(code, req.MemberID)
	}
	now := m.cfg.Now()
	g.mu.Lock()
	ch, resp := g.join(req, cl, session, rebalance, now)
	g.mu.Unlock()
	m.persist(g)
	if resp != nil {
		return resp
	}
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		return errResp(kerr.RebalanceInProgress.Code, req.MemberID)
	}
}

// join runs under g.mu: it returns either a response now or a channel that
// will carry it.
func (g *group) join(req *kmsg.JoinGroupRequest, cl Client, session, rebalance time.Duration, now time.Time) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	v := req.Version
	if g.state == Dead {
		return nil, g.joinError(v, kerr.CoordinatorNotAvailable.Code, req.MemberID)
	}
	newMember := func(id string) *member {
		return &member{
			id: id, instanceID: req.InstanceID, clientID: cl.ID, clientHost: cl.Host,
			sessionTimeout: session, rebalanceTimeout: rebalance,
			protocolType: req.ProtocolType, protocols: req.Protocols,
		}
	}
	await := func(mem *member) chan *kmsg.JoinGroupResponse {
		if mem.joinCh != nil {
			// A duplicate join replaces the earlier one.
			mem.joinCh <- g.joinError(mem.joinVersion, kerr.RebalanceInProgress.Code, mem.id)
		}
		ch := make(chan *kmsg.JoinGroupResponse, 1)
		mem.joinCh, mem.joinVersion = ch, v
		return ch
	}
	rebalanceWith := func(mem *member) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
		ch := await(mem)
		if g.state == PreparingRebalance {
			g.maybeCompleteJoin(now)
		} else {
			g.prepareRebalance(now)
		}
		return ch, nil
	}

	if req.MemberID == "" {
		if !g.supports("", req.ProtocolType, req.Protocols) {
			return nil, g.joinError(v, kerr.InconsistentGroupProtocol.Code, "")
		}
		if req.InstanceID != nil {
			if oldID, ok := g.static[*req.InstanceID]; ok {
				return g.replaceStatic(g.members[oldID], req, cl, session, rebalance, now, await, rebalanceWith)
			}
			mem := newMember(newMemberID(*req.InstanceID))
			g.addMember(mem, now)
			return rebalanceWith(mem)
		}
		id := newMemberID(cl.ID)
		if v >= 4 {
			g.pending[id] = now.Add(session)
			return nil, g.joinError(v, kerr.MemberIDRequired.Code, id)
		}
		mem := newMember(id)
		g.addMember(mem, now)
		return rebalanceWith(mem)
	}

	if _, ok := g.pending[req.MemberID]; ok {
		if !g.supports("", req.ProtocolType, req.Protocols) {
			return nil, g.joinError(v, kerr.InconsistentGroupProtocol.Code, req.MemberID)
		}
		delete(g.pending, req.MemberID)
		mem := newMember(req.MemberID)
		g.addMember(mem, now)
		return rebalanceWith(mem)
	}
	mem := g.members[req.MemberID]
	if req.InstanceID != nil {
		if cur, ok := g.static[*req.InstanceID]; ok && cur != req.MemberID {
			return nil, g.joinError(v, kerr.FencedInstanceID.Code, req.MemberID)
		}
	}
	if mem == nil {
		return nil, g.joinError(v, kerr.UnknownMemberID.Code, req.MemberID)
	}
	if !g.supports(mem.id, req.ProtocolType, req.Protocols) {
		return nil, g.joinError(v, kerr.InconsistentGroupProtocol.Code, req.MemberID)
	}
	changed := !sameProtocols(mem.protocols, req.Protocols)
	mem.sessionTimeout, mem.rebalanceTimeout = session, rebalance
	mem.clientID, mem.clientHost = cl.ID, cl.Host
	mem.protocols = req.Protocols
	mem.lastSeen = now
	switch g.state {
	case CompletingRebalance, Stable:
		if !changed && (g.state == CompletingRebalance || mem.id != g.leader) {
			// Same metadata: this generation stands.
			mem.joinVersion = v
			return nil, g.joinResponse(mem)
		}
	}
	return rebalanceWith(mem)
}

// replaceStatic gives a known group.instance.id a new member id; the old
// member id is fenced from now on.
func (g *group) replaceStatic(old *member, req *kmsg.JoinGroupRequest, cl Client, session, rebalance time.Duration, now time.Time,
	await func(*member) chan *kmsg.JoinGroupResponse,
	rebalanceWith func(*member) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse)) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	if old.joinCh != nil {
		old.joinCh <- g.joinError(old.joinVersion, kerr.FencedInstanceID.Code, old.id)
		old.joinCh = nil
	}
	if old.syncCh != nil {
		old.syncCh <- syncError(old.syncVersion, kerr.FencedInstanceID.Code)
		old.syncCh = nil
	}
	changed := !sameProtocols(old.protocols, req.Protocols)
	delete(g.members, old.id)
	mem := *old
	mem.id = newMemberID(*req.InstanceID)
	mem.clientID, mem.clientHost = cl.ID, cl.Host
	mem.sessionTimeout, mem.rebalanceTimeout = session, rebalance
	mem.protocols = req.Protocols
	mem.lastSeen = now
	g.members[mem.id] = &mem
	g.static[*req.InstanceID] = mem.id
	wasLeader := g.leader == old.id
	if wasLeader {
		g.leader = mem.id
	}
	if g.state == Stable && !changed && !wasLeader {
		mem.joinVersion = req.Version
		return nil, g.joinResponse(&mem)
	}
	return rebalanceWith(&mem)
}

// SyncGroup serves SyncGroup v0–5: the leader's assignments are handed to
// every member; followers wait for them.
func (m *Manager) SyncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	v := req.Version
	if req.Group == "" {
		return syncError(v, kerr.InvalidGroupID.Code)
	}
	if v < 3 {
		req.InstanceID = nil
	}
	g, code := m.lookup(ctx, req.Group)
	if code != 0 {
		return syncError(v, code)
	}
	now := m.cfg.Now()
	g.mu.Lock()
	ch, resp := g.sync(req, now)
	g.mu.Unlock()
	m.persist(g)
	if resp != nil {
		return resp
	}
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		return syncError(v, kerr.RebalanceInProgress.Code)
	}
}

func (g *group) sync(req *kmsg.SyncGroupRequest, now time.Time) (chan *kmsg.SyncGroupResponse, *kmsg.SyncGroupResponse) {
	v := req.Version
	if g.state == Dead {
		return nil, syncError(v, kerr.CoordinatorNotAvailable.Code)
	}
	mem, code := g.validMember(req.MemberID, req.InstanceID, req.Generation)
	if code != 0 {
		return nil, syncError(v, code)
	}
	if (req.ProtocolType != nil && *req.ProtocolType != g.protocolType) || (req.Protocol != nil && *req.Protocol != g.protocol) {
		return nil, syncError(v, kerr.InconsistentGroupProtocol.Code)
	}
	mem.lastSeen = now
	switch g.state {
	case PreparingRebalance:
		return nil, syncError(v, kerr.RebalanceInProgress.Code)
	case Stable:
		return nil, g.syncResponse(mem, v)
	}
	// CompletingRebalance
	if mem.syncCh != nil {
		mem.syncCh <- syncError(mem.syncVersion, kerr.RebalanceInProgress.Code)
	}
	ch := make(chan *kmsg.SyncGroupResponse, 1)
	mem.syncCh, mem.syncVersion = ch, v
	if mem.id == g.leader {
		given := make(map[string][]byte, len(req.GroupAssignment))
		for _, a := range req.GroupAssignment {
			given[a.MemberID] = a.MemberAssignment
		}
		for _, o := range g.members {
			o.assignment = given[o.id]
		}
		g.setState(Stable, now)
		for _, o := range g.members {
			if o.syncCh != nil {
				o.syncCh <- g.syncResponse(o, o.syncVersion)
				o.syncCh = nil
				o.lastSeen = now
			}
		}
	}
	return ch, nil
}

func (g *group) syncResponse(mem *member, v int16) *kmsg.SyncGroupResponse {
	r := kmsg.NewPtrSyncGroupResponse()
	r.Version = v
	pt, p := g.protocolType, g.protocol
	r.ProtocolType, r.Protocol = &pt, &p
	r.MemberAssignment = mem.assignment
	if r.MemberAssignment == nil {
		r.MemberAssignment = []byte{}
	}
	return r
}

// validMember checks a request of a member of the current generation.
func (g *group) validMember(memberID string, instanceID *string, generation int32) (*member, int16) {
	if instanceID != nil {
		if cur, ok := g.static[*instanceID]; ok && cur != memberID {
			return nil, kerr.FencedInstanceID.Code
		}
	}
	mem := g.members[memberID]
	if mem == nil {
		return nil, kerr.UnknownMemberID.Code
	}
	if generation != g.generation {
		return nil, kerr.IllegalGeneration.Code
	}
	return mem, 0
}

// Heartbeat serves Heartbeat v0–4.
func (m *Manager) Heartbeat(ctx context.Context, req *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	r := kmsg.NewPtrHeartbeatResponse()
	r.Version = req.Version
	if req.Group == "" {
		r.ErrorCode = kerr.InvalidGroupID.Code
		return r
	}
	if req.Version < 3 {
		req.InstanceID = nil
	}
	g, code := m.lookup(ctx, req.Group)
	if code != 0 {
		r.ErrorCode = code
		return r
	}
	now := m.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case Dead:
		r.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return r
	case Empty:
		r.ErrorCode = kerr.UnknownMemberID.Code
		return r
	}
	mem, code := g.validMember(req.MemberID, req.InstanceID, req.Generation)
	if code != 0 {
		r.ErrorCode = code
		return r
	}
	mem.lastSeen = now
	if g.state == PreparingRebalance {
		r.ErrorCode = kerr.RebalanceInProgress.Code
	}
	return r
}

// LeaveGroup serves LeaveGroup v0–5 (several members at once from v3).
func (m *Manager) LeaveGroup(ctx context.Context, req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	r := kmsg.NewPtrLeaveGroupResponse()
	r.Version = req.Version
	if req.Group == "" {
		r.ErrorCode = kerr.InvalidGroupID.Code
		return r
	}
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	g, code := m.lookup(ctx, req.Group)
	if code != 0 {
		r.ErrorCode = code
		return r
	}
	now := m.cfg.Now()
	defer m.persist(g) // after the unlock below
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == Dead {
		r.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return r
	}
	left := false
	for _, lm := range leaving {
		code := g.leave(lm.MemberID, lm.InstanceID)
		if code == 0 {
			left = true
		}
		if req.Version < 3 {
			r.ErrorCode = code
			continue
		}
		om := kmsg.NewLeaveGroupResponseMember()
		om.MemberID, om.InstanceID, om.ErrorCode = lm.MemberID, lm.InstanceID, code
		r.Members = append(r.Members, om)
	}
	if left {
		g.memberLeft(now)
	}
	return r
}

func (g *group) leave(memberID string, instanceID *string) int16 {
	if instanceID != nil {
		cur, ok := g.static[*instanceID]
		if !ok {
			return kerr.UnknownMemberID.Code
		}
		if memberID != "" && memberID != cur {
			return kerr.FencedInstanceID.Code
		}
		memberID = cur
	}
	if _, ok := g.pending[memberID]; ok {
		delete(g.pending, memberID)
		return 0
	}
	mem := g.members[memberID]
	if mem == nil {
		return kerr.UnknownMemberID.Code
	}
	g.removeMember(mem, kerr.UnknownMemberID.Code)
	return 0
}
