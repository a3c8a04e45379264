package locallog

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/stratabroker/strata/kafkaproto"
)

const hdrSize = kafkaproto.RecordBatchHeaderSize

// segment is one .log file with its two indexes. Fields marked (mu) are
// published under Log.mu; fields marked (w) belong to the writer holding
// Log.writeMu; file handles are immutable until the segment is closed.
type segment struct {
	base           int64
	log, idx, tidx *os.File
	created        time.Time

	size    int64         // (mu) bytes of complete batches
	next    int64         // (mu) offset after the last batch
	maxTs   int64         // (mu) largest batch max timestamp, -1 when empty
	firstTs int64         // (mu) max timestamp of the first batch, -1 when empty
	offIdx  []offsetEntry // (mu)
	timeIdx []timeEntry   // (mu)
	sealed  bool          // (mu)

	dirtyLog, dirtyIdx bool // (mu) written since the last fsync

	bytesSinceIdx int64 // (w)
	lastIdxTs     int64 // (w) timestamp of the last time index entry, -1 when none
}

func segmentName(dir string, base int64, ext string) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", base, ext))
}

// openSegment opens (creating when asked) the three files of a segment.
// Index contents are not loaded.
func openSegment(dir string, base int64, create bool) (*segment, error) {
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE | os.O_TRUNC
	}
	s := &segment{base: base, next: base, maxTs: -1, firstTs: -1, lastIdxTs: -1, created: time.Now()}
	var err error
	if s.log, err = os.OpenFile(segmentName(dir, base, ".log"), flag, 0o644); err != nil {
		return nil, fmt.Errorf("open segment %d: %w", base, err)
	}
	// Index files are always created when missing: recovery rebuilds them.
	idxFlag := os.O_RDWR | os.O_CREATE
	if create {
		idxFlag |= os.O_TRUNC
	}
	if s.idx, err = os.OpenFile(segmentName(dir, base, ".index"), idxFlag, 0o644); err == nil {
		s.tidx, err = os.OpenFile(segmentName(dir, base, ".timeindex"), idxFlag, 0o644)
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("open segment %d indexes: %w", base, err)
	}
	return s, nil
}

func (s *segment) close() {
	for _, f := range []*os.File{s.log, s.idx, s.tidx} {
		if f != nil {
			_ = f.Close()
		}
	}
}

func (s *segment) remove() error {
	s.close()
	var errs []error
	for _, f := range []*os.File{s.log, s.idx, s.tidx} {
		if f != nil {
			if err := os.Remove(f.Name()); err != nil && !isNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// indexBatch advances the sparse-index state for a batch of size bytes at
// pos and returns the entries to add, if any.
func (s *segment) indexBatch(pos int64, h *kafkaproto.BatchHeader, interval int64, curMax *int64, offs *[]offsetEntry, times *[]timeEntry) {
	if pos > 0 && s.bytesSinceIdx >= interval {
		*offs = append(*offs, offsetEntry{uint32(h.BaseOffset - s.base), uint32(pos)})
		if *curMax > s.lastIdxTs {
			*times = append(*times, timeEntry{*curMax, uint32(h.BaseOffset - 1 - s.base)})
			s.lastIdxTs = *curMax
		}
		s.bytesSinceIdx = 0
	}
	s.bytesSinceIdx += int64(h.Size())
	if h.MaxTimestamp > *curMax {
		*curMax = h.MaxTimestamp
	}
}

// writeIndexEntries appends new entries to the index files, which hold
// exactly nOff and nTime entries before the call.
func (s *segment) writeIndexEntries(nOff, nTime int, offs []offsetEntry, times []timeEntry) error {
	if len(offs) > 0 {
		var b []byte
		for _, e := range offs {
			b = appendOffsetEntry(b, e)
		}
		if _, err := s.idx.WriteAt(b, int64(nOff)*offsetEntrySize); err != nil {
			return fmt.Errorf("write index of segment %d: %w", s.base, err)
		}
	}
	if len(times) > 0 {
		var b []byte
		for _, e := range times {
			b = appendTimeEntry(b, e)
		}
		if _, err := s.tidx.WriteAt(b, int64(nTime)*timeEntrySize); err != nil {
			return fmt.Errorf("write time index of segment %d: %w", s.base, err)
		}
	}
	return nil
}

// rewriteIndexes replaces both index files with the in-memory entries.
func (s *segment) rewriteIndexes() error {
	var b []byte
	for _, e := range s.offIdx {
		b = appendOffsetEntry(b, e)
	}
	var t []byte
	for _, e := range s.timeIdx {
		t = appendTimeEntry(t, e)
	}
	for _, w := range []struct {
		f *os.File
		b []byte
	}{{s.idx, b}, {s.tidx, t}} {
		if err := w.f.Truncate(0); err != nil {
			return fmt.Errorf("rewrite indexes of segment %d: %w", s.base, err)
		}
		if _, err := w.f.WriteAt(w.b, 0); err != nil {
			return fmt.Errorf("rewrite indexes of segment %d: %w", s.base, err)
		}
	}
	s.dirtyIdx = true
	return nil
}

// readHeader reads the batch header at pos.
func (s *segment) readHeader(pos int64) (kafkaproto.BatchHeader, error) {
	var b [hdrSize]byte
	if _, err := s.log.ReadAt(b[:], pos); err != nil {
		return kafkaproto.BatchHeader{}, fmt.Errorf("read batch header of segment %d at %d: %w", s.base, pos, err)
	}
	return kafkaproto.ParseBatchHeader(b[:])
}

// findPosition returns the position of the first batch (at or after the
// index floor) whose last offset is >= offset, or s.size when none. The
// caller holds Log.mu (read) and passes the published size.
//
// The headers between the index floor and the batch sought are read in
// blocks of findBlock bytes, one pread for many small batches instead of
// one per header: a follower or consumer tailing a log of small batches
// asks for an offset up to index.interval.bytes past its index entry at
// every fetch.
func (s *segment) findPosition(offset, size int64) (int64, kafkaproto.BatchHeader, error) {
	rel := offset - s.base
	if rel < 0 {
		rel = 0
	}
	pos := floorPosition(s.offIdx, uint32(min(rel, math.MaxUint32)))
	if pos >= size {
		return size, kafkaproto.BatchHeader{}, nil
	}
	bp := findBufs.Get().(*[findBlock]byte)
	defer findBufs.Put(bp)
	var blk []byte // the file's bytes [at, at+len(blk))
	var at int64
	for pos < size {
		if pos+hdrSize > at+int64(len(blk)) {
			// At least a header, even past the published size: a short
			// file is an error, as reading the header alone would be.
			n := max(min(int64(findBlock), size-pos), hdrSize)
			if _, err := s.log.ReadAt(bp[:n], pos); err != nil {
				return 0, kafkaproto.BatchHeader{}, fmt.Errorf("read batch header of segment %d at %d: %w", s.base, pos, err)
			}
			blk, at = bp[:n], pos
		}
		h, err := kafkaproto.ParseBatchHeader(blk[pos-at:])
		if err != nil {
			return 0, h, err
		}
		if h.BatchLength < hdrSize-12 {
			return 0, h, fmt.Errorf("segment %d at %d: batch length %d: %w", s.base, pos, h.BatchLength, ErrCorrupt)
		}
		if h.LastOffset() >= offset {
			return pos, h, nil
		}
		pos += int64(h.Size())
	}
	return size, kafkaproto.BatchHeader{}, nil
}

// findBlock is how much findPosition reads at once: a little more than the
// default index.interval.bytes, so that one read usually spans the headers
// from an index entry to the next.
const findBlock = 8 << 10

var findBufs = sync.Pool{New: func() any { return new([findBlock]byte) }}

// scanResult is where a scan stopped.
type scanResult struct {
	end    int64  // position after the last good batch
	next   int64  // offset after the last good batch
	reason string // why the scan stopped before the end of the file, "" if it did not
	tail   int64  // bytes after end
}

// scan walks the batches from pos (whose first batch must start at offset
// expect) to the end of the file, stopping at the first batch that is torn,
// malformed, out of sequence or (with verify) fails its CRC. It rebuilds the
// in-memory index state from pos on and updates next, size, maxTs and
// firstTs. onBatch sees every good header. Used only while the segment is
// private (recovery, truncation under writeMu with the log locked).
func (s *segment) scan(pos, expect int64, interval int64, verify bool, onBatch func(*kafkaproto.BatchHeader)) (scanResult, error) {
	fi, err := s.log.Stat()
	if err != nil {
		return scanResult{}, fmt.Errorf("scan segment %d: %w", s.base, err)
	}
	fileSize := fi.Size()
	var br *bufio.Reader
	if verify {
		br = bufio.NewReaderSize(io.NewSectionReader(s.log, pos, fileSize-pos), 1<<20)
	}
	var hdr [hdrSize]byte
	var body []byte
	next, reason := expect, ""
	curMax := s.maxTs
	for pos < fileSize {
		if fileSize-pos < hdrSize {
			reason = fmt.Sprintf("torn batch header (%d bytes)", fileSize-pos)
			break
		}
		if verify {
			_, err = io.ReadFull(br, hdr[:])
		} else {
			_, err = s.log.ReadAt(hdr[:], pos)
		}
		if err != nil {
			return scanResult{}, fmt.Errorf("scan segment %d at %d: %w", s.base, pos, err)
		}
		h, _ := kafkaproto.ParseBatchHeader(hdr[:])
		size := int64(h.BatchLength) + 12
		switch {
		case h.BatchLength < hdrSize-12:
			reason = fmt.Sprintf("batch length %d", h.BatchLength)
		case size > fileSize-pos:
			reason = fmt.Sprintf("torn batch (%d of %d bytes)", fileSize-pos, size)
		case h.Magic != 2:
			reason = fmt.Sprintf("magic %d", h.Magic)
		case h.BaseOffset != next:
			reason = fmt.Sprintf("base offset %d where %d was expected", h.BaseOffset, next)
		case h.LastOffsetDelta < 0 || h.LastOffset()-s.base > math.MaxInt32:
			reason = fmt.Sprintf("last offset delta %d", h.LastOffsetDelta)
		case pos+size > math.MaxUint32:
			reason = "segment beyond 4 GiB"
		}
		if reason == "" && verify {
			if cap(body) < int(size-hdrSize) {
				body = make([]byte, size-hdrSize)
			}
			body = body[:size-hdrSize]
			if _, err := io.ReadFull(br, body); err != nil {
				return scanResult{}, fmt.Errorf("scan segment %d at %d: %w", s.base, pos, err)
			}
			crc := crc32.Update(crc32.Checksum(hdr[21:], castagnoli), castagnoli, body)
			if crc != h.CRC {
				reason = fmt.Sprintf("crc %08x, computed %08x", h.CRC, crc)
			}
		}
		if reason != "" {
			break
		}
		if pos == 0 {
			s.firstTs = h.MaxTimestamp
		}
		s.indexBatch(pos, &h, interval, &curMax, &s.offIdx, &s.timeIdx)
		if onBatch != nil {
			onBatch(&h)
		}
		pos += size
		next = h.LastOffset() + 1
	}
	s.size, s.next, s.maxTs = pos, next, curMax
	return scanResult{end: pos, next: next, reason: reason, tail: fileSize - pos}, nil
}

// sealTimeIndex adds the final time index entry (the segment's max
// timestamp at its last offset), as Kafka does when a segment is rolled.
func (s *segment) sealTimeIndex() (timeEntry, bool) {
	if s.maxTs < 0 || s.maxTs <= s.lastIdxTs || s.next == s.base {
		return timeEntry{}, false
	}
	s.lastIdxTs = s.maxTs
	return timeEntry{s.maxTs, uint32(s.next - 1 - s.base)}, true
}

// trimIndexes drops index entries at or after position end and prepares a
// scan: it returns the position and offset of the last indexed batch kept
// (or the segment start), with the in-memory state (max timestamp, time
// index) reset to what precedes that batch.
func (s *segment) trimIndexes(end int64) (pos, offset int64) {
	k := len(s.offIdx)
	for k > 0 && int64(s.offIdx[k-1].pos) >= end {
		k--
	}
	s.offIdx = s.offIdx[:k:k]
	pos, offset = 0, s.base
	if k > 0 {
		pos, offset = int64(s.offIdx[k-1].pos), s.base+int64(s.offIdx[k-1].rel)
	}
	t := len(s.timeIdx)
	for t > 0 && s.base+int64(s.timeIdx[t-1].rel) >= offset {
		t--
	}
	s.timeIdx = s.timeIdx[:t:t]
	s.maxTs, s.lastIdxTs = -1, -1
	if t > 0 {
		s.maxTs, s.lastIdxTs = s.timeIdx[t-1].ts, s.timeIdx[t-1].ts
	}
	if pos == 0 {
		s.firstTs = -1
	}
	s.bytesSinceIdx = 0
	s.size, s.next = pos, offset
	return pos, offset
}
