package broker

// Metadata (key 3), v0–12.
//
// v0: an empty topic list means all topics. v1+: null means all, empty
// means none. v4+ carries allow_auto_topic_creation (earlier versions always
// allow it, as in Kafka); creation also needs auto.create.topics.enable.
// v7+ reports leader epochs, v10+ topic ids (v12 may ask by id). Broker
// and topic authorized-operations fields stay at "not provided": Strata has
// no ACLs.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
)

func (s *Server) handleMetadata(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)

	brokers := s.liveBrokers(ctx)
	for _, b := range brokers {
		mb := kmsg.NewMetadataResponseBroker()
		mb.NodeID, mb.Host, mb.Port = b.ID, b.Host, b.Port
		if b.Rack != "" {
			r := b.Rack
			mb.Rack = &r
		}
		resp.Brokers = append(resp.Brokers, mb)
	}
	cid := s.store.ClusterID()
	resp.ClusterID = &cid
	resp.ControllerID = s.controllerID(brokers)

	allowAuto := req.Version < 4 || req.AllowAutoTopicCreation
	all := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if all {
		for _, t := range s.allTopics() {
			resp.Topics = append(resp.Topics, s.describeTopic(t))
		}
		return resp
	}
	for _, rt := range req.Topics {
		var t *topicState
		switch {
		case rt.Topic != nil:
			t = s.topic(*rt.Topic)
			if t == nil && allowAuto && s.cfg.AutoCreateTopics {
				if code, msg := s.autoCreateTopic(ctx, *rt.Topic); code != 0 {
					mt := kmsg.NewMetadataResponseTopic()
					mt.Topic = rt.Topic
					mt.ErrorCode = code
					_ = msg
					resp.Topics = append(resp.Topics, mt)
					continue
				}
				t = s.topic(*rt.Topic)
			}
		case rt.TopicID != [16]byte{}:
			t = s.topicByID(rt.TopicID)
		}
		if t == nil {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = rt.Topic
			mt.TopicID = rt.TopicID
			mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			if rt.Topic != nil && validateTopicName(*rt.Topic) != nil {
				mt.ErrorCode = kerr.InvalidTopicException.Code
			}
			if rt.Topic == nil {
				mt.ErrorCode = kerr.UnknownTopicID.Code
			}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, s.describeTopic(t))
	}
	return resp
}

func (s *Server) describeTopic(t *topicState) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.name
	mt.Topic = &name
	mt.TopicID = t.id
	for i, st := range t.states {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition = int32(i)
		mp.Leader = st.Leader
		mp.LeaderEpoch = st.LeaderEpoch
		mp.Replicas = append([]int32(nil), st.Replicas...)
		mp.ISR = append([]int32(nil), st.ISR...)
		mp.OfflineReplicas = []int32{}
		if st.Leader < 0 {
			mp.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		mt.Partitions = append(mt.Partitions, mp)
	}
	return mt
}

// liveBrokers returns the registered brokers, cached for a second so that
// bursts of Metadata requests do not each read etcd.
func (s *Server) liveBrokers(ctx context.Context) []coordinator.BrokerInfo {
	s.brokersMu.Lock()
	defer s.brokersMu.Unlock()
	if s.brokers != nil && time.Since(s.brokersAt) < time.Second {
		return s.brokers
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	bs, err := s.store.Brokers(ctx)
	if err != nil {
		s.log.Warn("list brokers", "err", err)
		if s.brokers != nil {
			return s.brokers
		}
		return []coordinator.BrokerInfo{{ID: s.opts.BrokerID, Host: s.advHost, Port: s.advPort, Rack: s.cfg.Rack}}
	}
	s.brokers, s.brokersAt = bs, time.Now()
	return bs
}

func (s *Server) invalidateBrokers() {
	s.brokersMu.Lock()
	s.brokers = nil
	s.brokersMu.Unlock()
}
