package locallog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stratabroker/strata/kafkaproto"
)

// Producer-state errors of AppendAsLeader (Kafka's codes in parentheses);
// match with errors.Is. Nothing of the append is written.
var (
	// ErrOutOfOrderSequence: a batch whose first sequence does not follow
	// the producer's last one, or a new epoch not starting at 0
	// (OUT_OF_ORDER_SEQUENCE_NUMBER, 45).
	ErrOutOfOrderSequence = errors.New("locallog: out of order sequence number")
	// ErrInvalidProducerEpoch: a batch from an older epoch than the
	// producer's latest (INVALID_PRODUCER_EPOCH, 47).
	ErrInvalidProducerEpoch = errors.New("locallog: invalid producer epoch")
	// ErrUnknownProducerID: a producer this partition has no state for,
	// starting at a sequence other than 0 (UNKNOWN_PRODUCER_ID, 59).
	ErrUnknownProducerID = errors.New("locallog: unknown producer id")
)

// producerBatchesKept is how many of a producer's latest batches are
// remembered for deduplication (Kafka's NUM_BATCHES_TO_RETAIN, matching
// max.in.flight.requests.per.connection=5 of idempotent producers).
const producerBatchesKept = 5

const (
	snapshotSuffix  = ".snapshot"
	snapshotMaxSize = 1 << 28
	batchMetaSize   = 4 + 4 + 8 + 8
	entryFixedSize  = 8 + 2 + 8 + 1
)

// batchMeta is one appended batch of a producer.
type batchMeta struct {
	firstSeq, lastSeq       int32
	firstOffset, lastOffset int64
}

// producerEntry is what a partition knows of one producer: its latest
// epoch and its latest batches, oldest first. Entries are replaced, never
// modified in place, so a pending append can work on copies.
type producerEntry struct {
	epoch         int16
	lastTimestamp int64 // max timestamp of the latest batch, or its append time when later
	batches       []batchMeta
}

func (e *producerEntry) clone() *producerEntry {
	c := *e
	c.batches = slices.Clone(e.batches)
	return &c
}

// add records a batch, resetting the batches on a new epoch.
func (e *producerEntry) add(epoch int16, ts int64, m batchMeta) {
	if epoch != e.epoch {
		e.epoch = epoch
		e.batches = e.batches[:0]
	}
	e.lastTimestamp = ts
	e.batches = append(e.batches, m)
	if n := len(e.batches); n > producerBatchesKept {
		e.batches = append(e.batches[:0], e.batches[n-producerBatchesKept:]...)
	}
}

// producerState maps producer id → entry. It belongs to the holder of
// Log.writeMu.
type producerState struct {
	entries map[int64]*producerEntry
}

// expire forgets the producers whose latest batch's timestamp is older than
// nowMs - expMs, and returns how many.
func (ps *producerState) expire(nowMs, expMs int64) int {
	n := 0
	for pid, e := range ps.entries {
		if nowMs-e.lastTimestamp > expMs {
			delete(ps.entries, pid)
			n++
		}
	}
	return n
}

// expireProducersLocked applies producer.id.expiration.ms (Config). A
// snapshot written before still holds the expired producers; recovery from
// it expires them again at the next roll or retention check. Caller holds
// writeMu.
func (l *Log) expireProducersLocked(now time.Time) {
	exp := l.cfg.ProducerIDExpirationMs
	if exp < 0 {
		return
	}
	if exp == 0 {
		exp = DefaultConfig().ProducerIDExpirationMs
	}
	if n := l.producers.expire(now.UnixMilli(), exp); n > 0 {
		l.logger.Info("locallog: expired idle producers", "dir", l.dir, "producers", n, "producer.id.expiration.ms", exp)
	}
}

// lastSequence is the sequence of the last record of a batch, wrapping
// after MaxInt32 to 0 as producers do.
func lastSequence(h *kafkaproto.BatchHeader) int32 {
	base, delta := h.BaseSequence, h.LastOffsetDelta
	if base > math.MaxInt32-delta {
		return delta - (math.MaxInt32 - base) - 1
	}
	return base + delta
}

// inSequence reports whether next directly follows last.
func inSequence(last, next int32) bool {
	return next == last+1 || (last == math.MaxInt32 && next == 0)
}

func metaOf(h *kafkaproto.BatchHeader, firstOffset int64) batchMeta {
	return batchMeta{h.BaseSequence, lastSequence(h), firstOffset, firstOffset + int64(h.LastOffsetDelta)}
}

// producerAppend collects the producer updates of one append; they are
// applied to the state only once the batches are written.
type producerAppend struct {
	ps      *producerState
	updated map[int64]*producerEntry
	nowMs   int64 // the append's wall-clock time (0 in recovery)
}

func (a *producerAppend) entry(pid int64) *producerEntry {
	if e, ok := a.updated[pid]; ok {
		return e
	}
	if e, ok := a.ps.entries[pid]; ok {
		return e
	}
	return nil
}

func (a *producerAppend) modifiable(pid int64) *producerEntry {
	if e, ok := a.updated[pid]; ok {
		return e
	}
	if a.updated == nil {
		a.updated = map[int64]*producerEntry{}
	}
	var e *producerEntry
	if cur, ok := a.ps.entries[pid]; ok {
		e = cur.clone()
	} else {
		e = &producerEntry{epoch: -1, lastTimestamp: -1}
	}
	a.updated[pid] = e
	return e
}

// validate checks a leader batch placed at firstOffset against the
// producer's state, as Kafka's ProducerAppendInfo does: an older epoch is
// ErrInvalidProducerEpoch; a copy of one of the latest batches of the same
// epoch is a duplicate (returned, nothing to append); a new epoch must start
// at sequence 0 (ErrOutOfOrderSequence); an unknown producer must start at
// 0 (ErrUnknownProducerID); otherwise the first sequence must follow the
// last one (ErrOutOfOrderSequence). Batches without a producer id pass.
func (a *producerAppend) validate(h *kafkaproto.BatchHeader, firstOffset int64) (*batchMeta, error) {
	if h.ProducerID < 0 {
		return nil, nil
	}
	cur := a.entry(h.ProducerID)
	if cur == nil {
		if h.BaseSequence != 0 {
			return nil, fmt.Errorf("producer %d unknown, first sequence %d: %w", h.ProducerID, h.BaseSequence, ErrUnknownProducerID)
		}
	} else {
		switch {
		case h.ProducerEpoch < cur.epoch:
			return nil, fmt.Errorf("producer %d epoch %d, current %d: %w", h.ProducerID, h.ProducerEpoch, cur.epoch, ErrInvalidProducerEpoch)
		case h.ProducerEpoch > cur.epoch:
			if h.BaseSequence != 0 {
				return nil, fmt.Errorf("producer %d new epoch %d starts at sequence %d: %w", h.ProducerID, h.ProducerEpoch, h.BaseSequence, ErrOutOfOrderSequence)
			}
		default:
			last := lastSequence(h)
			for i := range cur.batches {
				if b := cur.batches[i]; b.firstSeq == h.BaseSequence && b.lastSeq == last {
					return &b, nil
				}
			}
			if n := len(cur.batches); n > 0 && !inSequence(cur.batches[n-1].lastSeq, h.BaseSequence) {
				return nil, fmt.Errorf("producer %d epoch %d: sequence %d after %d: %w", h.ProducerID, h.ProducerEpoch, h.BaseSequence, cur.batches[n-1].lastSeq, ErrOutOfOrderSequence)
			}
		}
	}
	a.record(h, firstOffset)
	return nil, nil
}

// record notes a batch without validating it (followers, recovery).
func (a *producerAppend) record(h *kafkaproto.BatchHeader, firstOffset int64) {
	if h.ProducerID < 0 {
		return
	}
	// Last seen: the batch's timestamp, or the append's wall-clock time
	// when later — a producer sending old timestamps (a backfill) is not
	// taken for one that went away (producer.id.expiration.ms).
	a.modifiable(h.ProducerID).add(h.ProducerEpoch, max(h.MaxTimestamp, a.nowMs), metaOf(h, firstOffset))
}

// commit publishes the collected updates.
func (a *producerAppend) commit() {
	if len(a.updated) == 0 {
		return
	}
	if a.ps.entries == nil {
		a.ps.entries = map[int64]*producerEntry{}
	}
	maps.Copy(a.ps.entries, a.updated)
	a.updated = nil
}

// apply records one batch directly (recovery replay).
func (ps *producerState) apply(h *kafkaproto.BatchHeader) {
	a := producerAppend{ps: ps}
	a.record(h, h.BaseOffset)
	a.commit()
}

// encode serialises the state covering offsets below offset (the snapshot
// payload, see doc.go), producers in id order.
func (ps *producerState) encode(offset int64) []byte {
	ids := slices.Sorted(maps.Keys(ps.entries))
	b := make([]byte, 0, 12+len(ids)*(entryFixedSize+producerBatchesKept*batchMetaSize))
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		e := ps.entries[id]
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		b = binary.BigEndian.AppendUint16(b, uint16(e.epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.lastTimestamp))
		b = append(b, byte(len(e.batches)))
		for _, m := range e.batches {
			b = binary.BigEndian.AppendUint32(b, uint32(m.firstSeq))
			b = binary.BigEndian.AppendUint32(b, uint32(m.lastSeq))
			b = binary.BigEndian.AppendUint64(b, uint64(m.firstOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(m.lastOffset))
		}
	}
	return b
}

// decodeProducerState parses a snapshot payload; the offset inside must be
// want.
func decodeProducerState(p []byte, want int64) (producerState, error) {
	bad := func(what string) (producerState, error) {
		return producerState{}, fmt.Errorf("producer snapshot %d: %s: %w", want, what, ErrCorrupt)
	}
	if len(p) < 12 {
		return bad("short")
	}
	if off := int64(binary.BigEndian.Uint64(p)); off != want {
		return bad(fmt.Sprintf("holds offset %d", off))
	}
	n := binary.BigEndian.Uint32(p[8:])
	p = p[12:]
	if uint64(n)*entryFixedSize > uint64(len(p)) {
		return bad(fmt.Sprintf("%d entries in %d bytes", n, len(p)))
	}
	ps := producerState{entries: make(map[int64]*producerEntry, n)}
	for range n {
		if len(p) < entryFixedSize {
			return bad("truncated entry")
		}
		id := int64(binary.BigEndian.Uint64(p))
		e := &producerEntry{
			epoch:         int16(binary.BigEndian.Uint16(p[8:])),
			lastTimestamp: int64(binary.BigEndian.Uint64(p[10:])),
		}
		nb := int(p[18])
		p = p[entryFixedSize:]
		if id < 0 || nb > producerBatchesKept || len(p) < nb*batchMetaSize {
			return bad(fmt.Sprintf("entry of producer %d with %d batches", id, nb))
		}
		if _, dup := ps.entries[id]; dup {
			return bad(fmt.Sprintf("producer %d twice", id))
		}
		for range nb {
			m := batchMeta{
				firstSeq:    int32(binary.BigEndian.Uint32(p)),
				lastSeq:     int32(binary.BigEndian.Uint32(p[4:])),
				firstOffset: int64(binary.BigEndian.Uint64(p[8:])),
				lastOffset:  int64(binary.BigEndian.Uint64(p[16:])),
			}
			if m.firstOffset < 0 || m.lastOffset < m.firstOffset || m.lastOffset >= want {
				return bad(fmt.Sprintf("producer %d batch at offsets %d..%d", id, m.firstOffset, m.lastOffset))
			}
			e.batches = append(e.batches, m)
			p = p[batchMetaSize:]
		}
		ps.entries[id] = e
	}
	if len(p) != 0 {
		return bad(fmt.Sprintf("%d trailing bytes", len(p)))
	}
	return ps, nil
}

func snapshotName(offset int64) string { return fmt.Sprintf("%020d%s", offset, snapshotSuffix) }

// listSnapshots returns the offsets of the snapshot files in dir, oldest first.
func listSnapshots(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var offs []int64
	for _, e := range ents {
		name := e.Name()
		if len(name) == 20+len(snapshotSuffix) && strings.HasSuffix(name, snapshotSuffix) {
			if o, err := strconv.ParseInt(strings.TrimSuffix(name, snapshotSuffix), 10, 64); err == nil && o >= 0 {
				offs = append(offs, o)
			}
		}
	}
	slices.Sort(offs)
	return offs, nil
}

func readSnapshot(dir string, offset int64) (producerState, error) {
	path := filepath.Join(dir, snapshotName(offset))
	fi, err := os.Stat(path)
	if err != nil {
		return producerState{}, err
	}
	if fi.Size() > snapshotMaxSize {
		return producerState{}, fmt.Errorf("producer snapshot %s: %d bytes: %w", path, fi.Size(), ErrCorrupt)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return producerState{}, err
	}
	p, err := decodeCheckpoint(b)
	if err != nil {
		return producerState{}, fmt.Errorf("producer snapshot %s: %w", path, err)
	}
	return decodeProducerState(p, offset)
}

// writeSnapshotLocked writes the producer state as the snapshot at the log
// end, atomically. Caller holds writeMu.
func (l *Log) writeSnapshotLocked() error {
	return writeCheckpoint(l.dir, snapshotName(l.leo), l.producers.encode(l.leo))
}

// deleteSnapshots removes the snapshots for which drop is true.
func (l *Log) deleteSnapshots(drop func(off int64) bool) error {
	offs, err := listSnapshots(l.dir)
	if err != nil {
		return err
	}
	for _, o := range offs {
		if drop(o) {
			if err := os.Remove(filepath.Join(l.dir, snapshotName(o))); err != nil && !isNotExist(err) {
				return fmt.Errorf("delete producer snapshot %d: %w", o, err)
			}
		}
	}
	return nil
}

// deleteSnapshotsBeforeLocked removes snapshots below offset but always keeps the
// newest one. Caller holds writeMu.
func (l *Log) deleteSnapshotsBeforeLocked(offset int64) error {
	offs, err := listSnapshots(l.dir)
	if err != nil || len(offs) == 0 {
		return err
	}
	newest := offs[len(offs)-1]
	return l.deleteSnapshots(func(o int64) bool { return o < offset && o != newest })
}

// loadProducerStateLocked rebuilds the producer state for the current log:
// snapshots above the log end are deleted; the newest valid snapshot at or
// below it is loaded and the batches from its offset on are replayed; with
// no valid snapshot every batch of the log is. Caller holds writeMu (or is
// Open).
func (l *Log) loadProducerStateLocked() error {
	leo := l.leo
	if err := l.deleteSnapshots(func(o int64) bool { return o > leo }); err != nil {
		return err
	}
	offs, err := listSnapshots(l.dir)
	if err != nil {
		return err
	}
	l.producers = producerState{}
	from := int64(-1)
	for i := len(offs) - 1; i >= 0; i-- {
		ps, err := readSnapshot(l.dir, offs[i])
		if err != nil {
			l.logger.Warn("locallog: producer snapshot unusable, trying an older one", "dir", l.dir, "snapshot", offs[i], "err", err)
			continue
		}
		l.producers, from = ps, offs[i]
		break
	}
	if from < 0 && len(offs) > 0 {
		l.logger.Warn("locallog: no valid producer snapshot, rebuilding producer state from the log", "dir", l.dir)
	}
	from = max(from, l.segs[0].base)
	for _, s := range l.segs {
		if s.next <= from || s.size == 0 {
			continue
		}
		pos := int64(0)
		if from > s.base {
			if pos, _, err = s.findPosition(from, s.size); err != nil {
				return fmt.Errorf("replay producer state: %w", err)
			}
		}
		for pos < s.size {
			h, err := s.readHeader(pos)
			if err != nil {
				return fmt.Errorf("replay producer state: %w", err)
			}
			if h.BatchLength < hdrSize-12 {
				return fmt.Errorf("replay producer state: segment %d at %d: batch length %d: %w", s.base, pos, h.BatchLength, ErrCorrupt)
			}
			if h.BaseOffset >= from {
				l.producers.apply(&h)
			}
			pos += int64(h.Size())
		}
	}
	return nil
}
