// Package hugepages allocates large, long-lived buffers that the kernel may
// back with transparent huge pages.
//
// The first write to each page of a fresh buffer is a page fault, and on
// virtual machines a fault can cost more than the copy it interrupts: on
// this project's 2-core VMs, writing a fresh 64 MiB buffer ran at about
// 335 MB/s with 4 KiB pages and at 4.3 GB/s with 2 MiB pages (16,384 faults
// against 32). Linux gives huge pages to anonymous memory only when asked
// (transparent_hugepage=madvise, the common default), and the Go runtime
// does not ask. Alloc asks, for the buffers that are worth it: the tiering
// chunk cache's, filled at hundreds of MB/s after every restart.
//
// The memory stays the garbage collector's: Alloc returns an ordinary
// slice, so a buffer that escapes is freed like any other. Only the advice
// on its address range outlives it, which is harmless. To start on a
// boundary Alloc allocates Size bytes more than asked; that slack is never
// touched, so it costs address space and heap accounting, not memory.
package hugepages

// Size is the huge page size Alloc aligns to (x86-64 and arm64 with 4 KiB
// base pages).
const Size = 2 << 20

// Alloc returns a zeroed slice of n bytes (len and cap n). When n is at
// least Size it starts on a Size boundary and, where the system supports
// it, its pages are advised as transparent huge pages before anything
// touches them. Smaller buffers are plain allocations.
func Alloc(n int) []byte {
	if n < Size || !supported {
		return make([]byte, n)
	}
	raw := make([]byte, n+Size)
	off := alignOffset(raw)
	b := raw[off : off+n : off+n]
	advise(b)
	return b
}
