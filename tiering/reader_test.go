package tiering

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratabroker/strata/kafkaproto"
	"github.com/stratabroker/strata/remote"
)

// ---- test segments ----

// rtBatch is one batch of a test segment.
type rtBatch struct {
	base, last int64
	pos        int64
	b          []byte
}

// rtRecord is one record with the timestamp a reader sees (log-append-time
// batches give every record the batch's max timestamp).
type rtRecord struct {
	offset, ts int64
}

// rtSeg is a segment uploaded as objects.go describes.
type rtSeg struct {
	ref     SegmentRef
	log     []byte
	batches []rtBatch
	records []rtRecord
	maxTs   int64
}

// rtOptions shape a test segment.
type rtOptions struct {
	base          int64
	batches       int
	indexInterval int // bytes between offset-index entries; 0 = no index entries
	// mutate may change the objects before they are stored.
	mutate func(log, indexes []byte, m *Manifest) (newLog, newIndexes, manifest []byte)
}

// rtDeltas are record timestamp deltas inside a batch (not monotonic, as
// producers may send them).
var rtDeltas = []int64{0, 30, 10, 20}

// rtBuild builds the batches of a segment: batch i has 1+i%4 records with
// values of varying length; every 5th batch is zstd-compressed and batch 7
// is log-append-time.
func rtBuild(t testing.TB, o rtOptions) *rtSeg {
	t.Helper()
	s := &rtSeg{}
	next := o.base
	for i := 0; i < o.batches; i++ {
		n := 1 + i%4
		baseTs := int64(1_000_000 + i*100)
		recs := make([]kafkaproto.Record, n)
		for j := range recs {
			val := bytes.Repeat([]byte{byte('a' + (i+j)%26)}, 20+((i*37+j*11)%260))
			recs[j] = kafkaproto.Record{OffsetDelta: int32(j), TimestampDelta: rtDeltas[j], Key: fmt.Appendf(nil, "k%d", next+int64(j)), Value: val}
		}
		codec := kafkaproto.CodecNone
		if i%5 == 4 {
			codec = kafkaproto.CodecZstd
		}
		b, err := kafkaproto.BuildBatch(kafkaproto.BatchHeader{BaseTimestamp: baseTs, ProducerID: -1, BaseSequence: -1}, recs, codec)
		if err != nil {
			t.Fatal(err)
		}
		kafkaproto.StampBaseOffset(b, next)
		kafkaproto.StampLeaderEpoch(b, 3)
		logAppend := i == 7
		if logAppend {
			kafkaproto.SetLogAppendTime(b, baseTs+50)
		}
		h, err := kafkaproto.ParseBatchHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		for j := range recs {
			ts := baseTs + rtDeltas[j]
			if logAppend {
				ts = h.MaxTimestamp
			}
			s.records = append(s.records, rtRecord{next + int64(j), ts})
		}
		s.maxTs = max(s.maxTs, h.MaxTimestamp)
		s.batches = append(s.batches, rtBatch{base: next, last: h.LastOffset(), pos: int64(len(s.log)), b: b})
		s.log = append(s.log, b...)
		next = h.LastOffset() + 1
	}
	s.ref = SegmentRef{Topic: "orders", TopicID: [16]byte{0xaa, 1}, Partition: 2, ID: [16]byte{0xbb, byte(o.base), byte(o.batches)},
		BaseOffset: o.base, EndOffset: next - 1, SizeBytes: int64(len(s.log))}
	return s
}

// rtIndexes builds the offset and time indexes the way the local log does:
// an entry every interval bytes (never at position 0), the time index
// holding the max timestamp so far before each indexed batch, plus a last
// time entry at the segment's end.
func (s *rtSeg) rtIndexes(interval int) (offIdx, timeIdx []byte) {
	var since, curMax, lastIdxTs int64 = 0, -1, -1
	base := s.ref.BaseOffset
	for _, b := range s.batches {
		h, _ := kafkaproto.ParseBatchHeader(b.b)
		if interval > 0 && b.pos > 0 && since >= int64(interval) {
			offIdx = binary.BigEndian.AppendUint32(offIdx, uint32(b.base-base))
			offIdx = binary.BigEndian.AppendUint32(offIdx, uint32(b.pos))
			if curMax > lastIdxTs {
				timeIdx = binary.BigEndian.AppendUint64(timeIdx, uint64(curMax))
				timeIdx = binary.BigEndian.AppendUint32(timeIdx, uint32(b.base-1-base))
				lastIdxTs = curMax
			}
			since = 0
		}
		since += int64(len(b.b))
		curMax = max(curMax, h.MaxTimestamp)
	}
	if interval > 0 && curMax > lastIdxTs {
		timeIdx = binary.BigEndian.AppendUint64(timeIdx, uint64(curMax))
		timeIdx = binary.BigEndian.AppendUint32(timeIdx, uint32(s.ref.EndOffset-base))
	}
	return offIdx, timeIdx
}

// rtUpload stores the segment's .log, .indexes and .manifest in st.
func rtUpload(t testing.TB, st remote.Storage, s *rtSeg, o rtOptions) {
	t.Helper()
	offIdx, timeIdx := s.rtIndexes(o.indexInterval)
	var idx []byte
	section := func(b []byte) Section {
		sec := Section{Pos: int64(len(idx)), Len: int64(len(b))}
		idx = append(idx, b...)
		return sec
	}
	m := &Manifest{
		Version: ManifestVersion, Topic: s.ref.Topic, TopicID: hex.EncodeToString(s.ref.TopicID[:]), Partition: s.ref.Partition,
		SegmentID: hex.EncodeToString(s.ref.ID[:]), BaseOffset: s.ref.BaseOffset, EndOffset: s.ref.EndOffset,
		MaxTimestamp: s.maxTs, BrokerID: 1, LeaderEpoch: 3, Epochs: []ManifestEpoch{{Epoch: 3, StartOffset: s.ref.BaseOffset}},
		LogSize: int64(len(s.log)), LogCRC32C: crc32.Checksum(s.log, crc32.MakeTable(crc32.Castagnoli)),
		OffsetIndex:  section(offIdx),
		TimeIndex:    section(timeIdx),
		ProducerSnap: section([]byte("producer-snapshot-payload")),
		EpochHistory: section([]byte("leader-epoch-history-payload")),
		CreatedMs:    time.Now().UnixMilli(),
	}
	m.IndexesSize = int64(len(idx))
	logB := s.log
	mb, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if o.mutate != nil {
		logB, idx, mb = o.mutate(bytes.Clone(logB), idx, m)
	}
	ctx := context.Background()
	for _, obj := range []struct {
		ext string
		b   []byte
	}{{ExtLog, logB}, {ExtIndexes, idx}, {ExtManifest, mb}} {
		key := SegmentKey(s.ref.Topic, s.ref.TopicID, s.ref.Partition, s.ref.BaseOffset, s.ref.ID, obj.ext)
		if err := st.Put(ctx, key, bytes.NewReader(obj.b), int64(len(obj.b))); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
}

func (s *rtSeg) key(ext string) string {
	return SegmentKey(s.ref.Topic, s.ref.TopicID, s.ref.Partition, s.ref.BaseOffset, s.ref.ID, ext)
}

// expect is what Read must return, computed by brute force.
func (s *rtSeg) expect(offset int64, maxBytes int, minOne bool) []byte {
	var out []byte
	for _, b := range s.batches {
		if b.last < offset {
			continue
		}
		if len(out)+len(b.b) > maxBytes && !(minOne && len(out) == 0) {
			break
		}
		out = append(out, b.b...)
	}
	return out
}

// expectTime is what OffsetForTimestamp must return, by brute force.
func (s *rtSeg) expectTime(ts int64) (int64, int64, bool) {
	for _, r := range s.records {
		if r.ts >= ts {
			return r.offset, r.ts, true
		}
	}
	return -1, -1, false
}

// batchOf returns the index of the batch holding offset.
func (s *rtSeg) batchOf(offset int64) int {
	for i, b := range s.batches {
		if b.base <= offset && offset <= b.last {
			return i
		}
	}
	return -1
}

// ---- a store that counts, fails and blocks on demand ----

type rtStore struct {
	remote.Storage

	failAll atomic.Bool // every Get / GetRange fails
	failLog atomic.Bool // GetRange of .log objects fails

	mu     sync.Mutex
	counts map[string]int // "key@offset" -> GETs
	gate   chan struct{}  // when set, GetRange of .log objects waits for it to close
}

var errRTInjected = errors.New("injected: connection refused")

func (s *rtStore) count(key string, off int64) {
	s.mu.Lock()
	s.counts[fmt.Sprintf("%s@%d", key, off)]++
	s.mu.Unlock()
}

func (s *rtStore) gets(key string, off int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[fmt.Sprintf("%s@%d", key, off)]
}

func (s *rtStore) setGate(g chan struct{}) {
	s.mu.Lock()
	s.gate = g
	s.mu.Unlock()
}

func (s *rtStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s.count(key, 0)
	if s.failAll.Load() {
		return nil, fmt.Errorf("get %s: %w", key, errRTInjected)
	}
	return s.Storage.Get(ctx, key)
}

func (s *rtStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	s.count(key, off)
	isLog := strings.HasSuffix(key, ExtLog)
	if s.failAll.Load() || (isLog && s.failLog.Load()) {
		return nil, fmt.Errorf("get range %s: %w", key, errRTInjected)
	}
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if isLog && gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Storage.GetRange(ctx, key, off, length)
}

// ---- harness ----

type rtEnv struct {
	st  *rtStore
	r   *Reader
	dir string // cache dir
}

func rtNewStore(t testing.TB) *rtStore {
	t.Helper()
	fs, err := remote.NewFS(remote.FSConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return &rtStore{Storage: fs, counts: map[string]int{}}
}

func rtNewReader(t testing.TB, st remote.Storage, cfg ReaderConfig) *Reader {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = t.TempDir()
	}
	r, err := NewReader(st, cfg, rtLogger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// rtLogger drops the reader's logs (corruption tests log on purpose).
var rtLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// rtSetup uploads one segment and opens a reader on it.
func rtSetup(t testing.TB, o rtOptions, cfg ReaderConfig) (*rtEnv, *rtSeg) {
	t.Helper()
	st := rtNewStore(t)
	s := rtBuild(t, o)
	rtUpload(t, st, s, o)
	if cfg.CacheDir == "" {
		cfg.CacheDir = t.TempDir()
	}
	return &rtEnv{st: st, r: rtNewReader(t, st, cfg), dir: cfg.CacheDir}, s
}

// rtEventually polls cond every few milliseconds for at most d.
func rtEventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// rtIdle waits until no chunk fetch is in flight.
func rtIdle(t testing.TB, r *Reader) {
	t.Helper()
	rtEventually(t, 5*time.Second, "chunk fetches to finish", func() bool {
		_, loading := r.chunks.stats()
		return loading == 0
	})
}

func rtRead(t testing.TB, r *Reader, s *rtSeg, offset int64, maxBytes int, minOne bool) []byte {
	t.Helper()
	var h Hold
	defer h.Release()
	parts, err := r.ReadParts(context.Background(), s.ref, offset, maxBytes, minOne, &h)
	if err != nil {
		t.Fatalf("Read(%d, %d, %v): %v", offset, maxBytes, minOne, err)
	}
	got := ownedParts(parts, &h)
	want := s.expect(offset, maxBytes, minOne)
	if !bytes.Equal(got, want) {
		t.Fatalf("Read(%d, %d, %v): %d bytes, want %d", offset, maxBytes, minOne, len(got), len(want))
	}
	if !r.chunks.mem {
		if len(parts) > 1 {
			t.Fatalf("Read(%d, %d, %v): %d parts from the disk cache, want one copy", offset, maxBytes, minOne, len(parts))
		}
		return got
	}
	// The memory cache answers with views of chunks: each part lies in
	// one chunk or is one batch straddling two, and no part is empty.
	ix := rtIndex(t, r, s)
	pos := int64(bytes.Index(s.log, want))
	for i, p := range parts {
		oneBatch := s.batchAt(pos) == len(p)
		if len(p) == 0 || (ix.chunkAt(pos) != ix.chunkAt(pos+int64(len(p))-1) && !oneBatch) {
			t.Fatalf("Read(%d, %d, %v): part %d of %d bytes at %d crosses chunks %v", offset, maxBytes, minOne, i, len(p), pos, ix.starts)
		}
		pos += int64(len(p))
	}
	return got
}

// rtIndex is the reader's cached index of s (loaded by a Read before).
func rtIndex(t testing.TB, r *Reader, s *rtSeg) *segIndex {
	t.Helper()
	ix, ok := r.index.peek(s.ref.ID)
	if !ok || ix == nil {
		t.Fatalf("segment %x: no index in the cache", s.ref.ID[:])
	}
	return ix
}

// batchAt is the size of the batch at log position pos, 0 if none starts there.
func (s *rtSeg) batchAt(pos int64) int {
	p := int64(0)
	for _, b := range s.batches {
		if p == pos {
			return len(b.b)
		}
		p += int64(len(b.b))
	}
	return 0
}

// rtCacheFiles sums the chunk files in dir.
//
// Background fetches may evict (remove) a chunk file between the listing
// and its stat: a file gone by then is not counted.
func rtCacheFiles(t testing.TB, dir string) (n int, size int64) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), chunkSuffix) {
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
			size += fi.Size()
		}
	}
	return n, size
}

// ---- tests ----

func TestReaderReadsEveryOffset(t *testing.T) {
	for _, tc := range []struct {
		name      string
		chunk     int64
		interval  int
		batchBase int64
	}{
		{"1KiB chunks", 1024, 400, 0},
		{"odd chunks", 777, 1000, 5_000_000_000},
		{"one chunk", 0, 400, 42},
		{"no index entries", 1024, 0, 100},
		{"memory cache", 1024, 400, 7},
		{"memory cache, one chunk", 0, 400, 9}, // answers are views of the chunk
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ReaderConfig{ChunkSize: tc.chunk, Memory: strings.HasPrefix(tc.name, "memory cache")}
			if cfg.Memory && tc.chunk > 0 {
				cfg.CacheBytes = 3 * 1024 // evicts as it goes
			}
			e, s := rtSetup(t, rtOptions{base: tc.batchBase, batches: 40, indexInterval: tc.interval}, cfg)
			if tc.chunk > 0 && int64(len(s.log)) < 8*tc.chunk {
				t.Fatalf("segment of %d bytes is too small to cross chunks", len(s.log))
			}
			for off := s.ref.BaseOffset; off <= s.ref.EndOffset; off++ {
				rtRead(t, e.r, s, off, 1<<30, false) // to the segment's end
				rtRead(t, e.r, s, off, 1500, true)
				rtRead(t, e.r, s, off, 1, true) // exactly the batch holding off
			}
			if cfg.Memory {
				if ents, _ := os.ReadDir(e.dir); len(ents) != 0 {
					t.Fatalf("memory cache wrote %d files", len(ents))
				}
				if st := e.r.Stats(); cfg.CacheBytes > 0 && st.CacheBytes > 3*1024 {
					t.Fatalf("memory cache holds %d bytes, bound 3072", st.CacheBytes)
				}
			}
		})
	}
}

// An answer that is a view of a memory chunk must not let an append write
// into the cache: its capacity ends at its length, and the next reader
// still sees the segment's bytes. (Callers never write into answers.)
func TestReaderMemoryViewsAreReadOnly(t *testing.T) {
	e, s := rtSetup(t, rtOptions{batches: 20, indexInterval: 300}, ReaderConfig{Memory: true})
	ctx := context.Background()
	got, err := e.r.Read(ctx, s.ref, s.ref.BaseOffset, 1<<30, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, s.log) {
		t.Fatalf("read %d bytes, want the whole %d-byte log", len(got), len(s.log))
	}
	if cap(got) != len(got) {
		t.Fatalf("answer has cap %d > len %d: an append would write into the cache", cap(got), len(got))
	}
	first := s.batches[0]
	part, err := e.r.Read(ctx, s.ref, first.base, len(first.b), false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(part, first.b) || cap(part) != len(part) {
		t.Fatalf("first batch: %d bytes cap %d, want %d bytes cap = len", len(part), cap(part), len(first.b))
	}
	_ = append(part, bytes.Repeat([]byte{0xEE}, 64)...)
	again, err := e.r.Read(ctx, s.ref, s.ref.BaseOffset, 1<<30, false)
	if err != nil || !bytes.Equal(again, s.log) {
		t.Fatalf("after an append to an answer the reader served %d bytes (%v), want the log", len(again), err)
	}
}

func TestReaderMaxBytesAndMinOne(t *testing.T) {
	e, s := rtSetup(t, rtOptions{batches: 12, indexInterval: 300}, ReaderConfig{ChunkSize: 1024})
	b0, b1, b2 := len(s.batches[0].b), len(s.batches[1].b), len(s.batches[2].b)
	mid := s.batches[1].base + (s.batches[1].last-s.batches[1].base)/2
	for _, tc := range []struct {
		name     string
		offset   int64
		maxBytes int
		minOne   bool
		batches  int // from the batch holding offset
	}{
		{"below first batch", 0, b0 - 1, false, 0},
		{"below first batch, minOne", 0, b0 - 1, true, 1},
		{"zero, minOne", 0, 0, true, 1},
		{"zero", 0, 0, false, 0},
		{"negative", 0, -5, false, 0},
		{"exactly one", 0, b0, false, 1},
		{"exactly two", 0, b0 + b1, true, 2},
		{"two minus one", 0, b0 + b1 - 1, true, 1},
		{"mid batch starts with its batch", mid, b1 + b2, false, 2},
		{"everything", 0, 1 << 30, false, len(s.batches)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.r.Read(context.Background(), s.ref, tc.offset, tc.maxBytes, tc.minOne)
			if err != nil {
				t.Fatal(err)
			}
			first := s.batchOf(tc.offset)
			var want []byte
			for _, b := range s.batches[first : first+tc.batches] {
				want = append(want, b.b...)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want %d (%d batches)", len(got), len(want), tc.batches)
			}
		})
	}
}

func TestReaderOffsetOutsideSegment(t *testing.T) {
	e, s := rtSetup(t, rtOptions{base: 100, batches: 5, indexInterval: 300}, ReaderConfig{})
	for _, off := range []int64{-1, 0, 99, s.ref.EndOffset + 1, 1 << 40} {
		_, err := e.r.Read(context.Background(), s.ref, off, 1<<20, true)
		if !errors.Is(err, ErrNotTiered) {
			t.Fatalf("Read(%d) = %v, want ErrNotTiered", off, err)
		}
	}
	if got := e.st.gets(s.key(ExtManifest), 0); got != 0 {
		t.Fatalf("out-of-range reads fetched the manifest %d times", got)
	}
}

func TestReaderCacheHits(t *testing.T) {
	e, s := rtSetup(t, rtOptions{batches: 30, indexInterval: 400}, ReaderConfig{ChunkSize: 1024, PrefetchChunks: -1})
	chunks := (int64(len(s.log)) + 1023) / 1024
	rtRead(t, e.r, s, 0, 1<<30, false)
	st := e.r.Stats()
	// The first chunk is a miss; the Read starts the others in parallel
	// (warm), so they count as hits on chunks already in flight.
	if st.Gets != chunks+2 || st.CacheMisses < 1 || st.CacheMisses+st.CacheHits != chunks || st.PrefetchGets != 0 {
		t.Fatalf("first read: %+v, want %d gets (chunks + manifest + indexes), %d lookups", st, chunks+2, chunks)
	}
	if st.CacheBytes != int64(len(s.log)) {
		t.Fatalf("cache holds %d bytes, want %d", st.CacheBytes, len(s.log))
	}
	if st.BytesFetched <= int64(len(s.log)) {
		t.Fatalf("fetched %d bytes, want more than the log's %d (indexes, manifest)", st.BytesFetched, len(s.log))
	}
	rtRead(t, e.r, s, 0, 1<<30, false)
	mid := s.batches[15].base
	rtRead(t, e.r, s, mid, 1<<30, false)
	st2 := e.r.Stats()
	if st2.Gets != st.Gets || st2.CacheMisses != st.CacheMisses || st2.BytesFetched != st.BytesFetched {
		t.Fatalf("re-reads went to the store: %+v after %+v", st2, st)
	}
	if st2.CacheHits < st.CacheHits+chunks+1 {
		t.Fatalf("re-reads: %d cache hits, want at least %d", st2.CacheHits, st.CacheHits+chunks+1)
	}
	ix := rtIndex(t, e.r, s)
	if ix.chunks() != chunks {
		t.Fatalf("%d chunks, want %d", ix.chunks(), chunks)
	}
	for n := int64(0); n < chunks; n++ {
		at, _ := ix.chunkSpan(n)
		if got := e.st.gets(s.key(ExtLog), at); got != 1 {
			t.Fatalf("chunk %d (at %d) fetched %d times", n, at, got)
		}
	}
	if n, size := rtCacheFiles(t, e.dir); int64(n) != chunks || size != int64(len(s.log)) {
		t.Fatalf("cache dir: %d files of %d bytes, want %d of %d", n, size, chunks, len(s.log))
	}
	m, err := e.r.Manifest(context.Background(), s.ref)
	if err != nil || m.EndOffset != s.ref.EndOffset || m.LogSize != int64(len(s.log)) {
		t.Fatalf("Manifest: %+v, %v", m, err)
	}
	if got := e.st.gets(s.key(ExtManifest), 0); got != 1 {
		t.Fatalf("manifest fetched %d times, want 1 (cached)", got)
	}
}

func TestReaderEvictionKeepsBound(t *testing.T) {
	const chunk, limit = 1024, 3 * 1024
	e, s := rtSetup(t, rtOptions{batches: 40, indexInterval: 400}, ReaderConfig{ChunkSize: chunk, CacheBytes: limit, PrefetchChunks: -1})
	reads := 0
	for off := s.ref.BaseOffset; off <= s.ref.EndOffset && reads < 1000; reads++ {
		got := rtRead(t, e.r, s, off, 800, true)
		off = lastOffset(got) + 1
		if st := e.r.Stats(); st.CacheBytes > limit {
			t.Fatalf("cache at %d bytes over its %d-byte limit", st.CacheBytes, limit)
		}
		if _, size := rtCacheFiles(t, e.dir); size > limit {
			t.Fatalf("cache dir holds %d bytes over the %d-byte limit", size, limit)
		}
	}
	if reads < 10 {
		t.Fatalf("only %d reads", reads)
	}
	// The first chunks were evicted: reading them again fetches them again.
	rtRead(t, e.r, s, 0, 100, true)
	if got := e.st.gets(s.key(ExtLog), 0); got != 2 {
		t.Fatalf("chunk 0 fetched %d times, want 2 (evicted once)", got)
	}
}

func TestReaderEvictionSparesChunksInUse(t *testing.T) {
	st := rtNewStore(t)
	s := rtBuild(t, rtOptions{batches: 20})
	rtUpload(t, st, s, rtOptions{})
	r := rtNewReader(t, st, ReaderConfig{ChunkSize: 1024, CacheBytes: 1024, PrefetchChunks: -1})
	ix, err := r.segIndex(context.Background(), s.ref)
	if err != nil {
		t.Fatal(err)
	}
	// Pin chunk 0, then fill the cache past its limit with others.
	c0, _, err := r.acquireChunk(context.Background(), ix, 0)
	if err != nil {
		t.Fatal(err)
	}
	for n := int64(1); n <= 3; n++ {
		ch, _, err := r.acquireChunk(context.Background(), ix, n)
		if err != nil {
			t.Fatal(err)
		}
		r.chunks.release(ch)
	}
	if _, err := os.Stat(c0.path); err != nil {
		t.Fatalf("pinned chunk evicted: %v", err)
	}
	if st := r.Stats(); st.CacheBytes != 1024 {
		t.Fatalf("cache at %d bytes, want only the pinned chunk (1024)", st.CacheBytes)
	}
	r.chunks.release(c0)
	// Released and over the limit? It fits exactly, so it stays cached.
	if _, hit, _ := r.chunks.lookup(chunkKey{s.ref.ID, 0}, 1024, false); !hit {
		t.Fatal("chunk 0 gone after release although it fits")
	}
}

func TestReaderPrefetchesForSequentialReaders(t *testing.T) {
	const chunk = 1024
	const ahead = 3
	e, s := rtSetup(t, rtOptions{batches: 60, indexInterval: 400}, ReaderConfig{ChunkSize: chunk, PrefetchChunks: ahead, CacheBytes: 1 << 20})
	chunks := (int64(len(s.log)) + chunk - 1) / chunk
	// A read in the middle of the segment is not sequential: no prefetch.
	start := s.batches[20].base
	got := rtRead(t, e.r, s, start, 600, true)
	rtIdle(t, e.r)
	if st := e.r.Stats(); st.PrefetchGets != 0 {
		t.Fatalf("random read prefetched: %+v", st)
	}
	// The next read continues where it ended: prefetch the chunks after the
	// last one it touched (it peeks at the header after its last batch).
	next := lastOffset(got) + 1
	got = rtRead(t, e.r, s, next, 600, true)
	lastChunk := (s.batches[s.batchOf(lastOffset(got))+1].pos + kafkaproto.RecordBatchHeaderSize - 1) / chunk
	rtIdle(t, e.r)
	if st := e.r.Stats(); st.PrefetchGets != ahead {
		t.Fatalf("sequential read: %d prefetch GETs, want %d (%+v)", st.PrefetchGets, ahead, st)
	}
	for n := lastChunk + 1; n <= lastChunk+ahead; n++ {
		if got := e.st.gets(s.key(ExtLog), n*chunk); got != 1 {
			t.Fatalf("chunk %d fetched %d times, want 1 (prefetched)", n, got)
		}
	}
	// A reader going on to the end finds its chunks prefetched; no chunk is
	// fetched twice, and the prefetched ones were hits.
	before := e.r.Stats()
	off := lastOffset(got) + 1
	for i := 0; off <= s.ref.EndOffset && i < 1000; i++ {
		got = rtRead(t, e.r, s, off, 600, true)
		off = lastOffset(got) + 1
		rtIdle(t, e.r) // let prefetch run ahead, as a consumer's think time would
	}
	after := e.r.Stats()
	for n := int64(0); n < chunks; n++ {
		if got := e.st.gets(s.key(ExtLog), n*chunk); got > 1 {
			t.Fatalf("chunk %d fetched %d times", n, got)
		}
	}
	if after.CacheMisses != before.CacheMisses {
		t.Fatalf("sequential reader missed the cache %d times despite prefetch", after.CacheMisses-before.CacheMisses)
	}
	if after.PrefetchGets < chunks-lastChunk-1 {
		t.Fatalf("%d prefetch GETs, want at least %d", after.PrefetchGets, chunks-lastChunk-1)
	}
	if after.PrefetchGets > chunks {
		t.Fatalf("%d prefetch GETs for %d chunks", after.PrefetchGets, chunks)
	}
}

func TestReaderCorruption(t *testing.T) {
	flip := func(pos func(s *rtSeg) int64) func(*rtSeg) func([]byte, []byte, *Manifest) ([]byte, []byte, []byte) {
		return func(s *rtSeg) func([]byte, []byte, *Manifest) ([]byte, []byte, []byte) {
			return func(log, idx []byte, m *Manifest) ([]byte, []byte, []byte) {
				log[pos(s)] ^= 0x40
				mb, _ := EncodeManifest(m)
				return log, idx, mb
			}
		}
	}
	withManifest := func(edit func(m *Manifest)) func(*rtSeg) func([]byte, []byte, *Manifest) ([]byte, []byte, []byte) {
		return func(s *rtSeg) func([]byte, []byte, *Manifest) ([]byte, []byte, []byte) {
			return func(log, idx []byte, m *Manifest) ([]byte, []byte, []byte) {
				edit(m)
				mb, _ := EncodeManifest(m)
				return log, idx, mb
			}
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*rtSeg) func([]byte, []byte, *Manifest) ([]byte, []byte, []byte)
		batch  int  // read at this batch's base offset
		okPrev bool // the batch before it still reads fine
	}{
		{"record byte", flip(func(s *rtSeg) int64 { return s.batches[6].pos + 70 }), 6, true},
		{"crc byte", flip(func(s *rtSeg) int64 { return s.batches[6].pos + 17 }), 6, true},
		{"magic", flip(func(s *rtSeg) int64 { return s.batches[6].pos + 16 }), 6, true},
		{"batch length", flip(func(s *rtSeg) int64 { return s.batches[0].pos + 9 }), 0, false},
		{"base offset", flip(func(s *rtSeg) int64 { return s.batches[6].pos + 7 }), 6, true},
		{"last batch", flip(func(s *rtSeg) int64 { return s.batches[len(s.batches)-1].pos + 65 }), 11, true},
		{"truncated log", func(s *rtSeg) func([]byte, []byte, *Manifest) ([]byte, []byte, []byte) {
			return func(log, idx []byte, m *Manifest) ([]byte, []byte, []byte) {
				mb, _ := EncodeManifest(m)
				return log[:s.batches[9].pos+10], idx, mb
			}
		}, 9, false},
		{"log longer than manifest", withManifest(func(m *Manifest) { m.LogSize -= 10 }), 0, false},
		{"manifest end offset", withManifest(func(m *Manifest) { m.EndOffset++ }), 0, false},
		{"manifest segment id", withManifest(func(m *Manifest) { m.SegmentID = strings.Repeat("0", 32) }), 0, false},
		{"index section outside", withManifest(func(m *Manifest) { m.OffsetIndex.Len = m.IndexesSize + 8 }), 0, false},
		{"index section past object", withManifest(func(m *Manifest) { m.IndexesSize += 800; m.TimeIndex.Pos += 400 }), 0, false},
		{"manifest json", func(s *rtSeg) func([]byte, []byte, *Manifest) ([]byte, []byte, []byte) {
			return func(log, idx []byte, m *Manifest) ([]byte, []byte, []byte) { return log, idx, []byte("{not json") }
		}, 0, false},
		{"index of odd size", withManifest(func(m *Manifest) { m.OffsetIndex.Len -= 3 }), 0, false},
	} {
		for _, cache := range []struct {
			name string
			cfg  ReaderConfig
		}{
			{"disk", ReaderConfig{ChunkSize: 1024}},
			{"memory", ReaderConfig{ChunkSize: 1024, Memory: true}},
			{"memory one chunk", ReaderConfig{Memory: true}}, // batches verified as they arrive
		} {
			t.Run(cache.name+"/"+tc.name, func(t *testing.T) {
				st := rtNewStore(t)
				o := rtOptions{batches: 12, indexInterval: 300}
				s := rtBuild(t, o)
				o.mutate = tc.mutate(s)
				rtUpload(t, st, s, o)
				r := rtNewReader(t, st, cache.cfg)
				off := s.batches[tc.batch].base
				for try := 0; try < 2; try++ { // the second read meets the cached chunks
					got, err := r.Read(context.Background(), s.ref, off, 1<<20, true)
					if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnavailable) || errors.Is(err, remote.ErrNotFound) {
						t.Fatalf("read %d at offset %d: (%d bytes, %v), want ErrCorrupt only", try, off, len(got), err)
					}
					if got != nil {
						t.Fatalf("corrupt read returned %d bytes", len(got))
					}
				}
				if tc.okPrev {
					prev := s.batches[tc.batch-1]
					got, err := r.Read(context.Background(), s.ref, prev.base, len(prev.b), true)
					if err != nil || !bytes.Equal(got, prev.b) {
						t.Fatalf("batch before the damage: (%d bytes, %v)", len(got), err)
					}
				}
			})
		}
	}
}

func TestReaderIndexPointsElsewhere(t *testing.T) {
	st := rtNewStore(t)
	o := rtOptions{batches: 30, indexInterval: 2000}
	s := rtBuild(t, o)
	offIdx, _ := s.rtIndexes(o.indexInterval)
	n := len(offIdx) / offsetIndexEntrySize
	// Pick an entry that can claim the next batch's offset while pointing
	// at its own batch and keep the index in order.
	entry, target := -1, int64(-1)
	for i := n - 1; i >= 0 && entry < 0; i-- {
		k := s.batchOf(s.ref.BaseOffset + int64(binary.BigEndian.Uint32(offIdx[i*8:])))
		if k+1 >= len(s.batches) {
			continue
		}
		next := s.batches[k+1].base
		if i == n-1 || int64(binary.BigEndian.Uint32(offIdx[(i+1)*8:])) > next-s.ref.BaseOffset {
			entry, target = i, next
		}
	}
	if entry < 0 {
		t.Fatalf("no usable index entry among %d", n)
	}
	o.mutate = func(log, idx []byte, m *Manifest) ([]byte, []byte, []byte) {
		binary.BigEndian.PutUint32(idx[m.OffsetIndex.Pos+int64(entry)*8:], uint32(target-s.ref.BaseOffset))
		mb, _ := EncodeManifest(m)
		return log, idx, mb
	}
	rtUpload(t, st, s, o)
	r := rtNewReader(t, st, ReaderConfig{ChunkSize: 1024})
	got, err := r.Read(context.Background(), s.ref, target, 1<<20, true)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "offset index points") {
		t.Fatalf("Read through a lying index entry: (%d bytes, %v)", len(got), err)
	}
	// Offsets before that entry still read.
	rtRead(t, r, s, 0, 2000, true)
}

func TestReaderMissingObjects(t *testing.T) {
	for _, ext := range []string{ExtLog, ExtIndexes, ExtManifest} {
		t.Run(ext, func(t *testing.T) {
			e, s := rtSetup(t, rtOptions{batches: 10, indexInterval: 300}, ReaderConfig{ChunkSize: 1024})
			if err := e.st.Delete(context.Background(), s.key(ext)); err != nil {
				t.Fatal(err)
			}
			_, err := e.r.Read(context.Background(), s.ref, s.batches[3].base, 1<<20, true)
			if !errors.Is(err, ErrCorrupt) || !errors.Is(err, remote.ErrNotFound) || errors.Is(err, ErrUnavailable) {
				t.Fatalf("Read with %s deleted: %v, want ErrCorrupt and remote.ErrNotFound", ext, err)
			}
			_, _, _, err = e.r.OffsetForTimestamp(context.Background(), s.ref, 0)
			if !errors.Is(err, ErrCorrupt) || !errors.Is(err, remote.ErrNotFound) {
				t.Fatalf("OffsetForTimestamp with %s deleted: %v", ext, err)
			}
		})
	}
}

func TestReaderUnavailableDoesNotPoison(t *testing.T) {
	e, s := rtSetup(t, rtOptions{batches: 20, indexInterval: 300}, ReaderConfig{ChunkSize: 1024, PrefetchChunks: -1})
	ctx := context.Background()
	check := func(err error, what string) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errRTInjected) || errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: %v, want ErrUnavailable wrapping the store's error", what, err)
		}
	}
	// The whole store is down: the index load fails, and is not cached.
	e.st.failAll.Store(true)
	_, err := e.r.Read(ctx, s.ref, 0, 1<<20, true)
	check(err, "store down")
	_, err = e.r.Manifest(ctx, s.ref)
	check(err, "manifest, store down")
	e.st.failAll.Store(false)
	rtRead(t, e.r, s, 0, 1000, true)

	// Only chunk GETs fail: the failed chunk is not cached either.
	e.st.failLog.Store(true)
	far := s.batches[15].base
	_, err = e.r.Read(ctx, s.ref, far, 1000, true)
	check(err, "log GETs failing")
	if st := e.r.Stats(); st.CacheBytes > 2*1024 {
		t.Fatalf("cache grew to %d bytes with failing GETs", st.CacheBytes)
	}
	e.st.failLog.Store(false)
	rtRead(t, e.r, s, far, 1000, true)
	rtRead(t, e.r, s, 0, 1<<30, false)
}

func TestReaderDeadlineStillFillsCache(t *testing.T) {
	e, s := rtSetup(t, rtOptions{batches: 20, indexInterval: 300}, ReaderConfig{ChunkSize: 4096, PrefetchChunks: -1})
	if len(s.log) <= 4096 {
		t.Fatalf("log of %d bytes fits one chunk", len(s.log))
	}
	gate := make(chan struct{})
	e.st.setGate(gate)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := e.r.Read(ctx, s.ref, 0, 100, true)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read past its deadline: %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	close(gate) // the store answers late
	_, size := rtIndex(t, e.r, s).chunkSpan(0)
	rtEventually(t, 5*time.Second, "the late chunk to land in the cache", func() bool { return e.r.Stats().CacheBytes == size })
	rtRead(t, e.r, s, 0, 100, true)
	if got := e.st.gets(s.key(ExtLog), 0); got != 1 {
		t.Fatalf("chunk 0 fetched %d times, want 1 (the retry hits the cache)", got)
	}
}

func TestReaderSharesConcurrentFetches(t *testing.T) {
	e, s := rtSetup(t, rtOptions{batches: 10, indexInterval: 300}, ReaderConfig{ChunkSize: 1024, PrefetchChunks: -1})
	gate := make(chan struct{})
	e.st.setGate(gate)
	const n = 6
	off := s.batches[4].base
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			got, err := e.r.Read(context.Background(), s.ref, off, 1, true)
			if err == nil && !bytes.Equal(got, s.batches[4].b) {
				err = fmt.Errorf("got %d bytes, want batch 4", len(got))
			}
			errs <- err
		}()
	}
	rtEventually(t, 5*time.Second, "all readers waiting", func() bool { return e.r.Stats().CacheMisses >= n })
	close(gate)
	for i := 0; i < n; i++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("reader stuck")
		}
	}
	if got := e.st.gets(s.key(ExtManifest), 0); got != 1 {
		t.Fatalf("manifest fetched %d times by %d readers", got, n)
	}
	pos := s.batches[4].pos
	if got := e.st.gets(s.key(ExtLog), pos/1024*1024); got != 1 {
		t.Fatalf("chunk fetched %d times by %d readers", got, n)
	}
}

func TestReaderConcurrentReaders(t *testing.T) {
	st := rtNewStore(t)
	var segs []*rtSeg
	for i := 0; i < 3; i++ {
		o := rtOptions{base: int64(i) * 1000, batches: 30 + i*5, indexInterval: 300}
		s := rtBuild(t, o)
		rtUpload(t, st, s, o)
		segs = append(segs, s)
	}
	r := rtNewReader(t, st, ReaderConfig{ChunkSize: 1024, CacheBytes: 6 * 1024, Concurrency: 3, IndexCacheBytes: 2048})
	const workers, reads = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			var off int64 = -1
			s := segs[w%len(segs)]
			for i := 0; i < reads; i++ {
				if off < 0 || off > s.ref.EndOffset || rng.IntN(4) == 0 {
					s = segs[rng.IntN(len(segs))]
					off = s.ref.BaseOffset + rng.Int64N(s.ref.EndOffset-s.ref.BaseOffset+1)
				}
				maxBytes := 200 + rng.IntN(3000)
				got, err := r.Read(context.Background(), s.ref, off, maxBytes, true)
				if err != nil {
					errs <- fmt.Errorf("worker %d read %d: %w", w, i, err)
					return
				}
				if want := s.expect(off, maxBytes, true); !bytes.Equal(got, want) {
					errs <- fmt.Errorf("worker %d read %d at %d: %d bytes, want %d", w, i, off, len(got), len(want))
					return
				}
				off = lastOffset(got) + 1 // mostly sequential
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rtIdle(t, r)
	if st := r.Stats(); st.CacheBytes > 6*1024 {
		t.Fatalf("cache at %d bytes over its limit", st.CacheBytes)
	}
	if b, n := r.index.size(); b > 2048 && n > 1 {
		t.Fatalf("index cache at %d bytes in %d entries, over its limit", b, n)
	}
}

func TestReaderOffsetForTimestamp(t *testing.T) {
	for _, interval := range []int{0, 300} {
		t.Run(fmt.Sprintf("index every %d bytes", interval), func(t *testing.T) {
			e, s := rtSetup(t, rtOptions{base: 500, batches: 25, indexInterval: interval}, ReaderConfig{ChunkSize: 1024})
			ctx := context.Background()
			targets := []int64{-1, 0, 999_999, s.maxTs, s.maxTs + 1, 1 << 50}
			for _, r := range s.records {
				targets = append(targets, r.ts-1, r.ts, r.ts+1)
			}
			for _, ts := range targets {
				off, got, found, err := e.r.OffsetForTimestamp(ctx, s.ref, ts)
				if err != nil {
					t.Fatalf("OffsetForTimestamp(%d): %v", ts, err)
				}
				wOff, wTs, wFound := s.expectTime(ts)
				if off != wOff || got != wTs || found != wFound {
					t.Fatalf("OffsetForTimestamp(%d) = (%d, %d, %v), want (%d, %d, %v)", ts, off, got, found, wOff, wTs, wFound)
				}
			}
			// Spot checks of the cases that matter: a record later in its
			// batch with an earlier timestamp is skipped; a log-append-time
			// batch answers with its base offset; compressed batches decode.
			b1 := s.batches[1] // 2 records, deltas 0 and 30
			if off, ts, _, _ := e.r.OffsetForTimestamp(ctx, s.ref, 1_000_100+1); off != b1.base+1 || ts != 1_000_130 {
				t.Fatalf("inside batch 1: (%d, %d)", off, ts)
			}
			b3 := s.batches[3] // 4 records, deltas 0 30 10 20: ts 1_000_315 is first reached by the second record
			if off, ts, _, _ := e.r.OffsetForTimestamp(ctx, s.ref, 1_000_315); off != b3.base+1 || ts != 1_000_330 {
				t.Fatalf("inside batch 3: (%d, %d)", off, ts)
			}
			b7 := s.batches[7]
			if off, ts, _, _ := e.r.OffsetForTimestamp(ctx, s.ref, 1_000_701); off != b7.base || ts != 1_000_750 {
				t.Fatalf("log-append-time batch 7: (%d, %d)", off, ts)
			}
			b9 := s.batches[9] // zstd, 2 records
			if off, ts, _, _ := e.r.OffsetForTimestamp(ctx, s.ref, 1_000_901); off != b9.base+1 || ts != 1_000_930 {
				t.Fatalf("compressed batch 9: (%d, %d)", off, ts)
			}
		})
	}
}

func TestReaderRefetchesCorruptCacheFiles(t *testing.T) {
	e, s := rtSetup(t, rtOptions{batches: 20, indexInterval: 300}, ReaderConfig{ChunkSize: 1024, PrefetchChunks: -1})
	rtRead(t, e.r, s, 0, 1<<30, false)
	gets := e.r.Stats().Gets
	ents, err := os.ReadDir(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	// Damage one CRC-covered byte of every batch in every cached chunk (the
	// leader epoch and base offset are not covered by the CRC).
	damaged := 0
	for _, ent := range ents {
		var n, gen int64
		var id string
		if _, err := fmt.Sscanf(strings.ReplaceAll(ent.Name(), "-", " "), "%s %d %d.chunk", &id, &n, &gen); err != nil {
			t.Fatalf("cache file %s: %v", ent.Name(), err)
		}
		p := filepath.Join(e.dir, ent.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, bt := range s.batches {
			if at := bt.pos + 40 - n*1024; at >= 0 && at < int64(len(b)) {
				b[at] ^= 0xff
				damaged++
			}
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if damaged == 0 {
		t.Fatal("no cache files")
	}
	rtRead(t, e.r, s, 0, 1<<30, false)
	if got := e.r.Stats().Gets; got <= gets {
		t.Fatalf("damaged cache was served without refetching (%d GETs before, %d after)", gets, got)
	}
}

func TestReaderForget(t *testing.T) {
	e, s := rtSetup(t, rtOptions{batches: 10, indexInterval: 300}, ReaderConfig{ChunkSize: 1024})
	rtRead(t, e.r, s, 0, 1<<30, false)
	rtIdle(t, e.r)
	e.r.Forget(s.ref.ID)
	if st := e.r.Stats(); st.CacheBytes != 0 {
		t.Fatalf("cache holds %d bytes of a forgotten segment", st.CacheBytes)
	}
	if n, _ := rtCacheFiles(t, e.dir); n != 0 {
		t.Fatalf("%d chunk files of a forgotten segment", n)
	}
	for _, ext := range []string{ExtLog, ExtIndexes, ExtManifest} {
		if err := e.st.Delete(context.Background(), s.key(ext)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.r.Read(context.Background(), s.ref, 0, 1<<20, true)
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("read of a forgotten, deleted segment: %v", err)
	}
}

func TestReaderConfigAndClose(t *testing.T) {
	st := rtNewStore(t)
	for _, cfg := range []ReaderConfig{{ChunkSize: -1}, {CacheBytes: -1}, {IndexCacheBytes: -1}, {Concurrency: -1}} {
		if r, err := NewReader(st, cfg, rtLogger); err == nil {
			r.Close()
			t.Fatalf("NewReader(%+v) accepted", cfg)
		}
	}
	if _, err := NewReader(nil, ReaderConfig{}, rtLogger); err == nil {
		t.Fatal("NewReader(nil store) accepted")
	}

	// NewReader empties the cache directory of chunk files, and only of them.
	dir := t.TempDir()
	for _, name := range []string{"00-0000000001-1.chunk", "x.chunk.tmp", "keep.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := NewReader(st, ReaderConfig{CacheDir: dir}, rtLogger)
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "keep.txt" {
		t.Fatalf("cache dir after NewReader: %v", ents)
	}
	if r.cfg.ChunkSize != defaultChunkSize || r.cfg.CacheBytes != defaultCacheBytes || r.cfg.IndexCacheBytes != defaultIndexCacheBytes ||
		r.cfg.PrefetchChunks != defaultPrefetchChunks || r.cfg.Concurrency != defaultConcurrency {
		t.Fatalf("defaults: %+v", r.cfg)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s := rtBuild(t, rtOptions{batches: 3})
	rtUpload(t, st, s, rtOptions{})
	if _, err := r.Read(context.Background(), s.ref, 0, 100, true); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Read after Close: %v", err)
	}

	// Without a CacheDir the reader uses a temporary one and removes it.
	r2, err := NewReader(st, ReaderConfig{}, rtLogger)
	if err != nil {
		t.Fatal(err)
	}
	tmp := r2.cfg.CacheDir
	if got, err := r2.Read(context.Background(), s.ref, 0, 1<<20, false); err != nil || !bytes.Equal(got, s.log) {
		t.Fatalf("read with a temporary cache: (%d bytes, %v)", len(got), err)
	}
	r2.Close()
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary cache dir %s left behind: %v", tmp, err)
	}
}

func TestReaderCloseStopsBlockedFetches(t *testing.T) {
	st := rtNewStore(t)
	s := rtBuild(t, rtOptions{batches: 10})
	rtUpload(t, st, s, rtOptions{})
	r := rtNewReader(t, st, ReaderConfig{ChunkSize: 1024})
	gate := make(chan struct{}) // never opened
	st.setGate(gate)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.Read(ctx, s.ref, 0, 100, true); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Read: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop a blocked fetch")
	}
	if _, loading := r.chunks.stats(); loading != 0 {
		t.Fatalf("%d fetches still loading after Close", loading)
	}
}

func FuzzDecodeRemoteIndexes(f *testing.F) {
	s := rtBuild(f, rtOptions{batches: 12})
	off, tim := s.rtIndexes(300)
	f.Add(off, tim, int64(len(s.log)), s.ref.EndOffset)
	f.Add([]byte{0, 0, 0, 1}, []byte{}, int64(100), int64(5))
	f.Fuzz(func(t *testing.T, off, tim []byte, logSize, end int64) {
		if logSize <= 0 || end < 0 {
			return
		}
		m := &Manifest{BaseOffset: 0, EndOffset: end, LogSize: logSize}
		offs, times, err := decodeRemoteIndexes(m, off, tim)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		for i, e := range offs {
			if int64(e.pos) >= logSize || int64(e.rel) > end || (i > 0 && e.pos <= offs[i-1].pos) {
				t.Fatalf("accepted bad offset entry %d: %+v", i, e)
			}
		}
		for i, e := range times {
			if int64(e.rel) > end || (i > 0 && e.ts < times[i-1].ts) {
				t.Fatalf("accepted bad time entry %d: %+v", i, e)
			}
		}
	})
}

// TestReaderHeldViewsSurviveReuse: memory chunks are evicted and their
// buffers reused while reads go on, but never a buffer that a held view
// points into; once released, it is reused.
func TestReaderHeldViewsSurviveReuse(t *testing.T) {
	e, s := rtSetup(t, rtOptions{base: 3, batches: 60, indexInterval: 400},
		ReaderConfig{ChunkSize: 1024, CacheBytes: 3 * 1024, Memory: true, PrefetchChunks: -1})
	ctx := context.Background()
	var held Hold
	parts, err := e.r.ReadParts(ctx, s.ref, s.ref.BaseOffset, 3000, true, &held)
	if err != nil {
		t.Fatal(err)
	}
	want := s.expect(s.ref.BaseOffset, 3000, true)
	if got := ownedParts(parts, &held); !bytes.Equal(got, want) {
		t.Fatalf("first read: %d bytes, want %d", len(got), len(want))
	}
	if len(held.bufs) == 0 {
		t.Fatal("views of memory chunks were not held")
	}
	// Read the whole segment twice over with short-lived holds: every
	// chunk is evicted and buffers go round the pool.
	for round := 0; round < 2; round++ {
		for off := s.ref.BaseOffset; off <= s.ref.EndOffset; off += 7 {
			rtRead(t, e.r, s, off, 2048, true)
		}
	}
	if e.r.chunks.pool.reused.Load() == 0 {
		t.Fatal("no chunk buffer was reused")
	}
	// Batches straddling two chunks were answered as copies in recycled
	// buffers, and the held read had such a copy among its parts.
	copiesReused := int64(0)
	for _, c := range e.r.copies.classes {
		copiesReused += c.reused.Load()
	}
	if copiesReused == 0 {
		t.Fatal("no straddling batch's copy buffer was reused")
	}
	if len(parts) < 2 || len(held.bufs) < 2 {
		t.Fatalf("first read: %d parts, %d held buffers: want a straddling copy beside the views", len(parts), len(held.bufs))
	}
	if got := ownedParts(parts, &held); !bytes.Equal(got, want) {
		t.Fatal("held views and copies changed while their chunks were evicted and buffers reused")
	}
	reusedBefore := e.r.chunks.pool.reused.Load()
	held.Release()
	held.Release() // a second Release does nothing
	for off := s.ref.BaseOffset; off <= s.ref.EndOffset; off += 7 {
		rtRead(t, e.r, s, off, 2048, true)
	}
	if e.r.chunks.pool.reused.Load() <= reusedBefore {
		t.Fatal("no reuse after the hold was released")
	}
}

// TestReaderReadsAheadIntoNextSegment: a sequential reader nearing the end
// of a segment gets the next segment's index and first chunk fetched in
// the background, so reading on into it waits for no GET.
func TestReaderReadsAheadIntoNextSegment(t *testing.T) {
	for _, ahead := range []bool{true, false} {
		t.Run(fmt.Sprintf("successor known %v", ahead), func(t *testing.T) {
			st := rtNewStore(t)
			o1 := rtOptions{base: 100, batches: 40, indexInterval: 400}
			s1 := rtBuild(t, o1)
			o2 := rtOptions{base: s1.ref.EndOffset + 1, batches: 41, indexInterval: 400}
			s2 := rtBuild(t, o2)
			rtUpload(t, st, s1, o1)
			rtUpload(t, st, s2, o2)
			r := rtNewReader(t, st, ReaderConfig{ChunkSize: 1024, Memory: true, PrefetchChunks: 2})
			if ahead {
				r.SetSuccessor(func(seg SegmentRef) (SegmentRef, bool) {
					if seg.ID == s1.ref.ID {
						return s2.ref, true
					}
					return SegmentRef{}, false
				})
			}
			for off := s1.ref.BaseOffset; off <= s1.ref.EndOffset; {
				got := rtRead(t, r, s1, off, 900, true)
				off = lastOffset(got) + 1
			}
			next := func() (indexed, chunked bool) {
				_, indexed = r.index.peek(s2.ref.ID)
				ch := r.chunks.present(chunkKey{seg: s2.ref.ID, n: 0})
				return indexed, ch
			}
			if ahead {
				// The index loads in the background, then its chunk.
				rtEventually(t, 5*time.Second, "the next segment's first chunk", func() bool {
					_, c := next()
					return c
				})
			}
			rtIdle(t, r)
			indexed, chunked := next()
			if indexed != ahead || chunked != ahead {
				t.Fatalf("next segment's index fetched %v, first chunk %v; want %v", indexed, chunked, ahead)
			}
			if !ahead {
				return
			}
			misses := r.Stats().CacheMisses
			rtRead(t, r, s2, s2.ref.BaseOffset, 900, true)
			if m := r.Stats().CacheMisses; m != misses {
				t.Fatalf("reading on into the next segment waited for %d chunk GETs, want none", m-misses)
			}
		})
	}
}

// TestChunkStarts: the chunk layout against a brute-force reading of its
// rules, over random index layouts: chunk n >= 1 starts at the first index
// position in [n*cs, n*cs+slack) or else at n*cs; starts increase; a tail
// shorter than the slack joins the chunk before; every chunk is shorter
// than maxChunkSize; chunkAt finds every position's chunk.
func TestChunkStarts(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	if got := chunkStarts(nil, 0, 1024); len(got) != 0 {
		t.Fatalf("empty log: %v", got)
	}
	for iter := 0; iter < 300; iter++ {
		cs := int64(64 + rng.IntN(2000))
		logSize := int64(1 + rng.IntN(20_000))
		var offs []remoteOffsetEntry
		for pos := int64(rng.IntN(50)); pos < logSize; pos += int64(1 + rng.IntN(int(cs/2)+rng.IntN(3)*int(cs))) {
			offs = append(offs, remoteOffsetEntry{rel: uint32(len(offs)), pos: uint32(pos)})
		}
		starts := chunkStarts(offs, logSize, cs)
		slack := chunkSlack(cs)
		ix := &segIndex{m: &Manifest{LogSize: logSize}, cs: cs, starts: starts}
		if len(starts) == 0 || starts[0] != 0 {
			t.Fatalf("cs %d, log %d: starts %v", cs, logSize, starts)
		}
		for n := int64(1); n < int64(len(starts)); n++ {
			lo := n * cs
			want := lo
			for _, e := range offs {
				if p := int64(e.pos); p >= lo && p < lo+slack {
					want = p
					break
				}
			}
			if starts[n] != want {
				t.Fatalf("cs %d, log %d: chunk %d starts at %d, want %d (index %v)", cs, logSize, n, starts[n], want, offs)
			}
		}
		// The chunk count: one per cs, less a tail shorter than the slack.
		wantChunks := (logSize + cs - 1) / cs
		if wantChunks > 1 && logSize-(wantChunks-1)*cs < slack {
			wantChunks--
		}
		if ix.chunks() != wantChunks {
			t.Fatalf("cs %d, log %d: %d chunks, want %d", cs, logSize, ix.chunks(), wantChunks)
		}
		total := int64(0)
		for n := int64(0); n < ix.chunks(); n++ {
			at, size := ix.chunkSpan(n)
			if at != total || size <= 0 || size >= maxChunkSize(cs) {
				t.Fatalf("cs %d, log %d: chunk %d at %d of %d bytes (max %d), after %d bytes", cs, logSize, n, at, size, maxChunkSize(cs), total)
			}
			for pos := at; pos < at+size; pos++ {
				if got := ix.chunkAt(pos); got != n {
					t.Fatalf("cs %d, log %d: chunkAt(%d) = %d, want %d", cs, logSize, pos, got, n)
				}
			}
			total += size
		}
		if total != logSize {
			t.Fatalf("cs %d: chunks cover %d bytes of %d", cs, total, logSize)
		}
	}
}

// TestReaderChunksStartAtBatches: with an index entry at every batch, no
// batch straddles two chunks, so a sequential memory-cache reader is
// answered with views only, every batch checked as its chunk arrived: no
// copy, and no CRC pass at read time.
func TestReaderChunksStartAtBatches(t *testing.T) {
	// Chunks of 9,000 bytes have a slack of 1,125: more than a batch here,
	// so every chunk can start at one.
	const cs = 9000
	e, s := rtSetup(t, rtOptions{base: 11, batches: 160, indexInterval: 1},
		ReaderConfig{ChunkSize: cs, CacheBytes: 4 * cs, Memory: true, PrefetchChunks: 2})
	if int64(len(s.log)) < 6*cs {
		t.Fatalf("segment of %d bytes is too small to cross chunks", len(s.log))
	}
	ctx := context.Background()
	batches := 0
	for off := s.ref.BaseOffset; off <= s.ref.EndOffset; {
		var h Hold
		parts, err := e.r.ReadParts(ctx, s.ref, off, 900, true, &h)
		if err != nil {
			t.Fatal(err)
		}
		got := ownedParts(parts, &h)
		if want := s.expect(off, 900, true); !bytes.Equal(got, want) {
			t.Fatalf("Read(%d): %d bytes, want %d", off, len(got), len(want))
		}
		ix := rtIndex(t, e.r, s)
		pos := int64(bytes.Index(s.log, got))
		for _, p := range parts {
			if ix.chunkAt(pos) != ix.chunkAt(pos+int64(len(p))-1) {
				t.Fatalf("Read(%d): a part of %d bytes at %d crosses chunks %v", off, len(p), pos, ix.starts)
			}
			pos += int64(len(p))
		}
		for b := got; len(b) > 0; batches++ {
			h, err := kafkaproto.ParseBatchHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			b = b[h.Size():]
		}
		h.Release()
		off = lastOffset(got) + 1
	}
	if st := e.r.Stats(); st.PreVerified != int64(batches) {
		t.Fatalf("%d of %d batches served were checked as they arrived", st.PreVerified, batches)
	}
	for _, c := range e.r.copies.classes {
		if c.reused.Load() != 0 {
			t.Fatal("a batch was copied out of two chunks")
		}
	}
}

// TestReaderWarmsOnlyWhatItReads: a Read of exactly its first chunk's
// bytes GETs that chunk alone (prefetch off), not the chunk after it.
func TestReaderWarmsOnlyWhatItReads(t *testing.T) {
	e, s := rtSetup(t, rtOptions{batches: 40, indexInterval: 1}, ReaderConfig{ChunkSize: 1024, PrefetchChunks: -1})
	rtRead(t, e.r, s, s.ref.EndOffset, 1, true) // loads the index (and the last chunk)
	ix := rtIndex(t, e.r, s)
	_, size := ix.chunkSpan(0)
	before := e.r.Stats().Gets
	rtRead(t, e.r, s, s.ref.BaseOffset, int(size), true)
	if got := e.r.Stats().Gets - before; got != 1 {
		t.Fatalf("a read of chunk 0's %d bytes made %d GETs, want 1", size, got)
	}
	if at, _ := ix.chunkSpan(1); e.st.gets(s.key(ExtLog), at) != 0 {
		t.Fatal("chunk 1 was fetched")
	}
}
