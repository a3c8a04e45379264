package remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratabroker/strata/internal/miniotest"
	"github.com/stratabroker/strata/remote"
)

// corruptingProxy forwards to MinIO and, while corrupt is set, flips one
// byte in the middle of every PUT body. It records the body-hash and
// checksum headers of the PUTs it forwards.
type corruptingProxy struct {
	srv     *httptest.Server
	corrupt atomic.Bool
	mu      sync.Mutex
	puts    []http.Header
}

func newCorruptingProxy(t *testing.T, target string) *corruptingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &corruptingProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	direct := rp.Director
	rp.Director = func(r *http.Request) {
		direct(r)
		if r.Method != http.MethodPut || r.ContentLength <= 0 {
			return
		}
		h := http.Header{}
		for k, v := range r.Header {
			if lk := strings.ToLower(k); lk == "x-amz-content-sha256" || strings.HasPrefix(lk, "x-amz-checksum-") || lk == "x-amz-trailer" || lk == "content-md5" {
				h[http.CanonicalHeaderKey(k)] = v
			}
		}
		p.mu.Lock()
		p.puts = append(p.puts, h)
		p.mu.Unlock()
		if p.corrupt.Load() {
			r.Body = &flipReader{r: r.Body, at: r.ContentLength / 2}
		}
	}
	p.srv = httptest.NewServer(rp)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *corruptingProxy) takePuts() []http.Header {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.puts
	p.puts = nil
	return out
}

// flipReader inverts the byte at offset at of r.
type flipReader struct {
	r   io.ReadCloser
	at  int64
	pos int64
}

func (f *flipReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if f.at >= f.pos && f.at < f.pos+int64(n) {
		b[f.at-f.pos] ^= 0xff
	}
	f.pos += int64(n)
	return n, err
}

func (f *flipReader) Close() error { return f.r.Close() }

// testCorruptInTransit: a body damaged between the broker and the store is
// refused by the store, Put fails, and no object (nor a damaged one) is
// left under the key; single PUTs and multipart uploads alike. Over plain
// HTTP the S3 backend signs an unsigned payload, so what protects the
// body is the checksum (header or trailer) it sends: the test pins both.
func testCorruptInTransit(t *testing.T, srv *miniotest.Server, scheme string) {
	proxy := newCorruptingProxy(t, srv.Endpoint)
	u, err := url.Parse(srv.URL(scheme, testBucket, freshPrefix("corrupt-"+scheme)))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if scheme == "s3" {
		q.Set("endpoint", proxy.srv.URL)
	} else {
		pu, _ := url.Parse(proxy.srv.URL)
		u.Host = pu.Host
	}
	q.Set("multipart_threshold", "5MiB")
	q.Set("part_size", "5MiB")
	q.Set("max_attempts", "1")
	u.RawQuery = q.Encode()
	s := openURL(t, u.String())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for _, size := range []int64{256 << 10, 11<<20 + 7} { // one PUT; three parts
		data := make([]byte, size)
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
		// Through the proxy untouched first: the proxy itself is sound.
		proxy.takePuts()
		if err := s.Put(ctx, "clean", bytes.NewReader(data), size); err != nil {
			t.Fatalf("Put of %d bytes through the proxy: %v", size, err)
		}
		requireObject(ctx, t, s, "clean", data, fmt.Sprintf("a Put of %d clean bytes", size))
		puts := proxy.takePuts()
		if len(puts) == 0 {
			t.Fatalf("no PUT of %d bytes went through the proxy", size)
		}
		for _, h := range puts {
			hasSum := h.Get("content-md5") != "" || h.Get("x-amz-trailer") != ""
			for k := range h {
				if strings.HasPrefix(strings.ToLower(k), "x-amz-checksum-") {
					hasSum = true
				}
			}
			if sig := h.Get("x-amz-content-sha256"); !hasSum && !isHexSHA256(sig) && !strings.HasPrefix(sig, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD") {
				t.Fatalf("%s PUT of %d bytes carries neither a checksum nor a signed body hash: %v", scheme, size, h)
			}
			if sig := h.Get("x-amz-content-sha256"); !strings.Contains(sig, "UNSIGNED-PAYLOAD") {
				t.Fatalf("%s over http: x-amz-content-sha256 %q, want UNSIGNED-PAYLOAD… (no SHA-256 pass over the body)", scheme, sig)
			}
		}

		proxy.corrupt.Store(true)
		err = s.Put(ctx, "damaged", bytes.NewReader(data), size)
		proxy.corrupt.Store(false)
		if err == nil {
			t.Fatalf("Put of %d bytes damaged in transit succeeded", size)
		}
		requireNoObject(ctx, t, s, "damaged", fmt.Sprintf("a damaged Put of %d bytes", size))
		if err := s.Delete(ctx, "clean"); err != nil {
			t.Fatal(err)
		}
		if cp, ok := s.(remote.CRC32CPutter); ok {
			testPutCRC32C(ctx, t, s, cp, proxy, data)
		}
	}
}

// testPutCRC32C: a PUT with the caller's CRC32C carries it (below the
// multipart threshold) and stores the object; a body damaged in transit, or
// a CRC that does not match the bytes, is refused and leaves no object.
func testPutCRC32C(ctx context.Context, t *testing.T, s remote.Storage, cp remote.CRC32CPutter, proxy *corruptingProxy, data []byte) {
	size := int64(len(data))
	crc := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
	proxy.takePuts()
	if err := cp.PutCRC32C(ctx, "summed", bytes.NewReader(data), size, crc); err != nil {
		t.Fatalf("PutCRC32C of %d bytes: %v", size, err)
	}
	requireObject(ctx, t, s, "summed", data, fmt.Sprintf("PutCRC32C of %d bytes", size))
	if puts := proxy.takePuts(); size < 5<<20 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], crc)
		want := base64.StdEncoding.EncodeToString(b[:])
		if len(puts) != 1 || puts[0].Get("x-amz-checksum-crc32c") != want {
			t.Fatalf("PutCRC32C of %d bytes sent %v, want one PUT with x-amz-checksum-crc32c %s", size, puts, want)
		}
	}
	for _, tc := range []struct {
		name    string
		crc     uint32
		corrupt bool
	}{{"damaged in transit", crc, true}, {"wrong CRC", crc ^ 1, false}} {
		if size >= 5<<20 && !tc.corrupt {
			continue // multipart: the caller's CRC is not sent
		}
		proxy.corrupt.Store(tc.corrupt)
		err := cp.PutCRC32C(ctx, "summed-bad", bytes.NewReader(data), size, tc.crc)
		proxy.corrupt.Store(false)
		if err == nil {
			t.Fatalf("PutCRC32C of %d bytes, %s: succeeded", size, tc.name)
		}
		requireNoObject(ctx, t, s, "summed-bad", fmt.Sprintf("PutCRC32C of %d bytes, %s", size, tc.name))
	}
	if err := s.Delete(ctx, "summed"); err != nil {
		t.Fatal(err)
	}
}

// requireObject fails t unless key holds exactly want (after what).
func requireObject(ctx context.Context, t *testing.T, s remote.Storage, key string, want []byte, what string) {
	t.Helper()
	rc, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get after %s: %v", what, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Get after %s: %d bytes of %d, equal %v, err %v", what, len(got), len(want), bytes.Equal(got, want), err)
	}
}

// requireNoObject fails t unless key is absent (after what).
func requireNoObject(ctx context.Context, t *testing.T, s remote.Storage, key, what string) {
	t.Helper()
	if rc, err := s.Get(ctx, key); !errors.Is(err, remote.ErrNotFound) {
		if err == nil {
			rc.Close()
		}
		t.Fatalf("Get after %s: %v, want ErrNotFound", what, err)
	}
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}
