package remotetest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stratabroker/strata/remote"
	"github.com/stratabroker/strata/remote/remotetest"
)

func newFS(t *testing.T) remote.Storage {
	t.Helper()
	s, err := remote.NewFS(remote.FSConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("NewFS: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestFaultyAcceptanceNoFaults(t *testing.T) {
	remotetest.RunAcceptance(t, func(t *testing.T) remote.Storage { return remotetest.NewFaulty(newFS(t)) })
}

func TestFaultyAcceptanceWithLatency(t *testing.T) {
	remotetest.RunAcceptance(t, func(t *testing.T) remote.Storage {
		f := remotetest.NewFaulty(newFS(t))
		f.SetLatency(time.Millisecond)
		return f
	})
}

func put(t *testing.T, s remote.Storage, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func TestFailNext(t *testing.T) {
	inner := newFS(t)
	f := remotetest.NewFaulty(inner)
	ctx := context.Background()
	put(t, f, "k", []byte("value"))
	custom := errors.New("custom fault")

	// Each op fails exactly n times, then works, and the store is untouched.
	cases := []struct {
		op   string
		call func() error
	}{
		{remotetest.OpPut, func() error { return f.Put(ctx, "k2", bytes.NewReader([]byte("v2")), 2) }},
		{remotetest.OpGet, func() error {
			rc, err := f.Get(ctx, "k")
			if err == nil {
				rc.Close()
			}
			return err
		}},
		{remotetest.OpGetRange, func() error {
			rc, err := f.GetRange(ctx, "k", 1, 2)
			if err == nil {
				rc.Close()
			}
			return err
		}},
		{remotetest.OpStat, func() error { _, err := f.Stat(ctx, "k"); return err }},
		{remotetest.OpList, func() error { _, err := f.List(ctx, ""); return err }},
		{remotetest.OpDelete, func() error { return f.Delete(ctx, "nothing") }},
	}
	for _, c := range cases {
		f.FailNext(c.op, 2, custom)
		before := f.Calls(c.op)
		for i := 0; i < 2; i++ {
			if err := c.call(); !errors.Is(err, custom) {
				t.Fatalf("%s call %d with FailNext(2): %v, want the custom fault", c.op, i, err)
			}
		}
		if err := c.call(); err != nil {
			t.Fatalf("%s after the injected faults: %v", c.op, err)
		}
		if got := f.Calls(c.op) - before; got != 3 {
			t.Fatalf("Calls(%s) grew by %d, want 3", c.op, got)
		}
	}
	// A nil error injects ErrInjected; n <= 0 clears.
	f.FailNext(remotetest.OpStat, 1, nil)
	if _, err := f.Stat(ctx, "k"); !errors.Is(err, remotetest.ErrInjected) {
		t.Fatalf("FailNext(nil err): %v, want ErrInjected", err)
	}
	f.FailNext(remotetest.OpStat, 5, nil)
	f.FailNext(remotetest.OpStat, 0, nil)
	if _, err := f.Stat(ctx, "k"); err != nil {
		t.Fatalf("after FailNext(0): %v", err)
	}
	// An unknown op is ignored, not a panic.
	f.FailNext("teleport", 1, nil)
	if got := f.Calls("teleport"); got != 0 {
		t.Fatalf("Calls(unknown) = %d", got)
	}
	// A failed Put stored nothing, the later one did.
	if got := readKey(t, inner, "k2"); string(got) != "v2" {
		t.Fatalf("k2 = %q", got)
	}
	// Injected faults are not ErrNotFound: callers must not treat them as a missing object.
	f.FailNext(remotetest.OpGet, 1, nil)
	if _, err := f.Get(ctx, "k"); errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("injected fault matches ErrNotFound: %v", err)
	}
}

func readKey(t *testing.T, s remote.Storage, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b
}

func TestDropConnections(t *testing.T) {
	inner := newFS(t)
	f := remotetest.NewFaulty(inner)
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	put(t, f, "obj", data)
	put(t, f, "small", []byte("tiny"))

	f.DropConnections(true)
	// Readers fail mid-stream: what they hand out is a true prefix, then an error.
	for _, open := range []func(string) (io.ReadCloser, error){
		func(k string) (io.ReadCloser, error) { return f.Get(ctx, k) },
		func(k string) (io.ReadCloser, error) { return f.GetRange(ctx, k, 0, -1) },
	} {
		for _, key := range []string{"obj", "small"} {
			rc, err := open(key)
			if err != nil {
				t.Fatalf("open %s with dropped connections: %v (the open succeeds, the read fails)", key, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("read %s: err %v, want io.ErrUnexpectedEOF", key, err)
			}
			want := data
			if key == "small" {
				want = []byte("tiny")
			}
			if !bytes.HasPrefix(want, got) || (key == "obj" && len(got) >= len(want)) {
				t.Fatalf("read %s: %d bytes handed out, want a prefix of the object (strict for the large one)", key, len(got))
			}
		}
	}
	// Puts fail and store nothing; the other calls fail.
	if err := f.Put(ctx, "new", bytes.NewReader(data), int64(len(data))); !errors.Is(err, remotetest.ErrDropped) {
		t.Fatalf("Put with dropped connections: %v, want ErrDropped", err)
	}
	if _, err := f.Stat(ctx, "obj"); !errors.Is(err, remotetest.ErrDropped) {
		t.Fatalf("Stat with dropped connections: %v", err)
	}
	if _, err := f.List(ctx, ""); !errors.Is(err, remotetest.ErrDropped) {
		t.Fatalf("List with dropped connections: %v", err)
	}
	if err := f.Delete(ctx, "obj"); !errors.Is(err, remotetest.ErrDropped) {
		t.Fatalf("Delete with dropped connections: %v", err)
	}
	f.DropConnections(false)
	if _, err := inner.Stat(ctx, "new"); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("a dropped Put stored an object: %v", err)
	}
	if got := readKey(t, f, "obj"); !bytes.Equal(got, data) {
		t.Fatalf("after reconnecting, Get = %d bytes, want the whole %d", len(got), len(data))
	}
	if got := f.Calls(remotetest.OpGet); got != 3 {
		t.Fatalf("Calls(get) = %d, want 3", got)
	}
}

func TestLatency(t *testing.T) {
	f := remotetest.NewFaulty(newFS(t))
	put(t, f, "k", []byte("v"))
	f.SetLatency(50 * time.Millisecond)
	start := time.Now()
	if _, err := f.Stat(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("Stat with 50ms latency took %v", d)
	}
	// A context that ends during the delay ends the call.
	f.SetLatency(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := f.Stat(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stat with latency past the deadline: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancelled call waited %v", d)
	}
	f.SetLatency(0)
	if _, err := f.Stat(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
}

func TestFaultyConcurrent(t *testing.T) {
	f := remotetest.NewFaulty(newFS(t))
	put(t, f, "k", []byte("value"))
	f.FailNext(remotetest.OpGet, 10, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed, ok := 0, 0
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				rc, err := f.Get(ctx, "k")
				if err != nil {
					if !errors.Is(err, remotetest.ErrInjected) {
						t.Errorf("unexpected error: %v", err)
					}
					mu.Lock()
					failed++
					mu.Unlock()
					continue
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || string(b) != "value" {
					t.Errorf("Get = %q, %v", b, err)
				}
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed != 10 || ok != 30 || f.Calls(remotetest.OpGet) != 40 {
		t.Fatalf("failed %d, ok %d, calls %d; want 10, 30, 40", failed, ok, f.Calls(remotetest.OpGet))
	}
}
