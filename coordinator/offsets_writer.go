package coordinator

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy/adapter"
)

// OffsetWriter is a Store whose offset writes are made for the broker that
// owns the groups (the consumer-group coordinator). It keeps every contract
// of the Store's methods and changes how they reach etcd:
//
//   - No read before a write. The offsets buckets of each group it writes
//     are kept in memory, as of its own last read or write of them, under
//     the ownership they were written with. A write still compares each
//     changed bucket's mod revision with the one in memory, so a bucket
//     changed by anyone else (another Store, DeleteGroup through the Store,
//     a write whose answer was lost) fails that compare: the group's buckets
//     are read again and the edit redone, as the Store does after a lost
//     compare-and-swap. Memory never decides what is durable; etcd does.
//   - Group commit. Every call waiting when the previous write returns goes
//     to etcd in the next transaction: one nested transaction per group,
//     with that group's fence (owner create revision = own.Revision) and
//     bucket compares, so groups succeed or fail independently and each
//     call stays all or nothing. Calls of one group share its nested
//     transaction, applied in arrival order. One transaction is in flight at
//     a time (two in flight measured slower: smaller batches, more fsyncs),
//     so every waiting call shares one etcd WAL fsync, and a call returns
//     only after etcd has fsynced and applied its write.
//   - With the embedded etcd, the transactions call the etcd server in
//     process (through the same KV service, its quota and size checks)
//     instead of through gRPC over loopback.
//
// CommitOffsets, DeleteOffsets and ExpireOffsets take this path;
// DeleteGroup and ReleaseGroup forget the group's buckets, as does a write
// that finds the group not owned; every other method is the Store's. The writes run on one flusher goroutine owned by
// the Store (started on demand, gone when the queue is empty, stopped by
// the Store's Close). A caller whose context ends stops waiting; its write,
// if already sent, may still happen (as after ErrUnavailable: re-read).
type OffsetWriter struct {
	*Store

	kv clientv3.KV // the embedded etcd in process, else the Store's client

	// mu guards queue, running and groups (the map; the buckets inside are
	// the flusher's alone). No etcd I/O is done while holding it. Lock
	// order: mu before Store.mu.
	mu      sync.Mutex
	queue   []*offsetReq
	running bool                    // a flusher goroutine drains queue
	groups  map[string]*cachedGroup // buckets of groups written through this writer
}

var _ interface {
	CommitOffsets(context.Context, string, GroupOwner, []CommittedOffset) error
	DeleteOffsets(context.Context, string, GroupOwner, map[string][]int32) error
	ExpireOffsets(context.Context, string, GroupOwner, int64) (int, error)
	DeleteGroup(context.Context, string, GroupOwner) error
	ReleaseGroup(context.Context, string, GroupOwner) error
} = (*OffsetWriter)(nil)

// cachedGroup is one group's offsets buckets as of this writer's last read
// or write, valid under ownership own. Only the flusher reads or changes
// buckets.
type cachedGroup struct {
	own     GroupOwner
	buckets map[int]*bucket // buckets that exist; an absent one is empty with mod revision 0
}

// offsetReq is one call waiting for the flusher.
type offsetReq struct {
	ctx   context.Context
	op    string
	group string
	own   GroupOwner
	which []int                       // buckets edit reads; nil = every bucket
	edit  func(map[int]*bucket) []int // changes the buckets, returns those changed
	tries int                         // writes lost to a concurrent change of the buckets
	done  chan error                  // buffered: the flusher never blocks on it
}

// maxTxnOps is etcd's default --max-txn-ops. A nested transaction may hold
// at most maxTxnOps minus the operations of the level above it.
const maxTxnOps = 128

// NewOffsetWriter returns s with cached, batched offset writes. Give each
// Store at most one OffsetWriter: two would not share their batches.
func NewOffsetWriter(s *Store) *OffsetWriter {
	w := &OffsetWriter{Store: s, kv: s.cli, groups: make(map[string]*cachedGroup)}
	if s.etcd != nil {
		// No goroutine and nothing to close: calls go straight to the server,
		// which the Store stops only after its goroutines (the flusher) end.
		w.kv = clientv3.NewKVFromKVClient(adapter.KvServerToKvClient(v3rpc.NewQuotaKVServer(s.etcd.Server)), nil)
	}
	return w
}

// CommitOffsets is Store.CommitOffsets without a read before the write,
// batched with the other groups' writes.
func (w *OffsetWriter) CommitOffsets(ctx context.Context, group string, own GroupOwner, offs []CommittedOffset) error {
	op := fmt.Sprintf("commit %d offsets of group %q", len(offs), group)
	which, edit, err := commitEdit(op, offs)
	if err != nil {
		return err
	}
	return w.submit(ctx, op, group, own, which, edit)
}

// DeleteOffsets is Store.DeleteOffsets, batched like CommitOffsets.
func (w *OffsetWriter) DeleteOffsets(ctx context.Context, group string, own GroupOwner, parts map[string][]int32) error {
	op := fmt.Sprintf("delete offsets of group %q", group)
	which, edit := deleteEdit(parts)
	return w.submit(ctx, op, group, own, which, edit)
}

// ExpireOffsets is Store.ExpireOffsets, batched like CommitOffsets.
func (w *OffsetWriter) ExpireOffsets(ctx context.Context, group string, own GroupOwner, cutoffMs int64) (int, error) {
	op := fmt.Sprintf("expire offsets of group %q before %d", group, cutoffMs)
	var removed int
	if err := w.submit(ctx, op, group, own, nil, expireEdit(cutoffMs, &removed)); err != nil {
		return 0, err
	}
	return removed, nil
}

// DeleteGroup is Store.DeleteGroup; the group's buckets are forgotten.
func (w *OffsetWriter) DeleteGroup(ctx context.Context, group string, own GroupOwner) error {
	err := w.Store.DeleteGroup(ctx, group, own)
	w.forget(group)
	return err
}

// ReleaseGroup is Store.ReleaseGroup; the group's buckets are forgotten.
func (w *OffsetWriter) ReleaseGroup(ctx context.Context, group string, own GroupOwner) error {
	err := w.Store.ReleaseGroup(ctx, group, own)
	w.forget(group)
	return err
}

func (w *OffsetWriter) forget(group string) {
	w.mu.Lock()
	delete(w.groups, group)
	w.mu.Unlock()
}

// cached returns the group's buckets if they are in memory for ownership own.
func (w *OffsetWriter) cached(group string, own GroupOwner) *cachedGroup {
	w.mu.Lock()
	defer w.mu.Unlock()
	if cg := w.groups[group]; cg != nil && cg.own == own {
		return cg
	}
	return nil
}

// submit queues one edit, starts the flusher if it is not running and waits
// for the edit's result or the end of ctx.
func (w *OffsetWriter) submit(ctx context.Context, op, group string, own GroupOwner, which []int, edit func(map[int]*bucket) []int) error {
	if err := validateOwnership(op, group, own); err != nil {
		return err
	}
	r := &offsetReq{ctx: ctx, op: op, group: group, own: own, which: which, edit: edit, done: make(chan error, 1)}
	var orphans []*offsetReq
	w.mu.Lock()
	w.queue = append(w.queue, r)
	if !w.running {
		// The flusher waits for mu before it looks at the queue.
		if w.spawn(w.run) {
			w.running = true
		} else {
			// The Store is closed: nothing will drain the queue.
			orphans, w.queue = w.queue, nil
		}
	}
	w.mu.Unlock()
	for _, q := range orphans {
		q.done <- fmt.Errorf("%s: %w: store closed", q.op, ErrUnavailable)
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return w.classify(op, nil, ctx.Err())
	}
}

// run is the flusher: it writes batches until the queue is empty.
func (w *OffsetWriter) run() {
	for {
		w.mu.Lock()
		reqs := w.queue
		w.queue = nil
		if len(reqs) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		if err := w.ctx.Err(); err != nil {
			for _, r := range reqs {
				r.done <- w.classify(r.op, nil, err)
			}
			continue
		}
		again, lostRace := w.flush(reqs)
		if len(again) > 0 {
			w.mu.Lock()
			w.queue = append(again, w.queue...)
			w.mu.Unlock()
		}
		if lostRace > 0 {
			// Someone else writes these buckets too: give them room.
			_ = backoff(w.ctx, lostRace)
		}
	}
}

// groupWrite is one group's part of a batch.
type groupWrite struct {
	group   string
	cg      *cachedGroup
	reqs    []*offsetReq
	working map[int]*bucket // the changed buckets after every edit of reqs
	vals    map[int][]byte  // their encoded values (nil = delete the key)
	size    int             // bytes of keys (compares too) and values it sends
}

// flush writes one batch taken from reqs (in arrival order) and answers its
// calls. It returns the calls to queue again (ahead of newer ones): those
// that did not fit the batch and those whose write lost to a concurrent
// change of their buckets, with the highest number of such losses.
func (w *OffsetWriter) flush(reqs []*offsetReq) (again []*offsetReq, lostRace int) {
	// Calls per group in arrival order; one ownership per group per batch
	// (two nested transactions may not write the same keys).
	var order []string
	byGroup := make(map[string][]*offsetReq)
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			r.done <- w.classify(r.op, nil, err)
			continue
		}
		rs := byGroup[r.group]
		if len(rs) > 0 && rs[0].own != r.own {
			again = append(again, r)
			continue
		}
		if len(rs) == 0 {
			order = append(order, r.group)
		}
		byGroup[r.group] = append(rs, r)
	}
	if len(order) == 0 {
		return again, 0
	}

	// Groups whose buckets are not in memory are read first, in one round trip
	// per maxTxnOps groups.
	cgs := make(map[string]*cachedGroup, len(order))
	var missing []string
	for _, g := range order {
		if cg := w.cached(g, byGroup[g][0].own); cg != nil {
			cgs[g] = cg
		} else {
			missing = append(missing, g)
		}
	}
	for len(missing) > 0 {
		n := min(len(missing), maxTxnOps)
		loaded, errs := w.load(missing[:n], byGroup)
		for _, g := range missing[:n] {
			if cg := loaded[g]; cg != nil {
				cgs[g] = cg
				continue
			}
			for _, r := range byGroup[g] {
				r.done <- fmt.Errorf("%s: %w", r.op, errs[g])
			}
		}
		missing = missing[n:]
	}

	// Edits, group by group, while the batch fits one transaction.
	var batch []*groupWrite
	maxOps, size := 0, 0
	for _, g := range order {
		cg := cgs[g]
		if cg == nil {
			continue // answered above
		}
		gw, later := w.edit(g, cg, byGroup[g])
		ops := 1 + len(gw.vals) // compares: the owner and each changed bucket
		switch {
		case len(gw.reqs) == 0:
		case len(batch) > 0 && (len(batch)+1+max(maxOps, ops) > maxTxnOps || size+gw.size > maxRecordBytes):
			again = append(again, gw.reqs...) // edits are redone on the next batch
		default:
			batch = append(batch, gw)
			maxOps, size = max(maxOps, ops), size+gw.size
		}
		again = append(again, later...) // after the group's earlier calls
	}
	if len(batch) == 0 {
		return again, 0
	}
	return w.write(batch, again)
}

// load reads every bucket of groups (at most maxTxnOps) in one transaction
// and remembers them under the ownership of each group's first call. A
// group it could not read is absent from the result, and errs says why.
func (w *OffsetWriter) load(groups []string, byGroup map[string][]*offsetReq) (_ map[string]*cachedGroup, errs map[string]error) {
	ops := make([]clientv3.Op, len(groups))
	for i, g := range groups {
		ops[i] = clientv3.OpGet(w.keys.groupOffsets(g), clientv3.WithPrefix())
	}
	ctx, cancel := w.opCtx(w.ctx)
	defer cancel()
	resp, err := w.kv.Txn(ctx).Then(ops...).Commit()
	errs = make(map[string]error)
	if err != nil {
		err = rpctypes.Error(err)
		err = w.classify(fmt.Sprintf("read offsets of %d groups", len(groups)), ctx, err)
		for _, g := range groups {
			errs[g] = err
		}
		return nil, errs
	}
	out := make(map[string]*cachedGroup, len(groups))
	for i, g := range groups {
		cg := &cachedGroup{own: byGroup[g][0].own, buckets: make(map[int]*bucket)}
		prefix := w.keys.groupOffsets(g)
		ok := true
		for _, kv := range resp.Responses[i].GetResponseRange().Kvs {
			n, isBucket := bucketNumber(string(kv.Key), prefix)
			if !isBucket {
				continue
			}
			offs, err := decodeBucket(kv.Value)
			if err != nil {
				errs[g] = fmt.Errorf("read %s: %w", kv.Key, err)
				ok = false
				break
			}
			cg.buckets[n] = &bucket{modRev: kv.ModRevision, offs: offs}
		}
		if ok {
			out[g] = cg
		}
	}
	w.mu.Lock()
	for g, cg := range out {
		w.groups[g] = cg
	}
	w.mu.Unlock()
	return out, errs
}

// edit applies the calls of one group in order to copies of its buckets.
// A call whose write alone would exceed maxRecordBytes fails with
// ErrInvalid; a call that would make the group's write exceed it waits for
// the next batch, with the calls after it (later).
func (w *OffsetWriter) edit(group string, cg *cachedGroup, reqs []*offsetReq) (gw *groupWrite, later []*offsetReq) {
	gw = &groupWrite{group: group, cg: cg, working: make(map[int]*bucket), vals: make(map[int][]byte)}
	// The request carries the owner key twice (compare, read on failure) and
	// each changed bucket's key twice (compare, put) with its value.
	gw.size = 2 * len(w.keys.groupOwner(group))
	bucketSize := func(n int, val []byte) int { return 2*len(w.keys.groupOffsetBucket(group, n)) + len(val) }
	current := func(n int) *bucket {
		if b := gw.working[n]; b != nil {
			return b
		}
		if b := cg.buckets[n]; b != nil {
			return b
		}
		return &bucket{}
	}
	for i, r := range reqs {
		which := r.which
		if which == nil {
			which = slices.Sorted(maps.Keys(cg.buckets))
			for n := range gw.working {
				if !slices.Contains(which, n) {
					which = append(which, n)
				}
			}
		}
		view := make(map[int]*bucket, len(which))
		for _, n := range which {
			b := current(n)
			view[n] = &bucket{modRev: b.modRev, offs: maps.Clone(b.offs)}
			if view[n].offs == nil {
				view[n].offs = make(map[topicPartition]CommittedOffset)
			}
		}
		changed := r.edit(view)
		vals := make(map[int][]byte, len(changed))
		size := gw.size
		for _, n := range changed {
			b := view[n]
			if _, dup := vals[n]; dup || b == nil {
				continue // an edit changes only buckets it was given
			}
			var val []byte
			if len(b.offs) > 0 {
				val = encodeBucket(b.offs)
			}
			vals[n] = val
			size += bucketSize(n, val)
			if old, ok := gw.vals[n]; ok {
				size -= bucketSize(n, old)
			}
		}
		if size > maxRecordBytes {
			if len(gw.reqs) == 0 {
				r.done <- fmt.Errorf("%s: %w: %d bytes of offsets in one write, limit %d", r.op, ErrInvalid, size, maxRecordBytes)
				continue
			}
			return gw, reqs[i:]
		}
		for n, val := range vals {
			gw.working[n], gw.vals[n] = view[n], val
		}
		gw.size = size
		gw.reqs = append(gw.reqs, r)
	}
	return gw, nil
}

// write sends the batch as one transaction of nested per-group
// transactions and answers the calls, remembering what was written.
func (w *OffsetWriter) write(batch []*groupWrite, again []*offsetReq) ([]*offsetReq, int) {
	ops := make([]clientv3.Op, len(batch))
	for i, gw := range batch {
		ownerKey := w.keys.groupOwner(gw.group)
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(ownerKey), "=", gw.cg.own.Revision)}
		var puts []clientv3.Op
		for _, n := range slices.Sorted(maps.Keys(gw.vals)) {
			key := w.keys.groupOffsetBucket(gw.group, n)
			var modRev int64
			if b := gw.cg.buckets[n]; b != nil {
				modRev = b.modRev
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", modRev))
			if val := gw.vals[n]; val == nil {
				puts = append(puts, clientv3.OpDelete(key))
			} else {
				puts = append(puts, clientv3.OpPut(key, string(val)))
			}
		}
		ops[i] = clientv3.OpTxn(cmps, puts, []clientv3.Op{clientv3.OpGet(ownerKey)})
	}
	ctx, cancel := w.opCtx(w.ctx)
	resp, err := w.kv.Txn(ctx).Then(ops...).Commit()
	cancel()
	err = rpctypes.Error(err)
	if err == nil && len(resp.Responses) != len(batch) {
		err = fmt.Errorf("%d answers to %d group writes", len(resp.Responses), len(batch))
	}
	if err != nil {
		// The outcome is unknown: read the buckets again before the next write.
		for _, gw := range batch {
			w.forget(gw.group)
			for _, r := range gw.reqs {
				r.done <- w.classify(r.op, ctx, err)
			}
		}
		return again, 0
	}
	lostRace := 0
	for i, gw := range batch {
		tr := resp.Responses[i].GetResponseTxn()
		if tr != nil && tr.Succeeded {
			// Only this goroutine touches cg.buckets; if the group was
			// forgotten meanwhile, the update goes to an unused copy.
			for n, val := range gw.vals {
				if val == nil {
					delete(gw.cg.buckets, n)
				} else {
					gw.cg.buckets[n] = &bucket{modRev: resp.Header.Revision, offs: gw.working[n].offs}
				}
			}
			for _, r := range gw.reqs {
				r.done <- nil
			}
			continue
		}
		w.forget(gw.group)
		var kvs []*mvccpb.KeyValue
		if tr != nil && len(tr.Responses) > 0 {
			kvs = tr.Responses[0].GetResponseRange().Kvs
		}
		if len(kvs) == 0 || kvs[0].CreateRevision != gw.cg.own.Revision {
			for _, r := range gw.reqs {
				r.done <- fmt.Errorf("%s: %w: group not owned at revision %d", r.op, ErrConflict, gw.cg.own.Revision)
			}
			continue
		}
		// Owned, but a bucket changed under us: read it again and redo.
		for _, r := range gw.reqs {
			r.tries++
			if r.tries >= offsetAttempts {
				r.done <- fmt.Errorf("%s: %w: lost %d times to concurrent offset writes", r.op, ErrConflict, offsetAttempts)
				continue
			}
			lostRace = max(lostRace, r.tries)
			again = append(again, r)
		}
	}
	return again, lostRace
}
