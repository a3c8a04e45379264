package kafkaproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"testing"
)

func sizePrefix(size int32) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(size))
}

func frameOf(payload []byte) []byte {
	return append(sizePrefix(int32(len(payload))), payload...)
}

// bytesAllocated runs f and returns how many heap bytes it allocated.
//
// TotalAlloc counts the whole process (a parallel test, the runtime), which
// can only add to f's own figure: the least of five runs is f's.
func bytesAllocated(f func()) uint64 {
	least := uint64(math.MaxUint64)
	for range 5 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least
}

func TestReadFrame(t *testing.T) {
	const max = 1024
	payload := bytes.Repeat([]byte("abcdefgh"), 16) // 128 bytes
	tests := []struct {
		name    string
		input   []byte
		want    []byte
		wantErr error
	}{
		{"exact", frameOf(payload), payload, nil},
		{"one byte", frameOf([]byte{7}), []byte{7}, nil},
		{"at max size", frameOf(bytes.Repeat([]byte{1}, max)), bytes.Repeat([]byte{1}, max), nil},
		{"one over max", append(sizePrefix(max+1), make([]byte, max+1)...), nil, ErrFrameTooLarge},
		{"huge size", sizePrefix(math.MaxInt32), nil, ErrFrameTooLarge},
		{"zero size", sizePrefix(0), nil, ErrMalformed},
		{"negative size", sizePrefix(-1), nil, ErrMalformed},
		{"min int size", sizePrefix(math.MinInt32), nil, ErrMalformed},
		{"clean eof", nil, nil, io.EOF},
		{"torn size", []byte{0, 0}, nil, io.ErrUnexpectedEOF},
		{"torn body", frameOf(payload)[:50], nil, io.ErrUnexpectedEOF},
		{"body missing", sizePrefix(10), nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadFrame(bytes.NewReader(tt.input), max, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("payload = %d bytes %x, want %d bytes", len(got), got[:min(len(got), 16)], len(tt.want))
			}
		})
	}
}

func TestReadFrameEOFUnwrapped(t *testing.T) {
	if _, err := ReadFrame(bytes.NewReader(nil), 10, nil); err != io.EOF {
		t.Fatalf("clean EOF: err = %#v, want io.EOF itself", err)
	}
	if _, err := ReadFrame(bytes.NewReader(sizePrefix(5)), 10, nil); err != io.ErrUnexpectedEOF {
		t.Fatalf("torn frame: err = %#v, want io.ErrUnexpectedEOF itself", err)
	}
}

func TestReadFrameSequenceAndBufferReuse(t *testing.T) {
	var stream []byte
	frames := [][]byte{[]byte("first"), []byte("second frame"), []byte("3")}
	for _, f := range frames {
		stream = append(stream, frameOf(f)...)
	}
	r := bytes.NewReader(stream)
	buf := make([]byte, 64)
	for i, want := range frames {
		got, err := ReadFrame(r, 100, buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d = %q, want %q", i, got, want)
		}
		if &got[0] != &buf[0] {
			t.Fatalf("frame %d: buffer with capacity %d not reused", i, cap(buf))
		}
	}
	if _, err := ReadFrame(r, 100, buf); err != io.EOF {
		t.Fatalf("after last frame: err = %v, want io.EOF", err)
	}
}

func TestReadFrameOversizedAllocatesNothing(t *testing.T) {
	var err error
	n := bytesAllocated(func() {
		_, err = ReadFrame(bytes.NewReader(sizePrefix(math.MaxInt32)), DefaultMaxRequestBytes, nil)
	})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if n > 4<<10 {
		t.Fatalf("rejecting an oversized frame allocated %d bytes", n)
	}
}

func TestReadFrameLargeAnnouncedSizeAllocatesWhatArrives(t *testing.T) {
	// A peer announces the largest allowed frame, sends 10 bytes and hangs up:
	// memory must follow what arrived, not what was announced.
	input := append(sizePrefix(DefaultMaxRequestBytes), make([]byte, 10)...)
	var err error
	n := bytesAllocated(func() {
		_, err = ReadFrame(bytes.NewReader(input), DefaultMaxRequestBytes, nil)
	})
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	if n > 2*frameGrowStep {
		t.Fatalf("torn %d-byte frame allocated %d bytes", DefaultMaxRequestBytes, n)
	}
}

// Past the first step, memory stays within frameGrowFactor of what arrived,
// and a large frame is not copied over and over on its way in.
func TestReadFrameGrowthBounds(t *testing.T) {
	// 1 MiB + 10 bytes of a 100 MiB frame, then the peer hangs up.
	torn := append(sizePrefix(DefaultMaxRequestBytes), make([]byte, frameGrowStep+10)...)
	var err error
	n := bytesAllocated(func() {
		_, err = ReadFrame(bytes.NewReader(torn), DefaultMaxRequestBytes, nil)
	})
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	if limit := uint64((1+frameGrowFactor)*frameGrowStep + 64<<10); n > limit {
		t.Fatalf("torn frame after %d bytes allocated %d bytes, over %d", frameGrowStep+10, n, limit)
	}
	// A whole 6 MiB frame: one step, then its full size — not the 15 MiB
	// that doubling allocates.
	whole := frameOf(make([]byte, 6*frameGrowStep))
	n = bytesAllocated(func() {
		_, err = ReadFrame(bytes.NewReader(whole), DefaultMaxRequestBytes, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if limit := uint64(7*frameGrowStep + 64<<10); n > limit {
		t.Fatalf("6 MiB frame allocated %d bytes, over %d", n, limit)
	}
}

func TestReadFrameLargeFrameGrows(t *testing.T) {
	payload := make([]byte, 5*frameGrowStep+123)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	got, err := ReadFrame(bytes.NewReader(frameOf(payload)), DefaultMaxRequestBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("large frame: got %d bytes, content differs", len(got))
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestReadFrameReadErrorWrapped(t *testing.T) {
	boom := errors.New("boom")
	_, err := ReadFrame(errReader{boom}, 10, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want wrapping boom", err)
	}
	_, err = ReadFrame(io.MultiReader(bytes.NewReader(sizePrefix(5)), errReader{boom}), 10, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("body err = %v, want wrapping boom", err)
	}
}
