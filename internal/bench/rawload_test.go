package bench

import (
	"bytes"
	"testing"

	"github.com/stratabroker/strata/kafkaproto"
)

// The prebuilt batches are valid magic-2 batches of the generated records,
// in order, about rawBatchBytes of values each, with the run's codec.
func TestBuildRawBatches(t *testing.T) {
	recs := GenerateRecords(300, 7)
	for _, tc := range []struct {
		codec string
		want  kafkaproto.Codec
	}{{"none", kafkaproto.CodecNone}, {"lz4", kafkaproto.CodecLZ4}} {
		bs, err := buildRawBatches(recs, tc.codec)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != rawBatches {
			t.Fatalf("%s: %d batches, want %d", tc.codec, len(bs), rawBatches)
		}
		next := 0
		for i, b := range bs {
			h, err := kafkaproto.ValidateBatch(b.b, 64<<20)
			if err != nil {
				t.Fatalf("%s batch %d: %v", tc.codec, i, err)
			}
			if h.Codec() != tc.want || h.ProducerID != -1 {
				t.Fatalf("%s batch %d: codec %d producer %d", tc.codec, i, h.Codec(), h.ProducerID)
			}
			_, got, err := kafkaproto.DecodeRecords(b.b)
			if err != nil {
				t.Fatal(err)
			}
			var values int64
			for j, r := range got {
				if want := recs[next%len(recs)]; !bytes.Equal(r.Value, want) || r.OffsetDelta != int32(j) {
					t.Fatalf("%s batch %d record %d: wrong value or offset delta %d", tc.codec, i, j, r.OffsetDelta)
				}
				next++
				values += int64(len(r.Value))
			}
			if len(b.b) > 1<<20+12 {
				t.Fatalf("%s batch %d is %d bytes, over the default max.message.bytes", tc.codec, i, len(b.b))
			}
			if values != b.values || values > rawBatchBytes || values < rawBatchBytes-RecordSize {
				t.Fatalf("%s batch %d: %d value bytes (claims %d), want about %d", tc.codec, i, values, b.values, rawBatchBytes)
			}
			if tc.codec == "lz4" && len(b.b) >= int(values) {
				t.Fatalf("lz4 batch %d of %d bytes does not compress %d value bytes", i, len(b.b), values)
			}
		}
	}
	if _, err := buildRawBatches(recs, "zstd"); err == nil {
		t.Fatal("unknown codec accepted")
	}
}
