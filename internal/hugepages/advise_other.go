//go:build !linux

package hugepages

// Elsewhere Alloc is a plain allocation.
const supported = false

func alignOffset([]byte) int { return 0 }

func advise([]byte) {}
