package kafkaproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxRequestBytes is Kafka's default socket.request.max.bytes.
const DefaultMaxRequestBytes = 100 << 20

// Sentinel errors. Match them with errors.Is; they are wrapped with the
// operation that failed.
var (
	// ErrFrameTooLarge: a frame's size prefix exceeds the allowed maximum.
	ErrFrameTooLarge = errors.New("kafkaproto: frame too large")
	// ErrMalformed: bytes that cannot be decoded (bad frame size, header,
	// request body, record, or compressed block).
	ErrMalformed = errors.New("kafkaproto: malformed")
	// ErrUnsupportedVersion: an api key or version kmsg does not know, so the
	// body cannot be decoded. Always wrapped together with ErrMalformed.
	ErrUnsupportedVersion = errors.New("kafkaproto: unknown api key or version")
	// ErrTruncatedBatch: the input ends inside a record batch (normal at the
	// end of a fetch response, where the broker cuts at max bytes).
	ErrTruncatedBatch = errors.New("kafkaproto: truncated record batch")
	// ErrDecompressedTooLarge: decompressing would exceed the caller's limit.
	ErrDecompressedTooLarge = errors.New("kafkaproto: decompressed size over limit")
	// ErrUnsupportedCodec: a compression codec outside 0..4.
	ErrUnsupportedCodec = errors.New("kafkaproto: unsupported compression codec")
)

// frameGrowStep bounds how much ReadFrame allocates ahead of the bytes that
// have really arrived: a client that announces a 100 MiB frame and then sends
// nothing costs at most this much memory. Past it the buffer grows by
// frameGrowFactor as bytes arrive, so memory stays within that factor of
// what the peer really sent. (Doubling instead cost a saturated producer a
// fifth of the broker's CPU in copies and zeroing: a 6 MiB produce request
// was copied 7 MiB and zeroed 15 MiB; with 8 it is copied 1 MiB and zeroed
// 7 MiB.)
const (
	frameGrowStep   = 1 << 20
	frameGrowFactor = 8
)

// ReadFrame reads one size-prefixed frame from r and returns its payload (the
// bytes after the int32 size). The size is checked (0 < size <= maxSize)
// before anything is allocated; a larger size returns ErrFrameTooLarge, a zero
// or negative size ErrMalformed. buf is reused when its capacity suffices, so
// the returned slice may alias it.
//
// Returns io.EOF (unwrapped) on a clean end of stream before a frame and
// io.ErrUnexpectedEOF (unwrapped) when the stream ends inside a frame. Other
// read errors are returned wrapped.
func ReadFrame(r io.Reader, maxSize int32, buf []byte) ([]byte, error) {
	var sizeBuf []byte
	if cap(buf) >= 4 {
		sizeBuf = buf[:4]
	} else {
		sizeBuf = make([]byte, 4)
	}
	if n, err := io.ReadFull(r, sizeBuf); err != nil {
		switch {
		case n == 0 && errors.Is(err, io.EOF):
			return nil, io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, fmt.Errorf("read frame size: %w", err)
		}
	}
	size := int32(binary.BigEndian.Uint32(sizeBuf))
	if size <= 0 {
		return nil, fmt.Errorf("read frame: size %d: %w", size, ErrMalformed)
	}
	if size > maxSize {
		return nil, fmt.Errorf("read frame: size %d over limit %d: %w", size, maxSize, ErrFrameTooLarge)
	}
	n := int(size)
	if cap(buf) >= n {
		buf = buf[:n]
		if err := readBody(r, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	if n <= frameGrowStep {
		buf = make([]byte, n)
		if err := readBody(r, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	// Large frame: grow as the bytes arrive, so memory follows what the peer
	// really sent rather than what it announced.
	buf = make([]byte, 0, frameGrowStep)
	for len(buf) < n {
		if len(buf) == cap(buf) {
			next := min(frameGrowFactor*cap(buf), n)
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = grown
		}
		end := min(cap(buf), n)
		if err := readBody(r, buf[len(buf):end]); err != nil {
			return nil, err
		}
		buf = buf[:end]
	}
	return buf, nil
}

func readBody(r io.Reader, dst []byte) error {
	if _, err := io.ReadFull(r, dst); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read frame body: %w", err)
	}
	return nil
}
