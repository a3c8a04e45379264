package locallog

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stratabroker/strata/kafkaproto"
)

// Open recovers (or creates) the log of one partition in dir.
//
// Recovery trusts nothing it did not check. Segments wholly below the
// recovery-point checkpoint keep their indexes when those pass a sanity
// check (shape, and the last offset entry pointing at a batch with that
// offset) and are otherwise re-indexed from their batch headers. Segments
// reaching the recovery point, and always the last segment, are validated
// batch by batch (length, magic, dense offsets, CRC32C) and re-indexed; the
// first bad batch and everything after it — including later segments — is
// dropped and logged with offsets and bytes. After a clean shutdown only
// the last segment's tail after its last index entry is validated. Damaged
// checkpoints are logged and replaced by values derived from the data.
func Open(dir string, cfg Config, logger *slog.Logger) (*Log, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open log %s: %w", dir, err)
	}
	l := &Log{dir: dir, logger: logger, now: time.Now, cfg: cfg.normalized(), tieredUpTo: -1}
	l.gcCond = sync.NewCond(&l.gcMu)
	if err := l.recover(); err != nil {
		for _, s := range l.segs {
			s.close()
		}
		return nil, fmt.Errorf("open log %s: %w", dir, err)
	}
	l.lastFlush = l.now()
	return l, nil
}

func (l *Log) recover() error {
	_, err := os.Stat(filepath.Join(l.dir, cleanShutdownFile))
	clean := err == nil
	if clean {
		if err := os.Remove(filepath.Join(l.dir, cleanShutdownFile)); err != nil {
			return err
		}
	}
	logStart, err := readOffsetCheckpoint(l.dir, logStartFile)
	haveLogStart := err == nil
	if err != nil && !isNotExist(err) {
		l.logger.Warn("locallog: log start checkpoint unreadable, using the first segment", "dir", l.dir, "err", err)
	}
	recoveryPoint, err := readOffsetCheckpoint(l.dir, recoveryPointFile)
	if err != nil {
		if !isNotExist(err) {
			l.logger.Warn("locallog: recovery point unreadable, validating every segment", "dir", l.dir, "err", err)
		}
		recoveryPoint, clean = 0, false
	}
	epochsOK := true
	if p, err := readCheckpoint(l.dir, leaderEpochFile); err == nil {
		if l.epochs.entries, err = decodeEpochs(p); err != nil {
			l.logger.Warn("locallog: leader epoch checkpoint corrupt, rebuilding from batches", "dir", l.dir, "err", err)
			epochsOK = false
		}
	} else if !isNotExist(err) {
		l.logger.Warn("locallog: leader epoch checkpoint unreadable, rebuilding from batches", "dir", l.dir, "err", err)
		epochsOK = false
	} else {
		epochsOK = false
	}

	bases, err := l.listSegments()
	if err != nil {
		return err
	}
	onBatch := func(h *kafkaproto.BatchHeader) { l.epochs.assign(h.PartitionLeaderEpoch, h.BaseOffset) }
	interval := int64(l.cfg.IndexIntervalBytes)
	for i, base := range bases {
		_, e1 := os.Stat(segmentName(l.dir, base, ".index"))
		_, e2 := os.Stat(segmentName(l.dir, base, ".timeindex"))
		s, err := openSegment(l.dir, base, false)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, s)
		last := i == len(bases)-1
		nextBase := int64(-1)
		if !last {
			nextBase = bases[i+1]
		}
		idxOK := e1 == nil && e2 == nil && l.loadIndexes(s)
		var res scanResult
		switch {
		case !last && nextBase <= recoveryPoint:
			// Trusted: below the recovery point.
			s.next = nextBase
			if idxOK && s.checkIndexes(nextBase) {
				fi, err := s.log.Stat()
				if err != nil {
					return err
				}
				s.size, s.sealed = fi.Size(), true
				s.maxTs, s.lastIdxTs = s.timeIdx[len(s.timeIdx)-1].ts, s.timeIdx[len(s.timeIdx)-1].ts
				if !epochsOK {
					if err := l.headerWalk(s, s.size, onBatch); err != nil {
						return err
					}
				}
				continue
			}
			l.logger.Info("locallog: rebuilding indexes", "dir", l.dir, "segment", base)
			s.trimIndexes(0)
			if res, err = s.scan(0, base, interval, false, onBatch); err != nil {
				return err
			}
		case last && clean && idxOK && s.checkIndexes(-1):
			pos, off := s.trimIndexes(1 << 62)
			if pos == 0 {
				l.logger.Info("locallog: validating last segment", "dir", l.dir, "segment", base)
			}
			if pos > 0 {
				h, err := s.readHeader(0)
				if err != nil {
					return err
				}
				s.firstTs = h.MaxTimestamp
				if !epochsOK {
					// Epochs of the prefix the scan skips, in order.
					if err := l.headerWalk(s, pos, onBatch); err != nil {
						return err
					}
				}
			}
			if res, err = s.scan(pos, off, interval, true, onBatch); err != nil {
				return err
			}
		default:
			if !idxOK {
				l.logger.Info("locallog: rebuilding indexes", "dir", l.dir, "segment", base)
			}
			s.trimIndexes(0)
			if res, err = s.scan(0, base, interval, true, onBatch); err != nil {
				return err
			}
		}
		if err := s.rewriteIndexes(); err != nil {
			return err
		}
		s.dirtyLog = true
		if res.reason != "" {
			l.logger.Warn("locallog: truncating corrupt or torn tail",
				"dir", l.dir, "segment", base, "reason", res.reason,
				"valid_up_to_offset", res.next, "valid_bytes", res.end, "dropped_bytes", res.tail)
			if err := s.log.Truncate(res.end); err != nil {
				return fmt.Errorf("truncate segment %d: %w", base, err)
			}
		}
		if !last && (res.reason != "" || res.next != nextBase) {
			dropped := bases[i+1:]
			l.logger.Warn("locallog: dropping segments after a gap or corruption",
				"dir", l.dir, "after_offset", res.next, "next_segment", nextBase, "segments", dropped)
			for _, b := range dropped {
				for _, ext := range []string{".log", ".index", ".timeindex"} {
					if err := os.Remove(segmentName(l.dir, b, ext)); err != nil && !isNotExist(err) {
						return err
					}
				}
			}
			break
		}
		if !last {
			if te, ok := s.sealTimeIndex(); ok {
				s.timeIdx = append(s.timeIdx, te)
				if err := s.rewriteIndexes(); err != nil {
					return err
				}
			}
			s.sealed = true
		}
	}

	// Segments wholly below the log start are leftovers of an interrupted
	// deletion.
	for len(l.segs) > 1 && l.segs[0].next <= logStart {
		if err := l.segs[0].remove(); err != nil {
			return err
		}
		l.segs = l.segs[1:]
	}
	if len(l.segs) == 0 || logStart > l.active().next {
		if len(l.segs) > 0 {
			l.logger.Warn("locallog: log start beyond the data, restarting the log", "dir", l.dir, "log_start", logStart, "log_end", l.active().next)
			for _, s := range l.segs {
				if err := s.remove(); err != nil {
					return err
				}
			}
			l.segs = nil
			l.epochs.entries = nil
		}
		s, err := openSegment(l.dir, logStart, true)
		if err != nil {
			return err
		}
		l.segs = []*segment{s}
	}
	l.leo = l.active().next
	l.logStart = max(logStart, l.segs[0].base)
	if l.cfg.Tiered && haveLogStart {
		// Below the first local segment lives the remote tier.
		l.logStart = logStart
	}
	l.recoveryPoint = min(recoveryPoint, l.leo)
	l.epochs.truncateFromEnd(l.leo)
	l.epochs.truncateFromStart(l.logStart)
	l.dirDirty = true
	// Rewrite checkpoints only when they differ from what is on disk.
	if p, err := readCheckpoint(l.dir, leaderEpochFile); err != nil || !bytes.Equal(p, l.epochs.encode()) {
		if err := writeCheckpoint(l.dir, leaderEpochFile, l.epochs.encode()); err != nil {
			return err
		}
	}
	if off, err := readOffsetCheckpoint(l.dir, logStartFile); err != nil || off != l.logStart {
		if err := writeOffsetCheckpoint(l.dir, logStartFile, l.logStart); err != nil {
			return err
		}
	}
	if err := l.loadProducerStateLocked(); err != nil {
		return err
	}
	// Everything kept is validated now: make it durable and move the
	// recovery point to the log end.
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if err := l.flushLocked(true); err != nil {
		return err
	}
	return nil
}

// listSegments returns the base offsets of the .log files, oldest first,
// and removes temporary files and indexes without a log.
func (l *Log) listSegments() ([]int64, error) {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, err
	}
	var bases []int64
	logs := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".log") && len(name) == 24 {
			if b, err := strconv.ParseInt(strings.TrimSuffix(name, ".log"), 10, 64); err == nil && b >= 0 {
				bases = append(bases, b)
				logs[strings.TrimSuffix(name, ".log")] = true
			}
		}
	}
	for _, e := range ents {
		name := e.Name()
		stem, ext, _ := strings.Cut(name, ".")
		switch {
		case strings.HasSuffix(name, ".tmp"),
			(ext == "index" || ext == "timeindex") && !logs[stem]:
			if err := os.Remove(filepath.Join(l.dir, name)); err != nil && !isNotExist(err) {
				return nil, err
			}
		}
	}
	slices.Sort(bases)
	return bases, nil
}

// loadIndexes reads both index files into s; false when either is damaged.
func (l *Log) loadIndexes(s *segment) bool {
	fi, err := s.log.Stat()
	if err != nil {
		return false
	}
	ib, err1 := readAll(s.idx)
	tb, err2 := readAll(s.tidx)
	if err1 != nil || err2 != nil {
		return false
	}
	offs, err1 := decodeOffsetIndex(ib, fi.Size())
	times, err2 := decodeTimeIndex(tb)
	if err1 != nil || err2 != nil {
		l.logger.Warn("locallog: index damaged", "dir", l.dir, "segment", s.base, "offset_index", err1, "time_index", err2)
		return false
	}
	s.offIdx, s.timeIdx = offs, times
	return true
}

func readAll(f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > 1<<31 {
		return nil, fmt.Errorf("index %s of %d bytes: %w", f.Name(), fi.Size(), ErrCorrupt)
	}
	b := make([]byte, fi.Size())
	_, err = f.ReadAt(b, 0)
	return b, err
}

// checkIndexes checks loaded indexes against the data: the last offset
// entry must point at a batch with that base offset, and (for a sealed
// segment ending at next, next >= 0) the time index must be non-empty and
// stay within the segment.
func (s *segment) checkIndexes(next int64) bool {
	if n := len(s.offIdx); n > 0 {
		e := s.offIdx[n-1]
		h, err := s.readHeader(int64(e.pos))
		if err != nil || h.Magic != 2 || h.BaseOffset != s.base+int64(e.rel) || h.BatchLength < hdrSize-12 {
			return false
		}
		if next >= 0 && h.LastOffset() >= next {
			return false
		}
	}
	if next >= 0 {
		if len(s.timeIdx) == 0 || s.base+int64(s.timeIdx[len(s.timeIdx)-1].rel) >= next {
			return false
		}
	}
	return true
}

// headerWalk feeds the headers of the batches of s before position end to fn.
func (l *Log) headerWalk(s *segment, end int64, fn func(*kafkaproto.BatchHeader)) error {
	for pos := int64(0); pos < end; {
		h, err := s.readHeader(pos)
		if err != nil {
			return err
		}
		if h.BatchLength < hdrSize-12 {
			return fmt.Errorf("segment %d at %d: batch length %d: %w", s.base, pos, h.BatchLength, ErrCorrupt)
		}
		fn(&h)
		pos += int64(h.Size())
	}
	return nil
}
