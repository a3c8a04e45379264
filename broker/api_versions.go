package broker

// ApiVersions (key 18), v0–4.
//
// The answer is built from the table of registered handlers, so nothing is
// advertised that is not implemented. A request newer than v4 is answered in
// v0 with UNSUPPORTED_VERSION and our ranges (KIP-511) by the connection
// loop before it reaches here. Client software name/version (v3+) is not
// validated: Kafka's checks only serve its metrics.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func (s *Server) handleApiVersions(_ context.Context, rc *requestContext, _ kmsg.Request) kmsg.Response {
	resp := s.versions.ApiVersionsResponse(rc.hdr.APIVersion)
	return resp
}
