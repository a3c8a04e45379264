package kafkaproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Codec is a record batch compression codec (attributes bits 0-2).
type Codec int8

// Codecs Kafka defines for record batches.
const (
	CodecNone   Codec = 0
	CodecGzip   Codec = 1
	CodecSnappy Codec = 2
	CodecLZ4    Codec = 3
	CodecZstd   Codec = 4
)

// String returns Kafka's name for the codec (compression.type).
func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecGzip:
		return "gzip"
	case CodecSnappy:
		return "snappy"
	case CodecLZ4:
		return "lz4"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", int8(c))
}

// MaxDecompressedSize is the limit Decompress applies when given limit <= 0,
// and the limit DecodeRecords uses: a batch that inflates beyond it is refused
// as a likely decompression bomb.
const MaxDecompressedSize = 256 << 20

// zstdMaxWindow bounds the history window a zstd frame may ask for. Producers
// use far smaller windows (level 3 = 2 MiB); a hostile frame cannot make us
// allocate more than this per decoder.
const zstdMaxWindow = 64 << 20

var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderSize = 16 // magic 8, version 4, compat 4

// Decompress inflates src, compressed with codec c, refusing (with
// ErrDecompressedTooLarge) to produce more than limit bytes; limit <= 0 means
// MaxDecompressedSize. Snappy accepts both a raw block and xerial framing;
// LZ4 is the LZ4 frame format. CodecNone returns src itself. Corrupt input
// returns an error wrapping ErrMalformed, a codec outside 0..4
// ErrUnsupportedCodec.
func Decompress(c Codec, src []byte, limit int) ([]byte, error) {
	if limit <= 0 {
		limit = MaxDecompressedSize
	}
	var (
		out []byte
		err error
	)
	switch c {
	case CodecNone:
		if len(src) > limit {
			return nil, fmt.Errorf("decompress none: %d bytes: %w", len(src), ErrDecompressedTooLarge)
		}
		return src, nil
	case CodecGzip:
		out, err = gunzip(src, limit)
	case CodecSnappy:
		out, err = unsnappy(src, limit)
	case CodecLZ4:
		out, err = readLimited(lz4.NewReader(bytes.NewReader(src)), limit, len(src))
	case CodecZstd:
		out, err = unzstd(src, limit)
	default:
		return nil, fmt.Errorf("decompress: codec %d: %w", c, ErrUnsupportedCodec)
	}
	if err != nil {
		if errors.Is(err, ErrDecompressedTooLarge) {
			return nil, fmt.Errorf("decompress %s: %w", c, err)
		}
		return nil, fmt.Errorf("decompress %s: %v: %w", c, err, ErrMalformed)
	}
	return out, nil
}

// readLimited reads r to the end, failing once more than limit bytes come out.
func readLimited(r io.Reader, limit, srcLen int) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(min(4*srcLen+512, limit))
	n, err := buf.ReadFrom(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if n > int64(limit) {
		return nil, fmt.Errorf("more than %d bytes: %w", limit, ErrDecompressedTooLarge)
	}
	return buf.Bytes(), nil
}

func gunzip(src []byte, limit int) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return readLimited(zr, limit, len(src))
}

func unsnappy(src []byte, limit int) ([]byte, error) {
	if len(src) >= len(xerialMagic) && bytes.Equal(src[:len(xerialMagic)], xerialMagic) {
		return unxerial(src, limit)
	}
	return snappyBlock(nil, src, limit)
}

// snappyBlock appends the decoding of one raw snappy block to dst, checking
// the declared length against what is left of limit first.
func snappyBlock(dst, block []byte, limit int) ([]byte, error) {
	n, err := snappy.DecodedLen(block)
	if err != nil {
		return nil, err
	}
	if n > limit-len(dst) {
		return nil, fmt.Errorf("block of %d bytes after %d, limit %d: %w", n, len(dst), limit, ErrDecompressedTooLarge)
	}
	if dst == nil {
		return snappy.Decode(nil, block)
	}
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	out, err := snappy.Decode(dst[start:], block)
	if err != nil {
		return nil, err
	}
	if len(out) != n {
		return nil, errors.New("snappy block length mismatch")
	}
	return dst, nil
}

// unxerial decodes the xerial snappy framing of the Java client.
func unxerial(src []byte, limit int) ([]byte, error) {
	if len(src) < xerialHeaderSize {
		return nil, errors.New("short xerial header")
	}
	src = src[xerialHeaderSize:]
	out := make([]byte, 0, min(4*len(src)+64, limit))
	for len(src) > 0 {
		if len(src) < 4 {
			return nil, errors.New("xerial block length torn")
		}
		n := int32(binary.BigEndian.Uint32(src))
		src = src[4:]
		if n < 0 || int(n) > len(src) {
			return nil, fmt.Errorf("xerial block length %d with %d bytes left", n, len(src))
		}
		var err error
		if out, err = snappyBlock(out, src[:n], limit); err != nil {
			return nil, err
		}
		src = src[n:]
	}
	return out, nil
}

// zstdDecoders pools synchronous streaming decoders (concurrency 1: no
// goroutines, so an idle pooled decoder holds memory only).
var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(zstdMaxWindow),
		zstd.WithDecoderMaxMemory(MaxDecompressedSize),
	)
	if err != nil {
		panic(fmt.Sprintf("kafkaproto: zstd decoder options: %v", err))
	}
	return d
}}

func unzstd(src []byte, limit int) ([]byte, error) {
	d := zstdDecoders.Get().(*zstd.Decoder)
	defer func() {
		_ = d.Reset(nil)
		zstdDecoders.Put(d)
	}()
	if err := d.Reset(bytes.NewReader(src)); err != nil {
		return nil, err
	}
	return readLimited(d, limit, len(src))
}

// zstdEncoder is shared: EncodeAll is safe for concurrent use.
var zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		panic(fmt.Sprintf("kafkaproto: zstd encoder options: %v", err))
	}
	return e
})

// Compress compresses src with codec c as producers do: gzip stream, raw
// snappy block, LZ4 frame, zstd frame. CodecNone returns a copy of src. It
// is meant for tests and tools; the broker never recompresses.
func Compress(c Codec, src []byte) ([]byte, error) {
	switch c {
	case CodecNone:
		return append([]byte(nil), src...), nil
	case CodecGzip:
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(src); err != nil {
			return nil, fmt.Errorf("compress gzip: %w", err)
		}
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("compress gzip: %w", err)
		}
		return buf.Bytes(), nil
	case CodecSnappy:
		return snappy.Encode(nil, src), nil
	case CodecLZ4:
		var buf bytes.Buffer
		zw := lz4.NewWriter(&buf)
		if _, err := zw.Write(src); err != nil {
			return nil, fmt.Errorf("compress lz4: %w", err)
		}
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("compress lz4: %w", err)
		}
		return buf.Bytes(), nil
	case CodecZstd:
		return zstdEncoder().EncodeAll(src, nil), nil
	}
	return nil, fmt.Errorf("compress: codec %d: %w", c, ErrUnsupportedCodec)
}
