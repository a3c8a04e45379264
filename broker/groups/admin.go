package groups

import (
	"context"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeGroups serves DescribeGroups v0–5. A group known only by its
// committed offsets is Empty; an unknown group is Dead with no error.
func (m *Manager) DescribeGroups(ctx context.Context, req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	r := kmsg.NewPtrDescribeGroupsResponse()
	r.Version = req.Version
	for _, id := range req.Groups {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = id
		dg.AuthorizedOperations = -2147483648
		if id == "" {
			dg.ErrorCode = kerr.InvalidGroupID.Code
			r.Groups = append(r.Groups, dg)
			continue
		}
		g, code := m.lookup(ctx, id)
		if code != 0 {
			dg.ErrorCode = code
			r.Groups = append(r.Groups, dg)
			continue
		}
		g.mu.Lock()
		dg.State = string(g.state)
		dg.ProtocolType = g.protocolType
		emptyUnknown := g.state == Empty && !g.hadMembers
		if g.state == Stable {
			dg.Protocol = g.protocol
		}
		for _, mem := range g.sortedMembers() {
			dm := kmsg.NewDescribeGroupsResponseGroupMember()
			dm.MemberID, dm.InstanceID = mem.id, mem.instanceID
			dm.ClientID, dm.ClientHost = mem.clientID, mem.clientHost
			dm.ProtocolMetadata, dm.MemberAssignment = []byte{}, []byte{}
			if g.state == Stable {
				dm.ProtocolMetadata = mem.metadata(g.protocol)
				if mem.assignment != nil {
					dm.MemberAssignment = mem.assignment
				}
			}
			dg.Members = append(dg.Members, dm)
		}
		g.mu.Unlock()
		if emptyUnknown {
			offs, err := m.store.FetchOffsets(ctx, id, nil)
			switch {
			case err != nil:
				dg.ErrorCode = kerr.CoordinatorNotAvailable.Code
			case len(offs) == 0:
				dg.State = string(Dead)
			}
		}
		r.Groups = append(r.Groups, dg)
	}
	return r
}

// ListGroups serves ListGroups v0–5: the groups this broker coordinates, plus
// groups known only by their offsets that nobody claims and that hash to this
// broker (so each is listed by exactly one broker). v4 filters by state
// (case-insensitive), v5 by type ("classic" only).
func (m *Manager) ListGroups(ctx context.Context, req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	r := kmsg.NewPtrListGroupsResponse()
	r.Version = req.Version
	wantState := func(s State) bool {
		if len(req.StatesFilter) == 0 {
			return true
		}
		for _, f := range req.StatesFilter {
			if strings.EqualFold(f, string(s)) {
				return true
			}
		}
		return false
	}
	if len(req.TypesFilter) > 0 {
		ok := false
		for _, t := range req.TypesFilter {
			ok = ok || strings.EqualFold(t, "classic")
		}
		if !ok {
			return r
		}
	}
	seen := make(map[string]bool)
	add := func(id, protocolType string, s State) {
		seen[id] = true
		if !wantState(s) {
			return
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = id, protocolType, string(s), "classic"
		r.Groups = append(r.Groups, lg)
	}
	for _, g := range m.owned() {
		g.mu.Lock()
		id, pt, s, known := g.id, g.protocolType, g.state, g.hadMembers
		g.mu.Unlock()
		if s == Dead {
			continue
		}
		if s == Empty && !known {
			seen[id] = false // listed below if it has offsets
			continue
		}
		add(id, pt, s)
	}
	stored, err := m.store.Groups(ctx)
	if err != nil {
		r.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return r
	}
	var live []int32
	for _, id := range stored {
		if seen[id] {
			continue
		}
		if _, mine := seen[id]; !mine {
			own, ok, err := m.store.GroupOwnerOf(ctx, id)
			if err != nil {
				r.ErrorCode = kerr.CoordinatorNotAvailable.Code
				return r
			}
			if ok && own.BrokerID != m.cfg.BrokerID {
				continue
			}
			if !ok {
				if live == nil {
					if live, err = m.liveBrokers(ctx); err != nil {
						r.ErrorCode = kerr.CoordinatorNotAvailable.Code
						return r
					}
				}
				if p := pickBroker(id, live); p >= 0 && p != m.cfg.BrokerID {
					continue
				}
			}
		}
		add(id, "", Empty)
	}
	return r
}

// DeleteGroups serves DeleteGroups v0–2: only Empty groups (and groups
// known only by offsets) are deleted, with all their offsets.
func (m *Manager) DeleteGroups(ctx context.Context, req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	r := kmsg.NewPtrDeleteGroupsResponse()
	r.Version = req.Version
	for _, id := range req.Groups {
		dg := kmsg.NewDeleteGroupsResponseGroup()
		dg.Group = id
		dg.ErrorCode = m.deleteGroup(ctx, id)
		r.Groups = append(r.Groups, dg)
	}
	return r
}

func (m *Manager) deleteGroup(ctx context.Context, id string) int16 {
	if id == "" {
		return kerr.InvalidGroupID.Code
	}
	g, code := m.lookup(ctx, id)
	if code != 0 {
		return code
	}
	g.mu.Lock()
	state, known, own := g.state, g.hadMembers, g.own
	if state == Empty {
		g.setState(Dead, m.cfg.Now())
	}
	g.mu.Unlock()
	switch state {
	case Dead:
		return kerr.GroupIDNotFound.Code
	case Empty:
	default:
		return kerr.NonEmptyGroup.Code
	}
	m.mu.Lock()
	if m.groups[id] == g {
		delete(m.groups, id)
	}
	m.mu.Unlock()
	if !known {
		offs, err := m.store.FetchOffsets(ctx, id, nil)
		if err != nil {
			return kerr.CoordinatorNotAvailable.Code
		}
		if len(offs) == 0 {
			m.store.ReleaseGroup(ctx, id, own)
			return kerr.GroupIDNotFound.Code
		}
	}
	if err := m.store.DeleteGroup(ctx, id, own); err != nil {
		return m.storeErrCode(err)
	}
	return 0
}
