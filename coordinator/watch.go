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
	out := make(chan []Topic)
	if !s.spawn(func() { s.watchTopics(ctx, out) }) {
		close(out)
	}
	return out
}

func (s *Store) watchTopics(parent context.Context, out chan<- []Topic) {
	defer close(out)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel) // Store closing ends the watch
	defer stop()

	var (
		pending     []Topic
		havePending bool
		backoff     = watchBackoffMin
	)
	// wait sleeps for the current backoff while still handing out a pending
	// snapshot; false when ctx ended.
	wait := func() bool {
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(2*backoff, watchBackoffMax)
		for {
			var send chan<- []Topic
			if havePending {
				send = out
			}
			select {
			case <-ctx.Done():
				return false
			case <-t.C:
				return true
			case send <- pending:
				pending, havePending = nil, false
			}
		}
	}

	for ctx.Err() == nil {
		topics, rev, err := s.listTopics(ctx, 0)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("watch topics: list failed, retrying", "err", err, "backoff", backoff)
			}
			if !wait() {
				return
			}
			continue
		}
		pending, havePending = topics, true

		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, s.keys.topics(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		healthy := s.followTopics(ctx, wch, out, &pending, &havePending)
		wcancel()
		if healthy {
			backoff = watchBackoffMin
		}
		if ctx.Err() != nil {
			return
		}
		if !wait() {
			return
		}
	}
}

// followTopics consumes one watch until it fails or ctx ends, re-listing after
// each batch of events and offering the newest snapshot on out. It reports
// whether at least one change was handled (the watch was healthy).
func (s *Store) followTopics(ctx context.Context, wch clientv3.WatchChan, out chan<- []Topic, pending *[]Topic, havePending *bool) bool {
	healthy := false
	for {
		var send chan<- []Topic
		if *havePending {
			send = out
		}
		select {
		case <-ctx.Done():
			return healthy
		case send <- *pending:
			*pending, *havePending = nil, false
		case wr, ok := <-wch:
			if !ok || wr.Canceled || wr.Err() != nil {
				if ctx.Err() == nil {
					s.log.Warn("watch topics: watch ended, re-listing", "err", wr.Err(), "compact_revision", wr.CompactRevision)
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
			topics, _, err := s.listTopics(ctx, last)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("watch topics: re-list failed", "err", err)
				}
				return healthy
			}
			healthy = true
			*pending, *havePending = topics, true
		}
	}
}
