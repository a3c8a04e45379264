package tiering

// Leader changes and follower rebuilds (KIP-405, TIERING-NOTES.md "Leader
// changes" and "Followers never copy tiered data").
//
// A leader counts only the remote segments of its own epoch lineage: a
// segment is in the lineage when every epoch it holds is in the leader's
// leader-epoch history and the segment's offsets of that epoch lie inside
// that epoch's range there. Uploads of a deposed leader beyond the point
// where its history diverged are therefore ignored for reads, retention and
// "highest uploaded", and the leader removes them. Segment boundaries differ
// between replicas (a follower rolls by its own appends), so a new leader
// whose local segment straddles the highest uploaded offset uploads only the
// part after it: the remote log stays one run of offsets, without gaps or
// overlaps.

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/kafkaproto"
)

// inLineage reports whether the remote segment r belongs to the history
// (oldest first). An empty history accepts everything (nothing to judge
// by), and so does a segment that records no epochs. Epochs older than the
// history's first are accepted (the history is trimmed at the log start).
func inLineage(r coordinator.RemoteSegment, history []ManifestEpoch) bool {
	if len(history) == 0 || len(r.Epochs) == 0 {
		return true
	}
	for i, e := range r.Epochs {
		end := r.EndOffset // last offset of epoch e in the segment
		if i+1 < len(r.Epochs) {
			end = r.Epochs[i+1].StartOffset - 1
		}
		if e.Epoch < history[0].Epoch {
			// Older than the history (trimmed at the log start): nothing
			// to judge by; retention removes it once below the log start.
			continue
		}
		j := -1
		for k, h := range history {
			if h.Epoch == e.Epoch {
				j = k
				break
			}
		}
		if j < 0 {
			return false
		}
		hEnd := int64(math.MaxInt64) // the latest epoch reaches the log end
		if j+1 < len(history) {
			hEnd = history[j+1].StartOffset - 1
		}
		// The history's first entry may have been moved up to the log
		// start; only the end can prove a divergence there.
		if (j > 0 && e.StartOffset < history[j].StartOffset) || end > hEnd {
			return false
		}
	}
	return true
}

// removeForeign deletes, on the leader, the finished segments outside its
// epoch lineage (a deposed leader's uploads past the divergence point).
// Their offsets are uploaded again from the leader's own log. Segments whose
// epochs are all older than the leader's earliest epoch count as lineage
// (the history was trimmed at the log start) and go with retention once
// they are below the log start.
func (m *Manager) removeForeign(ctx context.Context, s *partState, fence coordinator.LeaderFence) error {
	history := s.p.EpochHistory()
	if len(history) == 0 {
		return nil
	}
	removed := false
	for _, r := range append([]coordinator.RemoteSegment(nil), s.segs...) {
		if r.State != coordinator.CopyFinished || inLineage(r, history) {
			continue
		}
		m.logger.Warn("tiering: removing a remote segment outside the leader's epoch lineage",
			"topic", s.p.Topic(), "partition", s.p.Index(), "segment", idString(r.ID),
			"base", r.StartOffset, "end", r.EndOffset, "uploader", r.BrokerID, "uploader_epoch", r.LeaderEpoch)
		if err := m.deleteSegment(ctx, s, r, fence); err != nil {
			return err
		}
		removed = true
		metricOrphansRemoved.Inc()
	}
	if removed {
		m.publish(s)
	}
	return nil
}

// sliceSegment returns the part of seg from offset from (a batch boundary
// inside it) to its end, with offset and time indexes built for the part.
func sliceSegment(seg LocalSegment, from int64, indexInterval int64) (LocalSegment, error) {
	f, err := os.Open(seg.LogPath)
	if err != nil {
		return LocalSegment{}, err
	}
	defer f.Close()
	out := seg
	out.BaseOffset = from
	out.MaxTimestamp = -1
	var hdr [kafkaproto.RecordBatchHeaderSize]byte
	var offIdx, timeIdx []byte
	start, lastIndexed := int64(-1), int64(-1)
	maxTs := int64(math.MinInt64)
	for pos := int64(0); pos < seg.Size; {
		if _, err := f.ReadAt(hdr[:], pos); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return LocalSegment{}, fmt.Errorf("slice segment %d: batch at %d: %w", seg.BaseOffset, pos, err)
		}
		h, err := kafkaproto.ParseBatchHeader(hdr[:])
		if err != nil || h.Size() < kafkaproto.RecordBatchHeaderSize || pos+int64(h.Size()) > seg.Size {
			return LocalSegment{}, fmt.Errorf("%w: slice segment %d: bad batch at position %d", ErrCorrupt, seg.BaseOffset, pos)
		}
		if start < 0 && h.BaseOffset == from {
			start = pos
		} else if start < 0 && h.BaseOffset < from && h.LastOffset() >= from {
			return LocalSegment{}, fmt.Errorf("slice segment %d at %d: offset inside the batch at %d", seg.BaseOffset, from, h.BaseOffset)
		}
		if start >= 0 {
			rel := uint32(h.LastOffset() - from)
			p := uint32(pos - start)
			if lastIndexed < 0 {
				lastIndexed = pos
			}
			if p > 0 && pos-lastIndexed >= indexInterval {
				offIdx = binary.BigEndian.AppendUint32(offIdx, uint32(h.BaseOffset-from))
				offIdx = binary.BigEndian.AppendUint32(offIdx, p)
				lastIndexed = pos
			}
			if h.MaxTimestamp > maxTs {
				maxTs = h.MaxTimestamp
				timeIdx = binary.BigEndian.AppendUint64(timeIdx, uint64(h.MaxTimestamp))
				timeIdx = binary.BigEndian.AppendUint32(timeIdx, rel)
			}
			out.MaxTimestamp = max(out.MaxTimestamp, h.MaxTimestamp)
		}
		pos += int64(h.Size())
	}
	if start < 0 {
		return LocalSegment{}, fmt.Errorf("slice segment %d: no batch starts at %d", seg.BaseOffset, from)
	}
	out.pos = start
	out.Size = seg.Size - start
	out.offIdx, out.timeIdx, out.sliced = offIdx, timeIdx, true
	return out, nil
}

// RemoteLogState is what a follower needs to restart its log after the
// remote segment seg (KIP-405): the partition's leader-epoch history up to
// the segment's end and the producer snapshot taken at the offset after it,
// both as the local log's checkpoint payloads (the snapshot as its file).
func (m *Manager) RemoteLogState(ctx context.Context, topic string, seg coordinator.RemoteSegment) (epochs, producerSnapshot []byte, err error) {
	ref := SegmentRef{Topic: topic, TopicID: seg.TopicID, Partition: seg.Partition, ID: seg.ID,
		BaseOffset: seg.StartOffset, EndOffset: seg.EndOffset, SizeBytes: seg.SizeBytes}
	man, err := m.reader.Manifest(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	ikey := SegmentKey(topic, seg.TopicID, seg.Partition, seg.StartOffset, seg.ID, ExtIndexes)
	read := func(sec Section) ([]byte, error) {
		if sec.Len == 0 {
			return nil, nil
		}
		b, err := m.reader.getBytes(ctx, ikey, sec.Pos, sec.Len, sec.Len)
		if err != nil {
			return nil, classify("get "+ikey, err)
		}
		if int64(len(b)) != sec.Len {
			return nil, fmt.Errorf("get %s: %w: %d of %d bytes", ikey, ErrCorrupt, len(b), sec.Len)
		}
		return b, nil
	}
	if epochs, err = read(man.EpochHistory); err != nil {
		return nil, nil, err
	}
	if producerSnapshot, err = read(man.ProducerSnap); err != nil {
		return nil, nil, err
	}
	return epochs, producerSnapshot, nil
}
