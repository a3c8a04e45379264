// Package datadir owns the broker's data directory as a whole: an exclusive
// lock so that only one process uses it, and the directory's identity (a
// UUID created once and kept in it), which lets a broker recognise its own
// etcd registration left by an earlier process that was killed.
package datadir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrLocked means another process holds the data directory.
var ErrLocked = errors.New("datadir: data directory is in use by another process")

const (
	lockFile = ".lock"
	idFile   = "dir-id"
)

// Lock takes an exclusive advisory lock on dir (created if missing). The
// lock dies with the process, so a killed broker never leaves it stale.
func Lock(dir string) (unlock func() error, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("datadir: create %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("datadir: open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("datadir: lock %s: %w", dir, err)
	}
	return f.Close, nil
}

// ID returns the directory's identity, creating it (atomically) on first use.
func ID(dir string) (string, error) {
	path := filepath.Join(dir, idFile)
	if b, err := os.ReadFile(path); err == nil {
		id := string(bytes.TrimSpace(b))
		if len(id) == 36 {
			return id, nil
		}
		return "", fmt.Errorf("datadir: %s is corrupt (%q); remove it only if this directory is not registered under another id", path, id)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("datadir: read %s: %w", path, err)
	}
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	id := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
	tmp := path + ".tmp"
	if err := writeSync(tmp, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("datadir: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("datadir: rename %s: %w", tmp, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return id, nil
}

func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
