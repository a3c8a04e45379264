//go:build !unix

package coordinator

// lockDir is a no-op where flock is unavailable; etcd's own locks apply.
func lockDir(string) (func(), error) { return func() {}, nil }
