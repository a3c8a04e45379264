package coordinator

import (
	"context"
	"fmt"
	"math"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// producerIDAttempts bounds AllocateProducerIDs' compare-and-swap retries
// when other allocations keep winning.
const producerIDAttempts = 256

// AllocateProducerIDs reserves n producer IDs and returns the first: the
// block is [first, first+n). Blocks come from one counter key
// (<prefix>/producer-ids/next, the next free ID in decimal, starting at 0)
// advanced by compare-and-swap on its mod revision, so blocks from any
// number of Stores, goroutines and broker restarts never overlap. A lost
// race is retried on a fresh read (it cannot hide anything: every winner got
// its own block). After ErrUnavailable a block may have been reserved and
// is then simply never used. n must be positive; ErrInvalid also when the
// IDs would pass math.MaxInt64.
func (s *Store) AllocateProducerIDs(ctx context.Context, n int64) (first int64, err error) {
	op := fmt.Sprintf("allocate %d producer ids", n)
	if n <= 0 {
		return 0, fmt.Errorf("%s: %w: count must be positive", op, ErrInvalid)
	}
	key := s.keys.producerIDs()
	for attempt := 0; ; attempt++ {
		first, ok, err := s.tryAllocateProducerIDs(ctx, op, key, n)
		if err != nil || ok {
			return first, err
		}
		if attempt+1 >= producerIDAttempts {
			return 0, fmt.Errorf("%s: %w: lost %d times to concurrent allocations", op, ErrConflict, producerIDAttempts)
		}
		if err := backoff(ctx, attempt); err != nil {
			return 0, fmt.Errorf("%s: %w", op, err)
		}
	}
}

// tryAllocateProducerIDs makes one read and one compare-and-swap; ok=false
// when another allocation won.
func (s *Store) tryAllocateProducerIDs(ctx context.Context, op, key string, n int64) (int64, bool, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	get, err := s.cli.Get(ctx, key)
	if err != nil {
		return 0, false, s.classify(op, ctx, err)
	}
	var next, modRev int64
	if len(get.Kvs) == 1 {
		modRev = get.Kvs[0].ModRevision
		next, err = strconv.ParseInt(string(get.Kvs[0].Value), 10, 64)
		if err != nil || next < 0 {
			return 0, false, fmt.Errorf("%s: decode %s = %q: bad counter", op, key, get.Kvs[0].Value)
		}
	}
	if n > math.MaxInt64-next {
		return 0, false, fmt.Errorf("%s: %w: counter at %d would overflow", op, ErrInvalid, next)
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).
		Then(clientv3.OpPut(key, strconv.FormatInt(next+n, 10))).
		Commit()
	if err != nil {
		return 0, false, s.classify(op, ctx, err)
	}
	return next, resp.Succeeded, nil
}
