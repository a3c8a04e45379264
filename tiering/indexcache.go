package tiering

import (
	"container/list"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
)

// In-memory cache of remote segments' manifests and decoded offset and time
// indexes (remote.log.index.file.cache.total.size.bytes). Segments are
// immutable under their id, so entries never go stale; they leave by LRU
// eviction when the cache is over its byte budget.

const (
	offsetIndexEntrySize = 8  // relative offset uint32, position uint32
	timeIndexEntrySize   = 12 // timestamp int64, relative offset uint32
	// indexEntryOverhead is what an entry costs besides its index slices
	// (manifest, map and list bookkeeping), roughly.
	indexEntryOverhead = 1024
	// maxManifestBytes bounds the manifest object read.
	maxManifestBytes = 1 << 20
)

// remoteOffsetEntry: the batch holding offset base+rel starts at pos.
type remoteOffsetEntry struct {
	rel uint32
	pos uint32
}

// remoteTimeEntry: every record up to offset base+rel has a timestamp <= ts.
type remoteTimeEntry struct {
	ts  int64
	rel uint32
}

// segIndex is the cached, checked view of one remote segment.
type segIndex struct {
	id     [16]byte
	m      *Manifest
	logKey string
	offs   []remoteOffsetEntry
	times  []remoteTimeEntry
	cs     int64   // the Reader's chunk size
	starts []int64 // where each chunk of the .log starts (chunkStarts)
	cost   int64
}

// decodeRemoteIndexes decodes and checks the offset and time index sections
// of m (offIdx and timeIdx are their bytes) against the segment: whole
// entries, offsets inside [BaseOffset, EndOffset], offset-index relative
// offsets and positions strictly increasing with positions inside the log,
// time-index timestamps and offsets non-decreasing. Errors wrap ErrCorrupt.
func decodeRemoteIndexes(m *Manifest, offIdx, timeIdx []byte) ([]remoteOffsetEntry, []remoteTimeEntry, error) {
	span := m.EndOffset - m.BaseOffset
	if len(offIdx)%offsetIndexEntrySize != 0 {
		return nil, nil, fmt.Errorf("%w: offset index of %d bytes", ErrCorrupt, len(offIdx))
	}
	if len(timeIdx)%timeIndexEntrySize != 0 {
		return nil, nil, fmt.Errorf("%w: time index of %d bytes", ErrCorrupt, len(timeIdx))
	}
	offs := make([]remoteOffsetEntry, 0, len(offIdx)/offsetIndexEntrySize)
	for i := 0; i < len(offIdx); i += offsetIndexEntrySize {
		e := remoteOffsetEntry{binary.BigEndian.Uint32(offIdx[i:]), binary.BigEndian.Uint32(offIdx[i+4:])}
		n := len(offs)
		switch {
		case int64(e.rel) > span:
			return nil, nil, fmt.Errorf("%w: offset index entry %d: offset %d past segment end %d", ErrCorrupt, n, m.BaseOffset+int64(e.rel), m.EndOffset)
		case int64(e.pos) >= m.LogSize:
			return nil, nil, fmt.Errorf("%w: offset index entry %d: position %d outside a %d-byte log", ErrCorrupt, n, e.pos, m.LogSize)
		case n > 0 && (e.rel <= offs[n-1].rel || e.pos <= offs[n-1].pos):
			return nil, nil, fmt.Errorf("%w: offset index entry %d out of order", ErrCorrupt, n)
		}
		offs = append(offs, e)
	}
	times := make([]remoteTimeEntry, 0, len(timeIdx)/timeIndexEntrySize)
	for i := 0; i < len(timeIdx); i += timeIndexEntrySize {
		e := remoteTimeEntry{int64(binary.BigEndian.Uint64(timeIdx[i:])), binary.BigEndian.Uint32(timeIdx[i+8:])}
		n := len(times)
		switch {
		case int64(e.rel) > span:
			return nil, nil, fmt.Errorf("%w: time index entry %d: offset %d past segment end %d", ErrCorrupt, n, m.BaseOffset+int64(e.rel), m.EndOffset)
		case n > 0 && (e.ts < times[n-1].ts || e.rel < times[n-1].rel):
			return nil, nil, fmt.Errorf("%w: time index entry %d out of order", ErrCorrupt, n)
		}
		times = append(times, e)
	}
	return offs, times, nil
}

// checkManifest verifies that m describes seg (the etcd record the caller
// holds) and that its index sections can be read.
func checkManifest(m *Manifest, seg SegmentRef) error {
	switch {
	case m.SegmentID != hex.EncodeToString(seg.ID[:]):
		return fmt.Errorf("%w: manifest of segment %s, want %x", ErrCorrupt, m.SegmentID, seg.ID[:])
	case m.TopicID != hex.EncodeToString(seg.TopicID[:]):
		return fmt.Errorf("%w: manifest of topic id %s, want %x", ErrCorrupt, m.TopicID, seg.TopicID[:])
	case seg.Topic != "" && m.Topic != seg.Topic:
		return fmt.Errorf("%w: manifest of topic %q, want %q", ErrCorrupt, m.Topic, seg.Topic)
	case m.Partition != seg.Partition:
		return fmt.Errorf("%w: manifest of partition %d, want %d", ErrCorrupt, m.Partition, seg.Partition)
	case m.BaseOffset != seg.BaseOffset || m.EndOffset != seg.EndOffset:
		return fmt.Errorf("%w: manifest offsets %d..%d, segment record says %d..%d", ErrCorrupt, m.BaseOffset, m.EndOffset, seg.BaseOffset, seg.EndOffset)
	case seg.SizeBytes > 0 && m.LogSize != seg.SizeBytes:
		return fmt.Errorf("%w: manifest log size %d, segment record says %d", ErrCorrupt, m.LogSize, seg.SizeBytes)
	case m.EndOffset-m.BaseOffset > 1<<32-1:
		return fmt.Errorf("%w: manifest offsets %d..%d span more than relative offsets can", ErrCorrupt, m.BaseOffset, m.EndOffset)
	}
	// A batch is at least a header, so an index has at most one entry per
	// header-sized slice of the log.
	maxEntries := m.LogSize/61 + 1
	if m.OffsetIndex.Len > maxEntries*offsetIndexEntrySize || m.TimeIndex.Len > maxEntries*timeIndexEntrySize {
		return fmt.Errorf("%w: index sections of %d and %d bytes for a %d-byte log", ErrCorrupt, m.OffsetIndex.Len, m.TimeIndex.Len, m.LogSize)
	}
	return nil
}

// floor returns the log position to start scanning for offset and the
// offset the index claims for the batch there (-1 at position 0 when no
// entry applies).
func (ix *segIndex) floor(offset int64) (pos int64, indexed int64) {
	rel := offset - ix.m.BaseOffset
	i := sort.Search(len(ix.offs), func(i int) bool { return int64(ix.offs[i].rel) > rel })
	if i == 0 {
		return 0, -1
	}
	e := ix.offs[i-1]
	return int64(e.pos), ix.m.BaseOffset + int64(e.rel)
}

// timeFloor returns the first offset that may hold a timestamp >= ts: one
// past the last time-index entry whose timestamp is below ts.
func (ix *segIndex) timeFloor(ts int64) int64 {
	i := sort.Search(len(ix.times), func(i int) bool { return ix.times[i].ts >= ts })
	if i == 0 {
		return ix.m.BaseOffset
	}
	return ix.m.BaseOffset + int64(ix.times[i-1].rel) + 1
}

// Chunks: the ranges of a segment's .log fetched with one ranged GET each
// and cached whole. Chunk n starts at starts[n] and ends where chunk n+1
// starts (the last at the end of the log). Chunks start at batch
// boundaries, so that no batch straddles two of them — a straddling batch
// must be copied out of both and CRC-checked at read time, while a batch
// inside one chunk goes to the client as a view of it, checked as its bytes
// arrived (verify.go). Chunk n >= 1 starts at the first offset-index
// position in [n*cs, n*cs + cs/chunkSlackDiv): every index position is a
// batch's start, and the index has one at least every index.interval.bytes.
// Where it has none in that range (batches larger than the slack), the
// chunk starts at n*cs and the batch across it is copied as before. A tail
// shorter than the slack joins the chunk before it. So every chunk is
// smaller than cs + cs/chunkSlackDiv, and larger than cs - cs/chunkSlackDiv
// but for the last.
const chunkSlackDiv = 8

// chunkSlack is how far past n*cs chunk n may start.
func chunkSlack(cs int64) int64 { return max(cs/chunkSlackDiv, 1) }

// chunkStarts lays out the chunks of a log of logSize bytes with the offset
// index offs (positions strictly increasing, inside the log).
func chunkStarts(offs []remoteOffsetEntry, logSize, cs int64) []int64 {
	if logSize <= 0 {
		return nil
	}
	slack := chunkSlack(cs)
	starts := make([]int64, 1, logSize/cs+1)
	j := 0
	for lo := cs; lo < logSize && logSize-lo >= slack; lo += cs {
		for j < len(offs) && int64(offs[j].pos) < lo {
			j++
		}
		b := lo
		if j < len(offs) && int64(offs[j].pos) < lo+slack {
			b = int64(offs[j].pos)
		}
		starts = append(starts, b)
	}
	return starts
}

// maxChunkSize bounds the size of a chunk laid out with chunk size cs.
func maxChunkSize(cs int64) int64 { return cs + chunkSlack(cs) }

// chunks is the number of chunks of the segment's .log.
func (ix *segIndex) chunks() int64 { return int64(len(ix.starts)) }

// chunkSpan returns where chunk n starts in the log and its size.
func (ix *segIndex) chunkSpan(n int64) (start, size int64) {
	start, end := ix.starts[n], ix.m.LogSize
	if n+1 < int64(len(ix.starts)) {
		end = ix.starts[n+1]
	}
	return start, end - start
}

// chunkAt returns the chunk holding log position pos (0 for pos < 0, the
// last chunk past the end). Chunk pos/cs starts at or after n*cs and less
// than cs/chunkSlackDiv after it, so pos is in that chunk or the one
// before.
func (ix *segIndex) chunkAt(pos int64) int64 {
	if pos <= 0 || len(ix.starts) == 0 {
		return 0
	}
	n := min(pos/ix.cs, int64(len(ix.starts))-1)
	if ix.starts[n] > pos {
		n--
	}
	return n
}

// indexEntry is one index-cache slot: loading until done closes, then
// either ix or err (a failed load leaves the map at once).
type indexEntry struct {
	id   [16]byte
	done chan struct{}
	ix   *segIndex
	err  error
	elem *list.Element // (indexCache.mu) in lru once loaded
}

// indexCache is an LRU of segIndex by bytes. Its mu is a leaf lock.
type indexCache struct {
	limit int64

	mu      sync.Mutex
	entries map[[16]byte]*indexEntry
	lru     *list.List
	bytes   int64
}

func newIndexCache(limit int64) *indexCache {
	return &indexCache{limit: limit, entries: map[[16]byte]*indexEntry{}, lru: list.New()}
}

// lookup returns the entry of id, creating a loading one when absent
// (created: the caller starts the load).
func (c *indexCache) lookup(id [16]byte) (e *indexEntry, created bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e = c.entries[id]; e != nil {
		if e.elem != nil {
			c.lru.MoveToFront(e.elem)
		}
		return e, false
	}
	e = &indexEntry{id: id, done: make(chan struct{})}
	c.entries[id] = e
	return e, true
}

// finish ends e's load and evicts what no longer fits (never e itself,
// which its waiters are about to use; it may go on the next insert).
func (c *indexCache) finish(e *indexEntry, ix *segIndex, err error) {
	c.mu.Lock()
	if err != nil {
		e.err = err
		if c.entries[e.id] == e {
			delete(c.entries, e.id)
		}
	} else if c.entries[e.id] != e {
		e.ix = ix // forgotten while loading: serve the waiters, keep nothing
	} else {
		e.ix = ix
		e.elem = c.lru.PushFront(e)
		c.bytes += ix.cost
		for b := c.lru.Back(); b != nil && b != e.elem && c.bytes > c.limit; {
			prev := b.Prev()
			old := b.Value.(*indexEntry)
			c.lru.Remove(b)
			delete(c.entries, old.id)
			c.bytes -= old.ix.cost
			b = prev
		}
	}
	c.mu.Unlock()
	close(e.done)
}

// peek reports whether id is cached or loading, and its index once loaded
// (nil while loading). It does not count as a use.
func (c *indexCache) peek(id [16]byte) (ix *segIndex, present bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[id]
	if e == nil {
		return nil, false
	}
	if e.elem != nil {
		return e.ix, true
	}
	return nil, true
}

// forget drops the entry of id.
func (c *indexCache) forget(id [16]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[id]
	if e == nil {
		return
	}
	delete(c.entries, id)
	if e.elem != nil {
		c.lru.Remove(e.elem)
		e.elem = nil
		c.bytes -= e.ix.cost
	}
}

func (c *indexCache) size() (bytes int64, entries int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, c.lru.Len()
}
