package kafkaproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

var allCodecs = []Codec{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd}

// testRecords returns n records with offset deltas 0..n-1 and a mix of null,
// empty and filled keys, values and headers.
func testRecords(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		r := Record{OffsetDelta: int32(i), TimestampDelta: int64(i * 3)}
		switch i % 4 {
		case 0:
			r.Key = []byte(fmt.Sprintf("key-%d", i))
			r.Value = []byte(fmt.Sprintf(`{"event":%d,"payload":"%s"}`, i, bytes.Repeat([]byte{'a' + byte(i%26)}, i%50)))
		case 1: // null key, empty value
			r.Value = []byte{}
		case 2: // empty key, null value, headers
			r.Key = []byte{}
			r.Headers = []RecordHeader{{Key: "trace", Value: []byte("abc")}, {Key: "null-hdr", Value: nil}, {Key: "", Value: []byte{}}}
		case 3:
			r.Key = []byte{0, 1, 2}
			r.Value = bytes.Repeat([]byte{0xfe}, 300) // multi-byte varint length
			r.Headers = []RecordHeader{{Key: "h", Value: []byte("v")}}
		}
		recs[i] = r
	}
	return recs
}

var testHeader = BatchHeader{
	BaseOffset:           0,
	PartitionLeaderEpoch: -1,
	BaseTimestamp:        1_700_000_000_000,
	ProducerID:           -1,
	ProducerEpoch:        -1,
	BaseSequence:         -1,
}

func mustBuild(t testing.TB, h BatchHeader, recs []Record, c Codec) []byte {
	t.Helper()
	b, err := BuildBatch(h, recs, c)
	if err != nil {
		t.Fatalf("BuildBatch(%s): %v", c, err)
	}
	return b
}

// resign recomputes the CRC after a test edited CRC-covered bytes.
func resign(b []byte) []byte {
	binary.BigEndian.PutUint32(b[offCRC:], BatchCRC(b))
	return b
}

func TestBuildValidateDecodeRoundTrip(t *testing.T) {
	for _, c := range allCodecs {
		for _, n := range []int{1, 2, 17, 500} {
			t.Run(fmt.Sprintf("%s/%d", c, n), func(t *testing.T) {
				recs := testRecords(n)
				h := testHeader
				h.BaseOffset = 42
				h.ProducerID, h.ProducerEpoch, h.BaseSequence = 9, 2, 100
				b := mustBuild(t, h, recs, c)

				vh, err := ValidateBatch(b, 0)
				if err != nil {
					t.Fatal(err)
				}
				want := h
				want.Magic = 2
				want.BatchLength = int32(len(b) - 12)
				want.Attributes = int16(c)
				want.NumRecords = int32(n)
				want.LastOffsetDelta = int32(n - 1)
				want.MaxTimestamp = h.BaseTimestamp + int64((n-1)*3)
				want.CRC = binary.BigEndian.Uint32(b[offCRC:])
				if vh != want {
					t.Fatalf("header = %+v\nwant     %+v", vh, want)
				}
				if vh.Codec() != c || vh.Size() != len(b) || vh.LastOffset() != 42+int64(n-1) || vh.TimestampType() != 0 {
					t.Fatalf("accessors: codec %s size %d last %d ts type %d", vh.Codec(), vh.Size(), vh.LastOffset(), vh.TimestampType())
				}

				dh, got, err := DecodeRecords(b)
				if err != nil {
					t.Fatal(err)
				}
				if dh != want {
					t.Fatalf("DecodeRecords header = %+v", dh)
				}
				if !reflect.DeepEqual(got, recs) {
					t.Fatalf("records differ:\n got %+v\nwant %+v", got[:min(3, len(got))], recs[:min(3, len(recs))])
				}
			})
		}
	}
}

func TestBuildBatchKeepsNullVersusEmpty(t *testing.T) {
	recs := []Record{{Key: nil, Value: []byte{}}, {OffsetDelta: 1, Key: []byte{}, Value: nil}}
	_, got, err := DecodeRecords(mustBuild(t, testHeader, recs, CodecNone))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Key != nil || got[0].Value == nil || got[1].Key == nil || got[1].Value != nil {
		t.Fatalf("null/empty not preserved: %#v", got)
	}
}

func TestBuildBatchExactBytes(t *testing.T) {
	// One record, key "k", value "v", no headers, uncompressed: check every byte.
	h := BatchHeader{BaseOffset: 5, PartitionLeaderEpoch: 3, BaseTimestamp: 1000, ProducerID: 7, ProducerEpoch: 1, BaseSequence: 0}
	b := mustBuild(t, h, []Record{{Key: []byte("k"), Value: []byte("v"), TimestampDelta: 2}}, CodecNone)
	record := []byte{
		16,     // length 8 (zigzag)
		0,      // attributes
		4,      // timestamp delta 2
		0,      // offset delta 0
		2, 'k', // key
		2, 'v', // value
		0, // headers
	}
	want := binary.BigEndian.AppendUint64(nil, 5)                      // base offset
	want = binary.BigEndian.AppendUint32(want, uint32(49+len(record))) // batch length
	want = binary.BigEndian.AppendUint32(want, 3)                      // leader epoch
	want = append(want, 2)                                             // magic
	want = binary.BigEndian.AppendUint32(want, 0)                      // crc, filled below
	want = binary.BigEndian.AppendUint16(want, 0)                      // attributes
	want = binary.BigEndian.AppendUint32(want, 0)                      // last offset delta
	want = binary.BigEndian.AppendUint64(want, 1000)                   // base timestamp
	want = binary.BigEndian.AppendUint64(want, 1002)                   // max timestamp
	want = binary.BigEndian.AppendUint64(want, 7)                      // producer id
	want = binary.BigEndian.AppendUint16(want, 1)                      // producer epoch
	want = binary.BigEndian.AppendUint32(want, 0)                      // base sequence
	want = binary.BigEndian.AppendUint32(want, 1)                      // records
	want = append(want, record...)
	resign(want)
	if !bytes.Equal(b, want) {
		t.Fatalf("batch\n got %x\nwant %x", b, want)
	}
}

func TestValidateBatchErrors(t *testing.T) {
	valid := func() []byte { return mustBuild(t, testHeader, testRecords(3), CodecNone) }
	tests := []struct {
		name     string
		batch    func() []byte
		maxBytes int
		wantCode int16 // 0 = valid
	}{
		{"valid", valid, 0, 0},
		{"valid at exact max bytes", valid, len(valid()), 0},
		{"valid gzip", func() []byte { return mustBuild(t, testHeader, testRecords(3), CodecGzip) }, 0, 0},
		{"valid transactional", func() []byte {
			h := testHeader
			h.Attributes = attrTransactional
			h.ProducerID, h.ProducerEpoch, h.BaseSequence = 12, 0, 0
			return mustBuild(t, h, testRecords(3), CodecZstd)
		}, 0, 0},
		{"shorter than header", func() []byte { return valid()[:60] }, 0, 2},
		{"empty", func() []byte { return nil }, 0, 2},
		{"trailing byte", func() []byte { return append(valid(), 0) }, 0, 2},
		{"batch length too big", func() []byte {
			b := valid()
			binary.BigEndian.PutUint32(b[offBatchLength:], uint32(len(b)))
			return b
		}, 0, 2},
		{"batch length below header", func() []byte {
			b := valid()[:61]
			binary.BigEndian.PutUint32(b[offBatchLength:], 48)
			return b
		}, 0, 2},
		{"magic 1", func() []byte { b := valid(); b[offMagic] = 1; return b }, 0, 2},
		{"magic 0", func() []byte { b := valid(); b[offMagic] = 0; return b }, 0, 2},
		{"crc mismatch in records", func() []byte { b := valid(); b[len(b)-2] ^= 0x40; return b }, 0, 2},
		{"crc mismatch in header", func() []byte { b := valid(); b[offProducerID+7] ^= 1; return b }, 0, 2},
		{"crc field wrong", func() []byte { b := valid(); b[offCRC] ^= 1; return b }, 0, 2},
		{"too large", valid, len(valid()) - 1, 10},
		{"codec 5", func() []byte { b := valid(); b[offAttributes+1] |= 5; return resign(b) }, 0, 76},
		{"codec 7", func() []byte { b := valid(); b[offAttributes+1] |= 7; return resign(b) }, 0, 76},
		{"zero records", func() []byte {
			b := valid()
			binary.BigEndian.PutUint32(b[offNumRecords:], 0)
			binary.BigEndian.PutUint32(b[offLastOffsetDelta:], 0xffffffff)
			return resign(b)
		}, 0, 87},
		{"count differs from last offset delta", func() []byte {
			b := valid()
			binary.BigEndian.PutUint32(b[offLastOffsetDelta:], 3)
			return resign(b)
		}, 0, 87},
		{"negative count", func() []byte {
			b := valid()
			binary.BigEndian.PutUint32(b[offNumRecords:], 0x80000000)
			binary.BigEndian.PutUint32(b[offLastOffsetDelta:], 0x7fffffff)
			return resign(b)
		}, 0, 87},
		{"count cannot fit uncompressed", func() []byte {
			b := valid()
			binary.BigEndian.PutUint32(b[offNumRecords:], 1000)
			binary.BigEndian.PutUint32(b[offLastOffsetDelta:], 999)
			return resign(b)
		}, 0, 2},
		{"control batch", func() []byte {
			h := testHeader
			h.Attributes = attrControl | attrTransactional
			h.ProducerID = 4
			return mustBuild(t, h, testRecords(1), CodecNone)
		}, 0, 87},
		{"transactional without producer id", func() []byte {
			h := testHeader
			h.Attributes = attrTransactional
			return mustBuild(t, h, testRecords(2), CodecNone)
		}, 0, 87},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.batch()
			h, err := ValidateBatch(b, tt.maxBytes)
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if h.Size() != len(b) {
					t.Fatalf("header size %d, batch %d", h.Size(), len(b))
				}
				return
			}
			var be *BatchError
			if !errors.As(err, &be) {
				t.Fatalf("err = %v, want *BatchError code %d", err, tt.wantCode)
			}
			if be.Code != tt.wantCode {
				t.Fatalf("code %d (%v), want %d", be.Code, err, tt.wantCode)
			}
			if !errors.Is(err, kerr.ErrorForCode(tt.wantCode)) {
				t.Fatalf("err %v does not unwrap to kerr code %d", err, tt.wantCode)
			}
		})
	}
}

func TestStampingKeepsCRC(t *testing.T) {
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			b := mustBuild(t, testHeader, testRecords(5), c)
			crc := binary.BigEndian.Uint32(b[offCRC:])
			StampBaseOffset(b, 1_234_567)
			StampLeaderEpoch(b, 19)
			h, err := ValidateBatch(b, 0)
			if err != nil {
				t.Fatalf("after stamping: %v", err)
			}
			if h.BaseOffset != 1_234_567 || h.PartitionLeaderEpoch != 19 || h.CRC != crc || h.LastOffset() != 1_234_571 {
				t.Fatalf("stamped header %+v", h)
			}
		})
	}
}

func TestSetLogAppendTime(t *testing.T) {
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			recs := testRecords(4)
			b := mustBuild(t, testHeader, recs, c)
			oldCRC := binary.BigEndian.Uint32(b[offCRC:])
			const ts = 1_800_000_000_123
			SetLogAppendTime(b, ts)
			h, err := ValidateBatch(b, 0)
			if err != nil {
				t.Fatalf("after SetLogAppendTime: %v", err)
			}
			if h.TimestampType() != 1 || h.BaseTimestamp != ts || h.MaxTimestamp != ts || h.Codec() != c {
				t.Fatalf("header %+v", h)
			}
			if h.CRC == oldCRC {
				t.Fatal("CRC unchanged although timestamps changed")
			}
			_, got, err := DecodeRecords(b)
			if err != nil || !reflect.DeepEqual(got, recs) {
				t.Fatalf("records after SetLogAppendTime: %v", err)
			}
		})
	}
}

func TestNextBatch(t *testing.T) {
	b1 := mustBuild(t, testHeader, testRecords(1), CodecNone)
	b2 := mustBuild(t, testHeader, testRecords(7), CodecLZ4)
	b3 := mustBuild(t, testHeader, testRecords(3), CodecGzip)
	all := append(append(append([]byte(nil), b1...), b2...), b3...)

	rest := all
	for i, want := range [][]byte{b1, b2, b3} {
		var batch []byte
		var err error
		batch, rest, err = NextBatch(rest)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if !bytes.Equal(batch, want) {
			t.Fatalf("batch %d: %d bytes, want %d", i, len(batch), len(want))
		}
	}
	if _, _, err := NextBatch(rest); err != io.EOF {
		t.Fatalf("after last batch: %v, want io.EOF", err)
	}

	tests := []struct {
		name    string
		input   []byte
		wantErr error
	}{
		{"partial header", b1[:11], ErrTruncatedBatch},
		{"partial body", b1[:len(b1)-1], ErrTruncatedBatch},
		{"only the length prefix", b1[:12], ErrTruncatedBatch},
		{"length below a header", append(append([]byte(nil), b1[:8]...), 0, 0, 0, 48), ErrMalformed},
		{"negative length", append(append([]byte(nil), b1[:8]...), 0xff, 0xff, 0xff, 0xff), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batch, rest, err := NextBatch(tt.input)
			if !errors.Is(err, tt.wantErr) || batch != nil || !bytes.Equal(rest, tt.input) {
				t.Fatalf("got batch %d bytes, rest %d bytes, err %v; want err %v", len(batch), len(rest), err, tt.wantErr)
			}
		})
	}

	// A fetch response cut at max bytes: the complete batches come out, then the stop signal.
	cut := all[:len(b1)+len(b2)+20]
	var n int
	for {
		batch, r, err := NextBatch(cut)
		if errors.Is(err, ErrTruncatedBatch) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n > 3 {
			t.Fatal("too many batches")
		}
		_ = batch
		cut = r
	}
	if n != 2 || len(cut) != 20 {
		t.Fatalf("read %d batches with %d bytes left, want 2 and 20", n, len(cut))
	}
}

func TestValidateProduceRecords(t *testing.T) {
	b1 := mustBuild(t, testHeader, testRecords(2), CodecNone)
	b2 := mustBuild(t, testHeader, testRecords(5), CodecSnappy)
	two := append(append([]byte(nil), b1...), b2...)

	hs, err := ValidateProduceRecords(two, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 || hs[0].NumRecords != 2 || hs[1].NumRecords != 5 || hs[1].Codec() != CodecSnappy {
		t.Fatalf("headers %+v", hs)
	}
	if hs, err := ValidateProduceRecords(nil, 1<<20); hs != nil || err != nil {
		t.Fatalf("empty records: %v, %v", hs, err)
	}

	corruptSecond := append([]byte(nil), two...)
	corruptSecond[len(corruptSecond)-1] ^= 0xff
	tooBigSecond := two
	tests := []struct {
		name     string
		records  []byte
		max      int
		wantCode int16
	}{
		{"trailing partial batch", append(append([]byte(nil), two...), b1[:30]...), 1 << 20, 2},
		{"trailing garbage shorter than a prefix", append(append([]byte(nil), two...), 1, 2, 3), 1 << 20, 2},
		{"second batch corrupt", corruptSecond, 1 << 20, 2},
		{"second batch too large", tooBigSecond, len(b2) - 1, 10},
		{"bad length field", append(append([]byte(nil), b1[:8]...), 0, 0, 0, 1, 0), 1 << 20, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, err := ValidateProduceRecords(tt.records, tt.max)
			var be *BatchError
			if hs != nil || !errors.As(err, &be) || be.Code != tt.wantCode {
				t.Fatalf("headers %v err %v, want code %d", hs, err, tt.wantCode)
			}
		})
	}
}

func TestDecodeRecordsErrors(t *testing.T) {
	valid := func() []byte { return mustBuild(t, testHeader, testRecords(3), CodecNone) }
	tests := []struct {
		name    string
		batch   func() []byte
		wantErr error
	}{
		{"short", func() []byte { return valid()[:40] }, ErrTruncatedBatch},
		{"truncated", func() []byte { b := valid(); return b[:len(b)-1] }, ErrTruncatedBatch},
		{"bad batch length", func() []byte { b := valid(); binary.BigEndian.PutUint32(b[offBatchLength:], 3); return b }, ErrMalformed},
		{"magic 1", func() []byte { b := valid(); b[offMagic] = 1; return b }, ErrMalformed},
		{"more records claimed", func() []byte { b := valid(); binary.BigEndian.PutUint32(b[offNumRecords:], 4); return b }, ErrMalformed},
		{"fewer records claimed", func() []byte { b := valid(); binary.BigEndian.PutUint32(b[offNumRecords:], 2); return b }, ErrMalformed},
		{"negative count", func() []byte { b := valid(); binary.BigEndian.PutUint32(b[offNumRecords:], 0xfffffff0); return b }, ErrMalformed},
		{"record length past end", func() []byte { b := valid(); b[RecordBatchHeaderSize] = 0x7e; return b }, ErrMalformed},
		{"corrupt gzip", func() []byte {
			b := mustBuild(t, testHeader, testRecords(3), CodecGzip)
			for i := RecordBatchHeaderSize + 10; i < len(b); i++ {
				b[i] ^= 0x55
			}
			return b
		}, ErrMalformed},
		{"codec 6", func() []byte { b := valid(); b[offAttributes+1] |= 6; return b }, ErrUnsupportedCodec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, recs, err := DecodeRecords(tt.batch())
			if recs != nil || !errors.Is(err, tt.wantErr) {
				t.Fatalf("records %d, err %v; want %v", len(recs), err, tt.wantErr)
			}
		})
	}
}

func TestDecodeRecordsIgnoresFollowingBytes(t *testing.T) {
	b := mustBuild(t, testHeader, testRecords(3), CodecNone)
	_, recs, err := DecodeRecords(append(b, 1, 2, 3))
	if err != nil || len(recs) != 3 {
		t.Fatalf("records %d, err %v", len(recs), err)
	}
}

func TestDecodeRecordsZipBombRefused(t *testing.T) {
	// Concatenated zstd frames of 1 MiB of zeros each: a few KiB that inflate
	// past the limit (lowered from MaxDecompressedSize to keep the test fast).
	// The decoder must stop at the limit.
	decodeRecordsLimit = 16 << 20
	t.Cleanup(func() { decodeRecordsLimit = MaxDecompressedSize })
	frame, err := Compress(CodecZstd, make([]byte, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	comp := bytes.Repeat(frame, decodeRecordsLimit/(1<<20)+1)
	h := testHeader
	h.Magic, h.NumRecords, h.LastOffsetDelta = 2, 1, 0
	h.Attributes = int16(CodecZstd)
	h.BatchLength = int32(minBatchLength + len(comp))
	b := append(appendBatchHeader(nil, h), comp...)
	resign(b)
	if _, err := ValidateBatch(b, 0); err != nil {
		t.Fatalf("validate (never decompresses): %v", err)
	}
	if _, _, err := DecodeRecords(b); !errors.Is(err, ErrDecompressedTooLarge) {
		t.Fatalf("err = %v, want ErrDecompressedTooLarge", err)
	}
}
