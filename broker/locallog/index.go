package locallog

import (
	"encoding/binary"
	"fmt"
	"sort"
)

const (
	offsetEntrySize = 8
	timeEntrySize   = 12
)

// offsetEntry: the batch with base offset segment.base+rel starts at pos.
type offsetEntry struct {
	rel uint32
	pos uint32
}

// timeEntry: every record with offset <= segment.base+rel has a timestamp <= ts.
type timeEntry struct {
	ts  int64
	rel uint32
}

func appendOffsetEntry(dst []byte, e offsetEntry) []byte {
	dst = binary.BigEndian.AppendUint32(dst, e.rel)
	return binary.BigEndian.AppendUint32(dst, e.pos)
}

func appendTimeEntry(dst []byte, e timeEntry) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.ts))
	return binary.BigEndian.AppendUint32(dst, e.rel)
}

// decodeOffsetIndex decodes a .index file and checks its shape: whole
// entries, relative offsets and positions strictly increasing, positions > 0
// and below segSize. Errors wrap ErrCorrupt.
func decodeOffsetIndex(b []byte, segSize int64) ([]offsetEntry, error) {
	if len(b)%offsetEntrySize != 0 {
		return nil, fmt.Errorf("offset index of %d bytes: %w", len(b), ErrCorrupt)
	}
	out := make([]offsetEntry, 0, len(b)/offsetEntrySize)
	for i := 0; i < len(b); i += offsetEntrySize {
		e := offsetEntry{binary.BigEndian.Uint32(b[i:]), binary.BigEndian.Uint32(b[i+4:])}
		if e.pos == 0 || int64(e.pos) >= segSize {
			return nil, fmt.Errorf("offset index entry %d: position %d outside (0, %d): %w", len(out), e.pos, segSize, ErrCorrupt)
		}
		if n := len(out); n > 0 && (e.rel <= out[n-1].rel || e.pos <= out[n-1].pos) {
			return nil, fmt.Errorf("offset index entry %d out of order: %w", n, ErrCorrupt)
		}
		out = append(out, e)
	}
	return out, nil
}

// decodeTimeIndex decodes a .timeindex file: whole entries, timestamps and
// relative offsets strictly increasing. Errors wrap ErrCorrupt.
func decodeTimeIndex(b []byte) ([]timeEntry, error) {
	if len(b)%timeEntrySize != 0 {
		return nil, fmt.Errorf("time index of %d bytes: %w", len(b), ErrCorrupt)
	}
	out := make([]timeEntry, 0, len(b)/timeEntrySize)
	for i := 0; i < len(b); i += timeEntrySize {
		e := timeEntry{int64(binary.BigEndian.Uint64(b[i:])), binary.BigEndian.Uint32(b[i+8:])}
		if n := len(out); n > 0 && (e.ts <= out[n-1].ts || e.rel < out[n-1].rel) {
			return nil, fmt.Errorf("time index entry %d out of order: %w", n, ErrCorrupt)
		}
		out = append(out, e)
	}
	return out, nil
}

// floorPosition returns the position of the last indexed batch whose base
// offset is <= rel (0 when none).
func floorPosition(idx []offsetEntry, rel uint32) int64 {
	i := sort.Search(len(idx), func(i int) bool { return idx[i].rel > rel })
	if i == 0 {
		return 0
	}
	return int64(idx[i-1].pos)
}
