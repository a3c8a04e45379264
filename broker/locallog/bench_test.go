package locallog

import (
	"io"
	"testing"

	"github.com/stratabroker/strata/kafkaproto"
)

func benchBatch(b *testing.B, records, valueSize int) []byte {
	b.Helper()
	recs := make([]kafkaproto.Record, records)
	val := make([]byte, valueSize)
	for i := range recs {
		recs[i] = kafkaproto.Record{OffsetDelta: int32(i), Value: val}
	}
	batch, err := kafkaproto.BuildBatch(kafkaproto.BatchHeader{BaseTimestamp: 1, ProducerID: -1, BaseSequence: -1}, recs, kafkaproto.CodecNone)
	if err != nil {
		b.Fatal(err)
	}
	return batch
}

// BenchmarkAppend appends 1 MiB batches (1024 records of 1 KiB) to the page
// cache, rolling 64 MiB segments; old segments are dropped outside the timer.
func BenchmarkAppend(b *testing.B) {
	cfg := DefaultConfig()
	cfg.SegmentBytes = 64 << 20
	l, err := Open(b.TempDir(), cfg, newLogger(io.Discard))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := benchBatch(b, 1024, 1024-8)
	b.SetBytes(int64(len(batch)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.AppendAsLeader(batch, 1); err != nil {
			b.Fatal(err)
		}
		if i%256 == 255 {
			b.StopTimer()
			if err := l.DeleteRecordsBefore(l.LogEndOffset()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
}

// BenchmarkRead reads 1 MiB at a time through 64 MiB of 16 KiB batches,
// each read starting mid-batch so the index lookup and header scan count.
func BenchmarkRead(b *testing.B) {
	cfg := DefaultConfig()
	cfg.SegmentBytes = 16 << 20
	l, err := Open(b.TempDir(), cfg, newLogger(io.Discard))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := benchBatch(b, 16, 1024-8)
	for l.Size() < 64<<20 {
		if _, err := l.AppendAsLeader(batch, 1); err != nil {
			b.Fatal(err)
		}
	}
	end := l.LogEndOffset()
	b.SetBytes(1 << 20)
	b.ResetTimer()
	off := int64(5)
	for i := 0; i < b.N; i++ {
		got, err := l.Read(off, 1<<20, -1, true)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) == 0 {
			b.Fatalf("empty read at %d", off)
		}
		off = (off + 997) % end
	}
}
