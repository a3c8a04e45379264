package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Controller election.
//
// The controller key <prefix>/controller holds the elected broker's ID in
// decimal and is attached to that broker's registration lease (see
// RegisterBroker): it is created only if absent, so at most one broker holds
// it, and it disappears with the lease — at once when the broker closes its
// Store (the lease is revoked), within Config.LeaseTTL when the broker dies
// or loses etcd. Binding the key to the registration lease means a broker
// is controller only while it is itself alive in the registry.

const (
	campaignBackoffMin = 100 * time.Millisecond
	campaignBackoffMax = 2 * time.Second
)

// Campaign blocks until this Store's registered broker (brokerID must be the
// ID passed to RegisterBroker) holds the controller key, or ctx ends. It
// returns a channel closed when the leadership ends: the key was deleted
// (Resign, lease expiry or revocation) or taken over, the registration was
// lost, or the Store closed. Campaign never steals the key from a live
// holder; it waits for the key to go. While etcd is unreachable it retries
// with backoff until ctx ends. Errors: ErrInvalid when brokerID is not the
// registered broker of this Store, ErrUnavailable when the registration is
// lost or the Store closed, a context error when ctx ends first.
func (s *Store) Campaign(ctx context.Context, brokerID int32) (lost <-chan struct{}, err error) {
	term, err := s.CampaignTerm(ctx, brokerID)
	if err != nil {
		return nil, err
	}
	return term.Lost, nil
}

// ControllerTerm is one tenure as controller: the controller key's create
// revision, which fences the controller's writes (UpdatePartitionAsController),
// and the channel closed when the tenure ends.
type ControllerTerm struct {
	Revision int64
	Lost     <-chan struct{}
}

// CampaignTerm is Campaign returning the term won, for fenced writes.
func (s *Store) CampaignTerm(ctx context.Context, brokerID int32) (ControllerTerm, error) {
	op := fmt.Sprintf("campaign for controller as broker %d", brokerID)
	reg, err := s.registrationOf(op, brokerID)
	if err != nil {
		return ControllerTerm{}, err
	}
	key, val := s.keys.controller(), strconv.FormatInt(int64(brokerID), 10)
	backoff := campaignBackoffMin
	for {
		if err := ctx.Err(); err != nil {
			return ControllerTerm{}, fmt.Errorf("%s: %w", op, err)
		}
		select {
		case <-reg.lost:
			return ControllerTerm{}, fmt.Errorf("%s: %w: broker registration lost", op, ErrUnavailable)
		default:
		}
		tctx, cancel := s.opCtx(ctx)
		resp, err := s.cli.Txn(tctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, val, clientv3.WithLease(reg.lease))).
			Else(clientv3.OpGet(key)).
			Commit()
		cancel()
		if err != nil {
			cerr := s.classify(op, tctx, err)
			if !errors.Is(cerr, ErrUnavailable) || s.ctx.Err() != nil {
				return ControllerTerm{}, cerr
			}
			s.log.Warn("controller campaign: etcd unavailable, retrying", "broker", brokerID, "err", err, "backoff", backoff)
			if !sleepCtx(ctx, reg.lost, backoff) {
				continue // the loop head reports why
			}
			backoff = min(2*backoff, campaignBackoffMax)
			continue
		}
		backoff = campaignBackoffMin
		if resp.Succeeded {
			createRev := resp.Header.Revision
			s.log.Info("elected controller", "broker", brokerID, "revision", createRev)
			return s.term(op, reg, key, createRev)
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // deleted between compare and get: try again
		}
		kv := kvs[0]
		if kv.Lease == int64(reg.lease) {
			// Already ours (a second Campaign of the same broker).
			return s.term(op, reg, key, kv.CreateRevision)
		}
		s.log.Debug("controller campaign: waiting for the current controller to go", "broker", brokerID, "controller", string(kv.Value))
		if err := s.waitDeleted(ctx, reg, key, kv.ModRevision); err != nil {
			return ControllerTerm{}, fmt.Errorf("%s: %w", op, err)
		}
	}
}

func (s *Store) term(op string, reg *registration, key string, createRev int64) (ControllerTerm, error) {
	lost, err := s.holdController(op, reg, key, createRev)
	if err != nil {
		return ControllerTerm{}, err
	}
	return ControllerTerm{Revision: createRev, Lost: lost}, nil
}

// registrationOf returns this Store's live registration of brokerID.
func (s *Store) registrationOf(op string, brokerID int32) (*registration, error) {
	s.mu.Lock()
	reg, closed := s.reg, s.closed
	s.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("%s: %w: store closed", op, ErrUnavailable)
	}
	if reg == nil || reg.id != brokerID {
		return nil, fmt.Errorf("%s: %w: broker %d is not registered by this store", op, ErrInvalid, brokerID)
	}
	select {
	case <-reg.lost:
		return nil, fmt.Errorf("%s: %w: broker registration lost", op, ErrUnavailable)
	default:
	}
	return reg, nil
}

// waitDeleted returns nil once key (last modified at modRev) is deleted,
// or after a watch failure (the caller re-checks); an error when ctx ends,
// the registration is lost or the Store closes.
func (s *Store) waitDeleted(ctx context.Context, reg *registration, key string, modRev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	wch := s.cli.Watch(wctx, key, clientv3.WithRev(modRev+1))
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return fmt.Errorf("%w: store closed", ErrUnavailable)
		case <-reg.lost:
			return fmt.Errorf("%w: broker registration lost", ErrUnavailable)
		case wr, ok := <-wch:
			if !ok || wr.Canceled || wr.Err() != nil {
				// Compaction, lost leader...: back off a little, then re-check.
				sleepCtx(ctx, reg.lost, campaignBackoffMin)
				return nil
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					return nil
				}
			}
		}
	}
}

// holdController starts the goroutine that closes the returned channel when
// the controller key created at createRev is no longer ours.
func (s *Store) holdController(op string, reg *registration, key string, createRev int64) (<-chan struct{}, error) {
	lost := make(chan struct{})
	if !s.spawn(func() { s.watchLeadership(reg, key, createRev, lost) }) {
		return nil, fmt.Errorf("%s: %w: store closed", op, ErrUnavailable)
	}
	return lost, nil
}

// watchLeadership closes lost when the key created at createRev is deleted
// or replaced, the registration ends, or the Store closes. After a watch
// failure it re-reads the key (backing off while etcd is unreachable); if
// etcd stays unreachable the registration lease lapses and ends it.
func (s *Store) watchLeadership(reg *registration, key string, createRev int64, lost chan struct{}) {
	defer close(lost)
	next := createRev + 1
	backoff := campaignBackoffMin
	for {
		if !s.watchKeyHeld(reg, key, createRev, next) {
			if s.ctx.Err() == nil {
				s.log.Warn("controller leadership lost", "broker", reg.id)
			}
			return
		}
		// Re-check the key directly.
		ctx, cancel := s.opCtx(s.ctx)
		resp, err := s.cli.Get(ctx, key)
		cancel()
		switch {
		case s.ctx.Err() != nil:
			return
		case err != nil:
			if !sleepCtx(s.ctx, reg.lost, backoff) {
				return
			}
			backoff = min(2*backoff, campaignBackoffMax)
		case len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != createRev:
			s.log.Warn("controller leadership lost", "broker", reg.id)
			return
		default:
			next, backoff = resp.Header.Revision+1, campaignBackoffMin
		}
	}
}

// watchKeyHeld watches key from rev: false once it is deleted or
// re-created, the registration ends or the Store closes; true when the
// watch failed and the caller must re-read the key.
func (s *Store) watchKeyHeld(reg *registration, key string, createRev, rev int64) bool {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, key, clientv3.WithRev(rev))
	for {
		select {
		case <-s.ctx.Done():
			return false
		case <-reg.lost:
			return false
		case wr, ok := <-wch:
			if !ok || wr.Canceled || wr.Err() != nil {
				return true
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE || ev.Kv.CreateRevision != createRev {
					return false
				}
			}
		}
	}
}

// Resign gives up the controller key if brokerID, registered by this Store,
// holds it; otherwise it does nothing. The Campaign's lost channel then
// closes. Another broker's Campaign can win at once.
func (s *Store) Resign(ctx context.Context, brokerID int32) error {
	op := fmt.Sprintf("resign controller as broker %d", brokerID)
	s.mu.Lock()
	reg := s.reg
	s.mu.Unlock()
	if reg == nil || reg.id != brokerID {
		return nil // not registered: cannot hold the key
	}
	key := s.keys.controller()
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", reg.lease)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return s.classify(op, ctx, err)
	}
	if resp.Succeeded {
		s.log.Info("resigned as controller", "broker", brokerID)
	}
	return nil
}

// ControllerID returns the elected controller's broker ID, -1 if none.
func (s *Store) ControllerID(ctx context.Context) (int32, error) {
	id, _, err := s.readController(ctx, 0)
	return id, err
}

// WatchController delivers the controller's broker ID (-1 when none) first,
// then after every change, until ctx ends or the Store closes; then the
// channel is closed. Like WatchTopics, values are coalesced (a slow reader
// gets the newest) and re-read after watch errors.
func (s *Store) WatchController(ctx context.Context) <-chan int32 {
	return watchPrefix(s, ctx, "controller", s.keys.controller(), s.readController)
}

// readController reads the controller key at rev (0 = latest).
func (s *Store) readController(ctx context.Context, rev int64) (int32, int64, error) {
	const op = "get controller"
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var opts []clientv3.OpOption
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.cli.Get(ctx, s.keys.controller(), opts...)
	if err != nil {
		return -1, 0, s.classify(op, ctx, err)
	}
	if len(resp.Kvs) == 0 {
		return -1, resp.Header.Revision, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(resp.Kvs[0].Value)), 10, 32)
	if err != nil || n < 0 {
		return -1, 0, fmt.Errorf("%s: decode %s: bad broker id %q", op, resp.Kvs[0].Key, resp.Kvs[0].Value)
	}
	return int32(n), resp.Header.Revision, nil
}

// sleepCtx waits d; false if ctx ended or lost closed first.
func sleepCtx(ctx context.Context, lost <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-lost:
		return false
	case <-t.C:
		return true
	}
}

func (k keys) controller() string { return k.prefix + "/controller" }
