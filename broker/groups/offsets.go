package groups

import (
	"context"
	"errors"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
)

func (m *Manager) storeErrCode(err error) int16 {
	if errors.Is(err, coordinator.ErrConflict) {
		return kerr.NotCoordinator.Code
	}
	m.log.Warn("group store", "err", err)
	return kerr.CoordinatorNotAvailable.Code
}

// OffsetCommit serves OffsetCommit v2–9. A member commit is checked against
// the current generation; generation −1 with an empty member id is a simple
// (standalone) commit, allowed only while the group has no members. The
// whole request is one atomic, fenced write. v2–4's retention time is
// ignored (as in Kafka ≥ 2.1); v6+ leader epochs are kept.
func (m *Manager) OffsetCommit(ctx context.Context, req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	r := kmsg.NewPtrOffsetCommitResponse()
	r.Version = req.Version
	codes := make([][]int16, len(req.Topics))
	for i, t := range req.Topics {
		codes[i] = make([]int16, len(t.Partitions))
	}
	all := func(code int16) {
		for i := range codes {
			for j := range codes[i] {
				codes[i][j] = code
			}
		}
	}
	defer func() {
		for i, t := range req.Topics {
			ot := kmsg.NewOffsetCommitResponseTopic()
			ot.Topic = t.Topic
			for j, p := range t.Partitions {
				op := kmsg.NewOffsetCommitResponseTopicPartition()
				op.Partition, op.ErrorCode = p.Partition, codes[i][j]
				ot.Partitions = append(ot.Partitions, op)
			}
			r.Topics = append(r.Topics, ot)
		}
	}()
	if req.Group == "" {
		all(kerr.InvalidGroupID.Code)
		return r
	}
	if req.Version < 7 {
		req.InstanceID = nil
	}
	g, code := m.lookup(ctx, req.Group)
	if code != 0 {
		all(code)
		return r
	}
	now := m.cfg.Now()
	g.mu.Lock()
	code = g.validCommit(req)
	own := g.own
	if code == 0 && req.Generation >= 0 {
		if mem := g.members[req.MemberID]; mem != nil {
			mem.lastSeen = now
		}
	}
	g.mu.Unlock()
	if code != 0 {
		all(code)
		return r
	}
	var offs []Offset
	for i, t := range req.Topics {
		for j, p := range t.Partitions {
			switch {
			case p.Metadata != nil && len(*p.Metadata) > m.cfg.MaxMetadataBytes:
				codes[i][j] = kerr.OffsetMetadataTooLarge.Code
			case m.cfg.PartitionExists != nil && !m.cfg.PartitionExists(t.Topic, p.Partition):
				codes[i][j] = kerr.UnknownTopicOrPartition.Code
			default:
				epoch := p.LeaderEpoch
				if req.Version < 6 {
					epoch = -1
				}
				offs = append(offs, Offset{Topic: t.Topic, Partition: p.Partition, Offset: p.Offset, LeaderEpoch: epoch, Metadata: p.Metadata, CommitTimestamp: now.UnixMilli()})
			}
		}
	}
	if len(offs) == 0 {
		return r
	}
	if err := m.store.CommitOffsets(ctx, req.Group, own, offs); err != nil {
		code := m.storeErrCode(err)
		if code == kerr.NotCoordinator.Code {
			m.forget(g, code)
		}
		for i := range codes {
			for j := range codes[i] {
				if codes[i][j] == 0 {
					codes[i][j] = code
				}
			}
		}
	}
	return r
}

// validCommit is Kafka's validateOffsetCommit, under g.mu.
func (g *group) validCommit(req *kmsg.OffsetCommitRequest) int16 {
	if g.state == Dead {
		return kerr.CoordinatorNotAvailable.Code
	}
	if req.Generation >= 0 || req.MemberID != "" || req.InstanceID != nil {
		if _, code := g.validMember(req.MemberID, req.InstanceID, req.Generation); code != 0 {
			return code
		}
		if g.state == CompletingRebalance {
			return kerr.RebalanceInProgress.Code
		}
		return 0
	}
	if len(g.members) > 0 {
		return kerr.UnknownMemberID.Code
	}
	return 0
}

// OffsetFetch serves OffsetFetch v1–9 (groups batched from v8). A partition
// without a committed offset, or an unknown group, gets offset −1 and no
// error. There are no transactions, so require_stable never waits.
func (m *Manager) OffsetFetch(ctx context.Context, req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	r := kmsg.NewPtrOffsetFetchResponse()
	r.Version = req.Version
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			og := kmsg.NewOffsetFetchResponseGroup()
			og.Group = rg.Group
			var topics []OffsetFetchTopic
			if rg.Topics != nil {
				topics = []OffsetFetchTopic{}
				for _, t := range rg.Topics {
					topics = append(topics, OffsetFetchTopic{t.Topic, t.Partitions})
				}
			}
			res, code := m.fetchGroup(ctx, rg.Group, topics)
			og.ErrorCode = code
			for _, t := range res {
				ot := kmsg.NewOffsetFetchResponseGroupTopic()
				ot.Topic = t.Topic
				for _, p := range t.Partitions {
					op := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					op.Partition, op.Offset, op.LeaderEpoch, op.Metadata, op.ErrorCode = p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode
					ot.Partitions = append(ot.Partitions, op)
				}
				og.Topics = append(og.Topics, ot)
			}
			r.Groups = append(r.Groups, og)
		}
		return r
	}
	var topics []OffsetFetchTopic
	if req.Topics != nil || req.Version < 2 {
		topics = []OffsetFetchTopic{}
		for _, t := range req.Topics {
			topics = append(topics, OffsetFetchTopic{t.Topic, t.Partitions})
		}
	}
	res, code := m.fetchGroup(ctx, req.Group, topics)
	if req.Version >= 2 {
		r.ErrorCode = code
	}
	for _, t := range res {
		ot := kmsg.NewOffsetFetchResponseTopic()
		ot.Topic = t.Topic
		for _, p := range t.Partitions {
			op := kmsg.NewOffsetFetchResponseTopicPartition()
			op.Partition, op.Offset, op.LeaderEpoch, op.Metadata, op.ErrorCode = p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode
			if req.Version < 2 && code != 0 {
				op.ErrorCode = code
			}
			ot.Partitions = append(ot.Partitions, op)
		}
		r.Topics = append(r.Topics, ot)
	}
	return r
}

// OffsetFetchTopic is one requested topic of OffsetFetch.
type OffsetFetchTopic struct {
	Topic      string
	Partitions []int32
}

type fetchedTopic struct {
	Topic      string
	Partitions []fetchedPartition
}

type fetchedPartition struct {
	Partition   int32
	Offset      int64
	LeaderEpoch int32
	Metadata    *string
	ErrorCode   int16
}

// fetchGroup reads a group's offsets; topics nil = every committed topic.
// Requested partitions are answered in request order.
func (m *Manager) fetchGroup(ctx context.Context, id string, topics []OffsetFetchTopic) ([]fetchedTopic, int16) {
	errTopics := func(code int16) []fetchedTopic {
		var out []fetchedTopic
		for _, t := range topics {
			ft := fetchedTopic{Topic: t.Topic}
			for _, p := range t.Partitions {
				ft.Partitions = append(ft.Partitions, fetchedPartition{Partition: p, Offset: -1, LeaderEpoch: -1, ErrorCode: code})
			}
			out = append(out, ft)
		}
		return out
	}
	if id == "" {
		return errTopics(kerr.InvalidGroupID.Code), kerr.InvalidGroupID.Code
	}
	if _, code := m.lookup(ctx, id); code != 0 {
		return errTopics(code), code
	}
	var names []string
	if topics != nil {
		names = []string{}
		for _, t := range topics {
			names = append(names, t.Topic)
		}
		if len(names) == 0 {
			return nil, 0
		}
	}
	offs, err := m.store.FetchOffsets(ctx, id, names)
	if err != nil {
		code := m.storeErrCode(err)
		return errTopics(code), code
	}
	type tp struct {
		t string
		p int32
	}
	byTP := make(map[tp]Offset, len(offs))
	for _, o := range offs {
		byTP[tp{o.Topic, o.Partition}] = o
	}
	empty := ""
	conv := func(p int32, o Offset, ok bool) fetchedPartition {
		if !ok {
			return fetchedPartition{Partition: p, Offset: -1, LeaderEpoch: -1, Metadata: &empty}
		}
		md := o.Metadata
		if md == nil {
			md = &empty
		}
		return fetchedPartition{Partition: p, Offset: o.Offset, LeaderEpoch: o.LeaderEpoch, Metadata: md}
	}
	var out []fetchedTopic
	if topics == nil {
		idx := map[string]int{}
		for _, o := range offs {
			i, ok := idx[o.Topic]
			if !ok {
				i = len(out)
				idx[o.Topic] = i
				out = append(out, fetchedTopic{Topic: o.Topic})
			}
			out[i].Partitions = append(out[i].Partitions, conv(o.Partition, o, true))
		}
		return out, 0
	}
	for _, t := range topics {
		ft := fetchedTopic{Topic: t.Topic}
		for _, p := range t.Partitions {
			o, ok := byTP[tp{t.Topic, p}]
			ft.Partitions = append(ft.Partitions, conv(p, o, ok))
		}
		out = append(out, ft)
	}
	return out, 0
}

// OffsetDelete serves OffsetDelete v0: partitions of topics an active group
// subscribes to are refused with GROUP_SUBSCRIBED_TO_TOPIC; a non-empty group
// whose subscriptions cannot be read (not the consumer protocol) is
// NON_EMPTY_GROUP.
func (m *Manager) OffsetDelete(ctx context.Context, req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	r := kmsg.NewPtrOffsetDeleteResponse()
	r.Version = req.Version
	if req.Group == "" {
		r.ErrorCode = kerr.InvalidGroupID.Code
		return r
	}
	g, code := m.lookup(ctx, req.Group)
	if code != 0 {
		r.ErrorCode = code
		return r
	}
	g.mu.Lock()
	state, known, own := g.state, g.hadMembers, g.own
	subscribed, readable := g.subscribedTopics()
	g.mu.Unlock()
	if state == Dead {
		r.ErrorCode = kerr.GroupIDNotFound.Code
		return r
	}
	if state != Empty && !readable {
		r.ErrorCode = kerr.NonEmptyGroup.Code
		return r
	}
	if state == Empty && !known {
		offs, err := m.store.FetchOffsets(ctx, req.Group, nil)
		if err != nil {
			r.ErrorCode = m.storeErrCode(err)
			return r
		}
		if len(offs) == 0 {
			r.ErrorCode = kerr.GroupIDNotFound.Code
			return r
		}
	}
	parts := make(map[string][]int32)
	for _, t := range req.Topics {
		ot := kmsg.NewOffsetDeleteResponseTopic()
		ot.Topic = t.Topic
		for _, p := range t.Partitions {
			op := kmsg.NewOffsetDeleteResponseTopicPartition()
			op.Partition = p.Partition
			if state != Empty && subscribed[t.Topic] {
				op.ErrorCode = kerr.GroupSubscribedToTopic.Code
			} else {
				parts[t.Topic] = append(parts[t.Topic], p.Partition)
			}
			ot.Partitions = append(ot.Partitions, op)
		}
		r.Topics = append(r.Topics, ot)
	}
	if len(parts) == 0 {
		return r
	}
	if err := m.store.DeleteOffsets(ctx, req.Group, own, parts); err != nil {
		code := m.storeErrCode(err)
		if code == kerr.NotCoordinator.Code {
			m.forget(g, code)
		}
		r.ErrorCode = code
		r.Topics = nil
	}
	return r
}

// subscribedTopics reads the members' consumer protocol subscriptions;
// readable is false when the group does not use the consumer protocol or a
// member's metadata does not parse.
func (g *group) subscribedTopics() (map[string]bool, bool) {
	if len(g.members) == 0 {
		return nil, true
	}
	if g.protocolType != "consumer" {
		return nil, false
	}
	out := make(map[string]bool)
	for _, mem := range g.members {
		md := mem.metadata(g.protocol)
		if g.protocol == "" && len(mem.protocols) > 0 {
			md = mem.protocols[0].Metadata
		}
		var cm kmsg.ConsumerMemberMetadata
		if err := cm.ReadFrom(md); err != nil {
			return nil, false
		}
		for _, t := range cm.Topics {
			out[t] = true
		}
	}
	return out, true
}

// ExpireOffsets deletes the offsets of Empty groups this broker coordinates:
// all of them once the group has been Empty for OffsetsRetention, or, for a
// group that never had members here (simple commits, or taken over after a
// failover), those committed longer than OffsetsRetention ago. A group left
// without offsets is released. Returns how many offsets were removed.
func (m *Manager) ExpireOffsets(ctx context.Context) int {
	now := m.cfg.Now()
	total := 0
	for _, g := range m.owned() {
		g.mu.Lock()
		state, since, known, own := g.state, g.stateSince, g.hadMembers, g.own
		g.mu.Unlock()
		if state != Empty {
			continue
		}
		cutoff := now.Add(-m.cfg.OffsetsRetention).UnixMilli()
		if known {
			if now.Sub(since) < m.cfg.OffsetsRetention {
				continue
			}
			cutoff = math.MaxInt64
		}
		n, err := m.store.ExpireOffsets(ctx, g.id, own, cutoff)
		if err != nil {
			if errors.Is(err, coordinator.ErrConflict) {
				m.forget(g, kerr.NotCoordinator.Code)
			} else if ctx.Err() == nil {
				m.log.Warn("expire offsets", "group", g.id, "err", err)
			}
			continue
		}
		total += n
		if n > 0 {
			m.log.Info("expired group offsets", "group", g.id, "offsets", n)
		}
		if known {
			// The whole group expired, as Kafka removes it: its saved
			// membership goes too.
			if err := m.store.DeleteGroupState(ctx, g.id, own); err != nil {
				if ctx.Err() == nil {
					m.log.Warn("delete expired group state", "group", g.id, "err", err)
				}
				continue
			}
			g.mu.Lock()
			if g.state != Empty || !g.stateSince.Equal(since) {
				g.savedChanges = 0 // members came meanwhile: save them again
			}
			g.mu.Unlock()
		}
	}
	return total
}
