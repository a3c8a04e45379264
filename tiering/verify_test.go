package tiering

import (
	"context"
	"math/rand/v2"
	"testing"
)

// The verifier accepts exactly the batches it walks from its start, fed in
// pieces of any size, and stops at the first damaged or straddling one.
func TestBatchVerifier(t *testing.T) {
	s := rtBuild(t, rtOptions{batches: 30, indexInterval: 300})
	rng := rand.New(rand.NewPCG(1, 2))
	feed := func(v *batchVerifier, buf []byte) {
		for n := 0; n < len(buf); {
			n = min(len(buf), n+1+rng.IntN(200))
			v.feed(buf, n)
		}
	}
	t.Run("whole log", func(t *testing.T) {
		v := &batchVerifier{cur: 0}
		feed(v, s.log)
		if len(v.ok) != len(s.batches) {
			t.Fatalf("verified %d batches, want %d", len(v.ok), len(s.batches))
		}
		for i, b := range s.batches {
			if int64(v.ok[i].pos) != b.pos || int(v.ok[i].size) != len(b.b) {
				t.Fatalf("batch %d: verified %+v, want pos %d size %d", i, v.ok[i], b.pos, len(b.b))
			}
		}
	})
	t.Run("damaged batch stops the walk", func(t *testing.T) {
		log := append([]byte(nil), s.log...)
		log[s.batches[9].pos+70] ^= 1
		v := &batchVerifier{cur: 0}
		feed(v, log)
		if len(v.ok) != 9 {
			t.Fatalf("verified %d batches, want the 9 before the damage", len(v.ok))
		}
	})
	t.Run("chunk ends inside a batch", func(t *testing.T) {
		for _, cut := range []int64{5, 70} { // inside the header, after it
			end := s.batches[12].pos + cut
			v := &batchVerifier{cur: int(s.batches[4].pos)}
			feed(v, s.log[:end])
			if len(v.ok) != 8 || v.ok[0].pos != int32(s.batches[4].pos) {
				t.Fatalf("cut %d: verified %d batches, want the 8 from batch 4", cut, len(v.ok))
			}
		}
	})
}

// With the memory cache, batches read from chunks are served without a
// second CRC pass when they passed it on arrival — and correctly.
func TestReaderPreVerified(t *testing.T) {
	e, s := rtSetup(t, rtOptions{batches: 40, indexInterval: 300}, ReaderConfig{Memory: true})
	got, err := e.r.Read(context.Background(), s.ref, s.ref.BaseOffset, 1<<30, false)
	if err != nil || string(got) != string(s.log) {
		t.Fatalf("read (%d bytes, %v), want the whole log", len(got), err)
	}
	if st := e.r.Stats(); st.PreVerified != int64(len(s.batches)) {
		t.Fatalf("PreVerified = %d, want every one of %d batches", st.PreVerified, len(s.batches))
	}
}
