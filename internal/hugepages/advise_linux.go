package hugepages

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const supported = true

// alignOffset is how far into b the first Size boundary lies.
func alignOffset(b []byte) int {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return int((Size - p%Size) % Size)
}

// advise marks the whole huge pages of b (which starts on a boundary) as
// MADV_HUGEPAGE. A kernel without transparent huge pages refuses, and the
// buffer is simply backed by small pages.
func advise(b []byte) {
	if n := len(b) &^ (Size - 1); n > 0 {
		_ = unix.Madvise(b[:n], unix.MADV_HUGEPAGE)
	}
}
