package broker

// The consumer-group coordinator (package broker/groups) wired to this
// broker: its settings, the topic check of OffsetCommit and the client
// identity of member requests. Its offsets go through a
// coordinator.OffsetWriter: the owned groups' offsets are kept in memory (no
// etcd read before a commit) and concurrent commits of all groups share one
// etcd transaction.

import (
	"net"

	"github.com/stratabroker/strata/broker/groups"
	"github.com/stratabroker/strata/coordinator"
)

func (s *Server) newGroupManager() *groups.Manager {
	return groups.New(coordinator.NewOffsetWriter(s.store), groups.Config{
		BrokerID:               s.opts.BrokerID,
		InitialRebalanceDelay:  s.cfg.GroupInitialRebalanceDelay,
		MinSessionTimeout:      s.cfg.GroupMinSessionTimeout,
		MaxSessionTimeout:      s.cfg.GroupMaxSessionTimeout,
		OffsetsRetention:       s.cfg.OffsetsRetention,
		RetentionCheckInterval: s.cfg.OffsetsRetentionCheck,
		PartitionExists: func(topic string, p int32) bool {
			t := s.topic(topic)
			return t != nil && p >= 0 && int(p) < len(t.states)
		},
		Logger: s.log.With("component", "groups"),
	})
}

func groupClient(rc *requestContext) groups.Client {
	host := ""
	if rc.remote != nil {
		host = rc.remote.String()
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	return groups.Client{ID: clientID(rc.hdr), Host: "/" + host}
}
