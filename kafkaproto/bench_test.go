package kafkaproto

import (
	"bytes"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// benchBatch builds a ~1 MiB batch of 1 KiB semi-compressible records.
func benchBatch(b *testing.B, c Codec) []byte {
	b.Helper()
	value := semiCompressible(1<<10, 11)
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = Record{OffsetDelta: int32(i), TimestampDelta: int64(i), Key: []byte("k"), Value: value}
	}
	return mustBuild(b, testHeader, recs, c)
}

// BenchmarkValidateBatch1MiB is the produce hot path: header checks and a
// CRC32C over the whole batch.
func BenchmarkValidateBatch1MiB(b *testing.B) {
	batch := benchBatch(b, CodecNone)
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ValidateBatch(batch, 2<<20); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRecords1MiB(b *testing.B) {
	for _, c := range []Codec{CodecNone, CodecLZ4, CodecZstd} {
		b.Run(c.String(), func(b *testing.B) {
			batch := benchBatch(b, c)
			b.SetBytes(1 << 20)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := DecodeRecords(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadFrameAndParseHeader(b *testing.B) {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	t := kmsg.NewProduceRequestTopic()
	t.Topic = "bench"
	p := kmsg.NewProduceRequestTopicPartition()
	p.Records = benchBatch(b, CodecNone)[:64<<10]
	t.Partitions = append(t.Partitions, p)
	req.Topics = append(req.Topics, t)
	stream := frameOf(encodeRequest(req, 1, strPtr("bench")))
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	r := bytes.NewReader(stream)
	buf := make([]byte, 0, len(stream))
	for b.Loop() {
		r.Reset(stream)
		frame, err := ReadFrame(r, DefaultMaxRequestBytes, buf)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := ParseRequestHeader(frame); err != nil {
			b.Fatal(err)
		}
	}
}
