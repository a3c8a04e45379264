package remote_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratabroker/strata/remote"
	"github.com/stratabroker/strata/remote/remotetest"
)

func newFS(t *testing.T) *remote.FS {
	t.Helper()
	s, err := remote.NewFS(remote.FSConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("NewFS: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestFSAcceptance(t *testing.T) {
	remotetest.RunAcceptance(t, func(t *testing.T) remote.Storage { return newFS(t) })
}

func TestFSAcceptanceThroughOpen(t *testing.T) {
	remotetest.RunAcceptance(t, func(t *testing.T) remote.Storage {
		s, err := remote.Open(context.Background(), "file://"+t.TempDir())
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestNewFSMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "there")
	_, err := remote.NewFS(remote.FSConfig{Dir: dir})
	if !errors.Is(err, remote.ErrBucketNotFound) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("NewFS(missing) = %v, want ErrBucketNotFound naming %s", err, dir)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("NewFS without CreateBucket created %s", dir)
	}
	s, err := remote.NewFS(remote.FSConfig{Dir: dir, CreateBucket: true})
	if err != nil {
		t.Fatalf("NewFS(CreateBucket): %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("NewFS(CreateBucket) did not create %s: %v", dir, err)
	}
	if got := s.String(); got != "file://"+dir {
		t.Fatalf("String() = %q", got)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.NewFS(remote.FSConfig{Dir: file}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("NewFS(file) = %v, want a not-a-directory error", err)
	}
	if _, err := remote.NewFS(remote.FSConfig{}); err == nil {
		t.Fatal("NewFS with no directory succeeded")
	}
}

func TestFSLayoutAndTmpFiles(t *testing.T) {
	s := newFS(t)
	ctx := context.Background()
	if err := s.Put(ctx, "t/p/0001.log", bytes.NewReader([]byte("seg")), 3); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(s.Dir(), "t", "p", "0001.log"))
	if err != nil || string(got) != "seg" {
		t.Fatalf("object file = %q, %v", got, err)
	}
	// A temporary file left by a crash is never listed.
	if err := os.WriteFile(filepath.Join(s.Dir(), "t", "p", ".strata-tmp-123"), []byte("torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := s.List(ctx, "")
	if err != nil || len(l) != 1 || l[0].Key != "t/p/0001.log" {
		t.Fatalf("List = %+v, %v; want only t/p/0001.log", l, err)
	}
	// No temporary file remains after successful puts.
	entries, err := os.ReadDir(filepath.Join(s.Dir(), "t", "p"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries, want the object and the planted tmp file", len(entries))
	}
}

func TestFSDeletePrunesEmptyDirs(t *testing.T) {
	s := newFS(t)
	ctx := context.Background()
	for _, k := range []string{"a/b/c/1", "a/x"} {
		if err := s.Put(ctx, k, bytes.NewReader([]byte("v")), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "a/b/c/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "a", "b")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a/b still exists after deleting its only object: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "a", "x")); err != nil {
		t.Fatalf("sibling a/x gone: %v", err)
	}
	if err := s.Delete(ctx, "a/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir()); err != nil {
		t.Fatalf("root removed by pruning: %v", err)
	}
	entries, _ := os.ReadDir(s.Dir())
	if len(entries) != 0 {
		t.Fatalf("root holds %d entries after deleting everything", len(entries))
	}
}

func TestFSObjectVersusDirectory(t *testing.T) {
	s := newFS(t)
	ctx := context.Background()
	if err := s.Put(ctx, "a/b", bytes.NewReader([]byte("v")), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a/b/c", bytes.NewReader([]byte("v")), 1); err == nil {
		t.Fatal("Put under an existing object succeeded on FS")
	}
	if err := s.Put(ctx, "a", bytes.NewReader([]byte("v")), 1); err == nil {
		t.Fatal("Put over a directory of objects succeeded on FS")
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatalf("Delete of a directory name: %v", err)
	}
	if got, err := s.Stat(ctx, "a/b"); err != nil || got.Size != 1 {
		t.Fatalf("a/b after the refused puts: %+v, %v", got, err)
	}
	l, err := s.List(ctx, "a/b/")
	if err != nil || len(l) != 0 {
		t.Fatalf("List(a/b/) where a/b is an object = %+v, %v", l, err)
	}
}

func TestMeasurePutGetFS(t *testing.T) {
	s := newFS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	putMBps, getMBps, putP99, getP99, err := remote.MeasurePutGet(ctx, s, 256<<10, 8, 2)
	if err != nil {
		t.Fatalf("MeasurePutGet: %v", err)
	}
	if putMBps <= 0 || getMBps <= 0 || putP99 <= 0 || getP99 <= 0 {
		t.Fatalf("MeasurePutGet = %v MB/s, %v MB/s, %v, %v: want all positive", putMBps, getMBps, putP99, getP99)
	}
	if l, err := s.List(ctx, ""); err != nil || len(l) != 0 {
		t.Fatalf("MeasurePutGet left %d objects (%v)", len(l), err)
	}
	for _, bad := range []struct {
		size          int64
		objects, conc int
	}{{0, 1, 1}, {1, 0, 1}, {1, 1, 0}, {2 << 30, 1, 1}} {
		if _, _, _, _, err := remote.MeasurePutGet(ctx, s, bad.size, bad.objects, bad.conc); err == nil {
			t.Errorf("MeasurePutGet(%d, %d, %d) accepted bad arguments", bad.size, bad.objects, bad.conc)
		}
	}
}

func TestMeasurePutGetCleansUpOnError(t *testing.T) {
	s := newFS(t)
	f := remotetest.NewFaulty(s)
	f.FailNext(remotetest.OpGet, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, _, _, err := remote.MeasurePutGet(ctx, f, 4096, 6, 2)
	if !errors.Is(err, remotetest.ErrInjected) {
		t.Fatalf("MeasurePutGet with a failing get = %v, want the injected error", err)
	}
	if l, err := s.List(ctx, ""); err != nil || len(l) != 0 {
		t.Fatalf("MeasurePutGet left %d objects after an error (%v)", len(l), err)
	}
}

// TestMeasurePutGetPasses checks how many PUTs and GETs S_put and S_get are
// measured over: PUT passes until measureTime has gone by, at most
// measurePasses (16) of them; then one warm-up GET pass and measured GET
// passes the same way. Every pass covers every object. A store without
// latency reaches the bound; with 250 ms per call, 4 objects and 2 workers
// a pass lasts about 500 ms, and 2 s is reached after 4.
func TestMeasurePutGetPasses(t *testing.T) {
	for _, tc := range []struct {
		name       string
		latency    time.Duration
		puts, gets [2]int // passes, min and max (the GET warm-up included)
	}{
		{"fast store: the pass bound", 0, [2]int{16, 16}, [2]int{17, 17}},
		{"slow store: the time bound", 250 * time.Millisecond, [2]int{4, 5}, [2]int{5, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := remotetest.NewFaulty(newFS(t))
			f.SetLatency(tc.latency)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const objects = 4
			if _, getMBps, _, _, err := remote.MeasurePutGet(ctx, f, 4096, objects, 2); err != nil || getMBps <= 0 {
				t.Fatalf("MeasurePutGet: %v MB/s, %v", getMBps, err)
			}
			for _, c := range []struct {
				op     string
				passes [2]int
			}{{remotetest.OpPut, tc.puts}, {remotetest.OpGet, tc.gets}} {
				n := f.Calls(c.op)
				if n%objects != 0 || n/objects < c.passes[0] || n/objects > c.passes[1] {
					t.Errorf("%d %s calls for %d objects: want %d..%d whole passes", n, c.op, objects, c.passes[0], c.passes[1])
				}
			}
		})
	}
}
