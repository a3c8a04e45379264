package kafkaproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The fuzz targets run their seed corpora as ordinary tests; run one with
// `go test -fuzz=FuzzValidateBatch ./kafkaproto/` to explore further.

func seedBatches(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, c := range allCodecs {
		seeds = append(seeds, mustBuild(t, testHeader, testRecords(3), c))
	}
	h := testHeader
	h.Attributes = attrTransactional
	h.ProducerID = 3
	seeds = append(seeds, mustBuild(t, h, testRecords(1), CodecNone))
	return seeds
}

func FuzzReadFrame(f *testing.F) {
	f.Add(frameOf([]byte("hello")))
	f.Add(append(frameOf([]byte("a")), frameOf([]byte("second"))...))
	f.Add(sizePrefix(-1))
	f.Add(sizePrefix(0))
	f.Add(sizePrefix(1 << 30))
	f.Add([]byte{0, 0})
	f.Add(append(sizePrefix(100), 1, 2, 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 1 << 12
		r := bytes.NewReader(data)
		consumed := 0
		for i := 0; i < 64; i++ {
			frame, err := ReadFrame(r, max, nil)
			if err != nil {
				switch {
				case err == io.EOF:
					if consumed != len(data) {
						t.Fatalf("io.EOF with %d of %d bytes consumed", consumed, len(data))
					}
				case err == io.ErrUnexpectedEOF, errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrMalformed):
				default:
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
			size := int32(binary.BigEndian.Uint32(data[consumed:]))
			if size <= 0 || size > max || int(size) != len(frame) {
				t.Fatalf("frame of %d bytes for size prefix %d", len(frame), size)
			}
			if !bytes.Equal(frame, data[consumed+4:consumed+4+int(size)]) {
				t.Fatal("frame content differs from input")
			}
			consumed += 4 + int(size)
		}
	})
}

func FuzzParseRequestHeader(f *testing.F) {
	produce := kmsg.NewPtrProduceRequest()
	produce.SetVersion(9)
	produce.Acks = -1
	produce.TimeoutMillis = 5000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "orders"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = mustBuild(f, testHeader, testRecords(2), CodecNone)
	pt.Partitions = append(pt.Partitions, pp)
	produce.Topics = append(produce.Topics, pt)
	f.Add(encodeRequest(produce, 1, strPtr("producer")))
	produce.SetVersion(3)
	f.Add(encodeRequest(produce, 2, nil))
	for _, v := range []int16{0, 9, 12} {
		f.Add(encodeRequest(metadataRequest(v), int32(v), strPtr("md")))
	}
	for _, v := range []int16{0, 3} {
		req := kmsg.NewPtrApiVersionsRequest()
		req.SetVersion(v)
		req.ClientSoftwareName, req.ClientSoftwareVersion = "x", "1"
		f.Add(encodeRequest(req, 3, strPtr("c")))
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(12)
	f.Add(encodeRequest(fetch, 4, strPtr("f")))
	f.Add(rawHeader(18, 99, 5, "cli", 0))
	f.Add(rawHeader(9999, 0, 5, "cli", 1, 2, 3))
	f.Add(rawHeader(3, 12, 8, "", 2, 0, 3, 'x', 'y', 'z', 5, 0, 0x01))
	f.Fuzz(func(t *testing.T, frame []byte) {
		hdr, body, err := ParseRequestHeader(frame)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if int16(binary.BigEndian.Uint16(frame)) != hdr.APIKey ||
			int16(binary.BigEndian.Uint16(frame[2:])) != hdr.APIVersion ||
			int32(binary.BigEndian.Uint32(frame[4:])) != hdr.CorrelationID {
			t.Fatalf("header %+v does not match the frame's first 8 bytes", hdr)
		}
		if len(body) > len(frame)-8 || !bytes.Equal(frame[len(frame)-len(body):], body) {
			t.Fatalf("body of %d bytes is not a suffix of the %d-byte frame", len(body), len(frame))
		}
		req, err := DecodeRequest(hdr, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode error not ErrMalformed: %v", err)
			}
			return
		}
		if req.Key() != hdr.APIKey || req.GetVersion() != hdr.APIVersion {
			t.Fatalf("decoded key %d v%d for header %+v", req.Key(), req.GetVersion(), hdr)
		}
	})
}

func FuzzValidateBatch(f *testing.F) {
	for _, b := range seedBatches(f) {
		f.Add(b, 0)
		f.Add(b, len(b)-1)
	}
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, b []byte, maxBytes int) {
		h, err := ValidateBatch(b, maxBytes)
		hs, perr := ValidateProduceRecords(b, maxBytes)
		if err != nil {
			var be *BatchError
			if !errors.As(err, &be) {
				t.Fatalf("error is not a *BatchError: %v", err)
			}
			if perr == nil && len(b) > 0 && len(hs) < 2 {
				t.Fatalf("ValidateBatch failed (%v) but ValidateProduceRecords passed with %d batch", err, len(hs))
			}
			return
		}
		if h.Size() != len(b) || h.Magic != 2 || h.CRC != BatchCRC(b) || h.NumRecords <= 0 ||
			int64(h.NumRecords) != int64(h.LastOffsetDelta)+1 || h.Codec() > CodecZstd || h.IsControl() ||
			(maxBytes > 0 && len(b) > maxBytes) {
			t.Fatalf("accepted an invalid batch: %+v (len %d, max %d)", h, len(b), maxBytes)
		}
		if perr != nil || len(hs) != 1 || hs[0] != h {
			t.Fatalf("ValidateProduceRecords disagrees: %v %+v", perr, hs)
		}
		batch, rest, err := NextBatch(b)
		if err != nil || len(batch) != len(b) || len(rest) != 0 {
			t.Fatalf("NextBatch on a valid batch: %d, %d, %v", len(batch), len(rest), err)
		}
	})
}

func FuzzDecodeRecords(f *testing.F) {
	for _, b := range seedBatches(f) {
		f.Add(b)
	}
	f.Add(mustBuild(f, testHeader, []Record{{Key: nil, Value: nil}}, CodecNone))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, recs, err := DecodeRecords(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTruncatedBatch) &&
				!errors.Is(err, ErrDecompressedTooLarge) && !errors.Is(err, ErrUnsupportedCodec) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(recs) != int(h.NumRecords) || h.Size() > len(b) {
			t.Fatalf("%d records for count %d", len(recs), h.NumRecords)
		}
		// Whatever decoded must re-encode and decode to the same records.
		rebuilt, err := BuildBatch(h, recs, CodecNone)
		if err != nil {
			t.Fatal(err)
		}
		_, again, err := DecodeRecords(rebuilt)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(again, recs) {
			t.Fatal("records change through a rebuild")
		}
	})
}

func FuzzDecompress(f *testing.F) {
	in := semiCompressible(3000, 9)
	for _, c := range allCodecs {
		comp, err := Compress(c, in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(c), comp)
	}
	f.Add(uint8(CodecSnappy), xerialEncode(in, 500))
	f.Add(uint8(5), []byte("x"))
	f.Fuzz(func(t *testing.T, codec uint8, src []byte) {
		const limit = 1 << 20
		c := Codec(codec % 6)
		out, err := Decompress(c, src, limit)
		if err == nil && len(out) > limit {
			t.Fatalf("%s produced %d bytes over the %d limit", c, len(out), limit)
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDecompressedTooLarge) && !errors.Is(err, ErrUnsupportedCodec) {
			t.Fatalf("unexpected error class: %v", err)
		}
		if c > CodecZstd {
			return
		}
		comp, err := Compress(c, src)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decompress(c, comp, len(src))
		if err != nil || !bytes.Equal(back, src) {
			t.Fatalf("%s round trip of %d bytes: %d back, %v", c, len(src), len(back), err)
		}
	})
}
