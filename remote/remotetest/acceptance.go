// Package remotetest holds what every remote.Storage is tested with: the
// acceptance suite (RunAcceptance) that each backend and each decorator must
// pass, and Faulty, a wrapper that injects errors, latency and dropped
// connections. It is for tests only.
package remotetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratabroker/strata/remote"
)

// opTimeout bounds every single call the suite makes.
const opTimeout = 60 * time.Second

// RunAcceptance runs the acceptance suite (subtests) against a fresh, empty
// Storage from newStorage; it calls newStorage once per subtest.
// newStorage registers its own cleanup with t.Cleanup; the suite closes
// the stores it is given (Close is idempotent).
func RunAcceptance(t *testing.T, newStorage func(t *testing.T) remote.Storage) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s remote.Storage)
	}{
		{"RoundTrip", testRoundTrip},
		{"PutReplaces", testPutReplaces},
		{"PutSize", testPutSize},
		{"GetRange", testGetRange},
		{"Stat", testStat},
		{"List", testList},
		{"Delete", testDelete},
		{"NotFound", testNotFound},
		{"InvalidKey", testInvalidKey},
		{"ContextCancelled", testContextCancelled},
		{"Concurrent", testConcurrent},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStorage(t)
			if s == nil {
				t.Fatal("newStorage returned nil")
			}
			t.Cleanup(func() { _ = s.Close() })
			if s.String() == "" {
				t.Error("String() is empty")
			}
			if got := mustList(t, s, ""); len(got) != 0 {
				t.Fatalf("fresh storage %s is not empty: %d objects, first %q", s, len(got), got[0].Key)
			}
			tc.fn(t, s)
		})
	}
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// randomBytes returns n incompressible bytes, different for each seed.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustPut(t *testing.T, s remote.Storage, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctxT(t), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func readAll(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

func mustGet(t *testing.T, s remote.Storage, key string) []byte {
	t.Helper()
	rc, err := s.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return readAll(t, rc)
}

func mustList(t *testing.T, s remote.Storage, prefix string) []remote.ObjectInfo {
	t.Helper()
	l, err := s.List(ctxT(t), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return l
}

func keysOf(l []remote.ObjectInfo) []string {
	out := make([]string, len(l))
	for i, o := range l {
		out[i] = o.Key
	}
	return out
}

func testRoundTrip(t *testing.T, s remote.Storage) {
	for i, size := range []int{0, 1, 5 << 20} {
		key := fmt.Sprintf("rt/obj-%d", size)
		data := randomBytes(size, uint64(i+1))
		mustPut(t, s, key, data)
		got := mustGet(t, s, key)
		if !bytes.Equal(got, data) {
			t.Fatalf("Get(%q): %d bytes differ from the %d put", key, len(got), len(data))
		}
		info, err := s.Stat(ctxT(t), key)
		if err != nil {
			t.Fatalf("Stat(%q): %v", key, err)
		}
		if info.Size != int64(size) || info.Key != key {
			t.Fatalf("Stat(%q) = {%q, %d}, want {%q, %d}", key, info.Key, info.Size, key, size)
		}
	}
	if got := keysOf(mustList(t, s, "rt/")); strings.Join(got, ",") != "rt/obj-0,rt/obj-1,rt/obj-5242880" {
		t.Fatalf("List(rt/) = %v", got)
	}
}

func testPutReplaces(t *testing.T, s remote.Storage) {
	const key = "replace/me"
	a := randomBytes(3000, 11)
	b := randomBytes(1234, 12)
	mustPut(t, s, key, a)
	mustPut(t, s, key, b)
	if got := mustGet(t, s, key); !bytes.Equal(got, b) {
		t.Fatalf("after replacing, Get returned %d bytes, want the second object's %d", len(got), len(b))
	}
	l := mustList(t, s, "replace/")
	if len(l) != 1 || l[0].Key != key || l[0].Size != int64(len(b)) {
		t.Fatalf("List after replace = %+v, want one %q of %d bytes", l, key, len(b))
	}

	// Readers racing a replacement see one whole version or the other.
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10; i++ {
			d := a
			if i%2 == 1 {
				d = b
			}
			if err := s.Put(ctx, key, bytes.NewReader(d), int64(len(d))); err != nil {
				errc <- fmt.Errorf("put %d: %w", i, err)
				return
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			rc, err := s.Get(ctx, key)
			if err != nil {
				errc <- fmt.Errorf("get %d: %w", i, err)
				return
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				errc <- fmt.Errorf("read %d: %w", i, err)
				return
			}
			if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
				errc <- fmt.Errorf("get %d: %d bytes that are neither version", i, len(got))
				return
			}
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

// shortReader yields n bytes then EOF.
type shortReader struct{ n int }

func (r *shortReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	if len(p) > r.n {
		p = p[:r.n]
	}
	for i := range p {
		p[i] = 'x'
	}
	r.n -= len(p)
	return len(p), nil
}

func testPutSize(t *testing.T, s remote.Storage) {
	ctx := ctxT(t)
	// A reader shorter than size: error, nothing stored.
	err := s.Put(ctx, "size/short", &shortReader{n: 100}, 200)
	if err == nil {
		t.Fatal("Put with a reader of 100 bytes for size 200 succeeded")
	}
	if !errors.Is(err, remote.ErrSizeMismatch) {
		t.Errorf("Put short reader: %v, want ErrSizeMismatch", err)
	}
	if _, err := s.Stat(ctx, "size/short"); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("after a failed Put, Stat = %v, want ErrNotFound", err)
	}
	// A reader longer than size: exactly size bytes stored.
	data := randomBytes(500, 21)
	if err := s.Put(ctx, "size/long", bytes.NewReader(data), 300); err != nil {
		t.Fatalf("Put of 300 of 500 bytes: %v", err)
	}
	if got := mustGet(t, s, "size/long"); !bytes.Equal(got, data[:300]) {
		t.Fatalf("Get after Put(size 300) = %d bytes, want the first 300", len(got))
	}
	// A negative size is refused.
	if err := s.Put(ctx, "size/neg", bytes.NewReader(nil), -1); err == nil {
		t.Fatal("Put with size -1 succeeded")
	}
	if got := keysOf(mustList(t, s, "size/")); strings.Join(got, ",") != "size/long" {
		t.Fatalf("List(size/) = %v, want [size/long]", got)
	}
}

func testGetRange(t *testing.T, s remote.Storage) {
	const key = "range/obj"
	const size = 100_000
	data := randomBytes(size, 31)
	mustPut(t, s, key, data)
	ctx := ctxT(t)
	ok := []struct {
		off, n int64
		want   []byte
	}{
		{0, 10, data[:10]},              // start
		{5000, 1234, data[5000:6234]},   // middle
		{size - 10, 10, data[size-10:]}, // end
		{size - 1, 1, data[size-1:]},    // last byte
		{40_000, -1, data[40_000:]},     // to the end
		{0, -1, data},                   // whole
		{0, size, data},                 // whole, explicit
		{size, -1, nil},                 // empty at the end
		{size, 0, nil},                  // empty at the end
		{77, 0, nil},                    // empty inside
	}
	for _, c := range ok {
		rc, err := s.GetRange(ctx, key, c.off, c.n)
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", c.off, c.n, err)
		}
		if got := readAll(t, rc); !bytes.Equal(got, c.want) {
			t.Fatalf("GetRange(%d, %d) = %d bytes, want %d (or contents differ)", c.off, c.n, len(got), len(c.want))
		}
	}
	bad := []struct{ off, n int64 }{
		{size - 5, 10}, // runs past the end
		{size, 1},      // starts at the end
		{size + 1, -1}, // starts past the end
		{size + 100, 5},
		{-1, 10}, // negative offset
	}
	for _, c := range bad {
		rc, err := s.GetRange(ctx, key, c.off, c.n)
		if err == nil {
			got, rerr := io.ReadAll(rc)
			rc.Close()
			t.Fatalf("GetRange(%d, %d) of a %d-byte object succeeded (read %d bytes, %v)", c.off, c.n, size, len(got), rerr)
		}
		if !errors.Is(err, remote.ErrInvalidRange) {
			t.Errorf("GetRange(%d, %d): %v, want ErrInvalidRange", c.off, c.n, err)
		}
	}
	// Ranges of an empty object.
	mustPut(t, s, "range/empty", nil)
	for _, c := range []struct{ off, n int64 }{{0, -1}, {0, 0}} {
		rc, err := s.GetRange(ctx, "range/empty", c.off, c.n)
		if err != nil {
			t.Fatalf("GetRange(empty, %d, %d): %v", c.off, c.n, err)
		}
		if got := readAll(t, rc); len(got) != 0 {
			t.Fatalf("GetRange(empty, %d, %d) = %d bytes", c.off, c.n, len(got))
		}
	}
	if _, err := s.GetRange(ctx, "range/empty", 0, 1); !errors.Is(err, remote.ErrInvalidRange) {
		t.Errorf("GetRange(empty, 0, 1): %v, want ErrInvalidRange", err)
	}
}

func testStat(t *testing.T, s remote.Storage) {
	before := time.Now()
	data := randomBytes(4321, 41)
	mustPut(t, s, "stat/a", data)
	info, err := s.Stat(ctxT(t), "stat/a")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Key != "stat/a" || info.Size != 4321 {
		t.Fatalf("Stat = {%q, %d}, want {stat/a, 4321}", info.Key, info.Size)
	}
	// Stores round modification times (S3: to the second); allow for that
	// and for a little clock skew.
	if lm := info.LastModified; lm.Before(before.Add(-5*time.Second)) || lm.After(time.Now().Add(5*time.Second)) {
		t.Fatalf("Stat LastModified = %v, want about %v", lm, before)
	}
}

func testList(t *testing.T, s remote.Storage) {
	objs := map[string]int{
		"a/b/1":     1,
		"a/b/2":     22,
		"a/b/sub/6": 6,
		"a/c/3":     333,
		"ab/4":      4,
		"a-x/5":     5,
		"b/5":       55,
		"top":       7,
	}
	// Put in an order unlike the sorted one.
	order := make([]string, 0, len(objs))
	for k := range objs {
		order = append(order, k)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(order)))
	for i, k := range order {
		mustPut(t, s, k, randomBytes(objs[k], uint64(100+i)))
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a-x/5", "a/b/1", "a/b/2", "a/b/sub/6", "a/c/3", "ab/4", "b/5", "top"}},
		{"a/", []string{"a/b/1", "a/b/2", "a/b/sub/6", "a/c/3"}},
		{"a/b", []string{"a/b/1", "a/b/2", "a/b/sub/6"}},
		{"a/b/", []string{"a/b/1", "a/b/2", "a/b/sub/6"}},
		{"a", []string{"a-x/5", "a/b/1", "a/b/2", "a/b/sub/6", "a/c/3", "ab/4"}},
		{"a/b/s", []string{"a/b/sub/6"}},
		{"a/b/1", []string{"a/b/1"}},
		{"to", []string{"top"}},
		{"zzz", nil},
		{"a/zzz/", nil},
		{"top/", nil},
	}
	for _, c := range cases {
		l := mustList(t, s, c.prefix)
		got := keysOf(l)
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("List(%q) = %v, want %v", c.prefix, got, c.want)
		}
		for _, o := range l {
			if o.Size != int64(objs[o.Key]) {
				t.Errorf("List(%q): %q has size %d, want %d", c.prefix, o.Key, o.Size, objs[o.Key])
			}
		}
	}
	if _, err := s.List(ctxT(t), "/abs"); !errors.Is(err, remote.ErrInvalidKey) {
		t.Errorf("List(/abs): %v, want ErrInvalidKey", err)
	}
	if _, err := s.List(ctxT(t), "a/../"); !errors.Is(err, remote.ErrInvalidKey) {
		t.Errorf("List(a/../): %v, want ErrInvalidKey", err)
	}
}

func testDelete(t *testing.T, s remote.Storage) {
	ctx := ctxT(t)
	mustPut(t, s, "del/x/1", []byte("one"))
	mustPut(t, s, "del/x/2", []byte("two"))
	mustPut(t, s, "del/y", []byte("why"))
	if err := s.Delete(ctx, "del/x/1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Stat(ctx, "del/x/1"); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("Stat after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "del/x/1"); err != nil {
		t.Fatalf("second Delete of the same key: %v", err)
	}
	if err := s.Delete(ctx, "del/never/was"); err != nil {
		t.Fatalf("Delete of a key never put: %v", err)
	}
	if got := keysOf(mustList(t, s, "del/")); strings.Join(got, ",") != "del/x/2,del/y" {
		t.Fatalf("List after Delete = %v, want [del/x/2 del/y]", got)
	}
	if got := mustGet(t, s, "del/x/2"); string(got) != "two" {
		t.Fatalf("sibling of a deleted key: %q", got)
	}
	// Deleting every object leaves nothing listed, and the prefix is usable again.
	for _, k := range []string{"del/x/2", "del/y"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(%q): %v", k, err)
		}
	}
	if got := mustList(t, s, ""); len(got) != 0 {
		t.Fatalf("List after deleting everything = %v", keysOf(got))
	}
	mustPut(t, s, "del/x/3", []byte("three"))
	if got := mustGet(t, s, "del/x/3"); string(got) != "three" {
		t.Fatalf("Get after re-creating a pruned prefix: %q", got)
	}
}

func testNotFound(t *testing.T, s remote.Storage) {
	ctx := ctxT(t)
	mustPut(t, s, "nf/present", []byte("here"))
	for _, key := range []string{"nf/missing", "nf/present/below", "nf", "missing-top"} {
		if _, err := s.Stat(ctx, key); !errors.Is(err, remote.ErrNotFound) || !strings.Contains(err.Error(), key) {
			t.Errorf("Stat(%q): %v, want ErrNotFound naming the key", key, err)
		}
		if rc, err := s.Get(ctx, key); !errors.Is(err, remote.ErrNotFound) || !strings.Contains(err.Error(), key) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("Get(%q): %v, want ErrNotFound naming the key", key, err)
		}
		for _, r := range [][2]int64{{0, -1}, {0, 10}, {5, 0}} {
			if rc, err := s.GetRange(ctx, key, r[0], r[1]); !errors.Is(err, remote.ErrNotFound) || !strings.Contains(err.Error(), key) {
				if err == nil {
					rc.Close()
				}
				t.Errorf("GetRange(%q, %d, %d): %v, want ErrNotFound naming the key", key, r[0], r[1], err)
			}
		}
	}
}

func testInvalidKey(t *testing.T, s remote.Storage) {
	ctx := ctxT(t)
	bad := []string{"", "/abs", "a/../b", "..", "../up", "a/..", "a//b", "a/", "./a", "a/./b", "nul\x00byte", "bad\xffutf8",
		strings.Repeat("k", 1025)}
	for _, key := range bad {
		if err := s.Put(ctx, key, bytes.NewReader([]byte("x")), 1); !errors.Is(err, remote.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", key, err)
		}
		if rc, err := s.Get(ctx, key); !errors.Is(err, remote.ErrInvalidKey) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("Get(%q): %v, want ErrInvalidKey", key, err)
		}
		if rc, err := s.GetRange(ctx, key, 0, 1); !errors.Is(err, remote.ErrInvalidKey) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("GetRange(%q): %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, remote.ErrInvalidKey) {
			t.Errorf("Stat(%q): %v, want ErrInvalidKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, remote.ErrInvalidKey) {
			t.Errorf("Delete(%q): %v, want ErrInvalidKey", key, err)
		}
	}
	if got := mustList(t, s, ""); len(got) != 0 {
		t.Fatalf("invalid keys left objects behind: %v", keysOf(got))
	}
}

// cancelReader cancels a context after handing out after bytes, then keeps
// yielding data (the store must notice the context itself).
type cancelReader struct {
	cancel context.CancelFunc
	after  int
	given  int
}

func (r *cancelReader) Read(p []byte) (int, error) {
	if r.given >= r.after {
		r.cancel()
	}
	if len(p) > 4096 {
		p = p[:4096]
	}
	for i := range p {
		p[i] = 'c'
	}
	r.given += len(p)
	return len(p), nil
}

func testContextCancelled(t *testing.T, s remote.Storage) {
	mustPut(t, s, "ctx/present", randomBytes(1000, 51))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := s.Put(ctx, "ctx/new", bytes.NewReader([]byte("x")), 1); err == nil {
		t.Error("Put with a cancelled context succeeded")
	}
	if rc, err := s.Get(ctx, "ctx/present"); err == nil {
		if _, rerr := io.ReadAll(rc); rerr == nil {
			t.Error("Get with a cancelled context succeeded and read the whole object")
		}
		rc.Close()
	}
	if rc, err := s.GetRange(ctx, "ctx/present", 10, 10); err == nil {
		if _, rerr := io.ReadAll(rc); rerr == nil {
			t.Error("GetRange with a cancelled context succeeded and read the range")
		}
		rc.Close()
	}
	if _, err := s.Stat(ctx, "ctx/present"); err == nil {
		t.Error("Stat with a cancelled context succeeded")
	}
	if _, err := s.List(ctx, ""); err == nil {
		t.Error("List with a cancelled context succeeded")
	}
	if err := s.Delete(ctx, "ctx/present"); err == nil {
		t.Error("Delete with a cancelled context succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("calls with a cancelled context took %v, want prompt errors", d)
	}

	// Cancelled in the middle of a Put: an error, and nothing stored.
	mctx, mcancel := context.WithCancel(context.Background())
	defer mcancel()
	const size = 2 << 20
	start = time.Now()
	if err := s.Put(mctx, "ctx/mid", &cancelReader{cancel: mcancel, after: 64 << 10}, size); err == nil {
		t.Error("Put whose context was cancelled mid-stream succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Put cancelled mid-stream took %v to return", d)
	}
	if _, err := s.Stat(ctxT(t), "ctx/mid"); !errors.Is(err, remote.ErrNotFound) {
		t.Errorf("after a cancelled Put, Stat = %v, want ErrNotFound", err)
	}
	// The object that was there is untouched.
	if got := mustGet(t, s, "ctx/present"); len(got) != 1000 {
		t.Errorf("ctx/present has %d bytes after cancelled calls, want 1000", len(got))
	}
}

func testConcurrent(t *testing.T, s remote.Storage) {
	const workers, perWorker, size = 8, 4, 64 << 10
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errc := make(chan error, workers*perWorker)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				key := fmt.Sprintf("conc/w%d/o%d", w, i)
				data := randomBytes(size, uint64(1000+w*perWorker+i))
				if err := s.Put(ctx, key, bytes.NewReader(data), size); err != nil {
					errc <- fmt.Errorf("put %s: %w", key, err)
					return
				}
				rc, err := s.Get(ctx, key)
				if err != nil {
					errc <- fmt.Errorf("get %s: %w", key, err)
					return
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					errc <- fmt.Errorf("read %s: %w", key, err)
					return
				}
				if !bytes.Equal(got, data) {
					errc <- fmt.Errorf("get %s: %d bytes differ from the %d put", key, len(got), len(data))
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if got := mustList(t, s, "conc/"); len(got) != workers*perWorker {
		t.Fatalf("List(conc/) = %d objects, want %d", len(got), workers*perWorker)
	}
}

func testClose(t *testing.T, s remote.Storage) {
	mustPut(t, s, "close/a", []byte("a"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := ctxT(t)
	if err := s.Put(ctx, "close/b", bytes.NewReader([]byte("b")), 1); !errors.Is(err, remote.ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Stat(ctx, "close/a"); !errors.Is(err, remote.ErrClosed) {
		t.Errorf("Stat after Close: %v, want ErrClosed", err)
	}
	if _, err := s.List(ctx, ""); !errors.Is(err, remote.ErrClosed) {
		t.Errorf("List after Close: %v, want ErrClosed", err)
	}
}
