package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// BrokerInfo is what a live broker publishes about itself.
type BrokerInfo struct {
	ID   int32
	Host string
	Port int32
	Rack string
	// DirID identifies the broker's data directory (a UUID kept in it). A
	// live registration with the same ID and the same non-empty DirID is
	// this broker's own, left by an earlier process of it that died
	// (kill -9) before its lease expired: it is taken over instead of
	// refused. The caller guarantees one process per data directory (a
	// lock). A different DirID under the same ID is a real conflict.
	DirID string
	// ReplicaAddr is the host:port other brokers' replica fetchers dial,
	// when it differs from Host:Port (the address clients are told): in a
	// container network the advertised address is the host's, useless from
	// a neighbouring container. Empty = Host:Port.
	ReplicaAddr string
}

// brokerRecord is the JSON value at <prefix>/brokers/<id>.
type brokerRecord struct {
	ID    int32  `json:"id"`
	Host  string `json:"host"`
	Port  int32  `json:"port"`
	Rack  string `json:"rack,omitempty"`
	DirID string `json:"dir_id,omitempty"`

	ReplicaAddr string `json:"replica_addr,omitempty"`
}

// registration is this Store's broker registration.
type registration struct {
	id    int32
	lease clientv3.LeaseID
	lost  chan struct{} // closed when the keep-alive stops (lease expired, revoked or Store closed)
}

// RegisterBroker puts the broker under a lease of Config.LeaseTTL kept alive
// in the background by a goroutine owned by the Store (stopped by Close, which
// also revokes the lease so the broker disappears at once). A second live
// registration of the same ID, from any Store, is refused with ErrConflict;
// so is a second registration on one Store while the first is alive. If the
// lease is lost (etcd unreachable longer than the TTL), RegistrationLost is
// closed and RegisterBroker may be called again.
func (s *Store) RegisterBroker(ctx context.Context, b BrokerInfo) error {
	op := fmt.Sprintf("register broker %d", b.ID)
	if b.ID < 0 || b.Host == "" || b.Port <= 0 || b.Port > math.MaxUint16 {
		return fmt.Errorf("%s: %w: id %d host %q port %d", op, ErrInvalid, b.ID, b.Host, b.Port)
	}
	if s.ctx.Err() != nil {
		return fmt.Errorf("%s: %w: store closed", op, ErrUnavailable)
	}
	s.mu.Lock()
	if r := s.reg; r != nil {
		select {
		case <-r.lost:
		default:
			s.mu.Unlock()
			return fmt.Errorf("%s: %w: this store already registered broker %d", op, ErrConflict, r.id)
		}
	}
	s.mu.Unlock()

	val, err := json.Marshal(brokerRecord(b))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ttl := int64(math.Ceil(s.cfg.LeaseTTL.Seconds()))
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	lease, err := s.cli.Grant(ctx, ttl)
	if err != nil {
		return s.classify(op+": grant lease", ctx, err)
	}
	key := s.keys.broker(b.ID)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease.ID))).
		Commit()
	if err == nil && !resp.Succeeded {
		resp, err = s.takeOverOwnRegistration(ctx, op, key, string(val), b, lease.ID)
	}
	if err != nil || !resp.Succeeded {
		s.revokeQuietly(lease.ID)
		if err != nil {
			return s.classify(op, ctx, err)
		}
		return fmt.Errorf("%s: %w: broker id %d is registered by a live broker", op, ErrConflict, b.ID)
	}

	// The keep-alive context is the Store's: it outlives the caller's ctx.
	ka, err := s.cli.KeepAlive(s.ctx, lease.ID)
	if err != nil {
		s.revokeQuietly(lease.ID)
		return s.classify(op+": keep lease alive", nil, err)
	}
	reg := &registration{id: b.ID, lease: lease.ID, lost: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("%s: %w: store closed", op, ErrUnavailable)
	}
	s.reg = reg
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.keepAlive(reg, ka)
	}()
	s.mu.Unlock()
	s.log.Info("broker registered", "broker", b.ID, "host", b.Host, "port", b.Port, "lease_ttl", time.Duration(ttl)*time.Second)
	return nil
}

// takeOverOwnRegistration replaces a registration left by an earlier
// process of this same broker (same ID and data directory), comparing the
// key's mod revision so that a concurrent change wins, and revokes the old
// lease. It answers an unsucceeded response when the registration is not
// ours.
func (s *Store) takeOverOwnRegistration(ctx context.Context, op, key, val string, b BrokerInfo, lease clientv3.LeaseID) (*clientv3.TxnResponse, error) {
	if b.DirID == "" {
		return &clientv3.TxnResponse{}, nil
	}
	get, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if len(get.Kvs) == 0 {
		// Expired meanwhile: register normally.
		return s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, val, clientv3.WithLease(lease))).
			Commit()
	}
	kv := get.Kvs[0]
	var old brokerRecord
	if json.Unmarshal(kv.Value, &old) != nil || old.DirID != b.DirID {
		return &clientv3.TxnResponse{}, nil
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
		Then(clientv3.OpPut(key, val, clientv3.WithLease(lease))).
		Commit()
	if err == nil && resp.Succeeded && kv.Lease != 0 {
		s.log.Info("took over this broker's registration from an earlier process", "broker", b.ID, "old_lease", kv.Lease)
		s.revokeQuietly(clientv3.LeaseID(kv.Lease))
	}
	return resp, err
}

// keepAlive drains the keep-alive responses; the channel closes when the
// lease is gone or the Store is closing.
func (s *Store) keepAlive(reg *registration, ka <-chan *clientv3.LeaseKeepAliveResponse) {
	defer close(reg.lost)
	for range ka {
	}
	if s.ctx.Err() == nil {
		s.log.Error("broker registration lease lost", "broker", reg.id, "lease", int64(reg.lease))
	}
}

func (s *Store) revokeQuietly(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DialTimeout)
	defer cancel()
	if _, err := s.cli.Revoke(ctx, id); err != nil {
		s.log.Warn("revoke unused lease", "lease", int64(id), "err", err)
	}
}

// RegistrationLost returns a channel closed when this Store's broker
// registration ends (lease expired or Store closed); nil if the Store has not
// registered a broker.
func (s *Store) RegistrationLost() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reg == nil {
		return nil
	}
	return s.reg.lost
}

// Brokers returns the live (registered, lease not expired) brokers sorted by ID.
func (s *Store) Brokers(ctx context.Context) ([]BrokerInfo, error) {
	bs, _, err := s.listBrokers(ctx, 0)
	return bs, err
}

// listBrokers reads the brokers at rev (0 = latest) and returns the revision read.
func (s *Store) listBrokers(ctx context.Context, rev int64) ([]BrokerInfo, int64, error) {
	const op = "list brokers"
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.cli.Get(ctx, s.keys.brokers(), opts...)
	if err != nil {
		return nil, 0, s.classify(op, ctx, err)
	}
	out := make([]BrokerInfo, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		idStr := strings.TrimPrefix(string(kv.Key), s.keys.brokers())
		if _, err := strconv.ParseInt(idStr, 10, 32); err != nil {
			continue // not a broker key
		}
		var r brokerRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, 0, fmt.Errorf("%s: decode %s: %w", op, kv.Key, err)
		}
		out = append(out, BrokerInfo(r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, resp.Header.Revision, nil
}
