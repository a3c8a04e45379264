//go:build !linux

package hugepages

func alignOffset([]byte) int { return 0 }

func advise([]byte) {}
