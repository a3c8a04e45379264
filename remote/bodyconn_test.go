package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// recConn records the sizes of the writes made to it.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	writes []int
}

func (c *recConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(b))
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *recConn) largest() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := 0
	for _, w := range c.writes {
		m = max(m, w)
	}
	return m
}

// TestBodiesGoInLargeWrites: through net/http, a request body that is not
// a file (hidden behind a plain io.Reader, as the SDKs hide ours) reaches
// the server intact and leaves in writes of bodyWriteSize, not 32 KiB.
func TestBodiesGoInLargeWrites(t *testing.T) {
	body := make([]byte, 5<<20+123)
	rand.Read(body)
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server read: %v", err)
		}
		got <- b
	}))
	defer srv.Close()
	var conns []*recConn
	var mu sync.Mutex
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		rc := &recConn{Conn: c}
		mu.Lock()
		conns = append(conns, rc)
		mu.Unlock()
		return rc, nil
	}}
	sendBodiesInLargeWrites(tr)
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPut, srv.URL, struct{ io.Reader }{bytes.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if b := <-got; !bytes.Equal(b, body) {
		t.Fatalf("server got %d bytes, not the %d sent", len(b), len(body))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 1 {
		t.Fatalf("%d connections, want 1", len(conns))
	}
	if m := conns[0].largest(); m != bodyWriteSize {
		t.Fatalf("largest write %d bytes, want %d", m, bodyWriteSize)
	}
}

// chunky returns at most n bytes per Read, then fails with err (nil: EOF).
type chunky struct {
	r   io.Reader
	n   int
	err error
}

func (c *chunky) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	k, err := c.r.Read(p)
	if err == io.EOF && c.err != nil {
		return k, c.err
	}
	return k, err
}

// TestBodyConnReadFrom: small reads are gathered into full writes, a
// limited body is sent exactly, and a failing reader's error comes back
// with the count of bytes written.
func TestBodyConnReadFrom(t *testing.T) {
	data := make([]byte, 2*bodyWriteSize+1000)
	rand.Read(data)
	a, b := net.Pipe()
	defer a.Close()
	rec := &recConn{Conn: a}
	recv := make(chan []byte)
	go func() { x, _ := io.ReadAll(b); recv <- x }()
	c := &bodyConn{Conn: rec}
	n, err := c.ReadFrom(&io.LimitedReader{R: &chunky{r: bytes.NewReader(data), n: 7}, N: int64(len(data) - 10)})
	if err != nil || n != int64(len(data)-10) {
		t.Fatalf("ReadFrom = %d, %v; want %d, nil", n, err, len(data)-10)
	}
	boom := errors.New("boom")
	n, err = c.ReadFrom(&chunky{r: bytes.NewReader(data[:3000]), n: 1000, err: boom})
	if !errors.Is(err, boom) || n != 3000 {
		t.Fatalf("ReadFrom of a failing reader = %d, %v; want 3000, boom", n, err)
	}
	a.Close()
	x := <-recv
	want := append(append([]byte(nil), data[:len(data)-10]...), data[:3000]...)
	if !bytes.Equal(x, want) {
		t.Fatalf("received %d bytes, not the %d sent", len(x), len(want))
	}
	if w := rec.writes; len(w) != 4 || w[0] != bodyWriteSize || w[1] != bodyWriteSize || w[2] != 990 || w[3] != 3000 {
		t.Fatalf("writes %v, want [%d %d 990 3000]", w, bodyWriteSize, bodyWriteSize)
	}
	// A write error stops it.
	a2, b2 := net.Pipe()
	b2.Close()
	if _, err := (&bodyConn{Conn: a2}).ReadFrom(bytes.NewReader(data)); err == nil {
		t.Fatal("ReadFrom to a closed pipe succeeded")
	}
}

// slow returns n bytes per Read after a pause, then io.EOF.
type slow struct {
	left, n int
	pause   time.Duration
}

func (s *slow) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	k := min(s.n, s.left, len(p))
	s.left -= k
	return k, nil
}

// TestBodyConnSlowBodies: a slow body (a rate-limited upload) is not held
// back until a whole write fills: each write waits at most about
// bodyFillWait; and a reader's io.ErrUnexpectedEOF comes back as an error.
func TestBodyConnSlowBodies(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go io.Copy(io.Discard, b)
	rec := &recConn{Conn: a}
	n, err := (&bodyConn{Conn: rec}).ReadFrom(&slow{left: 10 << 10, n: 1 << 10, pause: 15 * time.Millisecond})
	if err != nil || n != 10<<10 {
		t.Fatalf("ReadFrom = %d, %v; want %d, nil", n, err, 10<<10)
	}
	if len(rec.writes) < 3 || rec.largest() > 4<<10 {
		t.Fatalf("writes %v: want several small ones, a 15 ms reader is not waited on for 1 MiB", rec.writes)
	}
	_, err = (&bodyConn{Conn: rec}).ReadFrom(&chunky{r: bytes.NewReader(make([]byte, 10)), n: 4, err: io.ErrUnexpectedEOF})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a reader's io.ErrUnexpectedEOF: ReadFrom returned %v", err)
	}
}
