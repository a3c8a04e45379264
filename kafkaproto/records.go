package kafkaproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// decodeRecordsLimit is MaxDecompressedSize; tests lower it to stay fast.
var decodeRecordsLimit = MaxDecompressedSize

// Record is one record of a batch. Offsets and timestamps are deltas from the
// batch's base offset and base timestamp.
type Record struct {
	OffsetDelta    int32
	TimestampDelta int64
	Key, Value     []byte // nil = null
	Headers        []RecordHeader
}

// RecordHeader is one record header. Value nil = null.
type RecordHeader struct {
	Key   string
	Value []byte
}

// DecodeRecords decodes every record of one batch (b must start with a batch
// and hold it whole; bytes after it are ignored), decompressing the records
// section when needed, bounded by MaxDecompressedSize. Key, Value and header
// values alias b for uncompressed batches. It does not check the CRC (see
// ValidateBatch). Errors wrap ErrMalformed, ErrTruncatedBatch,
// ErrDecompressedTooLarge or ErrUnsupportedCodec.
func DecodeRecords(b []byte) (BatchHeader, []Record, error) {
	h, err := ParseBatchHeader(b)
	if err != nil {
		return h, nil, fmt.Errorf("decode records: %w", err)
	}
	if h.BatchLength < minBatchLength {
		return h, nil, fmt.Errorf("decode records: batch length %d: %w", h.BatchLength, ErrMalformed)
	}
	if h.Size() > len(b) {
		return h, nil, fmt.Errorf("decode records: batch of %d bytes, have %d: %w", h.Size(), len(b), ErrTruncatedBatch)
	}
	if h.Magic != 2 {
		return h, nil, fmt.Errorf("decode records: magic %d: %w", h.Magic, ErrMalformed)
	}
	if h.NumRecords < 0 {
		return h, nil, fmt.Errorf("decode records: record count %d: %w", h.NumRecords, ErrMalformed)
	}
	data := b[RecordBatchHeaderSize:h.Size()]
	if c := h.Codec(); c != CodecNone {
		if data, err = Decompress(c, data, decodeRecordsLimit); err != nil {
			return h, nil, fmt.Errorf("decode records at offset %d: %w", h.BaseOffset, err)
		}
	}
	if int64(h.NumRecords)*minRecordSize > int64(len(data)) {
		return h, nil, fmt.Errorf("decode records: %d records cannot fit in %d bytes: %w", h.NumRecords, len(data), ErrMalformed)
	}
	// Grow with the records really decoded, not with the claimed count.
	recs := make([]Record, 0, min(int(h.NumRecords), 1024))
	for i := range int(h.NumRecords) {
		var rec Record
		n, err := decodeRecord(data, &rec)
		if err != nil {
			return h, nil, fmt.Errorf("decode records: record %d of batch at offset %d: %w", i, h.BaseOffset, err)
		}
		recs = append(recs, rec)
		data = data[n:]
	}
	if len(data) != 0 {
		return h, nil, fmt.Errorf("decode records: %d bytes after %d records: %w", len(data), h.NumRecords, ErrMalformed)
	}
	return h, recs, nil
}

// recordReader reads the varint fields of one record, remembering the first
// failure so the decoder can check once at the end of each step.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: %w", what, ErrMalformed)
	}
	r.b = nil
}

func (r *recordReader) varlong(what string) int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) varint(what string) int32 {
	v := r.varlong(what)
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail(what)
		return 0
	}
	return int32(v)
}

// bytes reads a varint length and that many bytes (nil for -1 when nullable).
func (r *recordReader) bytes(what string, nullable bool) []byte {
	n := r.varint(what) // length
	if r.err != nil {
		return nil
	}
	if n == -1 && nullable {
		return nil
	}
	if n < 0 || int(n) > len(r.b) {
		r.fail(what)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// decodeRecord decodes the record at the start of b into rec and returns the
// bytes it used.
func decodeRecord(b []byte, rec *Record) (int, error) {
	length, n := binary.Varint(b)
	if n <= 0 || length < 0 || length > int64(len(b)-n) {
		return 0, fmt.Errorf("record length: %w", ErrMalformed)
	}
	r := recordReader{b: b[n : n+int(length)]}
	if len(r.b) < 1 {
		return 0, fmt.Errorf("record attributes: %w", ErrMalformed)
	}
	r.b = r.b[1:] // attributes: unused
	rec.TimestampDelta = r.varlong("timestamp delta")
	rec.OffsetDelta = r.varint("offset delta")
	rec.Key = r.bytes("key", true)
	rec.Value = r.bytes("value", true)
	count := r.varint("header count")
	if r.err != nil {
		return 0, r.err
	}
	if count < 0 || int(count) > len(r.b)/2 { // a header takes at least 2 bytes
		return 0, fmt.Errorf("header count %d: %w", count, ErrMalformed)
	}
	if count > 0 {
		rec.Headers = make([]RecordHeader, count)
		for i := range rec.Headers {
			rec.Headers[i].Key = string(r.bytes("header key", false))
			rec.Headers[i].Value = r.bytes("header value", true)
		}
	}
	if r.err != nil {
		return 0, r.err
	}
	if len(r.b) != 0 {
		return 0, fmt.Errorf("%d bytes after record fields: %w", len(r.b), ErrMalformed)
	}
	return n + int(length), nil
}

// appendRecord appends rec in the varint record format.
func appendRecord(dst []byte, rec Record) []byte {
	body := make([]byte, 0, 16+len(rec.Key)+len(rec.Value))
	body = append(body, 0) // attributes
	body = binary.AppendVarint(body, rec.TimestampDelta)
	body = binary.AppendVarint(body, int64(rec.OffsetDelta))
	body = appendVarBytes(body, rec.Key)
	body = appendVarBytes(body, rec.Value)
	body = binary.AppendVarint(body, int64(len(rec.Headers)))
	for _, hd := range rec.Headers {
		body = binary.AppendVarint(body, int64(len(hd.Key)))
		body = append(body, hd.Key...)
		body = appendVarBytes(body, hd.Value)
	}
	dst = binary.AppendVarint(dst, int64(len(body)))
	return append(dst, body...)
}

func appendVarBytes(dst, v []byte) []byte {
	if v == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(v)))
	return append(dst, v...)
}

// BuildBatch encodes recs into one magic-2 batch compressed with codec, for
// tests, tools and the bench client. From h it takes BaseOffset,
// PartitionLeaderEpoch, Attributes (except the codec bits), BaseTimestamp,
// ProducerID, ProducerEpoch and BaseSequence. It computes Magic (2),
// BatchLength, NumRecords, the codec bits, the CRC, LastOffsetDelta (the last
// record's offset delta; h's when recs is empty) and MaxTimestamp
// (BaseTimestamp + the largest timestamp delta; h's when recs is empty).
// Records are written as given: set their OffsetDelta 0, 1, 2, ...
func BuildBatch(h BatchHeader, recs []Record, codec Codec) ([]byte, error) {
	if codec < CodecNone || codec > maxKnownCodec {
		return nil, fmt.Errorf("build batch: codec %d: %w", codec, ErrUnsupportedCodec)
	}
	var data []byte
	for _, rec := range recs {
		data = appendRecord(data, rec)
	}
	if codec != CodecNone {
		var err error
		if data, err = Compress(codec, data); err != nil {
			return nil, fmt.Errorf("build batch: %w", err)
		}
	}
	if len(data) > math.MaxInt32-minBatchLength {
		return nil, errors.New("build batch: records exceed 2 GiB")
	}
	h.Magic = 2
	h.Attributes = h.Attributes&^attrCodecMask | int16(codec)
	h.NumRecords = int32(len(recs))
	h.BatchLength = int32(minBatchLength + len(data))
	if len(recs) > 0 {
		h.LastOffsetDelta = recs[len(recs)-1].OffsetDelta
		maxDelta := recs[0].TimestampDelta
		for _, rec := range recs[1:] {
			maxDelta = max(maxDelta, rec.TimestampDelta)
		}
		h.MaxTimestamp = h.BaseTimestamp + maxDelta
	}
	h.CRC = 0
	out := make([]byte, 0, RecordBatchHeaderSize+len(data))
	out = appendBatchHeader(out, h)
	out = append(out, data...)
	binary.BigEndian.PutUint32(out[offCRC:], BatchCRC(out))
	return out, nil
}
