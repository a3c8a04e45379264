package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// measureMaxObjSize bounds the memory MeasurePutGet holds (one object per
// worker).
const measureMaxObjSize = 1 << 30

// The measured PUT and GET passes of MeasurePutGet each run until they have
// taken measureTime, and at most measurePasses of them.
const (
	measureTime   = 2 * time.Second
	measurePasses = 16
)

// MeasurePutGet measures the store's S_put and S_get limits (BENCHMARKS.md)
// and returns them in MB/s (1 MB = 10^6 bytes) with the p99 latency of one
// PUT and one whole GET. It PUTs objects objects of objSize incompressible
// bytes with concurrency workers, pass after pass over the same objects,
// until the passes have taken measureTime (at most measurePasses of them):
// one pass of 256 MiB lasts a quarter of a second (GET) to under a second
// (PUT), too short for a limit that ratios are judged against. Then it GETs
// each object back in full the same way, after one unmeasured pass that
// warms the store and the reader (buffers touched once, connections open),
// which otherwise made S_get measured before a run read half of S_get
// measured after it. Keys go under "strata-bench/<random>/" and are deleted
// before it returns, also on error (with a fresh 30 s context if ctx is
// done). A GET that returns a wrong length or wrong bytes is an error.
func MeasurePutGet(ctx context.Context, s Storage, objSize int64, objects, concurrency int) (putMBps, getMBps float64, putP99, getP99 time.Duration, err error) {
	switch {
	case s == nil:
		return 0, 0, 0, 0, errors.New("remote: measure: nil storage")
	case objSize < 1 || objSize > measureMaxObjSize:
		return 0, 0, 0, 0, fmt.Errorf("remote: measure: object size %d: want 1 B .. 1 GiB", objSize)
	case objects < 1 || objects > 100_000:
		return 0, 0, 0, 0, fmt.Errorf("remote: measure: %d objects: want 1 .. 100000", objects)
	case concurrency < 1 || concurrency > 256:
		return 0, 0, 0, 0, fmt.Errorf("remote: measure: concurrency %d: want 1 .. 256", concurrency)
	}
	if concurrency > objects {
		concurrency = objects
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("remote: measure: %w", err)
	}
	dir := "strata-bench/" + hex.EncodeToString(id[:]) + "/"
	key := func(i int) string { return fmt.Sprintf("%sobj-%06d", dir, i) }

	// Each worker owns one random buffer; object i differs from the others in
	// its first 8 bytes (its index), so no two objects are equal and the GET
	// check needs only the index.
	bufs := make([][]byte, concurrency)
	for w := range bufs {
		bufs[w] = make([]byte, objSize)
		if _, err := rand.Read(bufs[w]); err != nil {
			return 0, 0, 0, 0, fmt.Errorf("remote: measure: %w", err)
		}
	}
	stamp := func(b []byte, i int) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(i))
		copy(b, n[:])
	}

	var putMu sync.Mutex
	put := make(map[int]bool, objects)
	defer func() {
		cctx := ctx
		if ctx.Err() != nil {
			var cancel context.CancelFunc
			cctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
		}
		for i := range put {
			if derr := s.Delete(cctx, key(i)); derr != nil && err == nil {
				err = fmt.Errorf("remote: measure: clean up: %w", derr)
			}
		}
	}()

	// PUT phase: worker w handles the objects i with i%concurrency == w, so
	// it alone writes its buffer.
	var putLat []time.Duration
	var putWall time.Duration
	putPasses := 0
	for ; putPasses < measurePasses && (putPasses == 0 || putWall < measureTime); putPasses++ {
		lat, wall, err := runWorkers(ctx, objects, concurrency, func(w, i int) error {
			b := bufs[w]
			stamp(b, i)
			putMu.Lock()
			put[i] = true // delete even if the put fails half-way
			putMu.Unlock()
			return s.Put(ctx, key(i), bytes.NewReader(b), objSize)
		})
		if err != nil {
			return 0, 0, 0, 0, fmt.Errorf("remote: measure put: %w", err)
		}
		putLat, putWall = append(putLat, lat...), putWall+wall
	}

	// GET phase: same assignment, so each worker checks against its buffer.
	readBufs := make([][]byte, concurrency)
	for w := range readBufs {
		readBufs[w] = make([]byte, objSize+1)
	}
	var getLat []time.Duration
	var getWall time.Duration
	getPasses := 0
	for pass := 0; pass <= measurePasses && (pass <= 1 || getWall < measureTime); pass++ {
		lat, wall, err := runWorkers(ctx, objects, concurrency, func(w, i int) error {
			rc, err := s.Get(ctx, key(i))
			if err != nil {
				return err
			}
			n, rerr := io.ReadFull(rc, readBufs[w])
			cerr := rc.Close()
			if rerr != nil && rerr != io.ErrUnexpectedEOF {
				return fmt.Errorf("read %s: %w", key(i), rerr)
			}
			if cerr != nil {
				return fmt.Errorf("close %s: %w", key(i), cerr)
			}
			if int64(n) != objSize {
				return fmt.Errorf("get %s: %d bytes, want %d", key(i), n, objSize)
			}
			stamp(bufs[w], i)
			if !bytes.Equal(readBufs[w][:n], bufs[w]) {
				return fmt.Errorf("get %s: content differs from what was put", key(i))
			}
			return nil
		})
		if err != nil {
			return 0, 0, 0, 0, fmt.Errorf("remote: measure get: %w", err)
		}
		if pass > 0 { // the first pass warms up
			getLat, getWall = append(getLat, lat...), getWall+wall
			getPasses++
		}
	}
	total := float64(objSize) * float64(objects)
	return total * float64(putPasses) / 1e6 / putWall.Seconds(), total * float64(getPasses) / 1e6 / getWall.Seconds(), p99(putLat), p99(getLat), nil
}

// runWorkers runs fn(w, i) for i in [0, n) on workers goroutines, worker w
// taking i = w, w+workers, ...; it returns each call's latency, the wall
// time, and the first error (the others stop at their next object).
func runWorkers(ctx context.Context, n, workers int, fn func(w, i int) error) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, n)
	errs := make([]error, workers)
	var failed sync.Once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				select {
				case <-stop:
					return
				default:
				}
				if err := ctx.Err(); err != nil {
					errs[w] = err
					return
				}
				t0 := time.Now()
				if err := fn(w, i); err != nil {
					errs[w] = err
					failed.Do(func() { close(stop) })
					return
				}
				lat[i] = time.Since(t0)
			}
		}(w)
	}
	wg.Wait()
	wall := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	if wall <= 0 {
		wall = time.Nanosecond
	}
	return lat, wall, nil
}

// p99 is the nearest-rank 99th percentile.
func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	idx := (len(s)*99 + 99) / 100 // ceil(0.99 n)
	if idx < 1 {
		idx = 1
	}
	return s[idx-1]
}
