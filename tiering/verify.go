package tiering

// Verifying batches as a chunk arrives. A cold read must CRC-check every
// batch it serves (DESIGN.md: a corrupted object gives a clear error, never
// wrong records). Done at read time, that check is the first touch of bytes
// that arrived long before and left the CPU caches, and it costs as much as
// the whole rest of the read path. With the memory chunk cache the check
// runs instead while the GET's body streams in, over bytes that are still
// in cache: the chunk records the batches that passed (their positions and
// sizes), and a read skips the CRC of exactly those. Anything else — a
// batch straddling chunks, a chunk whose walk hit something odd, the disk
// cache whose files may rot after the fetch — is checked at read time as
// before, so the guarantee is unchanged.

import (
	"hash/crc32"
	"sort"

	"github.com/stratabroker/strata/kafkaproto"
)

// crcFrom is where a batch's CRC32C starts (after base offset, length,
// partition leader epoch, magic and the CRC itself).
const crcFrom = 21

// verifiedBatch is a batch of a chunk whose CRC matched when it arrived:
// its position in the chunk and its size.
type verifiedBatch struct {
	pos, size int32
}

// batchVerifier walks the batches of one arriving chunk from a known batch
// boundary, CRC-checking each as its bytes come in.
type batchVerifier struct {
	cur   int // position in the chunk of the batch being checked; -1 = stopped
	size  int // its size; 0 until its header has arrived
	crcAt int // bytes of it hashed so far reach here
	crc   uint32
	want  uint32
	ok    []verifiedBatch
}

// newBatchVerifier starts at the first batch boundary the offset index
// gives inside chunk [base, base+size) of the log (position 0 starts a
// batch too). Without one the verifier does nothing.
func newBatchVerifier(ix *segIndex, base, size int64) *batchVerifier {
	v := &batchVerifier{cur: -1}
	start := int64(-1)
	if base == 0 {
		start = 0
	} else {
		i := sort.Search(len(ix.offs), func(i int) bool { return int64(ix.offs[i].pos) >= base })
		if i < len(ix.offs) {
			start = int64(ix.offs[i].pos)
		}
	}
	if start >= 0 && start < base+size {
		v.cur = int(start - base)
	}
	return v
}

// feed takes the chunk's buffer of which the first n bytes have arrived.
func (v *batchVerifier) feed(buf []byte, n int) {
	for v.cur >= 0 {
		if v.size == 0 {
			if n < v.cur+kafkaproto.RecordBatchHeaderSize {
				return
			}
			h, err := kafkaproto.ParseBatchHeader(buf[v.cur : v.cur+kafkaproto.RecordBatchHeaderSize])
			if err != nil || h.Magic != 2 || h.Size() < kafkaproto.RecordBatchHeaderSize || h.Size() > len(buf)-v.cur {
				v.cur = -1 // odd, or straddles into the next chunk: left to the read
				return
			}
			v.size, v.want, v.crcAt, v.crc = h.Size(), h.CRC, v.cur+crcFrom, 0
		}
		end := v.cur + v.size
		if upto := min(n, end); upto > v.crcAt {
			v.crc = crc32.Update(v.crc, castagnoli, buf[v.crcAt:upto])
			v.crcAt = upto
		}
		if v.crcAt < end {
			return
		}
		if v.crc != v.want {
			v.cur = -1 // the read finds it and reports it
			return
		}
		v.ok = append(v.ok, verifiedBatch{pos: int32(v.cur), size: int32(v.size)})
		v.cur, v.size = end, 0
	}
}

// verified reports whether the batch of size bytes at pos of ch passed its
// CRC check when ch arrived.
func (ch *chunk) verified(pos int64, size int) bool {
	vs := ch.checked
	i := sort.Search(len(vs), func(i int) bool { return int64(vs[i].pos) >= pos })
	return i < len(vs) && int64(vs[i].pos) == pos && int(vs[i].size) == size
}
