package remote

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// sendBodiesInLargeWrites makes t's plain TCP connections send request
// bodies in writes of up to bodyWriteSize.
//
// net/http hands a request body to its connection's ReadFrom; a TCP
// connection copies a body that is not an *os.File (the SDKs wrap ours) in
// 32 KiB steps: two system calls per 32 KiB, a read of the segment file and
// a write to the socket, and the server's reads come in as many small
// pieces. On a 2-core virtual machine, where system calls are dear, that
// cost more than the bytes did: uploads of sealed segments went from about
// 285 to 445 MB/s against MinIO with 1 MiB writes. Over TLS the body goes
// through tls.Conn, which writes records of its own, and nothing changes.
func sendBodiesInLargeWrites(t *http.Transport) {
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &bodyConn{Conn: c}, nil
	}
}

type bodyConn struct{ net.Conn }

const bodyWriteSize = 1 << 20

var bodyBufs = sync.Pool{New: func() any { b := make([]byte, bodyWriteSize); return &b }}

// bodyFillWait bounds how long a write waits for its buffer to fill: a
// slow body (a rate-limited upload) still goes out at once, in smaller
// writes, instead of leaving the connection idle.
const bodyFillWait = 20 * time.Millisecond

// ReadFrom writes what it reads from r in writes of up to bodyWriteSize,
// each as full as r fills it within bodyFillWait. It returns nil at r's
// io.EOF and any other error of r's (io.ErrUnexpectedEOF included) as is,
// after writing what it read before it.
func (c *bodyConn) ReadFrom(r io.Reader) (int64, error) {
	bp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bp)
	buf := *bp
	if lr, ok := r.(*io.LimitedReader); ok && lr.N < int64(len(buf)) {
		buf = buf[:max(lr.N, 1)]
	}
	var n int64
	for {
		m := 0
		var rerr error
		var start time.Time
		for m < len(buf) && rerr == nil {
			var k int
			k, rerr = r.Read(buf[m:])
			m += k
			if m > 0 && start.IsZero() {
				start = time.Now()
			} else if m > 0 && time.Since(start) > bodyFillWait {
				break
			}
		}
		if m > 0 {
			w, werr := c.Conn.Write(buf[:m])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		switch {
		case rerr == io.EOF:
			return n, nil
		case rerr != nil:
			return n, rerr
		}
	}
}
