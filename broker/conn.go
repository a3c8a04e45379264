package broker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/kafkaproto"
)

// maxInFlight bounds the requests of one connection that are handled but
// not yet answered. Past it the connection stops reading until the oldest
// response is written, so a client pipelining without limit is held back by
// TCP, not by broker memory. Kafka clients bound themselves too
// (max.in.flight.requests.per.connection, 5 by default in the Java client,
// librdkafka 1,000,000, franz-go 5 with idempotence); 32 keeps acks=all
// producers that pipeline at full depth from ever blocking here.
const maxInFlight = 32

// Produce frames are reused for later frames of the same connection once
// their request is handled: the produce handler copies the record batches
// into the log (a write to the page cache) and keeps no reference to the
// frame — its strings were copied when decoded, and a deferred acks=all
// answer needs only the request's version. Other requests are never
// recycled: their handlers may keep slices of the frame (group member
// metadata and assignments). At most two buffers per connection, each at
// most recycleMaxBytes, are held.
const (
	produceKey      = 0
	recycleMinBytes = 64 << 10
	recycleMaxBytes = 16 << 20
)

// deferredResponse is a response whose contents are final only once done is
// closed: an acks=all Produce whose partitions are appended and now wait for
// their high watermarks. The connection keeps reading and handling later
// requests meanwhile; the writer waits for done before writing it, so
// responses still leave in request order.
//
// The handler supplies wait, which must end by a deadline of its own or
// when the connection's context is cancelled; serveConn runs it in a
// goroutine it owns and closes done when it returns.
type deferredResponse struct {
	kmsg.Response
	wait func()
	done chan struct{}
}

// queuedResponse is a handled request waiting for its turn on the wire.
type queuedResponse struct {
	resp  kmsg.Response
	hdr   kafkaproto.RequestHeader
	start time.Time
}

// serveConn serves one client connection. Three goroutines:
//
//   - a reader reads frames (size-checked before allocation) one ahead;
//   - this goroutine parses and handles them strictly in order — so appends
//     of one producer keep their order and a request sees the effects of
//     every request before it — and queues each response;
//   - a writer writes the queued responses strictly in request order.
//
// A handler that must wait for something other than its own work (acks=all
// waiting for replication) returns a deferredResponse, whose wait runs in a
// goroutine of its own (owned and waited for here); handling continues with the
// next request and the writer holds every later response behind it. At most
// maxInFlight responses are queued. Any protocol violation closes the
// connection after the responses of the requests before it, as Kafka does.
func (s *Server) serveConn(nc net.Conn) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	defer nc.Close()
	s.metrics.connections.Inc()
	defer s.metrics.connections.Dec()

	frames := make(chan []byte, 1)
	readErr := make(chan error, 1)
	// Produce frames are recycled (see recycleFrame): a saturating producer
	// otherwise costs an allocation, and the zeroing of it, per request.
	free := make(chan []byte, 2)
	go func() {
		defer close(frames)
		br := bufio.NewReaderSize(nc, 64<<10)
		for {
			var buf []byte
			select {
			case buf = <-free:
			default:
			}
			f, err := kafkaproto.ReadFrame(br, s.cfg.SocketRequestMaxBytes, buf)
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

	queue := make(chan queuedResponse, maxInFlight)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if err := s.writeResponses(nc, queue); err != nil {
			// Stop handling and reading: nobody will see the answers.
			cancel()
			nc.Close()
		}
	}()

	var async sync.WaitGroup // deferred responses' waits
	rc := &requestContext{remote: nc.RemoteAddr()}
loop:
	for f := range frames {
		start := time.Now()
		resp, hdr, ok := s.handleFrame(ctx, rc, f)
		if !ok {
			break
		}
		if hdr.APIKey == produceKey && cap(f) >= recycleMinBytes && cap(f) <= recycleMaxBytes {
			// The produce handler is done with the frame (recycleFrame).
			select {
			case free <- f[:0]:
			default:
			}
		}
		if resp == nil { // Produce with acks=0: no response at all.
			continue
		}
		if d, ok := resp.(*deferredResponse); ok {
			d.done = make(chan struct{})
			async.Go(func() {
				defer close(d.done)
				defer func() {
					if r := recover(); r != nil {
						s.log.Error("deferred response panic", "key", hdr.APIKey, "panic", r, "stack", string(debug.Stack()))
						cancel()
						nc.Close()
					}
				}()
				d.wait()
			})
		}
		select {
		case queue <- queuedResponse{resp: resp, hdr: hdr, start: start}:
		case <-writerDone:
			break loop
		}
	}
	close(queue)
	<-writerDone // every deferred wait ends by its deadline or ctx
	cancel()
	async.Wait()
	select {
	case err := <-readErr:
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && s.ctx.Err() == nil {
			s.log.Info("closing connection", "remote", nc.RemoteAddr().String(), "reason", err)
		}
	default:
	}
}

// writeResponses writes queued responses in order until the queue closes
// or a write fails. It flushes whenever the queue runs empty.
func (s *Server) writeResponses(nc net.Conn, queue <-chan queuedResponse) error {
	bw := bufio.NewWriterSize(nc, 64<<10)
	var out []byte
	for q := range queue {
		resp := q.resp
		if d, ok := resp.(*deferredResponse); ok {
			<-d.done // bounded: the wait ends at the request's timeout or on ctx cancel
			resp = d.Response
			s.metrics.observe(q.hdr.APIKey, time.Since(q.start))
		}
		if fr, ok := resp.(*fetchResponse); ok {
			if fr.Version < 4 || fr.Version > 12 {
				resp = fr.Flatten() // not a version we encode ourselves
			} else {
				// Record batches go out by reference (writev), never
				// copied into a response buffer.
				if err := bw.Flush(); err != nil {
					return err
				}
				bufs := fetchResponseBuffers(q.hdr.CorrelationID, fr.FetchResponse, fr.more)
				n, err := bufs.WriteTo(nc)
				s.metrics.bytesOut.Add(float64(n))
				if err != nil {
					return err // not released: the kernel may still be reading the views
				}
				fr.Release() // the kernel has copied every byte
				continue
			}
		}
		out = kafkaproto.AppendResponse(out[:0], q.hdr.CorrelationID, resp)
		s.metrics.bytesOut.Add(float64(len(out)))
		if _, err := bw.Write(out); err != nil {
			return err
		}
		if len(queue) == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		if cap(out) > 1<<20 {
			out = nil // do not pin a large fetch buffer to an idle connection
		}
	}
	return bw.Flush()
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
	if _, deferred := resp.(*deferredResponse); !deferred {
		s.metrics.observe(hdr.APIKey, time.Since(start)) // else observed when written
	}
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
