package locallog

import (
	"encoding/binary"
	"fmt"
)

// epochEntry says: batches from start onwards carry epoch (until the next entry).
type epochEntry struct {
	epoch int32
	start int64
}

// epochCache is the leader-epoch history of the log, oldest first, epochs and
// start offsets strictly increasing. Guarded by Log.mu.
type epochCache struct {
	entries []epochEntry
}

func (c *epochCache) latest() int32 {
	if len(c.entries) == 0 {
		return -1
	}
	return c.entries[len(c.entries)-1].epoch
}

// assign records that epoch starts at start. Epochs not newer than the latest
// are ignored; entries at or after start are replaced. It reports a change.
func (c *epochCache) assign(epoch int32, start int64) bool {
	if epoch < 0 || epoch <= c.latest() {
		return false
	}
	for len(c.entries) > 0 && c.entries[len(c.entries)-1].start >= start {
		c.entries = c.entries[:len(c.entries)-1]
	}
	c.entries = append(c.entries, epochEntry{epoch, start})
	return true
}

// endOffsetFor implements OffsetForLeaderEpoch with Kafka's semantics:
//   - the latest epoch (or nothing newer known but requested == latest): (latest, leo);
//   - requested newer than every known epoch, or nothing known: (-1, -1);
//   - requested older than the earliest epoch: (requested, earliest start);
//   - otherwise the largest epoch <= requested and where it ends (the next
//     entry's start).
func (c *epochCache) endOffsetFor(requested int32, leo int64) (int32, int64) {
	n := len(c.entries)
	if requested < 0 || n == 0 || requested > c.entries[n-1].epoch {
		return -1, -1
	}
	if requested == c.entries[n-1].epoch {
		return requested, leo
	}
	i := n - 1
	for i >= 0 && c.entries[i].epoch > requested {
		i--
	}
	if i < 0 {
		return requested, c.entries[0].start
	}
	return c.entries[i].epoch, c.entries[i+1].start
}

// epochFor returns the epoch of the batch holding offset, -1 if unknown.
func (c *epochCache) epochFor(offset int64) int32 {
	for i := len(c.entries) - 1; i >= 0; i-- {
		if c.entries[i].start <= offset {
			return c.entries[i].epoch
		}
	}
	return -1
}

// truncateFromEnd drops entries starting at or after end.
func (c *epochCache) truncateFromEnd(end int64) bool {
	n := len(c.entries)
	for n > 0 && c.entries[n-1].start >= end {
		n--
	}
	changed := n != len(c.entries)
	c.entries = c.entries[:n]
	return changed
}

// truncateFromStart drops entries wholly before start; the last entry
// starting before start is kept and moved to start.
func (c *epochCache) truncateFromStart(start int64) bool {
	i := 0
	for i+1 < len(c.entries) && c.entries[i+1].start <= start {
		i++
	}
	changed := i > 0
	c.entries = c.entries[i:]
	if len(c.entries) > 0 && c.entries[0].start < start {
		c.entries[0].start = start
		changed = true
	}
	return changed
}

func (c *epochCache) encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(c.entries)))
	for _, e := range c.entries {
		b = binary.BigEndian.AppendUint32(b, uint32(e.epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.start))
	}
	return b
}

func decodeEpochs(p []byte) ([]epochEntry, error) {
	if len(p) < 4 {
		return nil, fmt.Errorf("epoch checkpoint of %d bytes: %w", len(p), ErrCorrupt)
	}
	n := binary.BigEndian.Uint32(p)
	p = p[4:]
	if uint64(n)*12 != uint64(len(p)) {
		return nil, fmt.Errorf("epoch checkpoint: %d entries in %d bytes: %w", n, len(p), ErrCorrupt)
	}
	out := make([]epochEntry, 0, n)
	for ; len(p) > 0; p = p[12:] {
		e := epochEntry{int32(binary.BigEndian.Uint32(p)), int64(binary.BigEndian.Uint64(p[4:]))}
		if e.epoch < 0 || e.start < 0 || (len(out) > 0 && (e.epoch <= out[len(out)-1].epoch || e.start <= out[len(out)-1].start)) {
			return nil, fmt.Errorf("epoch checkpoint: entry %d (epoch %d at %d) out of order: %w", len(out), e.epoch, e.start, ErrCorrupt)
		}
		out = append(out, e)
	}
	return out, nil
}
