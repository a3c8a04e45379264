package broker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/kafkaproto"
)

// serveConn serves one client connection. A reader goroutine reads frames
// (size-checked before allocation) one ahead; this goroutine handles them
// strictly in order and writes each response before handling the next, so
// responses leave in request order as Kafka clients require. Any protocol
// violation closes the connection, as Kafka does.
func (s *Server) serveConn(nc net.Conn) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	defer nc.Close()
	s.metrics.connections.Inc()
	defer s.metrics.connections.Dec()

	frames := make(chan []byte, 1)
	readErr := make(chan error, 1)
	go func() {
		defer close(frames)
		br := bufio.NewReaderSize(nc, 64<<10)
		for {
			f, err := kafkaproto.ReadFrame(br, s.cfg.SocketRequestMaxBytes, nil)
			if err != nil {
				readErr <- err
				return
			}
			select {
			case frames <- f:
			case <-ctx.Done():
				return
			}
		}
	}()

	bw := bufio.NewWriterSize(nc, 64<<10)
	var out []byte
	rc := &requestContext{remote: nc.RemoteAddr()}
	for f := range frames {
		resp, hdr, ok := s.handleFrame(ctx, rc, f)
		if !ok {
			return
		}
		if resp == nil { // Produce with acks=0: no response at all.
			continue
		}
		if fr, ok := resp.(*kmsg.FetchResponse); ok && fr.Version >= 4 && fr.Version <= 12 {
			// Record batches go out by reference (writev), never copied
			// into a response buffer.
			if err := bw.Flush(); err != nil {
				return
			}
			bufs := fetchResponseBuffers(hdr.CorrelationID, fr)
			n, err := bufs.WriteTo(nc)
			s.metrics.bytesOut.Add(float64(n))
			if err != nil {
				return
			}
			continue
		}
		out = kafkaproto.AppendResponse(out[:0], hdr.CorrelationID, resp)
		s.metrics.bytesOut.Add(float64(len(out)))
		if _, err := bw.Write(out); err != nil {
			return
		}
		if len(frames) == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
		if cap(out) > 1<<20 {
			out = nil // do not pin a large fetch buffer to an idle connection
		}
	}
	bw.Flush()
	select {
	case err := <-readErr:
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && s.ctx.Err() == nil {
			s.log.Info("closing connection", "remote", nc.RemoteAddr().String(), "reason", err)
		}
	default:
	}
}

// handleFrame parses and dispatches one request. ok=false closes the
// connection.
func (s *Server) handleFrame(ctx context.Context, rc *requestContext, frame []byte) (resp kmsg.Response, hdr kafkaproto.RequestHeader, ok bool) {
	hdr, body, err := kafkaproto.ParseRequestHeader(frame)
	if err != nil {
		s.log.Info("closing connection: bad request header", "remote", rc.remote.String(), "err", err)
		return nil, hdr, false
	}
	rc.hdr = hdr
	a, known := s.apis[hdr.APIKey]
	if hdr.APIKey == 18 && known && hdr.APIVersion > a.max {
		// KIP-511: answer a too-new ApiVersions in v0 with our ranges so the
		// client can retry with a version we speak.
		return s.versions.ApiVersionsResponse(hdr.APIVersion), hdr, true
	}
	if !known || hdr.APIVersion < a.min || hdr.APIVersion > a.max {
		s.log.Info("closing connection: unsupported API", "remote", rc.remote.String(), "key", hdr.APIKey, "version", hdr.APIVersion, "client", clientID(hdr))
		return nil, hdr, false
	}
	req, err := kafkaproto.DecodeRequest(hdr, body)
	if err != nil {
		s.log.Info("closing connection: malformed request", "remote", rc.remote.String(), "key", hdr.APIKey, "version", hdr.APIVersion, "err", err)
		return nil, hdr, false
	}
	s.metrics.bytesIn.Add(float64(len(frame) + 4))
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			// A handler bug must not take the broker down with every other
			// client; drop this connection and say why.
			s.log.Error("handler panic", "key", hdr.APIKey, "version", hdr.APIVersion, "panic", r, "stack", string(debug.Stack()))
			resp, ok = nil, false
		}
	}()
	resp = a.handle(ctx, rc, req)
	s.metrics.observe(hdr.APIKey, time.Since(start))
	if resp != nil {
		resp.SetVersion(hdr.APIVersion)
	}
	return resp, hdr, true
}

func clientID(h kafkaproto.RequestHeader) string {
	if h.ClientID == nil {
		return ""
	}
	return *h.ClientID
}
