package locallog

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFlushIfDue(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig()
	cfg.FlushIntervalMs = 1000
	cfg.FlushIntervalMessages = 0
	l, _ := openTest(t, dir, cfg)
	rp := func() []byte {
		b, _ := os.ReadFile(filepath.Join(dir, recoveryPointFile))
		return b
	}
	before := rp()
	appendN(t, l, 3, 0, 0)
	if err := l.FlushIfDue(time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if l.unflushedMsgs == 0 {
		t.Fatal("flushed before flush.ms passed")
	}
	if err := l.FlushIfDue(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if l.unflushedMsgs != 0 {
		t.Fatal("not flushed after flush.ms passed")
	}
	if string(rp()) == string(before) {
		t.Fatal("recovery point checkpoint did not move")
	}
	// Nothing new: no flush, no error.
	if err := l.FlushIfDue(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}
