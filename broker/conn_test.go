package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/kafkaproto"
)

// connTestServer serves one connection of a Server leading partition t-0
// (replicas 1, 2, 3, min.insync.replicas 2) with a Metadata handler that
// reports each call on metadataCalls. It returns the client side.
func connTestServer(t *testing.T, metadataCalls chan<- int32) (*partition, net.Conn) {
	t.Helper()
	p := testPartition(t, []int32{1, 2, 3})
	cfg := *p.config()
	cfg.MaxMessageBytes = 1 << 20
	p.cfg.Store(&cfg)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:   Options{BrokerID: 1},
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		apis:   make(map[int16]api),
		topics: make(map[string]*topicState),
		ctx:    ctx,
		cancel: cancel,
	}
	s.cfg.SocketRequestMaxBytes = 1 << 20
	s.metrics = newMetrics(prometheus.NewRegistry(), s)
	s.topics["t"] = &topicState{name: "t", cfg: cfg,
		states: []coordinator.PartitionState{{Replicas: []int32{1, 2, 3}, Leader: 1, LeaderEpoch: 5, ISR: []int32{1, 2, 3}}},
		parts:  []*partition{p}}
	s.register(0, 3, 11, s.handleProduce)
	s.register(3, 0, 12, func(_ context.Context, rc *requestContext, req kmsg.Request) kmsg.Response {
		metadataCalls <- rc.hdr.CorrelationID
		return req.ResponseKind()
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.serveConn(c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		ln.Close()
		cancel()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("serveConn did not return after the client closed")
		}
	})
	return p, c
}

func appendRequestFrame(t *testing.T, dst []byte, corr int32, req kmsg.Request) []byte {
	t.Helper()
	body := req.AppendTo(nil)
	var f []byte
	f = binary.BigEndian.AppendUint16(f, uint16(req.Key()))
	f = binary.BigEndian.AppendUint16(f, uint16(req.GetVersion()))
	f = binary.BigEndian.AppendUint32(f, uint32(corr))
	f = binary.BigEndian.AppendUint16(f, 4)
	f = append(f, "test"...)
	if req.IsFlexible() {
		f = append(f, 0)
	}
	f = append(f, body...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(f)))
	return append(dst, f...)
}

// readResponse reads one response frame and returns its correlation id and
// the body after the response header.
func readResponse(t *testing.T, br *bufio.Reader) (int32, []byte) {
	t.Helper()
	f, err := kafkaproto.ReadFrame(br, 1<<20, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	if len(f) < 4 {
		t.Fatalf("response frame of %d bytes", len(f))
	}
	return int32(binary.BigEndian.Uint32(f)), f[4:]
}

// TestPipelinedBehindAcksAll: a Metadata request pipelined behind an
// acks=all Produce that waits for replication is handled while the Produce
// waits, yet its response is written after the Produce's.
func TestPipelinedBehindAcksAll(t *testing.T) {
	metadataCalls := make(chan int32, 4)
	p, c := connTestServer(t, metadataCalls)

	prod := kmsg.NewPtrProduceRequest()
	prod.Version = 9 // flexible
	prod.Acks = -1
	prod.TimeoutMillis = 10_000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "t"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = testBatch(t, 3)
	pt.Partitions = append(pt.Partitions, pp)
	prod.Topics = append(prod.Topics, pt)
	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = 9

	var frames []byte
	frames = appendRequestFrame(t, frames, 1, prod)
	frames = appendRequestFrame(t, frames, 2, meta)
	if _, err := c.Write(frames); err != nil {
		t.Fatal(err)
	}

	// The Metadata request is handled while the Produce still waits.
	select {
	case corr := <-metadataCalls:
		if corr != 2 {
			t.Fatalf("metadata handled with correlation id %d, want 2", corr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Metadata pipelined behind an acks=all Produce was not handled while the Produce waited")
	}
	if hw := p.highWatermark(); hw != 0 {
		t.Fatalf("high watermark %d before any follower fetched, want 0", hw)
	}
	// ...but nothing is written: the Metadata answer queues behind the Produce.
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := br.Peek(1); err == nil {
		t.Fatal("a response was written before the acks=all Produce was replicated")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("peek: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))

	// The followers replicate the batch: the Produce is answered, then the
	// Metadata.
	p.recordFollowerFetch(2, 3, 3, time.Now())
	p.recordFollowerFetch(3, 3, 3, time.Now())

	corr, body := readResponse(t, br)
	if corr != 1 {
		t.Fatalf("first response has correlation id %d, want 1 (the Produce)", corr)
	}
	presp := kmsg.NewPtrProduceResponse()
	presp.Version = 9
	if err := presp.ReadFrom(body[1:]); err != nil { // skip the flexible header's tags
		t.Fatalf("decode produce response: %v", err)
	}
	if len(presp.Topics) != 1 || len(presp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce response shape: %+v", presp.Topics)
	}
	if op := presp.Topics[0].Partitions[0]; op.ErrorCode != 0 || op.BaseOffset != 0 {
		t.Fatalf("produce partition: error %v base offset %d, want success at 0", kerr.ErrorForCode(op.ErrorCode), op.BaseOffset)
	}
	if corr, _ := readResponse(t, br); corr != 2 {
		t.Fatalf("second response has correlation id %d, want 2 (the Metadata)", corr)
	}
}

// TestPipelinedAcksAllTimeoutKeepsOrder: two acks=all Produces pipelined
// on one connection are appended in request order (offsets 0 and 3), both
// time out unreplicated, and the answers come back in request order.
func TestPipelinedAcksAllTimeoutKeepsOrder(t *testing.T) {
	metadataCalls := make(chan int32, 4)
	p, c := connTestServer(t, metadataCalls)
	var frames []byte
	for corr := int32(1); corr <= 2; corr++ {
		prod := kmsg.NewPtrProduceRequest()
		prod.Version = 7
		prod.Acks = -1
		prod.TimeoutMillis = int32(300 / corr) // the second times out first
		pt := kmsg.NewProduceRequestTopic()
		pt.Topic = "t"
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Records = testBatch(t, 3)
		pt.Partitions = append(pt.Partitions, pp)
		prod.Topics = append(prod.Topics, pt)
		frames = appendRequestFrame(t, frames, corr, prod)
	}
	if _, err := c.Write(frames); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i, want := range []int64{0, 3} {
		corr, body := readResponse(t, br)
		if corr != int32(i+1) {
			t.Fatalf("response %d has correlation id %d, want %d", i, corr, i+1)
		}
		presp := kmsg.NewPtrProduceResponse()
		presp.Version = 7
		if err := presp.ReadFrom(body); err != nil {
			t.Fatalf("decode produce response: %v", err)
		}
		op := presp.Topics[0].Partitions[0]
		if op.ErrorCode != kerr.RequestTimedOut.Code || op.BaseOffset != want {
			t.Fatalf("response %d: error %v base offset %d, want REQUEST_TIMED_OUT at %d", i, kerr.ErrorForCode(op.ErrorCode), op.BaseOffset, want)
		}
	}
	if end := p.getLog().LogEndOffset(); end != 6 {
		t.Fatalf("log end %d, want 6", end)
	}
}
