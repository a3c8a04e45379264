package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchConn is the consumer of C1 and C2: one connection to the leader,
// Fetch requests encoded by kmsg, each response read into one buffer that
// is reused for the next. A client allocating a fresh buffer for every
// response (franz-go's request API does) pays a page fault per 4 KiB the
// first time each buffer is written; on a 2-core machine that consumer
// then takes CPU from the broker it measures, as P1's generator would (see
// rawload.go). The records are still walked and counted, and their offsets
// checked, after every response. The buffer is given by the caller, made
// and touched before the clock starts (touchedBuffer): its page faults are
// the client's set-up, not the broker's time to the first byte (a fresh
// 48 MiB buffer made the first answer of C2 take 360 ms to receive where
// the next ones took 60 ms).
type fetchConn struct {
	c    net.Conn
	r    *bufio.Reader
	fmt  *kmsg.RequestFormatter
	out  []byte
	in   []byte
	corr int32
}

func dialFetch(ctx context.Context, addr string) (*fetchConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bench: dial %s: %w", addr, err)
	}
	return &fetchConn{c: c, r: bufio.NewReaderSize(c, 64<<10), fmt: kmsg.NewRequestFormatter(kmsg.FormatterClientID("strata-bench"))}, nil
}

func (f *fetchConn) Close() error { return f.c.Close() }

// fetch sends req (at version fetchVersion) and decodes its answer. The
// answer's record batches point into the connection's buffer: they are
// valid until the next fetch.
func (f *fetchConn) fetch(ctx context.Context, req *kmsg.FetchRequest) (*kmsg.FetchResponse, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	if err := f.c.SetDeadline(deadline); err != nil {
		return nil, err
	}
	req.Version = fetchVersion
	f.corr++
	f.out = f.fmt.AppendRequest(f.out[:0], req, f.corr)
	if _, err := f.c.Write(f.out); err != nil {
		return nil, fmt.Errorf("bench: fetch: write: %w", err)
	}
	var size [4]byte
	if _, err := io.ReadFull(f.r, size[:]); err != nil {
		return nil, fmt.Errorf("bench: fetch: read: %w", err)
	}
	n := int(binary.BigEndian.Uint32(size[:]))
	if n < 5 || n > 1<<30 {
		return nil, fmt.Errorf("bench: fetch: response of %d bytes", n)
	}
	if cap(f.in) < n {
		f.in = make([]byte, n)
	}
	f.in = f.in[:n]
	if _, err := io.ReadFull(f.r, f.in); err != nil {
		return nil, fmt.Errorf("bench: fetch: read: %w", err)
	}
	if corr := int32(binary.BigEndian.Uint32(f.in)); corr != f.corr {
		return nil, fmt.Errorf("bench: fetch: correlation id %d, want %d", corr, f.corr)
	}
	body := f.in[4:]
	if fetchVersion >= 12 {
		if body[0] != 0 {
			return nil, errors.New("bench: fetch: tagged fields in the response header")
		}
		body = body[1:]
	}
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("bench: fetch: decode: %w", err)
	}
	return resp, nil
}

// touchedBuffer returns n bytes with every page written once.
func touchedBuffer(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = 1
	}
	return b[:0]
}

// fetchVersion: the newest Fetch naming topics (v13 names them by id).
const fetchVersion = 12

// brokerAddr is the host:port of broker id, from a Metadata request.
func brokerAddr(ctx context.Context, cl *kgo.Client, id int32) (string, error) {
	resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		return "", fmt.Errorf("bench: metadata: %w", err)
	}
	for _, b := range resp.Brokers {
		if b.NodeID == id {
			return net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))), nil
		}
	}
	return "", fmt.Errorf("bench: metadata lists no broker %d", id)
}
