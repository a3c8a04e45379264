package coordinator_test

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
)

func TestAllocateProducerIDsNeverOverlap(t *testing.T) {
	eps := etcdtest.Start(t)
	ctx := testCtx(t)
	stores := []*coordinator.Store{openStore(t, eps), openStore(t, eps)}
	type block struct{ first, n int64 }
	const goroutines, perGoroutine = 8, 10
	var (
		mu     sync.Mutex
		blocks []block
		wg     sync.WaitGroup
	)
	errs := make(chan error, len(stores)*goroutines)
	for si, s := range stores {
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perGoroutine; i++ {
					n := int64(1 + (si*goroutines+g+i)%7*100) // 1, 101, ..., 601
					first, err := s.AllocateProducerIDs(ctx, n)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					blocks = append(blocks, block{first, n})
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("allocate: %v", err)
	}
	if len(blocks) != len(stores)*goroutines*perGoroutine {
		t.Fatalf("%d blocks, want %d", len(blocks), len(stores)*goroutines*perGoroutine)
	}
	// Sorted by first ID, the blocks tile [0, total) with no gap or overlap.
	slices.SortFunc(blocks, func(a, b block) int { return int(a.first - b.first) })
	next := int64(0)
	for _, b := range blocks {
		if b.first != next {
			t.Fatalf("block %+v starts at %d, want %d (overlap or gap)", b, b.first, next)
		}
		next += b.n
	}
	// A Store opened later (a restarted broker) continues after them.
	later := openStore(t, eps)
	if first, err := later.AllocateProducerIDs(ctx, 1000); err != nil || first != next {
		t.Fatalf("allocate after restart = %d, %v; want %d", first, err, next)
	}
	for _, n := range []int64{0, -5} {
		if _, err := later.AllocateProducerIDs(ctx, n); !errors.Is(err, coordinator.ErrInvalid) {
			t.Fatalf("allocate %d: %v, want ErrInvalid", n, err)
		}
	}
}
