package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLockIsExclusive(t *testing.T) {
	dir := t.TempDir()
	unlock, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	unlock2, err := Lock(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestIDIsStable(t *testing.T) {
	dir := t.TempDir()
	a, err := ID(dir)
	if err != nil || len(a) != 36 {
		t.Fatalf("id %q %v", a, err)
	}
	b, err := ID(dir)
	if err != nil || a != b {
		t.Fatalf("second read %q %v, want %q", b, err, a)
	}
	other, _ := ID(t.TempDir())
	if other == a {
		t.Fatal("two directories got the same id")
	}
	os.WriteFile(filepath.Join(dir, idFile), []byte("garbage"), 0o644)
	if _, err := ID(dir); err == nil {
		t.Fatal("corrupt id accepted")
	}
}
