package remotetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/stratabroker/strata/remote"
)

// Operation names for Faulty.FailNext and Faulty.Calls.
const (
	OpPut      = "put"
	OpGet      = "get"
	OpGetRange = "getrange"
	OpStat     = "stat"
	OpList     = "list"
	OpDelete   = "delete"
)

var ops = []string{OpPut, OpGet, OpGetRange, OpStat, OpList, OpDelete}

// ErrInjected is the error FailNext injects when given a nil error.
var ErrInjected = errors.New("remotetest: injected fault")

// ErrDropped is what calls fail with while connections are dropped (reads
// that already started fail with io.ErrUnexpectedEOF instead).
var ErrDropped = errors.New("remotetest: connection dropped")

// dropAfter is how many bytes a reader hands out before a dropped
// connection fails it.
const dropAfter = 512

// Faulty wraps a Storage and injects faults; it is safe for concurrent use.
// With no fault set it passes every call through unchanged (and passes the
// acceptance suite). Injected faults are errors, never wrong bytes.
type Faulty struct {
	inner remote.Storage

	mu      sync.Mutex // guards the fields below; never held during I/O
	fail    map[string]failure
	latency time.Duration
	drop    bool
	calls   map[string]int
}

type failure struct {
	n   int
	err error
}

var _ remote.Storage = (*Faulty)(nil)

// NewFaulty wraps inner.
func NewFaulty(inner remote.Storage) *Faulty {
	return &Faulty{inner: inner, fail: map[string]failure{}, calls: map[string]int{}}
}

func knownOp(op string) bool {
	for _, o := range ops {
		if o == op {
			return true
		}
	}
	return false
}

// FailNext makes the next n calls of op ("put", "get", "getrange", "stat",
// "list", "delete") fail with err (ErrInjected if nil) without reaching the
// wrapped store; it replaces an earlier FailNext of the same op, and n <= 0
// clears it. An unknown op is logged and ignored.
func (f *Faulty) FailNext(op string, n int, err error) {
	if !knownOp(op) {
		slog.Error("remotetest: FailNext: unknown op ignored", "op", op, "known", ops)
		return
	}
	if err == nil {
		err = ErrInjected
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n <= 0 {
		delete(f.fail, op)
		return
	}
	f.fail[op] = failure{n: n, err: err}
}

// SetLatency delays every call by d before it starts (0: none). A call whose
// context ends during the delay returns the context's error.
func (f *Faulty) SetLatency(d time.Duration) {
	f.mu.Lock()
	f.latency = d
	f.mu.Unlock()
}

// DropConnections(true) simulates a store that cuts connections: readers
// from Get and GetRange fail after at most 512 bytes with
// io.ErrUnexpectedEOF; Put reads part of its input and fails with ErrDropped,
// storing nothing; Stat, List and Delete fail with ErrDropped. false restores
// normal service (readers opened meanwhile stay broken).
func (f *Faulty) DropConnections(on bool) {
	f.mu.Lock()
	f.drop = on
	f.mu.Unlock()
}

// Calls returns how many calls of op were made, failed ones included.
func (f *Faulty) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Inner returns the wrapped store.
func (f *Faulty) Inner() remote.Storage { return f.inner }

// enter counts the call, applies latency, and returns the fault to inject
// (nil if none) and whether connections are dropped.
func (f *Faulty) enter(ctx context.Context, op, key string) (drop bool, err error) {
	f.mu.Lock()
	f.calls[op]++
	lat := f.latency
	drop = f.drop
	var injected error
	if fl, ok := f.fail[op]; ok {
		injected = fl.err
		if fl.n <= 1 {
			delete(f.fail, op)
		} else {
			fl.n--
			f.fail[op] = fl
		}
	}
	f.mu.Unlock()
	if lat > 0 {
		t := time.NewTimer(lat)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, fmt.Errorf("%s %s: %w", op, key, ctx.Err())
		}
	}
	if injected != nil {
		return false, fmt.Errorf("remotetest: injected %s fault on %s: %w", op, key, injected)
	}
	return drop, nil
}

func dropped(op, key string) error {
	return fmt.Errorf("%s %s: %w", op, key, ErrDropped)
}

// Put implements remote.Storage.
func (f *Faulty) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	drop, err := f.enter(ctx, OpPut, key)
	if err != nil {
		return err
	}
	if drop {
		if size > 0 {
			_, _ = io.CopyN(io.Discard, r, size/2) // the connection dies half-way
		}
		return dropped(OpPut, key)
	}
	return f.inner.Put(ctx, key, r, size)
}

// Get implements remote.Storage.
func (f *Faulty) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	drop, err := f.enter(ctx, OpGet, key)
	if err != nil {
		return nil, err
	}
	rc, err := f.inner.Get(ctx, key)
	if err != nil || !drop {
		return rc, err
	}
	return &droppingReader{rc: rc, left: dropAfter, key: key}, nil
}

// GetRange implements remote.Storage.
func (f *Faulty) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	drop, err := f.enter(ctx, OpGetRange, key)
	if err != nil {
		return nil, err
	}
	rc, err := f.inner.GetRange(ctx, key, offset, length)
	if err != nil || !drop {
		return rc, err
	}
	return &droppingReader{rc: rc, left: dropAfter, key: key}, nil
}

// Stat implements remote.Storage.
func (f *Faulty) Stat(ctx context.Context, key string) (remote.ObjectInfo, error) {
	drop, err := f.enter(ctx, OpStat, key)
	if err != nil {
		return remote.ObjectInfo{}, err
	}
	if drop {
		return remote.ObjectInfo{}, dropped(OpStat, key)
	}
	return f.inner.Stat(ctx, key)
}

// List implements remote.Storage.
func (f *Faulty) List(ctx context.Context, prefix string) ([]remote.ObjectInfo, error) {
	drop, err := f.enter(ctx, OpList, prefix)
	if err != nil {
		return nil, err
	}
	if drop {
		return nil, dropped(OpList, prefix)
	}
	return f.inner.List(ctx, prefix)
}

// Delete implements remote.Storage.
func (f *Faulty) Delete(ctx context.Context, key string) error {
	drop, err := f.enter(ctx, OpDelete, key)
	if err != nil {
		return err
	}
	if drop {
		return dropped(OpDelete, key)
	}
	return f.inner.Delete(ctx, key)
}

// Close closes the wrapped store.
func (f *Faulty) Close() error { return f.inner.Close() }

func (f *Faulty) String() string { return "faulty(" + f.inner.String() + ")" }

// droppingReader hands out at most left bytes of rc, then fails with
// io.ErrUnexpectedEOF, also if rc ended first: the connection died before
// the reader could know the object was complete.
type droppingReader struct {
	rc   io.ReadCloser
	left int
	key  string
}

func (d *droppingReader) Read(p []byte) (int, error) {
	if d.left <= 0 {
		return 0, fmt.Errorf("read %s: connection dropped: %w", d.key, io.ErrUnexpectedEOF)
	}
	if len(p) > d.left {
		p = p[:d.left]
	}
	n, err := d.rc.Read(p)
	d.left -= n
	if err == io.EOF {
		return n, fmt.Errorf("read %s: connection dropped: %w", d.key, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (d *droppingReader) Close() error { return d.rc.Close() }
