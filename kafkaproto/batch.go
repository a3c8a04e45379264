package kafkaproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/twmb/franz-go/pkg/kerr"
)

// RecordBatchHeaderSize is the size of a magic-2 record batch header.
const RecordBatchHeaderSize = 61

// Byte offsets of the batch header fields (see the package doc diagram).
const (
	offBaseOffset      = 0
	offBatchLength     = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offBaseTimestamp   = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offNumRecords      = 57

	// batchLengthOverhead: bytes before and including the batch length field,
	// which the batch length does not count.
	batchLengthOverhead = 12
	// minBatchLength is the batch length of a batch with an empty records section.
	minBatchLength = RecordBatchHeaderSize - batchLengthOverhead
	// minRecordSize: length, attributes, timestamp delta, offset delta, key
	// length, value length and header count, one byte each.
	minRecordSize = 7
)

// Attribute bits.
const (
	attrCodecMask         = 0x07
	attrLogAppendTime     = 0x08
	attrTransactional     = 0x10
	attrControl           = 0x20
	maxKnownCodec         = CodecZstd
	timestampCreateTime   = 0
	timestampLogAppendTim = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BatchHeader is the decoded 61-byte header of a magic-2 record batch.
type BatchHeader struct {
	BaseOffset           int64
	BatchLength          int32
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	BaseTimestamp        int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	NumRecords           int32
}

// Codec is the compression codec in attributes bits 0-2.
func (h BatchHeader) Codec() Codec { return Codec(h.Attributes & attrCodecMask) }

// IsTransactional reports attributes bit 4.
func (h BatchHeader) IsTransactional() bool { return h.Attributes&attrTransactional != 0 }

// IsControl reports attributes bit 5 (transaction markers).
func (h BatchHeader) IsControl() bool { return h.Attributes&attrControl != 0 }

// TimestampType is 0 for create time, 1 for log append time (attributes bit 3).
func (h BatchHeader) TimestampType() int8 {
	if h.Attributes&attrLogAppendTime != 0 {
		return timestampLogAppendTim
	}
	return timestampCreateTime
}

// LastOffset is the offset of the batch's last record.
func (h BatchHeader) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// Size is the number of bytes the whole batch occupies: 12 + BatchLength.
func (h BatchHeader) Size() int { return batchLengthOverhead + int(h.BatchLength) }

// ParseBatchHeader decodes the first 61 bytes of b. It checks neither the CRC
// nor the magic; a shorter b returns ErrTruncatedBatch.
func ParseBatchHeader(b []byte) (BatchHeader, error) {
	if len(b) < RecordBatchHeaderSize {
		return BatchHeader{}, fmt.Errorf("parse batch header: %d bytes: %w", len(b), ErrTruncatedBatch)
	}
	be := binary.BigEndian
	return BatchHeader{
		BaseOffset:           int64(be.Uint64(b[offBaseOffset:])),
		BatchLength:          int32(be.Uint32(b[offBatchLength:])),
		PartitionLeaderEpoch: int32(be.Uint32(b[offLeaderEpoch:])),
		Magic:                int8(b[offMagic]),
		CRC:                  be.Uint32(b[offCRC:]),
		Attributes:           int16(be.Uint16(b[offAttributes:])),
		LastOffsetDelta:      int32(be.Uint32(b[offLastOffsetDelta:])),
		BaseTimestamp:        int64(be.Uint64(b[offBaseTimestamp:])),
		MaxTimestamp:         int64(be.Uint64(b[offMaxTimestamp:])),
		ProducerID:           int64(be.Uint64(b[offProducerID:])),
		ProducerEpoch:        int16(be.Uint16(b[offProducerEpoch:])),
		BaseSequence:         int32(be.Uint32(b[offBaseSequence:])),
		NumRecords:           int32(be.Uint32(b[offNumRecords:])),
	}, nil
}

// appendBatchHeader appends h's 61 bytes.
func appendBatchHeader(dst []byte, h BatchHeader) []byte {
	be := binary.BigEndian
	dst = be.AppendUint64(dst, uint64(h.BaseOffset))
	dst = be.AppendUint32(dst, uint32(h.BatchLength))
	dst = be.AppendUint32(dst, uint32(h.PartitionLeaderEpoch))
	dst = append(dst, byte(h.Magic))
	dst = be.AppendUint32(dst, h.CRC)
	dst = be.AppendUint16(dst, uint16(h.Attributes))
	dst = be.AppendUint32(dst, uint32(h.LastOffsetDelta))
	dst = be.AppendUint64(dst, uint64(h.BaseTimestamp))
	dst = be.AppendUint64(dst, uint64(h.MaxTimestamp))
	dst = be.AppendUint64(dst, uint64(h.ProducerID))
	dst = be.AppendUint16(dst, uint16(h.ProducerEpoch))
	dst = be.AppendUint32(dst, uint32(h.BaseSequence))
	dst = be.AppendUint32(dst, uint32(h.NumRecords))
	return dst
}

// NextBatch splits the first batch off a concatenation of batches (a produce
// payload, a segment file region, a fetch response's records). It returns the
// batch and the rest, both aliasing b. It reads only the 12-byte offset+length
// prefix, so it also splits old magic 0/1 message sets.
//
// Empty b returns io.EOF. A b that ends inside a batch (as fetch responses may)
// returns ErrTruncatedBatch, so readers stop there. A batch length too small
// to hold a header returns ErrMalformed.
func NextBatch(b []byte) (batch []byte, rest []byte, err error) {
	if len(b) == 0 {
		return nil, nil, io.EOF
	}
	if len(b) < batchLengthOverhead {
		return nil, b, fmt.Errorf("next batch: %d bytes left: %w", len(b), ErrTruncatedBatch)
	}
	length := int32(binary.BigEndian.Uint32(b[offBatchLength:]))
	if length < minBatchLength {
		return nil, b, fmt.Errorf("next batch: batch length %d: %w", length, ErrMalformed)
	}
	size := int64(batchLengthOverhead) + int64(length)
	if size > int64(len(b)) {
		return nil, b, fmt.Errorf("next batch: needs %d bytes, %d left: %w", size, len(b), ErrTruncatedBatch)
	}
	return b[:size:size], b[size:], nil
}

// BatchError is a batch rejected by validation, with the Kafka error code
// the producer must get. It unwraps to the kerr error of that code, so
// errors.Is(err, kerr.CorruptMessage) works as well as errors.As.
type BatchError struct {
	Code int16 // Kafka error code
	Msg  string
}

func (e *BatchError) Error() string {
	name := "UNKNOWN"
	var ke *kerr.Error
	if errors.As(kerr.ErrorForCode(e.Code), &ke) {
		name = ke.Message
	}
	return fmt.Sprintf("kafkaproto: invalid batch: %s (%d): %s", name, e.Code, e.Msg)
}

// Unwrap returns the kerr error for Code.
func (e *BatchError) Unwrap() error { return kerr.ErrorForCode(e.Code) }

func batchErr(code int16, format string, args ...any) error {
	return &BatchError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ValidateBatch checks one batch (exactly the bytes of b) as a broker must
// before storing it from a producer:
//
//   - 61 <= len(b) and 12 + batch length == len(b)     else CORRUPT_MESSAGE
//   - magic 2                                          else CORRUPT_MESSAGE
//   - len(b) <= maxBytes (no limit when maxBytes <= 0)  else MESSAGE_TOO_LARGE
//   - CRC32C of attributes..end matches                else CORRUPT_MESSAGE
//   - codec 0..4                                       else UNSUPPORTED_COMPRESSION_TYPE
//   - record count > 0 and == last offset delta + 1    else INVALID_RECORD
//   - an uncompressed records section can hold count   else CORRUPT_MESSAGE
//   - not a control batch                              else INVALID_RECORD
//   - transactional batches carry a producer id >= 0  else INVALID_RECORD
//
// It never decompresses. Errors are *BatchError. The header is returned
// whenever at least 61 bytes were given, even with an error.
func ValidateBatch(b []byte, maxBytes int) (BatchHeader, error) {
	h, err := ParseBatchHeader(b)
	if err != nil {
		return h, batchErr(kerr.CorruptMessage.Code, "batch of %d bytes is shorter than its %d-byte header", len(b), RecordBatchHeaderSize)
	}
	if h.BatchLength < minBatchLength || h.Size() != len(b) {
		return h, batchErr(kerr.CorruptMessage.Code, "batch length %d does not match %d bytes", h.BatchLength, len(b))
	}
	if h.Magic != 2 {
		return h, batchErr(kerr.CorruptMessage.Code, "magic %d, only 2 is accepted", h.Magic)
	}
	if maxBytes > 0 && len(b) > maxBytes {
		return h, batchErr(kerr.MessageTooLarge.Code, "batch of %d bytes over max.message.bytes %d", len(b), maxBytes)
	}
	if crc := BatchCRC(b); crc != h.CRC {
		return h, batchErr(kerr.CorruptMessage.Code, "crc %08x, computed %08x", h.CRC, crc)
	}
	if c := h.Codec(); c > maxKnownCodec {
		return h, batchErr(kerr.UnsupportedCompressionType.Code, "compression codec %d", c)
	}
	if h.NumRecords <= 0 || int64(h.NumRecords) != int64(h.LastOffsetDelta)+1 {
		return h, batchErr(kerr.InvalidRecord.Code, "record count %d with last offset delta %d", h.NumRecords, h.LastOffsetDelta)
	}
	if h.Codec() == CodecNone && int64(h.NumRecords)*minRecordSize > int64(len(b)-RecordBatchHeaderSize) {
		return h, batchErr(kerr.CorruptMessage.Code, "%d records cannot fit in %d bytes", h.NumRecords, len(b)-RecordBatchHeaderSize)
	}
	if h.IsControl() {
		return h, batchErr(kerr.InvalidRecord.Code, "control batch from a client")
	}
	if h.IsTransactional() && h.ProducerID < 0 {
		return h, batchErr(kerr.InvalidRecord.Code, "transactional batch without producer id (%d)", h.ProducerID)
	}
	return h, nil
}

// ValidateProduceRecords validates a Produce partition's records: one or more
// complete batches with nothing after the last. It returns each batch's header
// in order, or the first *BatchError (a trailing partial batch or a bad batch
// length is CORRUPT_MESSAGE). Empty records return no headers and no error.
//
// Kafka itself only accepts exactly one batch per partition from Produce v3+;
// enforce that on len(headers) if wanted.
func ValidateProduceRecords(records []byte, maxBatchBytes int) ([]BatchHeader, error) {
	var headers []BatchHeader
	for len(records) > 0 {
		batch, rest, err := NextBatch(records)
		if err != nil {
			return nil, batchErr(kerr.CorruptMessage.Code, "batch %d: %v", len(headers), err)
		}
		h, err := ValidateBatch(batch, maxBatchBytes)
		if err != nil {
			var be *BatchError
			if errors.As(err, &be) {
				return nil, &BatchError{Code: be.Code, Msg: fmt.Sprintf("batch %d: %s", len(headers), be.Msg)}
			}
			return nil, err
		}
		headers = append(headers, h)
		records = rest
	}
	return headers, nil
}

// StampBaseOffset writes the base offset into batch in place. The CRC does not
// cover it. batch must hold at least a header.
func StampBaseOffset(batch []byte, baseOffset int64) {
	binary.BigEndian.PutUint64(batch[offBaseOffset:], uint64(baseOffset))
}

// StampLeaderEpoch writes the partition leader epoch into batch in place. The
// CRC does not cover it. batch must hold at least a header.
func StampLeaderEpoch(batch []byte, epoch int32) {
	binary.BigEndian.PutUint32(batch[offLeaderEpoch:], uint32(epoch))
}

// SetLogAppendTime marks batch as log-append-time (attributes bit 3), sets its
// base and max timestamps to ts and recomputes the CRC, in place. Readers then
// take ts as the timestamp of every record. batch must be exactly one batch.
func SetLogAppendTime(batch []byte, ts int64) {
	be := binary.BigEndian
	attrs := be.Uint16(batch[offAttributes:]) | attrLogAppendTime
	be.PutUint16(batch[offAttributes:], attrs)
	be.PutUint64(batch[offBaseTimestamp:], uint64(ts))
	be.PutUint64(batch[offMaxTimestamp:], uint64(ts))
	be.PutUint32(batch[offCRC:], BatchCRC(batch))
}

// BatchCRC computes the CRC32C (Castagnoli) of batch from the attributes to
// the end, the value the header's CRC field must hold. batch must be exactly
// one batch of at least a header.
func BatchCRC(batch []byte) uint32 {
	return crc32.Checksum(batch[offAttributes:], castagnoli)
}
