package locallog

import (
	"fmt"
	"time"
)

// DeleteRecordsBefore moves the log start to offset and deletes the segments
// wholly below it (never the active one). The caller checks offset against
// the high watermark; offset > LogEndOffset is ErrOffsetOutOfRange. The new
// log start is persisted before it returns.
func (l *Log) DeleteRecordsBefore(offset int64) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if offset > l.leo || offset < 0 {
		return fmt.Errorf("delete records before %d (log end %d): %w", offset, l.leo, ErrOffsetOutOfRange)
	}
	if offset <= l.logStart {
		return nil
	}
	n := 0
	for n < len(l.segs)-1 && l.segs[n].next <= offset {
		n++
	}
	return l.advanceStartLocked(offset, n)
}

// advanceStartLocked persists newStart as the log start, trims the epoch
// cache and deletes the n oldest segments. Caller holds writeMu.
func (l *Log) advanceStartLocked(newStart int64, n int) error {
	l.mu.Lock()
	changedStart := newStart > l.logStart
	if changedStart {
		l.logStart = newStart
	}
	var epochPayload []byte
	if l.epochs.truncateFromStart(l.logStart) {
		epochPayload = l.epochs.encode()
	}
	start := l.logStart
	l.mu.Unlock()
	if changedStart {
		if err := writeOffsetCheckpoint(l.dir, logStartFile, start); err != nil {
			return err
		}
	}
	if epochPayload != nil {
		if err := writeCheckpoint(l.dir, leaderEpochFile, epochPayload); err != nil {
			return err
		}
	}
	if err := l.removeSegmentsLocked(0, n); err != nil {
		return err
	}
	// Snapshots go with their segments; the newest always stays.
	return l.deleteSnapshotsBeforeLocked(l.segs[0].base)
}

// removeSegmentsLocked unlinks segments [from, from+n) from the log and
// deletes their files. Caller holds writeMu.
func (l *Log) removeSegmentsLocked(from, n int) error {
	if n <= 0 {
		return nil
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	gone := append([]*segment(nil), l.segs[from:from+n]...)
	l.segs = append(l.segs[:from:from], l.segs[from+n:]...)
	l.mu.Unlock()
	for _, s := range gone {
		if err := s.remove(); err != nil {
			return fmt.Errorf("delete segment %d of %s: %w", s.base, l.dir, err)
		}
	}
	return nil
}

// TruncateTo drops everything at or after offset. The batch containing
// offset is dropped whole, so LogEndOffset becomes the base of that batch
// (equal to offset when offset is a batch boundary, as it is for followers).
// An offset below the log start empties the log and restarts it at offset.
// Indexes, the epoch cache and the recovery point follow.
func (l *Log) TruncateTo(offset int64) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if offset < 0 {
		return fmt.Errorf("truncate to %d: %w", offset, ErrOffsetOutOfRange)
	}
	if offset >= l.leo {
		return nil
	}
	if offset < l.segs[0].base || offset < l.logStart {
		return l.truncateFullyLocked(offset)
	}
	k := len(l.segs) - 1
	for l.segs[k].base > offset {
		k--
	}
	if err := l.removeSegmentsLocked(k+1, len(l.segs)-k-1); err != nil {
		return err
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	s := l.active()
	err := l.truncateSegment(s, offset)
	l.leo = s.next
	var epochPayload []byte
	if l.epochs.truncateFromEnd(l.leo) {
		epochPayload = l.epochs.encode()
	}
	rpChanged := l.recoveryPoint > l.leo
	l.recoveryPoint = min(l.recoveryPoint, l.leo)
	rp := l.recoveryPoint
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if rpChanged {
		if err := writeOffsetCheckpoint(l.dir, recoveryPointFile, rp); err != nil {
			return err
		}
	}
	if epochPayload != nil {
		if err := writeCheckpoint(l.dir, leaderEpochFile, epochPayload); err != nil {
			return err
		}
	}
	// Producer state after the truncation point goes: reload the newest
	// snapshot at or below the new end and replay from there.
	return l.loadProducerStateLocked()
}

// truncateSegment cuts s at the batch holding offset and rebuilds its index
// tail. Caller holds writeMu, flushMu and mu (write).
func (l *Log) truncateSegment(s *segment, offset int64) error {
	pos, _, err := s.findPosition(offset, s.size)
	if err != nil {
		return fmt.Errorf("truncate segment %d to %d: %w", s.base, offset, err)
	}
	if err := s.log.Truncate(pos); err != nil {
		return fmt.Errorf("truncate segment %d to %d: %w", s.base, offset, err)
	}
	s.sealed = false
	resume, expect := s.trimIndexes(pos)
	if _, err := s.scan(resume, expect, int64(l.cfg.IndexIntervalBytes), false, nil); err != nil {
		return err
	}
	s.dirtyLog = true
	return s.rewriteIndexes()
}

// truncateFullyLocked deletes every segment and restarts the log at offset.
func (l *Log) truncateFullyLocked(offset int64) error {
	ns, err := openSegment(l.dir, offset, true)
	if err != nil {
		return fmt.Errorf("truncate fully to %d: %w", offset, err)
	}
	n := len(l.segs)
	l.mu.Lock()
	l.segs = append(l.segs, ns)
	l.leo = offset
	l.logStart = offset
	l.recoveryPoint = offset
	l.epochs.entries = nil
	l.dirDirty = true
	l.mu.Unlock()
	if err := l.removeSegmentsLocked(0, n); err != nil {
		return err
	}
	l.producers = producerState{}
	if err := l.deleteSnapshots(func(int64) bool { return true }); err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		p    []byte
	}{{leaderEpochFile, (&epochCache{}).encode()}} {
		if err := writeCheckpoint(l.dir, c.name, c.p); err != nil {
			return err
		}
	}
	if err := writeOffsetCheckpoint(l.dir, logStartFile, offset); err != nil {
		return err
	}
	return writeOffsetCheckpoint(l.dir, recoveryPointFile, offset)
}

// EnforceRetention rolls the active segment when now is more than segment.ms
// past its first batch's max timestamp (its creation time when that has
// none), then
// deletes the oldest whole segments outside retention.ms (judged by the
// segment's max timestamp, or its file time when it has none) or
// retention.bytes. The active segment is deleted only through a roll: an
// expired non-empty active segment is rolled when every older segment is
// expired too. The log start moves to the first kept segment. It returns
// the number of segments deleted. It does not know the high watermark: the
// caller must not apply it to data that is not yet committed.
//
// A Tiered log applies local.retention.* instead, deletes only segments
// wholly at or below SetTieredOffset, and moves only the local log start.
func (l *Log) EnforceRetention(now time.Time) (int, error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	nowMs := now.UnixMilli()
	l.expireProducersLocked(now)
	a := l.active()
	if a.size > 0 && l.cfg.SegmentMs > 0 {
		waited := nowMs - a.firstTs
		if a.firstTs < 0 {
			waited = now.Sub(a.created).Milliseconds()
		}
		if waited > l.cfg.SegmentMs {
			if err := l.rollLocked(); err != nil {
				return 0, err
			}
		}
	}
	retMs, retBytes := l.cfg.RetentionMs, l.cfg.RetentionBytes
	if l.cfg.Tiered {
		retMs, retBytes = l.cfg.LocalRetentionMs, l.cfg.LocalRetentionBytes
	}
	expired := func(s *segment) bool {
		return retMs >= 0 && s.size > 0 && nowMs-segmentTimestamp(s) > retMs
	}
	byTime := 0
	for byTime < len(l.segs)-1 && expired(l.segs[byTime]) {
		byTime++
	}
	if byTime == len(l.segs)-1 && expired(l.active()) {
		if err := l.rollLocked(); err != nil {
			return 0, err
		}
		byTime++
	}
	bySize := 0
	if retBytes >= 0 {
		var total int64
		for _, s := range l.segs {
			total += s.size
		}
		diff := total - retBytes
		for bySize < len(l.segs)-1 && diff-l.segs[bySize].size >= 0 {
			diff -= l.segs[bySize].size
			bySize++
		}
	}
	n := max(byTime, bySize)
	if l.cfg.Tiered {
		// Invariant 3: only segments wholly uploaded may go, and only the
		// local log start moves; the log start stays with the remote tier.
		l.mu.RLock()
		up := l.tieredUpTo
		l.mu.RUnlock()
		k := 0
		for k < n && l.segs[k].next-1 <= up {
			k++
		}
		if k == 0 {
			return 0, nil
		}
		if err := l.removeSegmentsLocked(0, k); err != nil {
			return 0, err
		}
		return k, l.deleteSnapshotsBeforeLocked(l.segs[0].base)
	}
	if n == 0 {
		return 0, nil
	}
	if err := l.advanceStartLocked(l.segs[n].base, n); err != nil {
		return 0, err
	}
	return n, nil
}

// segmentTimestamp is the segment's largest record timestamp, or its file's
// modification time when no record carries one (Kafka's rule).
func segmentTimestamp(s *segment) int64 {
	if s.maxTs >= 0 {
		return s.maxTs
	}
	if fi, err := s.log.Stat(); err == nil {
		return fi.ModTime().UnixMilli()
	}
	return s.created.UnixMilli()
}
