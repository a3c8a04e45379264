package coordinator

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 2 * time.Second
)

// WatchTopics delivers the full current topic set (as Topics returns it)
// first, then again after every change to any topic record or partition
// state, until ctx ends or the Store closes; then the channel is closed.
// Snapshots are coalesced: a slow reader gets the newest set, never a stale
// backlog. Each snapshot is read at one etcd revision, and revisions of
// successive snapshots never go backwards. After a watch error or etcd
// compaction the goroutine re-lists and watches again, backing off up to 2s
// while etcd is unreachable.
func (s *Store) WatchTopics(ctx context.Context) <-chan []Topic {
	return watchPrefix(s, ctx, "topics", s.keys.topics(), s.listTopics)
}

// WatchBrokers is WatchTopics for the live brokers: the full sorted set
// first, then again after every registration, expiry or deregistration.
func (s *Store) WatchBrokers(ctx context.Context) <-chan []BrokerInfo {
	return watchPrefix(s, ctx, "brokers", s.keys.brokers(), s.listBrokers)
}

// watchPrefix runs the list-then-watch loop shared by the Watch methods in a
// goroutine owned by the Store. list reads the whole set at a revision (0 =
// latest) and returns the revision read.
func watchPrefix[T any](s *Store, ctx context.Context, what, prefix string, list func(context.Context, int64) (T, int64, error)) <-chan T {
	out := make(chan T)
	w := &watcher[T]{s: s, what: what, prefix: prefix, list: list, out: out}
	if !s.spawn(func() { w.run(ctx) }) {
		close(out)
	}
	return out
}

type watcher[T any] struct {
	s      *Store
	what   string
	prefix string
	list   func(context.Context, int64) (T, int64, error)
	out    chan<- T

	pending     T
	havePending bool
	backoff     time.Duration
}

// offer returns the channel to send the pending snapshot on, nil if none.
func (w *watcher[T]) offer() chan<- T {
	if w.havePending {
		return w.out
	}
	return nil
}

func (w *watcher[T]) set(v T) { w.pending, w.havePending = v, true }

func (w *watcher[T]) sent() {
	var zero T
	w.pending, w.havePending = zero, false
}

// wait sleeps for the current backoff while still handing out a pending
// snapshot; false when ctx ended.
func (w *watcher[T]) wait(ctx context.Context) bool {
	t := time.NewTimer(w.backoff)
	defer t.Stop()
	w.backoff = min(2*w.backoff, watchBackoffMax)
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case w.offer() <- w.pending:
			w.sent()
		}
	}
}

func (w *watcher[T]) run(parent context.Context) {
	defer close(w.out)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	stop := context.AfterFunc(w.s.ctx, cancel) // Store closing ends the watch
	defer stop()
	w.backoff = watchBackoffMin

	for ctx.Err() == nil {
		v, rev, err := w.list(ctx, 0)
		if err != nil {
			if ctx.Err() == nil {
				w.s.log.Warn("watch: list failed, retrying", "what", w.what, "err", err, "backoff", w.backoff)
			}
			if !w.wait(ctx) {
				return
			}
			continue
		}
		w.set(v)

		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := w.s.cli.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		healthy := w.follow(ctx, wch)
		wcancel()
		if healthy {
			w.backoff = watchBackoffMin
		}
		if !w.wait(ctx) {
			return
		}
	}
}

// follow consumes one watch until it fails or ctx ends, re-listing after each
// batch of events and offering the newest snapshot. It reports whether at
// least one change was handled (the watch was healthy).
func (w *watcher[T]) follow(ctx context.Context, wch clientv3.WatchChan) bool {
	healthy := false
	for {
		select {
		case <-ctx.Done():
			return healthy
		case w.offer() <- w.pending:
			w.sent()
		case wr, ok := <-wch:
			if !ok || wr.Canceled || wr.Err() != nil {
				if ctx.Err() == nil {
					w.s.log.Warn("watch: ended, re-listing", "what", w.what, "err", wr.Err(), "compact_revision", wr.CompactRevision)
				}
				return healthy
			}
			if len(wr.Events) == 0 {
				continue // progress notification
			}
			last := wr.Events[len(wr.Events)-1].Kv.ModRevision
			// Coalesce whatever else is already queued.
		drain:
			for {
				select {
				case more, ok := <-wch:
					if !ok || more.Canceled || more.Err() != nil {
						return healthy
					}
					if n := len(more.Events); n > 0 {
						last = more.Events[n-1].Kv.ModRevision
					}
				default:
					break drain
				}
			}
			v, _, err := w.list(ctx, last)
			if err != nil {
				if ctx.Err() == nil {
					w.s.log.Warn("watch: re-list failed", "what", w.what, "err", err)
				}
				return healthy
			}
			healthy = true
			w.set(v)
		}
	}
}
