package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSealWatch: the watch sees segments sealed when a newer segment file
// appears (several at once too), takes their sizes and ends from the files,
// marks them uploaded when ListOffsets -5 covers their end, and counts the
// backlog and the segments still pending in a window.
func TestSealWatch(t *testing.T) {
	logs := t.TempDir()
	dir := filepath.Join(logs, "t-0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seg := func(base int64, size int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.log", base)), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		// Index files beside it are not segments.
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.index", base)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w := newSealWatch(logs, "t", 1)
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

	seg(0, 100)
	if err := w.look(at(0)); err != nil {
		t.Fatal(err)
	}
	if len(w.segs[0]) != 0 || w.active[0] != 0 {
		t.Fatalf("one active segment: sealed %v, active %d", w.segs[0], w.active[0])
	}
	seg(10, 200) // seals [0, 9]
	if err := w.look(at(10)); err != nil {
		t.Fatal(err)
	}
	seg(25, 300) // seals [10, 24]
	seg(40, 50)  // seals [25, 39], in the same look
	if err := w.look(at(20)); err != nil {
		t.Fatal(err)
	}
	want := []sealedSeg{{end: 9, size: 100, sealed: at(10)}, {end: 24, size: 200, sealed: at(20)}, {end: 39, size: 300, sealed: at(20)}}
	if len(w.segs[0]) != len(want) {
		t.Fatalf("sealed %+v, want %+v", w.segs[0], want)
	}
	for i := range want {
		if g := w.segs[0][i]; g.end != want[i].end || g.size != want[i].size || !g.sealed.Equal(want[i].sealed) {
			t.Fatalf("segment %d: %+v, want %+v", i, g, want[i])
		}
	}
	if b := w.uploaded([]int64{-1}, at(30)); b != 600 {
		t.Fatalf("backlog with nothing uploaded %d, want 600", b)
	}
	if b := w.uploaded([]int64{24}, at(40)); b != 300 {
		t.Fatalf("backlog after uploading to 24: %d, want 300", b)
	}
	if n := w.pending(at(0), at(15)); n != 0 {
		t.Fatalf("pending among those sealed before 15 ms: %d, want 0", n)
	}
	if n := w.pending(at(15), at(25)); n != 1 {
		t.Fatalf("pending among those sealed in [15, 25) ms: %d, want 1", n)
	}
	if w.segs[0][0].uploaded != at(40) || w.segs[0][1].uploaded != at(40) {
		t.Fatalf("upload times %v %v, want both %v", w.segs[0][0].uploaded, w.segs[0][1].uploaded, at(40))
	}
	if b := w.uploaded([]int64{39}, at(50)); b != 0 || !w.segs[0][2].uploaded.Equal(at(50)) {
		t.Fatalf("backlog %d after all uploaded; last upload at %v", b, w.segs[0][2].uploaded)
	}
	if n := uploadedBytes(w, at(45), at(60)); n != 300 {
		t.Fatalf("bytes uploaded in [45, 60) ms: %d, want 300", n)
	}
	if n := uploadedBytes(w, at(0), at(60)); n != 600 {
		t.Fatalf("bytes uploaded in [0, 60) ms: %d, want 600", n)
	}
}
