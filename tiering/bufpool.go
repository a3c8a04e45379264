package tiering

import (
	"sync"
	"sync/atomic"

	"github.com/stratabroker/strata/internal/hugepages"
)

// Reuse of memory-cache chunk buffers.
//
// A fresh buffer costs a page fault per page the first time it is written
// (on this project's VMs a fault costs more than the copy it interrupts:
// receiving into new 8 MiB buffers ran ~7x slower than into a reused one),
// so memory chunks are recycled instead of left to the garbage collector,
// and new ones are allocated where the kernel can back them with huge pages
// (internal/hugepages: 512 times fewer faults while the cache first fills).
//
// A buffer may be reused only when nothing reads it any more, and cold-read
// answers are views of it that live until the broker has written them to a
// client's socket. So a chunk's buffer is counted (chunkBuf.refs): the cache
// holds one reference while the chunk is cached or pinned, and each Read
// that hands out views of it takes one more into the caller's Hold, dropped
// by Hold.Release once the views are written. The last reference to go
// returns the buffer to the pool. A view handed out without a Hold marks
// its buffer as never to be reused; a Hold that is never released only
// costs the reuse (the garbage collector frees the buffer as before).

// bufPool keeps up to max free buffers of size bytes each (their capacity;
// get may hand one out shorter).
type bufPool struct {
	size int64
	max  int

	mu     sync.Mutex
	free   [][]byte
	reused atomic.Int64 // gets answered from free (for tests)
}

func newBufPool(size int64, max int) *bufPool {
	return &bufPool{size: size, max: max}
}

// get returns a buffer of n bytes, one of the pool's (capacity size) when n
// is at most its size. Its contents are whatever the last user left.
func (p *bufPool) get(n int64) []byte {
	if p == nil || n > p.size {
		return make([]byte, n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if k := len(p.free); k > 0 {
		b := p.free[k-1]
		p.free[k-1] = nil
		p.free = p.free[:k-1]
		p.reused.Add(1)
		return b[:n]
	}
	return hugepages.Alloc(int(p.size))[:n]
}

// put gives b back for reuse; buffers of other sizes, or beyond max, are
// left to the garbage collector.
func (p *bufPool) put(b []byte) {
	if p == nil || int64(cap(b)) != p.size {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < p.max {
		p.free = append(p.free, b[:p.size])
	}
}

// wrap counts b with one reference, the cache's.
func (p *bufPool) wrap(b []byte) *chunkBuf {
	cb := &chunkBuf{b: b, pool: p}
	cb.refs.Store(1)
	return cb
}

// chunkBuf is the counted buffer of one memory chunk.
type chunkBuf struct {
	b    []byte
	pool *bufPool
	refs atomic.Int32
	keep atomic.Bool // a view escaped without a Hold: never reuse
}

func (cb *chunkBuf) hold() { cb.refs.Add(1) }

func (cb *chunkBuf) drop() {
	switch n := cb.refs.Add(-1); {
	case n == 0 && !cb.keep.Load():
		cb.pool.put(cb.b)
	case n < 0:
		panic("tiering: chunk buffer released more often than held")
	}
}

// Hold keeps the chunk buffers that cold-read views point into from being
// reused until Release. The zero value is ready; it is not safe for
// concurrent use.
type Hold struct {
	bufs []*chunkBuf
}

func (h *Hold) add(cb *chunkBuf) {
	if h == nil {
		cb.keep.Store(true)
		return
	}
	cb.hold()
	h.bufs = append(h.bufs, cb)
}

// Release lets the buffers go: call it once nothing uses the views any
// more. A nil Hold, or a second Release, does nothing.
func (h *Hold) Release() {
	if h == nil {
		return
	}
	for _, cb := range h.bufs {
		cb.drop()
	}
	h.bufs = nil
}

// copyPool recycles the buffers of batches copied out of two chunks (a
// batch straddling a chunk boundary is answered as a copy of its own).
// Chunks start at batch boundaries where the offset index has one near
// (indexcache.go), so this happens only where batches are larger than the
// slack; before that, one such batch came with every chunk a sequential
// reader crossed, and a fresh buffer for each cost its page faults: a
// quarter of the broker's CPU in C2, more than the copy. Buffers come in
// power-of-two classes from copyMinSize; a copy larger than the largest
// class is a plain allocation.
// They are counted like chunk buffers: the Hold that takes the copy returns
// its buffer once the answer is written. The free buffers kept are bounded
// by copyClassMem per class; a reader uses one or two classes (its batch
// sizes), so 16-32 MiB beside the chunk cache.
type copyPool struct {
	classes [copyClasses]*bufPool
}

const (
	copyMinSize  = 64 << 10
	copyClasses  = 8        // 64 KiB .. 8 MiB
	copyClassMem = 16 << 20 // free buffers kept per class, in bytes (at least 2 buffers)
)

func newCopyPool() *copyPool {
	p := &copyPool{}
	for i := range p.classes {
		size := int64(copyMinSize) << i
		p.classes[i] = newBufPool(size, int(max(2, copyClassMem/size)))
	}
	return p
}

// get returns a counted buffer of at least n bytes holding one reference,
// the caller's.
func (p *copyPool) get(n int) *chunkBuf {
	for _, c := range p.classes {
		if int64(n) <= c.size {
			return c.wrap(c.get(c.size))
		}
	}
	var none *bufPool // put on a nil pool does nothing: the GC frees it
	return none.wrap(make([]byte, n))
}
