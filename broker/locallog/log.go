package locallog

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/stratabroker/strata/kafkaproto"
)

// Sentinel errors; match with errors.Is.
var (
	// ErrOffsetOutOfRange: an offset outside [LogStartOffset, LogEndOffset].
	ErrOffsetOutOfRange = errors.New("locallog: offset out of range")
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("locallog: log closed")
	// ErrCorrupt: malformed batches or damaged files.
	ErrCorrupt = errors.New("locallog: corrupt data")
	// ErrOffsetTiered: an offset in [LogStartOffset, LocalLogStartOffset),
	// held only by the remote tier.
	ErrOffsetTiered = errors.New("locallog: offset below the local log start (in the remote tier)")
)

// Config holds the topic and broker settings the log obeys (Kafka names in
// comments). Start from DefaultConfig: zero RetentionMs / RetentionBytes
// mean "delete everything outside the active segment", as in Kafka.
type Config struct {
	SegmentBytes          int64 // segment.bytes (default 1 GiB); roll when the active segment would exceed it
	SegmentMs             int64 // segment.ms (default 7 days); roll when the active segment's first batch is older; <=0 never
	RetentionMs           int64 // retention.ms, -1 = forever
	RetentionBytes        int64 // retention.bytes, -1 = unlimited
	IndexIntervalBytes    int   // index.interval.bytes (default 4096): one sparse .index/.timeindex entry per this many bytes
	SegmentIndexBytes     int   // segment.index.bytes (default 10 MiB): roll when an index is full
	TimestampType         int8  // 0 CreateTime, 1 LogAppendTime (message.timestamp.type)
	FlushIntervalMessages int64 // log.flush.interval.messages; <=0 or MaxInt64 = never (rely on page cache, Kafka's default)
	FlushIntervalMs       int64 // log.flush.interval.ms; <=0 = never (checked on append)
	GroupCommit           bool  // opt-in: Append returns only after fsync; concurrent appenders share one fsync
	// ProducerIDExpirationMs (producer.id.expiration.ms, default 1 day):
	// an idempotent producer whose latest batch is older than this is
	// forgotten — at a roll and at each retention check — so producer
	// state does not grow for ever with producers that went away. <0 never.
	ProducerIDExpirationMs int64

	// Tiered (remote.storage.enable): the log start may lie below the first
	// local segment (the data between is in the remote tier), and
	// EnforceRetention applies LocalRetentionMs / LocalRetentionBytes only
	// to segments at or below the offset given to SetTieredOffset.
	Tiered              bool
	LocalRetentionMs    int64 // local.retention.ms resolved (-2 already replaced by RetentionMs), -1 = forever
	LocalRetentionBytes int64 // local.retention.bytes resolved, -1 = unlimited
}

// DefaultConfig returns Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		SegmentBytes:           1 << 30,
		SegmentMs:              7 * 24 * 3600 * 1000,
		RetentionMs:            7 * 24 * 3600 * 1000,
		RetentionBytes:         -1,
		IndexIntervalBytes:     4096,
		SegmentIndexBytes:      10 << 20,
		FlushIntervalMessages:  math.MaxInt64,
		ProducerIDExpirationMs: 24 * 3600 * 1000,
	}
}

// normalized fills zero sizes with defaults and clamps to what the file
// formats can address.
func (c Config) normalized() Config {
	d := DefaultConfig()
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = d.SegmentBytes
	}
	c.SegmentBytes = min(c.SegmentBytes, math.MaxInt32)
	if c.IndexIntervalBytes <= 0 {
		c.IndexIntervalBytes = d.IndexIntervalBytes
	}
	if c.SegmentIndexBytes < timeEntrySize {
		c.SegmentIndexBytes = d.SegmentIndexBytes
	}
	return c
}

// AppendResult describes an append.
type AppendResult struct {
	FirstOffset, LastOffset int64
	LogAppendTime           int64 // -1 unless the topic uses LogAppendTime
	LogStartOffset          int64
	// Duplicate: the append repeated one of an idempotent producer's latest
	// batches; nothing was written and the offsets are the original ones.
	Duplicate bool
	// Rolled: the active segment was sealed before this append; the sealed
	// segment ends at FirstOffset-1.
	Rolled bool
}

// SegmentInfo describes one segment.
type SegmentInfo struct {
	BaseOffset, NextOffset            int64
	Size                              int64
	MaxTimestamp                      int64
	Active                            bool
	LogPath, IndexPath, TimeIndexPath string
}

// Log is the on-disk log of one partition.
//
// Lock order: writeMu → flushMu → mu. writeMu serialises every mutation
// (append, roll, truncation, deletion, config, close); file writes happen
// under it but outside mu. flushMu serialises fsyncs with the closing of
// segment files. mu guards the published state below; readers hold it
// shared while they pread, writers hold it only to publish.
type Log struct {
	dir    string
	logger *slog.Logger
	now    func() time.Time

	writeMu       sync.Mutex
	cfg           Config        // (writeMu)
	unflushedMsgs int64         // (writeMu)
	lastFlush     time.Time     // (writeMu)
	producers     producerState // (writeMu) idempotent producers, see producerstate.go

	flushMu sync.Mutex

	mu            sync.RWMutex
	segs          []*segment
	leo           int64
	logStart      int64 // first readable offset, local or remote; <= segs[0].base only when tiered
	tieredUpTo    int64 // last offset known uploaded (SetTieredOffset), -1 none
	recoveryPoint int64
	epochs        epochCache
	closed        bool
	dirDirty      bool
	appendSeq     int64 // number of appends published; group-commit tickets

	gcMu      sync.Mutex
	gcCond    *sync.Cond
	gcSyncing bool
	gcDurable int64 // appends with a ticket (appendSeq) <= this are fsynced
	gcSyncs   int64 // fsync rounds run for group commit (tests)
}

func (l *Log) active() *segment { return l.segs[len(l.segs)-1] }

// AppendAsLeader appends already-validated batches (one or more concatenated
// batches), assigning dense offsets from LogEndOffset and stamping base
// offset and leaderEpoch into each batch in place. LogAppendTime topics also
// get their timestamps and CRC rewritten. The bytes go to the segment in one
// write; the segment is rolled first when needed.
//
// Batches with a producer id are checked against the producer state first
// (ErrInvalidProducerEpoch, ErrOutOfOrderSequence, ErrUnknownProducerID:
// nothing is written). When a batch repeats one of its producer's latest
// five, nothing is written and the result carries Duplicate and the
// original offsets (LogAppendTime -1).
func (l *Log) AppendAsLeader(records []byte, leaderEpoch int32) (AppendResult, error) {
	return l.append(records, leaderEpoch, true)
}

// AppendAsFollower appends batches that already carry offsets and epochs. The
// first base offset must equal LogEndOffset, offsets must be dense, and every
// CRC must match (ErrCorrupt otherwise). Producer state follows the batches
// without validation.
func (l *Log) AppendAsFollower(records []byte) (AppendResult, error) {
	return l.append(records, -1, false)
}

type batchInfo struct {
	pos int64
	h   kafkaproto.BatchHeader
}

func (l *Log) append(records []byte, leaderEpoch int32, leader bool) (AppendResult, error) {
	l.writeMu.Lock()
	res, ticket, err := l.appendLocked(records, leaderEpoch, leader)
	if err == nil && !res.Duplicate {
		err = l.applyFlushPolicy(res.LastOffset - res.FirstOffset + 1)
	}
	groupCommit := l.cfg.GroupCommit
	l.writeMu.Unlock()
	if err == nil && groupCommit {
		err = l.waitDurable(ticket)
	}
	return res, err
}

func (l *Log) appendLocked(records []byte, leaderEpoch int32, leader bool) (AppendResult, int64, error) {
	if l.closed {
		return AppendResult{}, 0, ErrClosed
	}
	if len(records) == 0 {
		return AppendResult{}, 0, fmt.Errorf("append: no batches: %w", ErrCorrupt)
	}
	first := l.leo
	next := first
	appendTime := int64(-1)
	if leader && l.cfg.TimestampType == 1 {
		appendTime = l.now().UnixMilli()
	}
	batches := make([]batchInfo, 0, 1)
	pa := producerAppend{ps: &l.producers, nowMs: l.now().UnixMilli()}
	for rest, pos := records, int64(0); len(rest) > 0; {
		b, r, err := kafkaproto.NextBatch(rest)
		if err != nil {
			return AppendResult{}, 0, fmt.Errorf("append at offset %d: %v: %w", next, err, ErrCorrupt)
		}
		h, err := kafkaproto.ParseBatchHeader(b)
		if err != nil || h.Magic != 2 || h.LastOffsetDelta < 0 {
			return AppendResult{}, 0, fmt.Errorf("append at offset %d: batch %d malformed: %w", next, len(batches), ErrCorrupt)
		}
		if leader {
			dup, err := pa.validate(&h, next)
			if err != nil {
				return AppendResult{}, 0, fmt.Errorf("append at offset %d: %w", next, err)
			}
			if dup != nil {
				// Kafka answers the whole append with the first duplicate.
				// Its ticket covers every append so far, the original included.
				l.mu.RLock()
				res := AppendResult{FirstOffset: dup.firstOffset, LastOffset: dup.lastOffset, LogAppendTime: -1, LogStartOffset: l.logStart, Duplicate: true}
				ticket := l.appendSeq
				l.mu.RUnlock()
				return res, ticket, nil
			}
			kafkaproto.StampBaseOffset(b, next)
			kafkaproto.StampLeaderEpoch(b, leaderEpoch)
			if appendTime >= 0 {
				kafkaproto.SetLogAppendTime(b, appendTime)
			}
			h, _ = kafkaproto.ParseBatchHeader(b)
		} else {
			if h.BaseOffset != next {
				return AppendResult{}, 0, fmt.Errorf("append as follower: batch base offset %d, log end %d: %w", h.BaseOffset, next, ErrOffsetOutOfRange)
			}
			if crc := kafkaproto.BatchCRC(b); crc != h.CRC {
				return AppendResult{}, 0, fmt.Errorf("append as follower at offset %d: crc %08x, computed %08x: %w", next, h.CRC, crc, ErrCorrupt)
			}
			pa.record(&h, next)
		}
		batches = append(batches, batchInfo{pos, h})
		next = h.LastOffset() + 1
		pos += int64(len(b))
		rest = r
	}
	prev := l.active()
	if err := l.maybeRollLocked(int64(len(records)), batches[0].h.MaxTimestamp, next-1); err != nil {
		return AppendResult{}, 0, err
	}
	s := l.active()
	rolled := s != prev
	base := s.size
	if _, err := s.log.WriteAt(records, base); err != nil {
		_ = s.log.Truncate(base)
		return AppendResult{}, 0, fmt.Errorf("append to segment %d at %d: %w", s.base, base, err)
	}
	var offs []offsetEntry
	var times []timeEntry
	curMax := s.maxTs
	for i := range batches {
		s.indexBatch(base+batches[i].pos, &batches[i].h, int64(l.cfg.IndexIntervalBytes), &curMax, &offs, &times)
	}
	if err := s.writeIndexEntries(len(s.offIdx), len(s.timeIdx), offs, times); err != nil {
		// The data is written; indexes are rebuilt by recovery if needed.
		l.logger.Warn("locallog: index write failed", "dir", l.dir, "err", err)
		offs, times = nil, nil
	}
	pa.commit()

	l.mu.Lock()
	if base == 0 {
		s.firstTs = batches[0].h.MaxTimestamp
	}
	s.size = base + int64(len(records))
	s.next = next
	s.maxTs = curMax
	s.offIdx = append(s.offIdx, offs...)
	s.timeIdx = append(s.timeIdx, times...)
	s.dirtyLog, s.dirtyIdx = true, true
	l.leo = next
	l.appendSeq++
	ticket := l.appendSeq
	epochChanged := false
	for _, b := range batches {
		if l.epochs.assign(b.h.PartitionLeaderEpoch, b.h.BaseOffset) {
			epochChanged = true
		}
	}
	var epochPayload []byte
	if epochChanged {
		epochPayload = l.epochs.encode()
	}
	logStart := l.logStart
	l.mu.Unlock()

	if epochPayload != nil {
		if err := writeCheckpoint(l.dir, leaderEpochFile, epochPayload); err != nil {
			return AppendResult{}, 0, err
		}
	}
	return AppendResult{FirstOffset: first, LastOffset: next - 1, LogAppendTime: appendTime, LogStartOffset: logStart, Rolled: rolled}, ticket, nil
}

// maybeRollLocked rolls the active segment when an append of n bytes ending
// at lastOffset, whose first batch has max timestamp ts, may not go into it.
func (l *Log) maybeRollLocked(n, ts, lastOffset int64) error {
	s := l.active()
	if s.size == 0 {
		return nil
	}
	roll := s.size+n > l.cfg.SegmentBytes ||
		(len(s.offIdx)+1)*offsetEntrySize > l.cfg.SegmentIndexBytes ||
		(len(s.timeIdx)+2)*timeEntrySize > l.cfg.SegmentIndexBytes ||
		lastOffset-s.base > math.MaxInt32
	if !roll && l.cfg.SegmentMs > 0 {
		// Kafka: the new batch's timestamp minus the first batch's.
		waited := ts - s.firstTs
		if s.firstTs < 0 || ts < 0 {
			waited = l.now().Sub(s.created).Milliseconds()
		}
		roll = waited > l.cfg.SegmentMs
	}
	if !roll {
		return nil
	}
	return l.rollLocked()
}

// rollLocked seals the active segment and starts a new one at the log end.
// Caller holds writeMu.
func (l *Log) rollLocked() error {
	old := l.active()
	if old.size == 0 {
		return nil
	}
	ns, err := openSegment(l.dir, l.leo, true)
	if err != nil {
		return fmt.Errorf("roll: %w", err)
	}
	// The producer state as of the new segment's base offset. Recovery
	// rebuilds it from the log when this fails, so a failure only warns.
	l.expireProducersLocked(l.now())
	if err := l.writeSnapshotLocked(); err != nil {
		l.logger.Warn("locallog: producer snapshot write failed", "dir", l.dir, "offset", l.leo, "err", err)
	}
	te, ok := old.sealTimeIndex()
	if ok {
		if err := old.writeIndexEntries(0, len(old.timeIdx), nil, []timeEntry{te}); err != nil {
			l.logger.Warn("locallog: time index write failed", "dir", l.dir, "err", err)
		}
	}
	l.mu.Lock()
	if ok {
		old.timeIdx = append(old.timeIdx, te)
	}
	old.sealed = true
	old.dirtyIdx = true
	l.segs = append(l.segs, ns)
	l.dirDirty = true
	l.mu.Unlock()
	return nil
}

func (l *Log) applyFlushPolicy(msgs int64) error {
	l.unflushedMsgs += msgs
	byCount := l.cfg.FlushIntervalMessages > 0 && l.cfg.FlushIntervalMessages < math.MaxInt64 && l.unflushedMsgs >= l.cfg.FlushIntervalMessages
	byTime := l.cfg.FlushIntervalMs > 0 && l.now().Sub(l.lastFlush).Milliseconds() >= l.cfg.FlushIntervalMs
	if !byCount && !byTime {
		return nil
	}
	return l.flushWithWriteMu()
}

// flushWithWriteMu flushes and resets the flush-policy counters; caller holds writeMu.
func (l *Log) flushWithWriteMu() error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if err := l.flushLocked(true); err != nil {
		return err
	}
	l.unflushedMsgs = 0
	l.lastFlush = l.now()
	return nil
}

// Flush fsyncs everything written so far (data, indexes, new files) and
// advances the recovery-point checkpoint.
func (l *Log) Flush() error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return l.flushWithWriteMu()
}

// flushLocked fsyncs dirty segments (with checkpoint: their indexes too, and
// then the recovery point). Caller holds flushMu. It returns the offset below
// which everything is durable.
func (l *Log) flushLocked(checkpoint bool) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	leo, seq := l.leo, l.appendSeq
	type job struct {
		s        *segment
		log, idx bool
	}
	var jobs []job
	for _, s := range l.segs {
		j := job{s, s.dirtyLog, checkpoint && s.dirtyIdx}
		if j.log || j.idx {
			s.dirtyLog = false
			if j.idx {
				s.dirtyIdx = false
			}
			jobs = append(jobs, j)
		}
	}
	dirDirty := l.dirDirty
	l.dirDirty = false
	l.mu.Unlock()

	var err error
	for _, j := range jobs {
		if j.log {
			if e := j.s.log.Sync(); e != nil && err == nil {
				err = fmt.Errorf("flush segment %d: %w", j.s.base, e)
			}
		}
		if j.idx {
			for _, f := range []*os.File{j.s.idx, j.s.tidx} {
				if e := f.Sync(); e != nil && err == nil {
					err = fmt.Errorf("flush indexes of segment %d: %w", j.s.base, e)
				}
			}
		}
	}
	if dirDirty && err == nil {
		if e := syncDir(l.dir); e != nil {
			err = fmt.Errorf("flush directory %s: %w", l.dir, e)
		}
	}
	if err != nil {
		l.mu.Lock()
		for _, j := range jobs {
			j.s.dirtyLog = j.s.dirtyLog || j.log
			j.s.dirtyIdx = j.s.dirtyIdx || j.idx
		}
		l.dirDirty = l.dirDirty || dirDirty
		l.mu.Unlock()
		return err
	}
	l.gcMu.Lock()
	l.gcDurable = max(l.gcDurable, seq)
	l.gcMu.Unlock()
	if !checkpoint {
		return nil
	}
	l.mu.RLock()
	advance := leo > l.recoveryPoint
	l.mu.RUnlock()
	if advance {
		if err := writeOffsetCheckpoint(l.dir, recoveryPointFile, leo); err != nil {
			return err
		}
		l.mu.Lock()
		l.recoveryPoint = max(l.recoveryPoint, leo)
		l.mu.Unlock()
	}
	return nil
}

// waitDurable returns once the append with the given ticket is fsynced. Appenders
// waiting together share one fsync: whoever finds no fsync running starts
// one covering everything written so far; the others wait for it.
func (l *Log) waitDurable(ticket int64) error {
	l.gcMu.Lock()
	defer l.gcMu.Unlock()
	for l.gcDurable < ticket {
		if l.gcSyncing {
			l.gcCond.Wait()
			continue
		}
		l.gcSyncing = true
		l.gcSyncs++
		l.gcMu.Unlock()
		l.flushMu.Lock()
		err := l.flushLocked(false)
		l.flushMu.Unlock()
		l.gcMu.Lock()
		l.gcSyncing = false
		l.gcCond.Broadcast()
		if err != nil {
			return err
		}
	}
	return nil
}

// LogStartOffset is the first readable offset over both tiers.
func (l *Log) LogStartOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.logStart
}

// LocalLogStartOffset is the first offset held locally: LogStartOffset
// unless the log is tiered and older segments live only in the remote tier.
func (l *Log) LocalLogStartOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.localStartLocked()
}

// localStartLocked: caller holds mu.
func (l *Log) localStartLocked() int64 { return max(l.logStart, l.segs[0].base) }

// SetTieredOffset records the last offset known to be uploaded and finished
// in the remote tier; a tiered log deletes local segments only at or below
// it (DESIGN.md invariant 3). It never moves backwards.
func (l *Log) SetTieredOffset(off int64) {
	l.mu.Lock()
	l.tieredUpTo = max(l.tieredUpTo, off)
	l.mu.Unlock()
}

// TieredOffset is the value of SetTieredOffset, -1 if never set.
func (l *Log) TieredOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.tieredUpTo
}

// EpochStart is one leader-epoch history entry: epoch begins at Start.
type EpochStart struct {
	Epoch int32
	Start int64
}

// EpochHistory returns the leader-epoch history, oldest first.
func (l *Log) EpochHistory() []EpochStart {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]EpochStart, len(l.epochs.entries))
	for i, e := range l.epochs.entries {
		out[i] = EpochStart{e.epoch, e.start}
	}
	return out
}

// EncodeEpochHistory renders entries in the leader-epoch checkpoint format
// (uploaded with tiered segments).
func EncodeEpochHistory(entries []EpochStart) []byte {
	c := epochCache{}
	for _, e := range entries {
		c.entries = append(c.entries, epochEntry{e.Epoch, e.Start})
	}
	return c.encode()
}

// ProducerSnapshot returns the raw producer-state snapshot taken at offset
// (written when the segment ending there was rolled); os.ErrNotExist-wrapped
// when there is none.
func (l *Log) ProducerSnapshot(offset int64) ([]byte, error) {
	return os.ReadFile(filepath.Join(l.dir, snapshotName(offset)))
}

// LogEndOffset is the next offset to be assigned.
func (l *Log) LogEndOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.leo
}

// ActiveBase is the base offset of the active segment: every segment
// below it is sealed.
func (l *Log) ActiveBase() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.active().base
}

// Size is the number of bytes in all segment files.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n int64
	for _, s := range l.segs {
		n += s.size
	}
	return n
}

// LatestEpoch is the newest leader epoch in the log, -1 if none.
func (l *Log) LatestEpoch() int32 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.epochs.latest()
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch: the largest epoch <=
// requested and that epoch's end offset (the start of the next higher epoch,
// or LogEndOffset for the latest); (-1, -1) if requested is below the
// earliest epoch or no epoch is known. (Kafka answers a request below the
// earliest epoch with (requested, earliest start) instead.)
func (l *Log) EndOffsetForEpoch(epoch int32) (int32, int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.epochs.endOffsetFor(epoch, l.leo)
}

// EpochForOffset returns the leader epoch of the batch holding offset, -1 if
// unknown.
func (l *Log) EpochForOffset(offset int64) int32 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.epochs.epochFor(offset)
}

// Segments describes the segments, oldest first.
func (l *Log) Segments() []SegmentInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]SegmentInfo, 0, len(l.segs))
	for i, s := range l.segs {
		out = append(out, SegmentInfo{
			BaseOffset: s.base, NextOffset: s.next, Size: s.size, MaxTimestamp: s.maxTs,
			Active:  i == len(l.segs)-1,
			LogPath: s.log.Name(), IndexPath: s.idx.Name(), TimeIndexPath: s.tidx.Name(),
		})
	}
	return out
}

// UpdateConfig applies new settings to later appends and retention runs.
func (l *Log) UpdateConfig(cfg Config) {
	l.writeMu.Lock()
	l.cfg = cfg.normalized()
	l.writeMu.Unlock()
}

// Close flushes, writes the clean-shutdown marker and closes the files. It
// is idempotent.
func (l *Log) Close() error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.closed {
		return nil
	}
	err := l.writeSnapshotLocked()
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if err == nil {
		err = l.flushLocked(true)
	}
	if err == nil {
		err = writeCheckpoint(l.dir, cleanShutdownFile, nil)
	}
	l.mu.Lock()
	l.closed = true
	for _, s := range l.segs {
		s.close()
	}
	l.mu.Unlock()
	return err
}

// abandon closes the files without flushing or marking a clean shutdown, as
// a crash would (tests).
func (l *Log) abandon() {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		for _, s := range l.segs {
			s.close()
		}
	}
}

// Delete closes the log and removes its directory.
func (l *Log) Delete() error {
	_ = l.Close()
	if err := os.RemoveAll(l.dir); err != nil {
		return fmt.Errorf("delete log %s: %w", l.dir, err)
	}
	return nil
}
