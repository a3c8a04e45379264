package locallog

import (
	"fmt"
	"sort"

	"github.com/stratabroker/strata/kafkaproto"
)

// Read returns whole batches starting with the batch containing offset,
// stopping before any batch that reaches maxOffset (exclusive, the high
// watermark; negative = LogEndOffset) and before maxBytes would be exceeded.
// With minOneBatch the first batch is returned even when larger than
// maxBytes (KIP-74). offset == LogEndOffset returns nothing; an offset
// outside [LogStartOffset, LogEndOffset] is ErrOffsetOutOfRange, one in
// [LogStartOffset, LocalLogStartOffset) ErrOffsetTiered. Reads
// may span segments and never see a partially written batch.
func (l *Log) Read(offset int64, maxBytes int, maxOffset int64, minOneBatch bool) ([]byte, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	if offset < l.logStart || offset > l.leo {
		return nil, fmt.Errorf("read offset %d of %s (log %d..%d): %w", offset, l.dir, l.logStart, l.leo, ErrOffsetOutOfRange)
	}
	if ls := l.localStartLocked(); offset < ls {
		return nil, fmt.Errorf("read offset %d of %s (local log %d..%d): %w", offset, l.dir, ls, l.leo, ErrOffsetTiered)
	}
	if maxOffset < 0 || maxOffset > l.leo {
		maxOffset = l.leo
	}
	if offset >= maxOffset {
		return nil, nil
	}
	i := l.segmentFor(offset)
	var out []byte
	for ; i < len(l.segs); i++ {
		s := l.segs[i]
		pos, h, err := s.findPosition(offset, s.size)
		if err != nil {
			return nil, err
		}
		if pos >= s.size {
			continue
		}
		budget := int64(maxBytes - len(out))
		if budget < int64(h.Size()) || h.LastOffset() >= maxOffset {
			if len(out) == 0 && minOneBatch && h.LastOffset() < maxOffset {
				b := make([]byte, h.Size())
				if _, err := s.log.ReadAt(b, pos); err != nil {
					return nil, fmt.Errorf("read segment %d at %d: %w", s.base, pos, err)
				}
				return b, nil
			}
			return out, nil
		}
		n := min(budget, s.size-pos)
		buf := make([]byte, n)
		if _, err := s.log.ReadAt(buf, pos); err != nil {
			return nil, fmt.Errorf("read segment %d at %d: %w", s.base, pos, err)
		}
		k, stop := 0, false
		for k < len(buf) {
			bh, err := kafkaproto.ParseBatchHeader(buf[k:])
			if err != nil || k+bh.Size() > len(buf) {
				stop = true // budget reached inside this batch
				break
			}
			if bh.BatchLength < hdrSize-12 {
				return nil, fmt.Errorf("read segment %d at %d: batch length %d: %w", s.base, pos+int64(k), bh.BatchLength, ErrCorrupt)
			}
			if bh.LastOffset() >= maxOffset {
				stop = true
				break
			}
			k += bh.Size()
			offset = bh.LastOffset() + 1
		}
		if out == nil {
			out = buf[:k]
		} else {
			out = append(out, buf[:k]...)
		}
		if stop || int64(k) < s.size-pos {
			break
		}
	}
	return out, nil
}

// segmentFor returns the index of the segment holding offset (the last with
// base <= offset). Caller holds mu.
func (l *Log) segmentFor(offset int64) int {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > offset })
	return max(i-1, 0)
}

// OffsetForTimestamp returns the first offset at or after the log start
// whose record timestamp is >= ts, with that timestamp. The time index finds
// the segment and position; the matching batch is decoded for the exact
// record. found is false when no record qualifies.
func (l *Log) OffsetForTimestamp(ts int64) (offset int64, timestamp int64, found bool, err error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return -1, -1, false, ErrClosed
	}
	for _, s := range l.segs {
		if s.maxTs < ts || s.next <= l.logStart || s.size == 0 {
			continue
		}
		off, t, ok, err := l.searchSegment(s, ts, max(s.base, l.localStartLocked()))
		if err != nil || ok {
			return off, t, ok, err
		}
	}
	return -1, -1, false, nil
}

// MaxTimestamp returns the largest record timestamp in the log and the
// offset of the first record carrying it; (-1, -1) when the log is empty.
func (l *Log) MaxTimestamp() (timestamp int64, offset int64, err error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return -1, -1, ErrClosed
	}
	var best *segment
	for _, s := range l.segs {
		if s.size > 0 && s.next > l.logStart && (best == nil || s.maxTs > best.maxTs) {
			best = s
		}
	}
	if best == nil {
		return -1, -1, nil
	}
	off, t, ok, err := l.searchSegment(best, best.maxTs, max(best.base, l.localStartLocked()))
	if err != nil {
		return -1, -1, err
	}
	if !ok {
		return -1, -1, fmt.Errorf("max timestamp %d of segment %d not found in its batches: %w", best.maxTs, best.base, ErrCorrupt)
	}
	return t, off, nil
}

// searchSegment finds the first record at or after from with timestamp >=
// ts in s. Caller holds mu (read).
func (l *Log) searchSegment(s *segment, ts, from int64) (int64, int64, bool, error) {
	// Every record up to the last time entry below ts is older than ts.
	i := sort.Search(len(s.timeIdx), func(i int) bool { return s.timeIdx[i].ts >= ts })
	if i > 0 {
		from = max(from, s.base+int64(s.timeIdx[i-1].rel)+1)
	}
	pos, h, err := s.findPosition(from, s.size)
	if err != nil {
		return 0, 0, false, err
	}
	for pos < s.size {
		if h.MaxTimestamp >= ts {
			b := make([]byte, h.Size())
			if _, err := s.log.ReadAt(b, pos); err != nil {
				return 0, 0, false, fmt.Errorf("read segment %d at %d: %w", s.base, pos, err)
			}
			if h.TimestampType() == 1 {
				return max(h.BaseOffset, from), h.MaxTimestamp, true, nil
			}
			_, recs, err := kafkaproto.DecodeRecords(b)
			if err != nil {
				return 0, 0, false, fmt.Errorf("decode batch %d of segment %d: %w", h.BaseOffset, s.base, err)
			}
			for _, r := range recs {
				off, t := h.BaseOffset+int64(r.OffsetDelta), h.BaseTimestamp+r.TimestampDelta
				if off >= from && t >= ts {
					return off, t, true, nil
				}
			}
		}
		pos += int64(h.Size())
		if pos >= s.size {
			break
		}
		if h, err = s.readHeader(pos); err != nil {
			return 0, 0, false, err
		}
	}
	return 0, 0, false, nil
}
