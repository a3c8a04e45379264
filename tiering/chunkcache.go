package tiering

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Disk chunk cache of remote .log objects.
//
// A chunk is byte range n of one segment's .log object as the segment's
// index lays them out (about ChunkSize each, starting at batch boundaries:
// indexcache.go), fetched with one ranged GET and kept in memory or as one
// file in the cache directory:
//
//	<segment id hex>-<chunk number, 10 digits>-<generation>.chunk
//
// (the generation makes every fetch's file name unique, so removing an
// evicted file can never hit a newer fetch of the same chunk). A fetch writes
// "<name>.tmp" and renames it into place. The directory is emptied of these
// files when a Reader starts, so nothing on disk is trusted across restarts.
//
// Entries go through three states under chunkCache.mu: loading (in the map,
// done open), ready (in the map and the LRU list, counted in bytes) and gone
// (out of the map; a failed fetch, an eviction or an invalidation). Readers
// pin an entry (refs) from lookup until they release it; a pinned entry is
// never evicted, so the cache may exceed its limit while every chunk in it is
// in use. A failed fetch leaves nothing behind: its waiters get the error and
// the next lookup starts a new fetch.

const (
	chunkSuffix = ".chunk"
	tmpSuffix   = ".tmp"
)

// chunkKey names one chunk of one segment.
type chunkKey struct {
	seg [16]byte
	n   int64
}

// chunk is one cache entry. key, path, size and done are set at creation;
// err is written once before done is closed; the rest is guarded by
// chunkCache.mu.
type chunk struct {
	key  chunkKey
	path string
	size int64 // expected bytes (the manifest's), also the file size once ready
	done chan struct{}
	err  error

	buf     *chunkBuf       // the bytes, in a memory cache (set before done closes)
	checked []verifiedBatch // batches whose CRC matched as data arrived (memory cache; set before done closes)

	ready bool
	dead  bool // out of the map; remove the file when refs reaches 0
	refs  int
	elem  *list.Element
}

// chunkCache is the bookkeeping of the disk cache; it does no remote I/O.
// Lock order: chunkCache.mu is a leaf (nothing else is locked under it).
type chunkCache struct {
	dir   string
	limit int64
	mem   bool     // chunks live in chunk.buf, not in files
	pool  *bufPool // buffers of memory chunks, reused

	mu     sync.Mutex
	chunks map[chunkKey]*chunk
	lru    *list.List // ready chunks, most recently used at the front
	bytes  int64      // total size of ready chunks
	gen    uint64
}

// newChunkCache prepares dir: it is created if needed and emptied of chunk
// files (only of files this cache names, so a misconfigured directory loses
// nothing else).
func newChunkCache(dir string, limit int64) (*chunkCache, int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, fmt.Errorf("chunk cache %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("chunk cache %s: %w", dir, err)
	}
	removed := 0
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, chunkSuffix) || strings.HasSuffix(name, chunkSuffix+tmpSuffix)) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, 0, fmt.Errorf("chunk cache: empty %s: %w", dir, err)
		}
		removed++
	}
	return &chunkCache{dir: dir, limit: limit, chunks: map[chunkKey]*chunk{}, lru: list.New()}, removed, nil
}

// lookup returns the entry of key, creating it (loading) when absent; created
// tells the caller to start its fetch. With pin the entry is pinned (also
// while loading, so it cannot be evicted between its fetch and its use).
// hit reports an entry that was ready.
func (c *chunkCache) lookup(key chunkKey, size int64, pin bool) (ch *chunk, hit, created bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch = c.chunks[key]
	if ch == nil {
		c.gen++
		name := fmt.Sprintf("%x-%010d-%d%s", key.seg[:], key.n, c.gen, chunkSuffix)
		ch = &chunk{key: key, path: filepath.Join(c.dir, name), size: size, done: make(chan struct{})}
		c.chunks[key] = ch
		created = true
	}
	if pin {
		ch.refs++
	}
	if ch.ready {
		hit = true
		c.lru.MoveToFront(ch.elem)
	}
	return ch, hit, created
}

// present reports whether key is cached or being fetched.
func (c *chunkCache) present(key chunkKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.chunks[key] != nil
}

// errShortObject: a ranged GET inside the manifest's size returned fewer
// bytes without an error — the object is shorter than its manifest says.
var errShortObject = errors.New("object shorter than its manifest")

// write stores the fetched bytes of ch from r (exactly ch.size of them) in
// its file; the caller then calls finish with the result. A body that ends
// cleanly before ch.size bytes is errShortObject. In a memory cache, v (if
// not nil) checks the batches while their bytes are fresh (verify.go).
func (c *chunkCache) write(ch *chunk, r io.Reader, v *batchVerifier) (int64, error) {
	if c.mem {
		buf := c.pool.get(ch.size)
		n, idle := 0, 0
		var err error
		// Single reads into a window that slides with n, not ReadFull of
		// fixed pieces: a read into less than the HTTP client's 4 KiB
		// buffer goes through that buffer and is copied, and the end of
		// every fixed piece was one.
		for n < len(buf) && err == nil {
			var k int
			k, err = r.Read(buf[n:min(len(buf), n+verifyPiece)])
			n += k
			if k > 0 {
				idle = 0
				if v != nil {
					v.feed(buf, n)
				}
			} else if idle++; idle > 100 && err == nil {
				err = io.ErrNoProgress
			}
		}
		if n == len(buf) && err == io.EOF {
			err = nil // the last bytes came with the end of the body
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || (err == io.EOF && ch.size > 0) {
			err = fmt.Errorf("%w: %d of %d bytes", errShortObject, n, ch.size)
		}
		if err != nil {
			c.pool.put(buf) // nothing saw it
			return int64(n), err
		}
		ch.buf = c.pool.wrap(buf)
		if v != nil {
			ch.checked = v.ok
		}
		return int64(n), nil
	}
	tmp := ch.path + tmpSuffix
	f, err := os.Create(tmp)
	if err != nil {
		return 0, fmt.Errorf("chunk cache: %w", err)
	}
	// Big buffers: the default 32 KiB copy costs two syscalls per 32 KiB.
	bp := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, io.LimitReader(r, ch.size), *bp)
	copyBufs.Put(bp)
	if err == nil && n < ch.size {
		err = fmt.Errorf("%w: %d of %d bytes", errShortObject, n, ch.size)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("chunk cache: %w", cerr)
	}
	if err == nil {
		if rerr := os.Rename(tmp, ch.path); rerr != nil {
			err = fmt.Errorf("chunk cache: %w", rerr)
		}
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return n, err
}

// verifyPiece is the most of a memory chunk one read takes before the
// verifier steps: small enough that the bytes are still in the CPU's caches.
const verifyPiece = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// finish ends the loading state of ch: ready on success, gone on error.
func (c *chunkCache) finish(ch *chunk, err error) {
	var evict []*chunk
	c.mu.Lock()
	if err != nil {
		ch.err = err
		ch.dead = true
		if c.chunks[ch.key] == ch {
			delete(c.chunks, ch.key)
		}
	} else if ch.dead {
		// Forgotten while loading: serve the waiters, keep nothing.
		if ch.refs == 0 {
			evict = []*chunk{ch}
		}
	} else {
		ch.ready = true
		ch.elem = c.lru.PushFront(ch)
		c.bytes += ch.cost()
		evict = c.evictLocked()
	}
	c.mu.Unlock()
	c.discard(evict) // before waking the waiters, so the disk never lags the bound they see
	close(ch.done)
}

// forget drops every chunk of segment id (its objects were deleted). Pinned
// chunks stay readable until released; fetches in flight finish for their
// waiters and are not kept.
func (c *chunkCache) forget(id [16]byte) {
	var evict []*chunk
	c.mu.Lock()
	for key, ch := range c.chunks {
		if key.seg != id {
			continue
		}
		delete(c.chunks, key)
		ch.dead = true
		if ch.ready {
			c.lru.Remove(ch.elem)
			ch.elem = nil
			c.bytes -= ch.cost()
			if ch.refs == 0 {
				evict = append(evict, ch)
			}
		}
	}
	c.mu.Unlock()
	c.discard(evict)
}

// release unpins ch.
func (c *chunkCache) release(ch *chunk) {
	var evict []*chunk
	c.mu.Lock()
	ch.refs--
	switch {
	case ch.dead && ch.refs == 0 && ch.err == nil:
		evict = []*chunk{ch}
	case ch.ready && !ch.dead:
		evict = c.evictLocked()
	}
	c.mu.Unlock()
	c.discard(evict)
}

// invalidate drops ch from the cache (its bytes failed a check); its file
// goes when the last pin is released.
func (c *chunkCache) invalidate(ch *chunk) {
	var evict []*chunk
	c.mu.Lock()
	if ch.ready && !ch.dead {
		ch.dead = true
		c.lru.Remove(ch.elem)
		ch.elem = nil
		c.bytes -= ch.cost()
		if c.chunks[ch.key] == ch {
			delete(c.chunks, ch.key)
		}
		if ch.refs == 0 {
			evict = []*chunk{ch}
		}
	}
	c.mu.Unlock()
	c.discard(evict)
}

// evictLocked removes unpinned ready chunks, least recently used first,
// until the cache fits its limit, and returns them for discard outside the
// lock.
func (c *chunkCache) evictLocked() []*chunk {
	var out []*chunk
	for e := c.lru.Back(); e != nil && c.bytes > c.limit; {
		prev := e.Prev()
		ch := e.Value.(*chunk)
		if ch.refs == 0 {
			c.lru.Remove(e)
			ch.elem = nil
			ch.dead = true
			delete(c.chunks, ch.key)
			c.bytes -= ch.cost()
			out = append(out, ch)
		}
		e = prev
	}
	return out
}

// stats returns the bytes of ready chunks and the number of fetches in
// flight.
func (c *chunkCache) stats() (bytes int64, loading int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.chunks {
		if !ch.ready {
			loading++
		}
	}
	return c.bytes, loading
}

// discard lets go of chunks that left the cache for good and are no longer
// pinned: a disk chunk's file is removed, a memory chunk's buffer loses the
// cache's reference (it is reused once no view holds it). Each chunk is
// discarded once.
func (c *chunkCache) discard(chunks []*chunk) {
	for _, ch := range chunks {
		if ch.buf != nil {
			ch.buf.drop()
			continue
		}
		_ = os.Remove(ch.path)
	}
}

// cost is what a ready chunk counts against the cache's bound: in a memory
// cache its buffer's capacity (every buffer can hold the largest chunk), on
// disk its size.
func (ch *chunk) cost() int64 {
	if ch.buf != nil {
		return int64(cap(ch.buf.b))
	}
	return ch.size
}

// wait blocks until ch is loaded or ctx ends.
func (ch *chunk) wait(ctx context.Context) error {
	select {
	case <-ch.done:
		return ch.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
