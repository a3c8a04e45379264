package tiering

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratabroker/strata/kafkaproto"
	"github.com/stratabroker/strata/remote"
)

// The cold-read path (DESIGN.md path 7): a Reader serves whole record batches
// of finished remote segments.
//
//	Read(seg, offset) ─→ index cache ─(miss)─→ GET .manifest, ranged GET of the .indexes sections
//	        │                 └─ offset index: floor(offset) → log position
//	        └─→ chunk cache ─(miss)─→ ranged GET of whole chunks of .log ─→ cache
//	                 └─ scan batch headers forward from the position, skip batches
//	                    before offset, check and return whole batches
//
// Every GET (manifest, indexes, chunk, prefetch) runs in a goroutine owned by
// the Reader, bounded by Concurrency, under a context detached from the
// caller's with its own deadline (fetchTimeout): a caller whose deadline
// passes gets ErrUnavailable at once while the GET completes into the cache,
// so the client's retry hits. Concurrent requests for the same chunk or index
// share one GET. A failed GET caches nothing.
//
// Prefetch: after a sequential Read of a segment (one starting in the chunk
// where the previous Read of that segment ended or in the next one, or at the
// segment's base offset), the PrefetchChunks chunks after the last one read
// are fetched in the background, within the segment. Prefetches in flight
// are bounded (half of Concurrency, at least one); extra ones are dropped.
//
// Checks: every returned batch has 12+length bytes inside the object, magic
// 2, a base offset above the previous batch's last offset and inside the
// segment, and a matching CRC32C; the first batch at an offset-index
// position must hold the indexed offset, and the batch ending at the
// segment's end offset must end the object. Any mismatch is ErrCorrupt and
// nothing is returned. When the failing batch was read from disk-cache
// chunks, those chunks are dropped and fetched again first (the cache file
// may be what broke) — at most once per chunk per call.
//
// Locks: Reader.mu guards closed, successor and the background WaitGroup's Add;
// chunkCache.mu, indexCache.mu and Reader.seqMu are leaves. No lock is held
// across I/O.

// SegmentRef names one finished remote segment (built from its etcd record).
type SegmentRef struct {
	Topic      string
	TopicID    [16]byte
	Partition  int32
	ID         [16]byte
	BaseOffset int64
	EndOffset  int64 // inclusive
	SizeBytes  int64 // .log size; 0 = unknown (not checked against the manifest)
}

// ReaderConfig configures a Reader. Zero values take the defaults.
type ReaderConfig struct {
	// ChunkSize: bytes per ranged GET of a .log object, about: chunks
	// start at batch boundaries near multiples of it, and are shorter
	// than ChunkSize*9/8 (indexcache.go). Default 4 MiB.
	ChunkSize int64
	// CacheDir holds the disk chunk cache; NewReader creates it and removes
	// the chunk files left in it. Empty: a temporary directory removed by
	// Close.
	CacheDir string
	// CacheBytes bounds the disk chunk cache (LRU by bytes; chunks in use
	// are never evicted). Default 1 GiB.
	CacheBytes int64
	// IndexCacheBytes bounds the in-memory cache of manifests and decoded
	// indexes (remote.log.index.file.cache.total.size.bytes). Default 64 MiB.
	IndexCacheBytes int64
	// PrefetchChunks: chunks fetched ahead of a sequential reader. Default 2;
	// negative disables prefetch.
	PrefetchChunks int
	// Concurrency: remote.log.reader.threads, the maximum of concurrent GETs
	// (reads and prefetch). Default 8.
	Concurrency int
	// Memory keeps chunks in memory instead of files in CacheDir (same
	// bound, CacheBytes): two kernel copies fewer per byte served.
	Memory bool
}

const (
	defaultChunkSize       = 4 << 20
	defaultCacheBytes      = 1 << 30
	defaultIndexCacheBytes = 64 << 20
	defaultPrefetchChunks  = 2
	defaultConcurrency     = 8
	// defaultFetchTimeout bounds one background GET, whoever waits for it.
	defaultFetchTimeout = 30 * time.Second
	// maxSeqEntries bounds the per-segment sequential-read memory.
	maxSeqEntries = 4096
)

// ReaderStats are cumulative counters (CacheBytes is current).
type ReaderStats struct {
	Gets         int64 // GETs issued: manifests, indexes, chunks, prefetch
	CacheHits    int64 // chunk lookups by reads found ready in the cache
	CacheMisses  int64 // chunk lookups by reads that waited for a GET
	PrefetchGets int64 // chunk GETs issued by prefetch (also in Gets)
	BytesFetched int64 // bytes received from the object store
	CacheBytes   int64 // bytes in the disk chunk cache now
	// Batches served without a CRC pass at read time because they passed
	// it as their chunk arrived (memory cache; verify.go).
	PreVerified int64
}

// Reader is the cold-read path: it reads record batches of remote segments
// through an index cache and a disk chunk cache, with prefetch. It is safe
// for concurrent use.
type Reader struct {
	st           remote.Storage
	cfg          ReaderConfig
	logger       *slog.Logger
	chunks       *chunkCache
	copies       *copyPool // buffers of batches copied out of two chunks
	index        *indexCache
	tempDir      string        // removed by Close when CacheDir was empty
	gets         chan struct{} // GET slots (Concurrency)
	prefetching  chan struct{} // prefetch slots
	fetchTimeout time.Duration
	base         context.Context // parent of every background GET; cancelled by Close
	cancel       context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup

	seqMu sync.Mutex
	seq   map[[16]byte]int64 // segment id -> last chunk of its latest Read

	successor func(SegmentRef) (SegmentRef, bool) // guarded by mu; see SetSuccessor

	nGets, nHits, nMisses, nPrefetch, nBytes, nVerified atomic.Int64
}

// NewReader returns a Reader over st. It prepares cfg.CacheDir (see
// ReaderConfig); negative sizes or counts are refused.
func NewReader(st remote.Storage, cfg ReaderConfig, logger *slog.Logger) (*Reader, error) {
	if st == nil {
		return nil, errors.New("tiering: new reader: no storage")
	}
	if cfg.ChunkSize < 0 || cfg.CacheBytes < 0 || cfg.IndexCacheBytes < 0 || cfg.Concurrency < 0 {
		return nil, fmt.Errorf("tiering: new reader: negative setting in %+v", cfg)
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = defaultChunkSize
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = defaultCacheBytes
	}
	if cfg.IndexCacheBytes == 0 {
		cfg.IndexCacheBytes = defaultIndexCacheBytes
	}
	if cfg.PrefetchChunks == 0 {
		cfg.PrefetchChunks = defaultPrefetchChunks
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = defaultConcurrency
	}
	if logger == nil {
		logger = slog.Default()
	}
	var tempDir string
	if cfg.CacheDir == "" {
		d, err := os.MkdirTemp("", "strata-remote-cache-")
		if err != nil {
			return nil, fmt.Errorf("tiering: new reader: %w", err)
		}
		cfg.CacheDir, tempDir = d, d
	}
	cc, removed, err := newChunkCache(cfg.CacheDir, cfg.CacheBytes)
	if cc != nil && cfg.Memory {
		// Enough free buffers for the chunks that come in while others are
		// being evicted; beyond it they go to the garbage collector.
		cc.mem, cc.pool = true, newBufPool(maxChunkSize(cfg.ChunkSize), int(max(4, cfg.CacheBytes/cfg.ChunkSize/4)))
	}
	if err != nil {
		if tempDir != "" {
			_ = os.RemoveAll(tempDir)
		}
		return nil, fmt.Errorf("tiering: new reader: %w", err)
	}
	if removed > 0 {
		logger.Info("remote chunk cache emptied", "dir", cfg.CacheDir, "files", removed)
	}
	if cfg.CacheBytes < cfg.ChunkSize*int64(max(cfg.PrefetchChunks, 0)+1) {
		logger.Warn("remote chunk cache smaller than a read and its prefetch", "cache_bytes", cfg.CacheBytes, "chunk_size", cfg.ChunkSize)
	}
	base, cancel := context.WithCancel(context.Background())
	return &Reader{
		st: st, cfg: cfg, logger: logger, chunks: cc, copies: newCopyPool(), index: newIndexCache(cfg.IndexCacheBytes), tempDir: tempDir,
		gets: make(chan struct{}, cfg.Concurrency), prefetching: make(chan struct{}, max(1, cfg.Concurrency*3/4)),
		fetchTimeout: defaultFetchTimeout, base: base, cancel: cancel, seq: map[[16]byte]int64{},
	}, nil
}

// Close stops background GETs and prefetch and waits for them. Reads after
// Close fail with ErrUnavailable. It is idempotent.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	if r.tempDir != "" {
		return os.RemoveAll(r.tempDir)
	}
	return nil
}

// Stats returns the counters.
func (r *Reader) Stats() ReaderStats {
	b, _ := r.chunks.stats()
	return ReaderStats{
		Gets: r.nGets.Load(), CacheHits: r.nHits.Load(), CacheMisses: r.nMisses.Load(),
		PrefetchGets: r.nPrefetch.Load(), BytesFetched: r.nBytes.Load(), CacheBytes: b,
		PreVerified: r.nVerified.Load(),
	}
}

// Forget drops everything cached of segment id (call it once its objects
// are deleted). Reads in progress finish with what they hold.
func (r *Reader) Forget(id [16]byte) {
	r.index.forget(id)
	r.chunks.forget(id)
	r.seqMu.Lock()
	delete(r.seq, id)
	r.seqMu.Unlock()
}

var errReaderClosed = fmt.Errorf("reader closed: %w", ErrUnavailable)

// background runs fn in a goroutine Close waits for; false after Close.
func (r *Reader) background(fn func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fn()
	}()
	return true
}

// acquireGet takes a GET slot.
func (r *Reader) acquireGet(ctx context.Context) error {
	select {
	case r.gets <- struct{}{}:
		r.nGets.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Reader) releaseGet() { <-r.gets }

// classify wraps a storage error: a missing object is corruption (a finished
// segment's objects must exist) and keeps remote.ErrNotFound; a range outside
// the object is corruption; anything else is ErrUnavailable.
func classify(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrUnavailable):
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, remote.ErrNotFound):
		return fmt.Errorf("%s: %w: %w", what, ErrCorrupt, err)
	case errors.Is(err, remote.ErrInvalidRange), errors.Is(err, errShortObject):
		return fmt.Errorf("%s: %w: %w", what, ErrCorrupt, err)
	default:
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	}
}

// ---- manifests and indexes ----

// Manifest returns the (cached) manifest of seg, checked against seg. The
// result is a copy the caller may keep.
func (r *Reader) Manifest(ctx context.Context, seg SegmentRef) (*Manifest, error) {
	ix, err := r.segIndex(ctx, seg)
	if err != nil {
		return nil, err
	}
	m := *ix.m
	m.Epochs = slices.Clone(ix.m.Epochs)
	return &m, nil
}

// segIndex returns the cached index of seg, loading it once for all callers.
func (r *Reader) segIndex(ctx context.Context, seg SegmentRef) (*segIndex, error) {
	if r.isClosed() {
		return nil, fmt.Errorf("segment %x: %w", seg.ID[:], errReaderClosed)
	}
	e, created := r.index.lookup(seg.ID)
	if created {
		if !r.background(func() { r.loadIndex(e, seg) }) {
			r.index.finish(e, nil, errReaderClosed)
		}
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, classify(fmt.Sprintf("read index of segment %x", seg.ID[:]), ctx.Err())
	}
	if e.err != nil {
		return nil, e.err
	}
	if err := checkManifest(e.ix.m, seg); err != nil {
		return nil, fmt.Errorf("segment %x: %w", seg.ID[:], err)
	}
	return e.ix, nil
}

func (r *Reader) loadIndex(e *indexEntry, seg SegmentRef) {
	ctx, cancel := context.WithTimeout(r.base, r.fetchTimeout)
	defer cancel()
	ix, err := r.fetchIndex(ctx, seg)
	if err != nil {
		r.logger.Warn("remote segment index", "segment", idString(seg.ID), "err", err)
	}
	r.index.finish(e, ix, err)
}

func (r *Reader) fetchIndex(ctx context.Context, seg SegmentRef) (*segIndex, error) {
	mkey := SegmentKey(seg.Topic, seg.TopicID, seg.Partition, seg.BaseOffset, seg.ID, ExtManifest)
	mb, err := r.getBytes(ctx, mkey, 0, -1, maxManifestBytes)
	if err != nil {
		return nil, classify("get "+mkey, err)
	}
	m, err := DecodeManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", mkey, err)
	}
	if err := checkManifest(m, seg); err != nil {
		return nil, fmt.Errorf("%s: %w", mkey, err)
	}
	var offIdx, timeIdx []byte
	if m.OffsetIndex.Len > 0 || m.TimeIndex.Len > 0 {
		// One ranged GET covering both sections (they are adjacent as the
		// uploader writes them).
		lo, hi := m.IndexesSize, int64(0)
		for _, s := range []Section{m.OffsetIndex, m.TimeIndex} {
			if s.Len > 0 {
				lo, hi = min(lo, s.Pos), max(hi, s.Pos+s.Len)
			}
		}
		ikey := SegmentKey(seg.Topic, seg.TopicID, seg.Partition, seg.BaseOffset, seg.ID, ExtIndexes)
		b, err := r.getBytes(ctx, ikey, lo, hi-lo, hi-lo)
		if err != nil {
			return nil, classify("get "+ikey, err)
		}
		if int64(len(b)) != hi-lo {
			return nil, fmt.Errorf("get %s: %w: %d of %d index bytes", ikey, ErrCorrupt, len(b), hi-lo)
		}
		offIdx = b[m.OffsetIndex.Pos-lo : m.OffsetIndex.Pos-lo+m.OffsetIndex.Len]
		timeIdx = b[m.TimeIndex.Pos-lo : m.TimeIndex.Pos-lo+m.TimeIndex.Len]
		if m.OffsetIndex.Len == 0 {
			offIdx = nil
		}
		if m.TimeIndex.Len == 0 {
			timeIdx = nil
		}
	}
	offs, times, err := decodeRemoteIndexes(m, offIdx, timeIdx)
	if err != nil {
		return nil, fmt.Errorf("segment %x: %w", seg.ID[:], err)
	}
	starts := chunkStarts(offs, m.LogSize, r.cfg.ChunkSize)
	return &segIndex{
		id: seg.ID, m: m, logKey: SegmentKey(seg.Topic, seg.TopicID, seg.Partition, seg.BaseOffset, seg.ID, ExtLog),
		offs: offs, times: times, cs: r.cfg.ChunkSize, starts: starts,
		cost: indexEntryOverhead + int64(len(mb)) + int64(len(offs))*8 + int64(len(times))*16 + int64(len(starts))*8,
	}, nil
}

// getBytes reads [off, off+length) of key (length < 0: to the end), at most
// limit bytes (more is ErrCorrupt), through a GET slot.
func (r *Reader) getBytes(ctx context.Context, key string, off, length, limit int64) ([]byte, error) {
	if err := r.acquireGet(ctx); err != nil {
		return nil, err
	}
	defer r.releaseGet()
	var rc io.ReadCloser
	var err error
	if off == 0 && length < 0 {
		rc, err = r.st.Get(ctx, key)
	} else {
		rc, err = r.st.GetRange(ctx, key, off, length)
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	r.nBytes.Add(int64(len(b)))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: object larger than %d bytes", ErrCorrupt, limit)
	}
	return b, nil
}

// ---- chunks ----

// acquireChunk returns chunk n of seg, pinned (release it with
// chunks.release), fetching it when needed.
func (r *Reader) acquireChunk(ctx context.Context, ix *segIndex, n int64) (*chunk, bool, error) {
	key := chunkKey{seg: ix.id, n: n}
	_, size := ix.chunkSpan(n)
	ch, hit, created := r.chunks.lookup(key, size, true)
	if hit {
		r.nHits.Add(1)
		return ch, true, nil
	}
	r.nMisses.Add(1)
	if created {
		r.startFetch(ch, ix, false)
	}
	if err := ch.wait(ctx); err != nil {
		r.chunks.release(ch)
		return nil, false, classify(fmt.Sprintf("chunk %d of %s", n, ix.logKey), err)
	}
	return ch, false, nil
}

// startFetch fetches ch in the background (freeing a prefetch slot at the
// end when prefetch).
func (r *Reader) startFetch(ch *chunk, ix *segIndex, prefetch bool) {
	ok := r.background(func() {
		if prefetch {
			defer func() { <-r.prefetching }()
		}
		r.fetchChunk(ch, ix, prefetch)
	})
	if !ok {
		if prefetch {
			<-r.prefetching
		}
		r.chunks.finish(ch, errReaderClosed)
	}
}

func (r *Reader) fetchChunk(ch *chunk, ix *segIndex, prefetch bool) {
	ctx, cancel := context.WithTimeout(r.base, r.fetchTimeout)
	defer cancel()
	err := r.acquireGet(ctx)
	if err != nil {
		r.chunks.finish(ch, err)
		return
	}
	defer r.releaseGet()
	if prefetch {
		r.nPrefetch.Add(1)
	}
	off, _ := ix.chunkSpan(ch.key.n)
	rc, err := r.st.GetRange(ctx, ix.logKey, off, ch.size)
	if err != nil {
		r.chunks.finish(ch, err)
		r.logger.Debug("remote chunk", "key", ix.logKey, "chunk", ch.key.n, "err", err)
		return
	}
	var v *batchVerifier
	if r.chunks.mem {
		v = newBatchVerifier(ix, off, ch.size)
	}
	n, err := r.chunks.write(ch, rc, v)
	rc.Close()
	r.nBytes.Add(n) // before finish wakes the waiters, so Stats is current for them
	if err != nil {
		r.logger.Debug("remote chunk", "key", ix.logKey, "chunk", ch.key.n, "err", err)
	}
	r.chunks.finish(ch, err)
}

// prefetch fetches chunks first..last of the segment in the background
// unless cached, in flight, or over the prefetch bound.
func (r *Reader) prefetch(ix *segIndex, first, last int64) {
	for n := first; n <= last; n++ {
		key := chunkKey{seg: ix.id, n: n}
		if r.chunks.present(key) {
			continue
		}
		select {
		case r.prefetching <- struct{}{}:
		default:
			return
		}
		_, size := ix.chunkSpan(n)
		ch, _, created := r.chunks.lookup(key, size, false)
		if !created {
			<-r.prefetching
			continue
		}
		r.startFetch(ch, ix, true)
	}
}

// noteRead records the last chunk a Read of seg touched and, when the Read
// was sequential (its first batch in that chunk of the previous Read or the
// next one, or at the segment's base offset), prefetches the chunks after
// it. first is the chunk of the Read's first batch.
func (r *Reader) noteRead(seg SegmentRef, ix *segIndex, offset, first, last int64) {
	if r.cfg.PrefetchChunks <= 0 || last < 0 {
		return
	}
	r.seqMu.Lock()
	prev, seen := r.seq[seg.ID]
	if !seen && len(r.seq) >= maxSeqEntries {
		clear(r.seq)
	}
	r.seq[seg.ID] = last
	r.seqMu.Unlock()
	if !(seen && first >= prev && first <= prev+1) && offset != seg.BaseOffset {
		return
	}
	chunks := ix.chunks()
	r.prefetch(ix, last+1, min(last+int64(r.cfg.PrefetchChunks), chunks-1))
	// Near the segment's end the read-ahead continues into the next
	// segment: its index and first chunks, so that a sequential reader does
	// not stall on an index GET and a chunk GET at every segment boundary.
	if beyond := last + int64(r.cfg.PrefetchChunks) - (chunks - 1); beyond > 0 {
		if next, ok := r.successorOf(seg); ok {
			r.prefetchSegment(next, beyond)
		}
	}
}

// SetSuccessor tells the Reader how to find the segment after seg (the
// Manager's view of the remote log), for read-ahead across segments.
func (r *Reader) SetSuccessor(fn func(seg SegmentRef) (SegmentRef, bool)) {
	r.mu.Lock()
	r.successor = fn
	r.mu.Unlock()
}

func (r *Reader) successorOf(seg SegmentRef) (SegmentRef, bool) {
	r.mu.Lock()
	fn := r.successor
	r.mu.Unlock()
	if fn == nil {
		return SegmentRef{}, false
	}
	return fn(seg)
}

// prefetchSegment fetches the index and the first n chunks of seg in the
// background, unless its index is already cached or loading (then only the
// chunks), holding a prefetch slot while the index loads; without a free
// slot it does nothing.
func (r *Reader) prefetchSegment(seg SegmentRef, n int64) {
	if ix, ok := r.index.peek(seg.ID); ok {
		if ix != nil {
			r.prefetch(ix, 0, min(n, ix.chunks())-1)
		}
		return
	}
	select {
	case r.prefetching <- struct{}{}:
	default:
		return
	}
	ok := r.background(func() {
		ctx, cancel := context.WithTimeout(r.base, r.fetchTimeout)
		defer cancel()
		ix, err := r.segIndex(ctx, seg)
		<-r.prefetching
		if err == nil {
			r.prefetch(ix, 0, min(n, ix.chunks())-1)
		}
	})
	if !ok {
		<-r.prefetching
	}
}

// warm starts, in parallel and in order, the GETs of every chunk a Read of
// up to maxBytes from offset will need, so that one Read costs about one
// GET's latency rather than one per chunk. The first chunk's GET goes
// first: a cold reader's first answer waits for it, and a later chunk
// requested ahead of it only shares the store's bandwidth with it. (The
// bytes scanned before offset's batch are not counted: a chunk they add is
// fetched by the scan itself.)
func (r *Reader) warm(ix *segIndex, offset int64, maxBytes int) {
	if ix.chunks() == 0 {
		return // an empty log
	}
	pos, _ := ix.floor(offset)
	first, last := ix.chunkAt(pos), ix.chunkAt(pos+int64(max(maxBytes, 1))-1)
	for n := first; n <= last; n++ {
		key := chunkKey{seg: ix.id, n: n}
		if r.chunks.present(key) {
			continue
		}
		_, size := ix.chunkSpan(n)
		ch, _, created := r.chunks.lookup(key, size, false)
		if created {
			r.startFetch(ch, ix, false)
		}
	}
}

// isClosed reports whether Close was called.
func (r *Reader) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// ---- scanning ----

// cursor reads byte ranges of one segment's .log through the chunk cache,
// keeping the chunk it read last pinned and open.
type cursor struct {
	r          *Reader
	ctx        context.Context
	ix         *segIndex
	cur        *chunk
	f          *os.File
	mem        []byte // the chunk's bytes, for a memory cache (f is nil)
	curSuspect bool
	last       int64          // last chunk read, -1 before any
	fresh      map[int64]bool // chunks fetched (or dropped) during this call: not suspects
	recent     []usedChunk    // chunks read since mark
}

// usedChunk: a chunk read for the current batch; suspect when its bytes
// came from the disk cache rather than from a GET of this call.
type usedChunk struct {
	ch      *chunk
	suspect bool
}

// mark starts a new batch.
func (c *cursor) mark() { c.recent = c.recent[:0] }

// suspects returns the cached chunks the current batch was read from.
func (c *cursor) suspects() []*chunk {
	var out []*chunk
	for _, u := range c.recent {
		if u.suspect {
			out = append(out, u.ch)
		}
	}
	return out
}

// readAt fills p from the log at pos; the caller checked the range is inside
// the log.
func (c *cursor) readAt(p []byte, pos int64) error {
	for len(p) > 0 {
		n := c.ix.chunkAt(pos)
		if c.cur == nil || c.cur.key.n != n {
			if err := c.open(n); err != nil {
				return err
			}
		}
		if len(c.recent) == 0 || c.recent[len(c.recent)-1].ch != c.cur {
			c.recent = append(c.recent, usedChunk{c.cur, c.curSuspect})
		}
		start, _ := c.ix.chunkSpan(n)
		within := pos - start
		k := min(int64(len(p)), c.cur.size-within)
		if c.mem != nil {
			copy(p[:k], c.mem[within:within+k])
			p, pos = p[k:], pos+k
			continue
		}
		if _, err := c.f.ReadAt(p[:k], within); err != nil {
			c.r.chunks.invalidate(c.cur)
			return fmt.Errorf("read cached chunk %d of %s: %w: %w", n, c.ix.logKey, ErrUnavailable, err)
		}
		p, pos = p[k:], pos+k
	}
	return nil
}

// view returns the memory chunk holding the n bytes at pos, and where in
// it they start, when one memory chunk holds them all; ok is false for the
// disk cache or a range across chunks (the caller copies instead).
func (c *cursor) view(pos, n int64) (mem []byte, within int64, ok bool, err error) {
	k := c.ix.chunkAt(pos)
	if n <= 0 || c.ix.chunkAt(pos+n-1) != k {
		return nil, 0, false, nil
	}
	if c.cur == nil || c.cur.key.n != k {
		if err := c.open(k); err != nil {
			return nil, 0, false, err
		}
	}
	if c.mem == nil {
		return nil, 0, false, nil
	}
	if len(c.recent) == 0 || c.recent[len(c.recent)-1].ch != c.cur {
		c.recent = append(c.recent, usedChunk{c.cur, c.curSuspect})
	}
	start, _ := c.ix.chunkSpan(k)
	within = pos - start
	if within+n > int64(len(c.mem)) {
		return nil, 0, false, nil // the chunk is shorter than the manifest says; readAt reports it
	}
	return c.mem, within, true, nil
}

func (c *cursor) open(n int64) error {
	c.close()
	ch, hit, err := c.r.acquireChunk(c.ctx, c.ix, n)
	if err != nil {
		return err
	}
	if ch.buf != nil {
		c.cur, c.mem = ch, ch.buf.b
		c.last = n
		c.curSuspect = false // memory cannot rot on disk
		return nil
	}
	f, err := os.Open(ch.path)
	if err != nil {
		c.r.chunks.invalidate(ch)
		c.r.chunks.release(ch)
		return fmt.Errorf("open cached chunk %d of %s: %w: %w", n, c.ix.logKey, ErrUnavailable, err)
	}
	c.cur, c.f = ch, f
	c.last = n
	c.curSuspect = hit && !c.fresh[n]
	if !hit {
		c.fresh[n] = true
	}
	return nil
}

func (c *cursor) close() {
	if c.cur != nil {
		if c.f != nil {
			c.f.Close()
		}
		c.r.chunks.release(c.cur)
		c.cur, c.f, c.mem = nil, nil, nil
	}
}

// scan runs fn with a cursor over seg's log. When fn fails a corruption
// check on bytes that came from the disk cache (the cache file may be what
// broke), those chunks are dropped and fn runs again; chunks fetched or
// dropped during the call are never suspected again, so this ends after at
// most one retry per chunk. It returns the last chunk fn read.
func (r *Reader) scan(ctx context.Context, seg SegmentRef, ix *segIndex, what string, fn func(c *cursor) error) (int64, error) {
	fresh := map[int64]bool{}
	for {
		c := &cursor{r: r, ctx: ctx, ix: ix, last: -1, fresh: fresh}
		err := fn(c)
		sus := c.suspects()
		c.close()
		if err == nil {
			return c.last, nil
		}
		if !errors.Is(err, ErrCorrupt) {
			return -1, err
		}
		if len(sus) == 0 {
			r.logger.Error("corrupt remote segment", "segment", idString(seg.ID), "op", what, "err", err)
			return -1, err
		}
		r.logger.Warn("cached remote data failed a check; fetching it again", "segment", idString(seg.ID), "op", what, "err", err)
		for _, ch := range sus {
			r.chunks.invalidate(ch)
			fresh[ch.key.n] = true
		}
	}
}

// scanner walks the batch headers of one segment from an offset-index
// position.
type scanner struct {
	c        *cursor
	seg      SegmentRef
	size     int64 // log size
	pos      int64
	indexed  int64 // offset the index claims for the batch at pos; -1 none
	prevLast int64
	hdr      [kafkaproto.RecordBatchHeaderSize]byte
}

func newScanner(c *cursor, seg SegmentRef, from int64) *scanner {
	pos, indexed := c.ix.floor(from)
	return &scanner{c: c, seg: seg, size: c.ix.m.LogSize, pos: pos, indexed: indexed, prevLast: seg.BaseOffset - 1}
}

func (s *scanner) corrupt(format string, args ...any) error {
	return fmt.Errorf("%s at position %d: %w: %s", s.c.ix.logKey, s.pos, ErrCorrupt, fmt.Sprintf(format, args...))
}

// next reads the header of the batch at s.pos and checks it; done at the
// segment's end.
func (s *scanner) next() (h kafkaproto.BatchHeader, done bool, err error) {
	s.c.mark()
	if s.prevLast >= s.seg.EndOffset {
		return h, true, nil
	}
	if s.pos == s.size {
		return h, false, s.corrupt("log ends after offset %d, the segment ends at %d", s.prevLast, s.seg.EndOffset)
	}
	if s.size-s.pos < kafkaproto.RecordBatchHeaderSize {
		return h, false, s.corrupt("%d trailing bytes, shorter than a batch header", s.size-s.pos)
	}
	if err := s.c.readAt(s.hdr[:], s.pos); err != nil {
		return h, false, err
	}
	h, err = kafkaproto.ParseBatchHeader(s.hdr[:])
	if err != nil {
		return h, false, s.corrupt("%v", err)
	}
	switch {
	case h.Magic != 2:
		return h, false, s.corrupt("magic %d", h.Magic)
	case h.Size() < kafkaproto.RecordBatchHeaderSize || int64(h.Size()) > s.size-s.pos:
		return h, false, s.corrupt("batch length %d with %d bytes left", h.BatchLength, s.size-s.pos)
	case h.LastOffsetDelta < 0:
		return h, false, s.corrupt("last offset delta %d", h.LastOffsetDelta)
	case h.BaseOffset <= s.prevLast:
		return h, false, s.corrupt("base offset %d after offset %d", h.BaseOffset, s.prevLast)
	case h.LastOffset() > s.seg.EndOffset:
		return h, false, s.corrupt("batch %d..%d past the segment end %d", h.BaseOffset, h.LastOffset(), s.seg.EndOffset)
	case s.indexed >= 0 && (s.indexed < h.BaseOffset || s.indexed > h.LastOffset()):
		return h, false, s.corrupt("offset index points to offset %d, batch holds %d..%d", s.indexed, h.BaseOffset, h.LastOffset())
	case h.LastOffset() == s.seg.EndOffset && s.pos+int64(h.Size()) != s.size:
		return h, false, s.corrupt("%d bytes after the segment's last batch", s.size-s.pos-int64(h.Size()))
	}
	s.indexed = -1
	return h, false, nil
}

// advance moves past the batch whose header next returned.
func (s *scanner) advance(h kafkaproto.BatchHeader) {
	s.pos += int64(h.Size())
	s.prevLast = h.LastOffset()
}

// readBatch appends the whole batch at s.pos (header h) to dst and checks its
// CRC.
func (s *scanner) readBatch(dst []byte, h kafkaproto.BatchHeader) ([]byte, error) {
	start := len(dst)
	dst = slices.Grow(dst, h.Size())[:start+h.Size()]
	b := dst[start:]
	// The header is in hand; reading only the rest keeps the cursor moving
	// forward (it holds one chunk at a time).
	copy(b, s.hdr[:])
	if err := s.c.readAt(b[kafkaproto.RecordBatchHeaderSize:], s.pos+kafkaproto.RecordBatchHeaderSize); err != nil {
		return dst[:start], err
	}
	if crc := kafkaproto.BatchCRC(b); crc != h.CRC {
		return dst[:start], s.corrupt("batch %d: crc %08x, computed %08x", h.BaseOffset, h.CRC, crc)
	}
	return dst, nil
}

// ---- Read ----

// Read returns whole record batches (v2 bytes, verbatim) of seg, starting
// with the batch that contains offset and adding batches while the total
// stays <= maxBytes — at least one batch when minOne, whatever its size —
// never past seg.EndOffset. maxBytes <= 0 without minOne returns nothing.
// It is ReadParts joined into one slice the caller owns (a copy whenever the
// parts are views of cached chunks).
//
// Errors: offset outside [BaseOffset, EndOffset] wraps ErrNotTiered; data
// that fails a check, or a manifest or index that does not fit the object,
// wraps ErrCorrupt (a missing object wraps ErrCorrupt and
// remote.ErrNotFound); an unreachable store, a timeout, ctx's end or a
// closed Reader wraps ErrUnavailable.
func (r *Reader) Read(ctx context.Context, seg SegmentRef, offset int64, maxBytes int, minOne bool) ([]byte, error) {
	var h Hold
	defer h.Release()
	parts, err := r.ReadParts(ctx, seg, offset, maxBytes, minOne, &h)
	return ownedParts(parts, &h), err
}

// ReadParts is Read answering with the batches in consecutive parts, each
// holding whole batches: with the memory chunk cache, views of the chunks
// (no copy) and a copy of each batch that straddles two chunks; with the
// disk cache, one copied part. The chunks viewed are kept from reuse in
// hold until its Release (nil: they are never reused).
func (r *Reader) ReadParts(ctx context.Context, seg SegmentRef, offset int64, maxBytes int, minOne bool, hold *Hold) ([][]byte, error) {
	if offset < seg.BaseOffset || offset > seg.EndOffset {
		return nil, fmt.Errorf("read segment %x: offset %d outside %d..%d: %w", seg.ID[:], offset, seg.BaseOffset, seg.EndOffset, ErrNotTiered)
	}
	if maxBytes <= 0 && !minOne {
		return nil, nil
	}
	if r.isClosed() {
		return nil, fmt.Errorf("read segment %x: %w", seg.ID[:], errReaderClosed)
	}
	ix, err := r.segIndex(ctx, seg)
	if err != nil {
		return nil, err
	}
	r.warm(ix, offset, maxBytes)
	var out [][]byte
	var start int64
	last, err := r.scan(ctx, seg, ix, fmt.Sprintf("read %d", offset), func(c *cursor) error {
		var err error
		out, start, err = r.read(c, seg, offset, maxBytes, minOne, hold)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.noteRead(seg, ix, offset, ix.chunkAt(start), last)
	return out, nil
}

// ownedParts is the parts as one slice that no Hold governs: the part
// itself when it is the only one and views nothing held, else a copy.
func ownedParts(parts [][]byte, h *Hold) []byte {
	if len(parts) == 0 {
		return nil
	}
	if len(parts) == 1 && len(h.bufs) == 0 {
		return parts[0]
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// read scans for offset and returns the batches and the log position of
// the batch holding offset (-1 when the scan failed before it).
//
// With the memory chunk cache the answer is views of the chunks' bytes
// (capacity capped at their length, so an append never writes into a
// chunk): no copy at all, the bytes going from the GET's buffer straight
// to the client's socket. A batch straddling two chunks is copied into a
// part of its own. Each viewed chunk's buffer is counted in hold
// (bufpool.go), so a view stays valid and unchanged until hold's Release.
// With the disk cache the batches are copied into one allocation.
func (r *Reader) read(c *cursor, seg SegmentRef, offset int64, maxBytes int, minOne bool, hold *Hold) ([][]byte, int64, error) {
	s := newScanner(c, seg, offset)
	var parts [][]byte                   // the answer so far (memory cache)
	var out []byte                       // the copied answer (disk cache)
	var view []byte                      // the chunk bytes the open view is of
	vstart, vend := int64(-1), int64(-1) // the open view: view[vstart:vend]
	n := 0                               // bytes in the answer
	start := int64(-1)
	closeView := func() {
		if vstart >= 0 {
			parts = append(parts, view[vstart:vend:vend])
			view, vstart, vend = nil, -1, -1
		}
	}
	answer := func() [][]byte {
		if !r.chunks.mem {
			if out == nil {
				return nil
			}
			return [][]byte{out}
		}
		closeView()
		return parts
	}
	for {
		if n > 0 && maxBytes-n < kafkaproto.RecordBatchHeaderSize {
			return answer(), start, nil // no batch can fit: do not touch the next one
		}
		h, done, err := s.next()
		if err != nil {
			return nil, start, err
		}
		if done {
			return answer(), start, nil
		}
		if h.LastOffset() < offset {
			s.advance(h)
			continue
		}
		if start < 0 {
			start = s.pos
		}
		if n+h.Size() > maxBytes && !(minOne && n == 0) {
			return answer(), start, nil
		}
		if !r.chunks.mem {
			if out == nil {
				// The disk cache: copy into one allocation (growing batch
				// by batch copies megabytes over and over).
				out = make([]byte, 0, max(int64(h.Size()), min(int64(maxBytes), s.size-start)))
			}
			if out, err = s.readBatch(out, h); err != nil {
				return nil, start, err
			}
			n = len(out)
			s.advance(h)
			continue
		}
		mem, within, ok, err := c.view(s.pos, int64(h.Size()))
		if err != nil {
			return nil, start, err
		}
		if !ok {
			// The batch straddles two chunks: a copy of it is a part, in a
			// recycled buffer that hold returns (bufpool.go).
			closeView()
			cb := r.copies.get(h.Size())
			b, err := s.readBatch(cb.b[:0], h)
			if err != nil {
				cb.drop()
				return nil, start, err
			}
			hold.add(cb)
			cb.drop() // hold's reference remains
			parts = append(parts, b[:len(b):len(b)])
			n += h.Size()
			s.advance(h)
			continue
		}
		if vstart >= 0 && !(&mem[0] == &view[0] && within == vend) {
			closeView() // the next chunk: a new view
		}
		b := mem[within : within+int64(h.Size())]
		if c.cur.verified(within, h.Size()) {
			r.nVerified.Add(1) // checked as it arrived (verify.go)
		} else if crc := kafkaproto.BatchCRC(b); crc != h.CRC {
			return nil, start, s.corrupt("batch %d: crc %08x, computed %08x", h.BaseOffset, h.CRC, crc)
		}
		if vstart < 0 {
			// Held from the start: once the cursor moves on, the chunk is
			// no longer pinned and may be evicted.
			hold.add(c.cur.buf)
			view, vstart = mem, within
		}
		vend = within + int64(h.Size())
		n += h.Size()
		s.advance(h)
	}
}

// ---- OffsetForTimestamp ----

// OffsetForTimestamp returns the first offset in seg whose record timestamp
// is >= ts, and that record's timestamp (found false when seg has none).
// Records of batches whose max timestamp is below ts are skipped unread; the
// first batch that may qualify is read whole, CRC-checked and decoded
// (decompressing it) to find the exact record, like the local log does, so
// the answer is the same on both sides of the local / remote boundary. A
// log-append-time batch answers with its base offset and its timestamp.
// The time index narrows where the scan starts; the manifest's max timestamp
// ends it early.
func (r *Reader) OffsetForTimestamp(ctx context.Context, seg SegmentRef, ts int64) (offset, timestamp int64, found bool, err error) {
	ix, err := r.segIndex(ctx, seg)
	if err != nil {
		return -1, -1, false, err
	}
	if ix.m.MaxTimestamp < ts {
		return -1, -1, false, nil
	}
	_, err = r.scan(ctx, seg, ix, fmt.Sprintf("offset for timestamp %d", ts), func(c *cursor) error {
		var err error
		offset, timestamp, found, err = r.searchTime(c, seg, ix, ts)
		return err
	})
	if err != nil {
		return -1, -1, false, err
	}
	return offset, timestamp, found, nil
}

func (r *Reader) searchTime(c *cursor, seg SegmentRef, ix *segIndex, ts int64) (int64, int64, bool, error) {
	from := ix.timeFloor(ts)
	if from > seg.EndOffset {
		return -1, -1, false, nil
	}
	s := newScanner(c, seg, from)
	var buf []byte
	for {
		h, done, err := s.next()
		if err != nil {
			return -1, -1, false, err
		}
		if done {
			return -1, -1, false, nil
		}
		if h.LastOffset() >= from && h.MaxTimestamp >= ts {
			if buf, err = s.readBatch(buf[:0], h); err != nil {
				return -1, -1, false, err
			}
			if h.TimestampType() == 1 {
				return max(h.BaseOffset, from), h.MaxTimestamp, true, nil
			}
			_, recs, err := kafkaproto.DecodeRecords(buf)
			if err != nil {
				return -1, -1, false, s.corrupt("decode batch %d: %v", h.BaseOffset, err)
			}
			for _, rec := range recs {
				off, t := h.BaseOffset+int64(rec.OffsetDelta), h.BaseTimestamp+rec.TimestampDelta
				if off >= from && t >= ts {
					return off, t, true, nil
				}
			}
		}
		s.advance(h)
	}
}
