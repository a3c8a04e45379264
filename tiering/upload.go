package tiering

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"

	"github.com/stratabroker/strata/kafkaproto"
	"github.com/stratabroker/strata/remote"
	"golang.org/x/time/rate"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// buildIndexes assembles the .indexes object of seg (offset index, time
// index, producer snapshot at the segment's end, leader-epoch history up to
// its end) and the manifest that locates each part.
func buildIndexes(p Partition, seg LocalSegment, history []ManifestEpoch) ([]byte, *Manifest, error) {
	end := seg.NextOffset - 1
	offIdx, timeIdx := seg.offIdx, seg.timeIdx
	if !seg.sliced {
		var err error
		if offIdx, err = os.ReadFile(seg.IndexPath); err != nil {
			return nil, nil, fmt.Errorf("read offset index of segment %d: %w", seg.BaseOffset, err)
		}
		if timeIdx, err = os.ReadFile(seg.TimeIndexPath); err != nil {
			return nil, nil, fmt.Errorf("read time index of segment %d: %w", seg.BaseOffset, err)
		}
	}
	snap, err := p.ProducerSnapshot(seg.NextOffset)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("read producer snapshot at %d: %w", seg.NextOffset, err)
	}
	var upTo, within []ManifestEpoch
	for i, e := range history {
		if e.StartOffset > end {
			break
		}
		upTo = append(upTo, e)
		// An epoch belongs to the segment when it covers any of its offsets.
		nextStart := int64(1<<63 - 1)
		if i+1 < len(history) {
			nextStart = history[i+1].StartOffset
		}
		if nextStart > seg.BaseOffset {
			within = append(within, ManifestEpoch{Epoch: e.Epoch, StartOffset: max(e.StartOffset, seg.BaseOffset)})
		}
	}
	epochs := p.EncodeEpochHistory(upTo)
	var buf bytes.Buffer
	section := func(b []byte) Section {
		s := Section{Pos: int64(buf.Len()), Len: int64(len(b))}
		buf.Write(b)
		return s
	}
	id := p.TopicID()
	m := &Manifest{
		Version: ManifestVersion, Topic: p.Topic(), TopicID: hex.EncodeToString(id[:]), Partition: p.Index(),
		BaseOffset: seg.BaseOffset, EndOffset: end, MaxTimestamp: seg.MaxTimestamp,
		Epochs: within, LogSize: seg.Size,
		OffsetIndex:  section(offIdx),
		TimeIndex:    section(timeIdx),
		ProducerSnap: section(snap),
		EpochHistory: section(epochs),
	}
	m.IndexesSize = int64(buf.Len())
	return buf.Bytes(), m, nil
}

// putFile uploads size bytes from pos of the file at path under key, through the
// upload rate limit, returning the CRC32C of what was sent. The file is
// sealed, so its first size bytes do not change while we read them. Without
// a rate limit the store gets the file itself (seekable: no copy in memory,
// retries re-read it) and the CRC comes from a separate pass over the page
// cache, made first so that a store that takes it (remote.CRC32CPutter)
// checks the object against it and computes no checksum of its own.
func (m *Manager) putFile(ctx context.Context, key, path string, pos, size int64) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	if m.limit.l == nil {
		bp := crcBufs.Get().(*[]byte)
		_, err := io.CopyBuffer(h, io.NewSectionReader(f, pos, size), *bp)
		crcBufs.Put(bp)
		if err != nil {
			return 0, err
		}
		crc := h.Sum32()
		if cp, ok := m.store.(remote.CRC32CPutter); ok {
			err = cp.PutCRC32C(ctx, key, io.NewSectionReader(f, pos, size), size, crc)
		} else {
			err = m.store.Put(ctx, key, io.NewSectionReader(f, pos, size), size)
		}
		if err != nil {
			return 0, err
		}
		return crc, nil
	}
	r := io.TeeReader(io.NewSectionReader(f, pos, size), h)
	if err := m.store.Put(ctx, key, m.limit.reader(ctx, r), size); err != nil {
		return 0, err
	}
	return h.Sum32(), nil
}

// crcBufs: reads of 1 MiB for the CRC pass over a segment (io.Copy's own
// 32 KiB buffer costs a pread per 32 KiB).
var crcBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func (m *Manager) putBytes(ctx context.Context, key string, b []byte) error {
	return m.store.Put(ctx, key, m.limit.reader(ctx, bytes.NewReader(b)), int64(len(b)))
}

// rateLimiter bounds upload bandwidth over the whole broker
// (remote.log.manager.copy.max.bytes.per.second).
type rateLimiter struct{ l *rate.Limiter }

func newRateLimiter(bytesPerSecond int64) *rateLimiter {
	if bytesPerSecond <= 0 {
		return &rateLimiter{}
	}
	burst := int(min(bytesPerSecond, 1<<20))
	return &rateLimiter{rate.NewLimiter(rate.Limit(bytesPerSecond), burst)}
}

func (r *rateLimiter) reader(ctx context.Context, in io.Reader) io.Reader {
	if r.l == nil {
		return in
	}
	return &limitedReader{ctx: ctx, in: in, l: r.l}
}

type limitedReader struct {
	ctx context.Context
	in  io.Reader
	l   *rate.Limiter
}

func (r *limitedReader) Read(p []byte) (int, error) {
	if len(p) > r.l.Burst() {
		p = p[:r.l.Burst()]
	}
	n, err := r.in.Read(p)
	if n > 0 {
		if werr := r.l.WaitN(r.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// trimBatches drops the batches of b that reach maxOffset (exclusive); b
// holds whole batches.
func trimBatches(b []byte, maxOffset int64) []byte {
	if maxOffset < 0 {
		return b
	}
	rest := b
	for len(rest) > 0 {
		h, err := kafkaproto.ParseBatchHeader(rest)
		if err != nil || h.LastOffset() >= maxOffset || h.Size() > len(rest) {
			return b[:len(b)-len(rest)]
		}
		rest = rest[h.Size():]
	}
	return b
}

// lastOffset is the last offset of the last whole batch of b, -1 if none.
func lastOffset(b []byte) int64 {
	last := int64(-1)
	for len(b) > 0 {
		h, err := kafkaproto.ParseBatchHeader(b)
		if err != nil || h.Size() > len(b) {
			break
		}
		last = h.LastOffset()
		b = b[h.Size():]
	}
	return last
}
