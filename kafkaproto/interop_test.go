package kafkaproto

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// These tests check our batch format against an independent implementation:
// franz-go's kmsg.RecordBatch and kmsg.Record.

func TestBatchReadableByKmsg(t *testing.T) {
	recs := testRecords(9)
	h := BatchHeader{BaseOffset: 77, PartitionLeaderEpoch: 4, BaseTimestamp: 1_650_000_000_000, ProducerID: 31, ProducerEpoch: 2, BaseSequence: 500}
	b := mustBuild(t, h, recs, CodecNone)

	var kb kmsg.RecordBatch
	if err := kb.ReadFrom(b); err != nil {
		t.Fatal(err)
	}
	if kb.FirstOffset != 77 || kb.Length != int32(len(b)-12) || kb.PartitionLeaderEpoch != 4 || kb.Magic != 2 ||
		uint32(kb.CRC) != BatchCRC(b) || kb.Attributes != 0 || kb.LastOffsetDelta != 8 ||
		kb.FirstTimestamp != h.BaseTimestamp || kb.MaxTimestamp != h.BaseTimestamp+24 ||
		kb.ProducerID != 31 || kb.ProducerEpoch != 2 || kb.FirstSequence != 500 || kb.NumRecords != 9 {
		t.Fatalf("kmsg reads header %+v", kb)
	}
	rest := kb.Records
	for i, want := range recs {
		var kr kmsg.Record
		if err := kr.ReadFrom(rest); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if kr.OffsetDelta != want.OffsetDelta || kr.TimestampDelta64 != want.TimestampDelta ||
			!bytes.Equal(kr.Key, want.Key) || (kr.Key == nil) != (want.Key == nil) ||
			!bytes.Equal(kr.Value, want.Value) || (kr.Value == nil) != (want.Value == nil) ||
			len(kr.Headers) != len(want.Headers) {
			t.Fatalf("record %d: kmsg reads %+v, want %+v", i, kr, want)
		}
		for j, hd := range want.Headers {
			if kr.Headers[j].Key != hd.Key || !bytes.Equal(kr.Headers[j].Value, hd.Value) || (kr.Headers[j].Value == nil) != (hd.Value == nil) {
				t.Fatalf("record %d header %d: %+v, want %+v", i, j, kr.Headers[j], hd)
			}
		}
		_, n := binary.Varint(rest)
		rest = rest[n+int(kr.Length):]
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes after the records", len(rest))
	}
}

func TestKmsgBatchReadableByUs(t *testing.T) {
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			want := testRecords(6)
			var raw []byte
			for _, r := range want {
				kr := kmsg.Record{TimestampDelta64: r.TimestampDelta, OffsetDelta: r.OffsetDelta, Key: r.Key, Value: r.Value}
				for _, hd := range r.Headers {
					kr.Headers = append(kr.Headers, kmsg.Header{Key: hd.Key, Value: hd.Value})
				}
				kr.Length = int32(len(kr.AppendTo(nil)) - 1) // the zero Length varint is one byte
				raw = kr.AppendTo(raw)
			}
			comp, err := Compress(c, raw)
			if err != nil {
				t.Fatal(err)
			}
			kb := kmsg.RecordBatch{
				FirstOffset: 0, Length: int32(49 + len(comp)), PartitionLeaderEpoch: -1, Magic: 2,
				Attributes: int16(c), LastOffsetDelta: 5, FirstTimestamp: 1000, MaxTimestamp: 1015,
				ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 6, Records: comp,
			}
			b := kb.AppendTo(nil)
			binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))

			h, err := ValidateBatch(b, 0)
			if err != nil {
				t.Fatal(err)
			}
			if h.Codec() != c || h.NumRecords != 6 || h.MaxTimestamp != 1015 {
				t.Fatalf("header %+v", h)
			}
			_, got, err := DecodeRecords(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d records, want %d", len(got), len(want))
			}
			for i := range want {
				g, w := got[i], want[i]
				if g.OffsetDelta != w.OffsetDelta || g.TimestampDelta != w.TimestampDelta ||
					!bytes.Equal(g.Key, w.Key) || (g.Key == nil) != (w.Key == nil) ||
					!bytes.Equal(g.Value, w.Value) || (g.Value == nil) != (w.Value == nil) || len(g.Headers) != len(w.Headers) {
					t.Fatalf("record %d: %+v, want %+v", i, g, w)
				}
			}
		})
	}
}
