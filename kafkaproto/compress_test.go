package kafkaproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/snappy"
)

// semiCompressible returns n bytes of JSON-like events with random fields.
func semiCompressible(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var b []byte
	for len(b) < n {
		b = fmt.Appendf(b, `{"user":%d,"action":"click","ts":%d,"session":"%x"}`, r.IntN(1000), r.Int64(), r.Uint64())
	}
	return b[:n]
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// xerialEncode frames src as the Java client does: magic, version 1, compat 1,
// then [int32 length][raw snappy block] per chunk of chunkSize bytes.
func xerialEncode(src []byte, chunkSize int) []byte {
	out := append([]byte(nil), xerialMagic...)
	out = binary.BigEndian.AppendUint32(out, 1)
	out = binary.BigEndian.AppendUint32(out, 1)
	for len(src) > 0 {
		n := min(chunkSize, len(src))
		block := snappy.Encode(nil, src[:n])
		out = binary.BigEndian.AppendUint32(out, uint32(len(block)))
		out = append(out, block...)
		src = src[n:]
	}
	return out
}

func TestCodecRoundTrips(t *testing.T) {
	inputs := map[string][]byte{
		"empty":       {},
		"one byte":    {42},
		"text":        []byte("hello, strata hello, strata hello, strata"),
		"1 MiB json":  semiCompressible(1<<20, 1),
		"random 64K":  randomBytes(64<<10, 2),
		"zeros 3 MiB": make([]byte, 3<<20),
	}
	for _, c := range allCodecs {
		for name, in := range inputs {
			t.Run(c.String()+"/"+name, func(t *testing.T) {
				comp, err := Compress(c, in)
				if err != nil {
					t.Fatal(err)
				}
				if c != CodecNone && name == "1 MiB json" && len(comp) >= len(in) {
					t.Fatalf("%s did not compress: %d -> %d", c, len(in), len(comp))
				}
				out, err := Decompress(c, comp, len(in)+1)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out, in) {
					t.Fatalf("round trip: %d bytes back, want %d", len(out), len(in))
				}
			})
		}
	}
}

func TestXerialSnappy(t *testing.T) {
	in := semiCompressible(200_000, 3)
	for _, chunk := range []int{32 << 10, 1 << 20, 1000} {
		t.Run(fmt.Sprintf("chunk %d", chunk), func(t *testing.T) {
			framed := xerialEncode(in, chunk)
			out, err := Decompress(CodecSnappy, framed, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("xerial: %d bytes back, want %d", len(out), len(in))
			}
		})
	}
	empty, err := Decompress(CodecSnappy, xerialEncode(nil, 10), 0)
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty xerial stream: %d bytes, %v", len(empty), err)
	}

	// A batch compressed the Java way decodes too.
	recs := testRecords(20)
	var raw []byte
	for _, r := range recs {
		raw = appendRecord(raw, r)
	}
	framed := xerialEncode(raw, 100)
	h := testHeader
	h.Magic, h.NumRecords, h.LastOffsetDelta = 2, 20, 19
	h.Attributes = int16(CodecSnappy)
	h.BatchLength = int32(minBatchLength + len(framed))
	b := resign(append(appendBatchHeader(nil, h), framed...))
	if _, err := ValidateBatch(b, 0); err != nil {
		t.Fatal(err)
	}
	_, got, err := DecodeRecords(b)
	if err != nil || len(got) != 20 || !bytes.Equal(got[4].Key, recs[4].Key) || !bytes.Equal(got[19].Value, recs[19].Value) {
		t.Fatalf("xerial batch: %d records, %v", len(got), err)
	}
}

func TestDecompressLimit(t *testing.T) {
	in := semiCompressible(10_000, 4)
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			comp, err := Compress(c, in)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := Decompress(c, comp, len(in)); err != nil || len(out) != len(in) {
				t.Fatalf("at the limit: %d bytes, %v", len(out), err)
			}
			out, err := Decompress(c, comp, len(in)-1)
			if !errors.Is(err, ErrDecompressedTooLarge) || out != nil {
				t.Fatalf("one below the limit: %d bytes, err %v", len(out), err)
			}
		})
	}
	t.Run("xerial", func(t *testing.T) {
		_, err := Decompress(CodecSnappy, xerialEncode(in, 3000), len(in)-1)
		if !errors.Is(err, ErrDecompressedTooLarge) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("snappy declared length checked before allocating", func(t *testing.T) {
		// A raw block header claiming 1 GiB followed by nothing.
		bomb := binary.AppendUvarint(nil, 1<<30)
		var err error
		n := bytesAllocated(func() { _, err = Decompress(CodecSnappy, bomb, 1<<20) })
		if !errors.Is(err, ErrDecompressedTooLarge) {
			t.Fatalf("err %v", err)
		}
		if n > 64<<10 {
			t.Fatalf("allocated %d bytes", n)
		}
	})
}

func TestDecompressErrors(t *testing.T) {
	garbage := []byte("this is not compressed data at all, honestly")
	truncXerial := xerialEncode(semiCompressible(5000, 5), 1000)
	tests := []struct {
		name    string
		codec   Codec
		src     []byte
		wantErr error
	}{
		{"gzip garbage", CodecGzip, garbage, ErrMalformed},
		{"gzip empty", CodecGzip, nil, ErrMalformed},
		{"snappy garbage", CodecSnappy, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ErrMalformed},
		{"xerial torn length", CodecSnappy, truncXerial[:18], ErrMalformed},
		{"xerial torn block", CodecSnappy, truncXerial[:len(truncXerial)-3], ErrMalformed},
		{"xerial short header", CodecSnappy, xerialMagic, ErrMalformed},
		{"lz4 garbage", CodecLZ4, garbage, ErrMalformed},
		{"zstd garbage", CodecZstd, garbage, ErrMalformed},
		{"codec 5", Codec(5), garbage, ErrUnsupportedCodec},
		{"codec -1", Codec(-1), garbage, ErrUnsupportedCodec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Decompress(tt.codec, tt.src, 1<<20)
			if !errors.Is(err, tt.wantErr) || out != nil {
				t.Fatalf("out %d bytes, err %v; want %v", len(out), err, tt.wantErr)
			}
		})
	}
	if _, err := Compress(Codec(9), garbage); !errors.Is(err, ErrUnsupportedCodec) {
		t.Fatalf("Compress codec 9: %v", err)
	}
	if _, err := BuildBatch(testHeader, testRecords(1), Codec(5)); !errors.Is(err, ErrUnsupportedCodec) {
		t.Fatalf("BuildBatch codec 5: %v", err)
	}
}

func TestCodecString(t *testing.T) {
	want := []string{"none", "gzip", "snappy", "lz4", "zstd", "codec(5)"}
	for i, w := range want {
		if got := Codec(i).String(); got != w {
			t.Errorf("Codec(%d) = %q, want %q", i, got, w)
		}
	}
}
