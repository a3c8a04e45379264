package locallog

import (
	"fmt"
)

// DecodeEpochHistory parses a leader-epoch history in the checkpoint
// payload format written by EncodeEpochHistory (as uploaded with tiered
// segments). Malformed input is an error wrapping ErrCorrupt.
func DecodeEpochHistory(b []byte) ([]EpochStart, error) {
	entries, err := decodeEpochs(b)
	if err != nil {
		return nil, err
	}
	out := make([]EpochStart, len(entries))
	for i, e := range entries {
		out[i] = EpochStart{Epoch: e.epoch, Start: e.start}
	}
	return out, nil
}

// RestartAt empties the log and restarts it at offset, the way a follower
// rebuilds from the remote tier (KIP-405): every segment and snapshot goes,
// the log end and local log start become offset, the log start becomes
// logStart (<= offset; below offset only for a Tiered log, whose older data
// lives in the remote tier), the leader-epoch history becomes epochs (the
// entries starting at or after offset are dropped, those wholly below
// logStart trimmed), and the producer state is producerSnapshot: the raw
// snapshot file taken at offset (nil or empty = no producers). A snapshot
// that does not decode, or was taken at another offset, is an error and the
// log is left unchanged.
func (l *Log) RestartAt(offset, logStart int64, epochs []EpochStart, producerSnapshot []byte) error {
	if offset < 0 || logStart < 0 || logStart > offset {
		return fmt.Errorf("restart at %d with log start %d: %w", offset, logStart, ErrOffsetOutOfRange)
	}
	if !l.cfg.Tiered && logStart != offset {
		return fmt.Errorf("restart at %d with log start %d: only a tiered log may start below its local data: %w", offset, logStart, ErrOffsetOutOfRange)
	}
	var cache epochCache
	for _, e := range epochs {
		if e.Epoch < 0 || e.Start < 0 || (len(cache.entries) > 0 && (e.Epoch <= cache.latest() || e.Start <= cache.entries[len(cache.entries)-1].start)) {
			return fmt.Errorf("restart at %d: leader epochs %v not strictly ascending: %w", offset, epochs, ErrCorrupt)
		}
		cache.entries = append(cache.entries, epochEntry{e.Epoch, e.Start})
	}
	cache.truncateFromEnd(offset)
	cache.truncateFromStart(logStart)
	if len(producerSnapshot) > 0 {
		p, err := decodeCheckpoint(producerSnapshot)
		if err != nil {
			return fmt.Errorf("restart at %d: producer snapshot: %w", offset, err)
		}
		if _, err := decodeProducerState(p, offset); err != nil {
			return fmt.Errorf("restart at %d: %w", offset, err)
		}
	}
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.truncateFullyLocked(offset); err != nil {
		return err
	}
	if len(producerSnapshot) > 0 {
		p, _ := decodeCheckpoint(producerSnapshot)
		if err := writeCheckpoint(l.dir, snapshotName(offset), p); err != nil {
			return err
		}
	}
	if err := writeCheckpoint(l.dir, leaderEpochFile, cache.encode()); err != nil {
		return err
	}
	if logStart != offset {
		if err := writeOffsetCheckpoint(l.dir, logStartFile, logStart); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.epochs = cache
	l.logStart = logStart
	l.mu.Unlock()
	return l.loadProducerStateLocked()
}
