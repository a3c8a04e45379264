package groups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
)

// Group membership survives a change of coordinator, as in Kafka (where it
// is a record in __consumer_offsets): each time a group becomes Stable or
// Empty its membership — generation, protocol, leader, and every member
// with its protocols and assignment — is saved through the Store, fenced by
// the group's ownership. The broker that takes the group over (the owner
// died or was cut off from etcd) restores it before answering anything, so
// members keep their ids and generation: their heartbeats and commits go on
// without a rebalance, and their sessions start again from the takeover.
//
// A save happens after the transition is answered (a crash in between loses
// that transition: the members then rejoin, as they would without saved
// state). Saves of one group are ordered and never go backwards
// (group.changes / savedChanges under saveMu).

// savedGroup is the saved form (JSON; byte fields in base64).
type savedGroup struct {
	Format       int           `json:"format"` // 1
	State        State         `json:"state"`  // Stable or Empty
	ProtocolType string        `json:"protocol_type"`
	Protocol     string        `json:"protocol"`
	Generation   int32         `json:"generation"`
	Leader       string        `json:"leader"`
	Members      []savedMember `json:"members"` // in join order
}

type savedMember struct {
	ID              string          `json:"id"`
	InstanceID      *string         `json:"instance_id,omitempty"`
	ClientID        string          `json:"client_id"`
	ClientHost      string          `json:"client_host"`
	SessionMillis   int64           `json:"session_ms"`
	RebalanceMillis int64           `json:"rebalance_ms"`
	ProtocolType    string          `json:"protocol_type"`
	Protocols       []savedProtocol `json:"protocols"`
	Assignment      []byte          `json:"assignment"`
}

type savedProtocol struct {
	Name     string `json:"name"`
	Metadata []byte `json:"metadata"`
}

const savedFormat = 1

// snapshot encodes the group's membership; g.mu is held and the state is
// Stable or Empty.
func (g *group) snapshot() ([]byte, error) {
	s := savedGroup{Format: savedFormat, State: g.state, ProtocolType: g.protocolType, Protocol: g.protocol,
		Generation: g.generation, Leader: g.leader}
	for _, m := range g.sortedMembers() {
		sm := savedMember{ID: m.id, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.clientHost,
			SessionMillis: m.sessionTimeout.Milliseconds(), RebalanceMillis: m.rebalanceTimeout.Milliseconds(),
			ProtocolType: m.protocolType, Assignment: m.assignment}
		for _, p := range m.protocols {
			sm.Protocols = append(sm.Protocols, savedProtocol{Name: p.Name, Metadata: p.Metadata})
		}
		s.Members = append(s.Members, sm)
	}
	return json.Marshal(s)
}

// restore makes a new group what b says it was; every member's session
// starts now.
func (g *group) restore(b []byte, now time.Time) error {
	var s savedGroup
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	switch {
	case s.Format != savedFormat:
		return fmt.Errorf("format %d", s.Format)
	case s.State != Stable && s.State != Empty:
		return fmt.Errorf("state %q", s.State)
	case s.State == Stable && len(s.Members) == 0:
		return errors.New("stable with no members")
	case s.Generation < 0:
		return fmt.Errorf("generation %d", s.Generation)
	}
	g.protocolType, g.protocol, g.generation, g.leader = s.ProtocolType, s.Protocol, s.Generation, s.Leader
	for _, sm := range s.Members {
		if sm.ID == "" || g.members[sm.ID] != nil {
			return fmt.Errorf("member id %q missing or repeated", sm.ID)
		}
		g.seq++
		m := &member{id: sm.ID, instanceID: sm.InstanceID, clientID: sm.ClientID, clientHost: sm.ClientHost,
			sessionTimeout:   time.Duration(sm.SessionMillis) * time.Millisecond,
			rebalanceTimeout: time.Duration(sm.RebalanceMillis) * time.Millisecond,
			protocolType:     sm.ProtocolType, assignment: sm.Assignment, seq: g.seq, lastSeen: now}
		for _, p := range sm.Protocols {
			m.protocols = append(m.protocols, kmsg.JoinGroupRequestProtocol{Name: p.Name, Metadata: p.Metadata})
		}
		g.members[m.id] = m
		if m.instanceID != nil {
			g.static[*m.instanceID] = m.id
		}
	}
	if len(g.members) > 0 {
		g.hadMembers = true
	}
	g.setState(s.State, now)
	g.savedChanges = g.changes // what is in the store
	return nil
}

// persist saves the group's membership if it changed since the last save
// and the group is Stable or Empty now (a group in the middle of a
// rebalance is saved when it settles). A lost claim forgets the group.
func (m *Manager) persist(g *group) {
	g.mu.Lock()
	if g.changes == g.savedChanges || (g.state != Stable && g.state != Empty) {
		g.mu.Unlock()
		return
	}
	v, own := g.changes, g.own
	b, err := g.snapshot()
	g.mu.Unlock()
	if err != nil {
		m.log.Error("encode group state", "group", g.id, "err", err)
		return
	}
	g.saveMu.Lock()
	defer g.saveMu.Unlock()
	g.mu.Lock()
	newer := g.savedChanges >= v
	g.mu.Unlock()
	if newer {
		return // a later snapshot is already saved
	}
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	defer cancel()
	if err := m.store.SaveGroupState(ctx, g.id, own, b); err != nil {
		if errors.Is(err, coordinator.ErrConflict) {
			m.log.Warn("group taken over by another broker", "group", g.id, "err", err)
			m.forget(g, kerr.NotCoordinator.Code)
			return
		}
		m.log.Warn("save group state", "group", g.id, "err", err)
		return // saved with the next change
	}
	g.mu.Lock()
	g.savedChanges = max(g.savedChanges, v)
	g.mu.Unlock()
}
