package broker

// DescribeCluster (key 60), v0–1.
//
// Lists the live brokers from etcd, the cluster id and the controller.
// v1's endpoint type is always 1 (brokers); Strata does not expose
// controller endpoints. Authorized operations stay "not provided".

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleDescribeCluster(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
	req := kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	if req.Version >= 1 && req.EndpointType != 1 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		return resp
	}
	resp.EndpointType = 1
	brokers := s.liveBrokers(ctx)
	resp.ClusterID = s.store.ClusterID()
	resp.ControllerID = s.controllerID(brokers)
	for _, b := range brokers {
		rb := kmsg.NewDescribeClusterResponseBroker()
		rb.NodeID, rb.Host, rb.Port = b.ID, b.Host, b.Port
		if b.Rack != "" {
			r := b.Rack
			rb.Rack = &r
		}
		resp.Brokers = append(resp.Brokers, rb)
	}
	return resp
}
