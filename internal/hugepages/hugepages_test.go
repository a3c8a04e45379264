package hugepages

import (
	"runtime"
	"testing"
	"unsafe"
)

func TestAlloc(t *testing.T) {
	for _, n := range []int{0, 1, 4096, Size - 1, Size, Size + 1, 8 << 20, 8<<20 + 12345} {
		b := Alloc(n)
		if len(b) != n || cap(b) != n {
			t.Fatalf("Alloc(%d): len %d cap %d", n, len(b), cap(b))
		}
		for i, c := range b {
			if c != 0 {
				t.Fatalf("Alloc(%d): byte %d is %d, want zero", n, i, c)
			}
		}
		if n >= Size && runtime.GOOS == "linux" && uintptr(unsafe.Pointer(unsafe.SliceData(b)))%Size != 0 {
			t.Fatalf("Alloc(%d) not aligned to %d", n, Size)
		}
		for i := range b {
			b[i] = byte(i)
		}
	}
}

// BenchmarkFirstWrite compares writing fresh buffers from Alloc against
// fresh make: the page faults of the first touch are the difference.
func BenchmarkFirstWrite(b *testing.B) {
	const n = 8 << 20
	src := make([]byte, n)
	for _, bc := range []struct {
		name  string
		alloc func(int) []byte
	}{{"make", func(n int) []byte { return make([]byte, n) }}, {"Alloc", Alloc}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(n)
			for b.Loop() {
				copy(bc.alloc(n), src)
			}
		})
	}
}
