package broker

// CreateTopics (key 19), v2–7.
//
// Partitions and replication factor -1 take the broker defaults
// (num.partitions, default.replication.factor). Replicas are spread over
// the live brokers round-robin from a random start, rack-aware when brokers
// declare broker.rack (placeReplicas); the first replica leads. A
// replication factor above the live broker count is
// INVALID_REPLICATION_FACTOR.
// A manual replica assignment is honoured when every broker in it is live.
// Configs are validated as Kafka does (unknown names and bad values are
// INVALID_CONFIG). validate_only checks everything and writes nothing. The
// topic, its id and every partition record are written to etcd in one
// transaction, so a topic exists whole or not at all. v5+ answers with the
// resulting partitions, replication factor and configs; v7 with the topic id.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
)

func (s *Server) handleCreateTopics(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := make(map[string]int)
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		ot := kmsg.NewCreateTopicsResponseTopic()
		ot.Topic = rt.Topic
		ot.NumPartitions, ot.ReplicationFactor = -1, -1
		var code int16
		var msg string
		if seen[rt.Topic] > 1 {
			code, msg = kerr.InvalidRequest.Code, "topic named more than once in one request"
		} else {
			spec := topicSpec{name: rt.Topic, partitions: rt.NumPartitions, rf: rt.ReplicationFactor, configs: map[string]string{}}
			for _, a := range rt.ReplicaAssignment {
				spec.assignment = append(spec.assignment, a)
			}
			for _, c := range rt.Configs {
				if c.Value != nil {
					spec.configs[c.Name] = *c.Value
				}
			}
			var t coordinator.Topic
			t, code, msg = s.createTopic(ctx, spec, req.ValidateOnly)
			if code == 0 {
				ot.TopicID = t.ID
				ot.NumPartitions = int32(len(t.Partitions))
				ot.ReplicationFactor = int16(len(t.Partitions[0].Replicas))
				if req.Version >= 5 {
					for _, e := range s.topicConfigEntries(t.Configs, nil, false, false) {
						c := kmsg.NewCreateTopicsResponseTopicConfig()
						c.Name, c.Value, c.ReadOnly, c.Source, c.IsSensitive = e.Name, e.Value, e.ReadOnly, int8(e.Source), false
						ot.Configs = append(ot.Configs, c)
					}
				}
				if req.ValidateOnly {
					ot.TopicID = [16]byte{}
				}
			}
		}
		ot.ErrorCode = code
		if code != 0 && msg != "" {
			m := msg
			ot.ErrorMessage = &m
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return resp
}

type topicSpec struct {
	name       string
	partitions int32
	rf         int16
	assignment []kmsg.CreateTopicsRequestTopicReplicaAssignment
	configs    map[string]string
}

// createTopic validates spec, assigns replicas, writes the topic to etcd and
// applies it locally. It returns a Kafka error code and message on failure.
func (s *Server) createTopic(ctx context.Context, spec topicSpec, validateOnly bool) (coordinator.Topic, int16, string) {
	if err := validateTopicName(spec.name); err != nil {
		return coordinator.Topic{}, kerr.InvalidTopicException.Code, err.Error()
	}
	spec.configs = s.withTieringDefault(spec.configs)
	if err := ValidateTopicConfigs(spec.configs, s.cfg); err != nil {
		return coordinator.Topic{}, kerr.InvalidConfig.Code, err.Error()
	}
	s.invalidateBrokers()
	brokers := s.liveBrokers(ctx)
	var ids []int32
	for _, b := range brokers {
		ids = append(ids, b.ID)
	}
	var states []coordinator.PartitionState
	if len(spec.assignment) > 0 {
		if spec.partitions != -1 || spec.rf != -1 {
			return coordinator.Topic{}, kerr.InvalidRequest.Code, "replica assignment given together with partition count or replication factor"
		}
		var err error
		states, err = manualAssignment(spec.assignment, ids)
		if err != nil {
			return coordinator.Topic{}, kerr.InvalidReplicaAssignment.Code, err.Error()
		}
	} else {
		n, rf := spec.partitions, spec.rf
		if n == -1 {
			n = s.cfg.NumPartitions
		}
		if rf == -1 {
			rf = s.cfg.DefaultReplicationFactor
		}
		if n <= 0 {
			return coordinator.Topic{}, kerr.InvalidPartitions.Code, "number of partitions must be at least 1"
		}
		if rf <= 0 {
			return coordinator.Topic{}, kerr.InvalidReplicationFactor.Code, "replication factor must be at least 1"
		}
		if int(rf) > len(ids) {
			return coordinator.Topic{}, kerr.InvalidReplicationFactor.Code, fmt.Sprintf("replication factor %d is larger than the %d available brokers", rf, len(ids))
		}
		states = assignReplicas(0, n, rf, brokers)
	}
	if s.topic(spec.name) != nil {
		return coordinator.Topic{}, kerr.TopicAlreadyExists.Code, fmt.Sprintf("topic %q already exists", spec.name)
	}
	t := coordinator.Topic{Name: spec.name, ID: uuid.New(), Configs: spec.configs, Partitions: states}
	if validateOnly {
		return t, 0, ""
	}
	if err := s.store.CreateTopic(ctx, t); err != nil {
		if errors.Is(err, coordinator.ErrTopicExists) {
			return coordinator.Topic{}, kerr.TopicAlreadyExists.Code, fmt.Sprintf("topic %q already exists", spec.name)
		}
		s.log.Error("create topic", "topic", spec.name, "err", err)
		return coordinator.Topic{}, kerr.UnknownServerError.Code, err.Error()
	}
	s.log.Info("created topic", "topic", spec.name, "partitions", len(states), "replication_factor", len(states[0].Replicas), "configs", spec.configs)
	s.refreshTopics(ctx)
	return t, 0, ""
}

// autoCreateTopic creates a topic with the broker defaults.
func (s *Server) autoCreateTopic(ctx context.Context, name string) (int16, string) {
	_, code, msg := s.createTopic(ctx, topicSpec{name: name, partitions: -1, rf: -1, configs: map[string]string{}}, false)
	if code == kerr.TopicAlreadyExists.Code {
		s.refreshTopics(ctx)
		return 0, ""
	}
	return code, msg
}

// refreshTopics reads the topic set from etcd and applies it now, so that a
// client that created a topic can use it on its next request without
// waiting for the watch.
func (s *Server) refreshTopics(ctx context.Context) {
	ts, err := s.store.Topics(ctx)
	if err != nil {
		s.log.Warn("refresh topics", "err", err)
		return
	}
	if err := s.applyTopics(ts, false); err != nil {
		s.log.Error("apply topics", "err", err)
	}
}

// assignReplicas spreads partitions [first, first+n) over the live brokers
// from a random start; see placeReplicas.
func assignReplicas(first, n int32, rf int16, brokers []coordinator.BrokerInfo) []coordinator.PartitionState {
	return placeReplicas(first, n, rf, brokers, rand.IntN(max(len(brokers), 1)))
}

// placeReplicas assigns replicas as Kafka does, rack-aware when brokers
// declare broker.rack: the brokers are ordered by alternating racks (racks
// by name, brokers by id within a rack: a1 b1 c1 a2 b2 c2 ...; without
// racks this is simply id order), partition p is led by the broker at
// (start+p) in that order, and its followers are the next brokers in order
// skipping any whose rack already holds a replica of p until every rack
// does. So leaders are spread evenly, and the replicas of a partition land
// on distinct racks whenever rf <= number of racks. A broker without a rack
// counts as a rack of its own name "". Requires 1 <= rf <= len(brokers).
func placeReplicas(first, n int32, rf int16, brokers []coordinator.BrokerInfo, start int) []coordinator.PartitionState {
	ordered, rackOf, numRacks := rackAlternating(brokers)
	nb := len(ordered)
	out := make([]coordinator.PartitionState, 0, n)
	for p := first; p < first+n; p++ {
		lead := (start + int(p)) % nb
		reps := []int32{ordered[lead]}
		chosen := map[int32]bool{ordered[lead]: true}
		racks := map[string]bool{rackOf[ordered[lead]]: true}
		// Shift followers with the round, as Kafka does, so that partitions
		// with the same leader do not all share the same followers.
		shift := (int(p) / nb) % max(nb-1, 1)
		for k := 0; len(reps) < int(rf) && k < 2*nb; k++ {
			b := ordered[(lead+1+(shift+k)%max(nb-1, 1))%nb]
			if nb == 1 || chosen[b] || (racks[rackOf[b]] && len(racks) < numRacks) {
				continue
			}
			reps = append(reps, b)
			chosen[b] = true
			racks[rackOf[b]] = true
		}
		for k := 0; len(reps) < int(rf) && k < nb; k++ { // fallback: any broker not chosen yet
			if b := ordered[(lead+k)%nb]; !chosen[b] {
				reps = append(reps, b)
				chosen[b] = true
			}
		}
		out = append(out, coordinator.PartitionState{
			Partition: p, Replicas: reps, Leader: reps[0], LeaderEpoch: 0, ISR: slices.Clone(reps), PartitionEpoch: 0,
		})
	}
	return out
}

// rackAlternating orders brokers alternating between racks and returns each
// broker's rack and the number of racks.
func rackAlternating(brokers []coordinator.BrokerInfo) ([]int32, map[int32]string, int) {
	byRack := map[string][]int32{}
	rackOf := make(map[int32]string, len(brokers))
	for _, b := range brokers {
		if _, dup := rackOf[b.ID]; dup {
			continue
		}
		rackOf[b.ID] = b.Rack
		byRack[b.Rack] = append(byRack[b.Rack], b.ID)
	}
	racks := make([]string, 0, len(byRack))
	for r, ids := range byRack {
		slices.Sort(ids)
		racks = append(racks, r)
	}
	slices.Sort(racks)
	ordered := make([]int32, 0, len(rackOf))
	for i := 0; len(ordered) < len(rackOf); i++ {
		for _, r := range racks {
			if i < len(byRack[r]) {
				ordered = append(ordered, byRack[r][i])
			}
		}
	}
	return ordered, rackOf, len(racks)
}

func manualAssignment(as []kmsg.CreateTopicsRequestTopicReplicaAssignment, live []int32) ([]coordinator.PartitionState, error) {
	byP := make(map[int32][]int32)
	for _, a := range as {
		if _, dup := byP[a.Partition]; dup {
			return nil, fmt.Errorf("partition %d assigned twice", a.Partition)
		}
		byP[a.Partition] = a.Replicas
	}
	out := make([]coordinator.PartitionState, len(byP))
	rf := -1
	for p := int32(0); p < int32(len(byP)); p++ {
		reps, ok := byP[p]
		if !ok {
			return nil, fmt.Errorf("partitions must be numbered 0..%d", len(byP)-1)
		}
		if err := checkReplicaList(reps, live); err != nil {
			return nil, fmt.Errorf("partition %d: %w", p, err)
		}
		if rf != -1 && len(reps) != rf {
			return nil, fmt.Errorf("all partitions must have the same replication factor")
		}
		rf = len(reps)
		out[p] = coordinator.PartitionState{Partition: p, Replicas: slices.Clone(reps), Leader: reps[0], ISR: slices.Clone(reps)}
	}
	return out, nil
}

func checkReplicaList(reps, live []int32) error {
	if len(reps) == 0 {
		return errors.New("no replicas")
	}
	seen := map[int32]bool{}
	for _, r := range reps {
		if seen[r] {
			return fmt.Errorf("broker %d listed twice", r)
		}
		seen[r] = true
		if !slices.Contains(live, r) {
			return fmt.Errorf("broker %d is not live", r)
		}
	}
	return nil
}

// validateTopicName applies Kafka's rules: 1–249 characters of
// [a-zA-Z0-9._-], not "." or "..".
func validateTopicName(name string) error {
	switch {
	case name == "":
		return errors.New("topic name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	case len(name) > 249:
		return fmt.Errorf("topic name is %d characters long; the limit is 249", len(name))
	}
	if i := strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}); i >= 0 {
		return fmt.Errorf("topic name %q contains %q; only ASCII letters, digits, '.', '_' and '-' are allowed", name, name[i])
	}
	return nil
}
