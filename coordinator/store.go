package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors. Match them with errors.Is; every returned error wraps one
// of them (or a context error) together with the operation and the object.
var (
	// ErrTopicExists: CreateTopic found a topic of that name.
	ErrTopicExists = errors.New("coordinator: topic already exists")
	// ErrTopicNotFound: the named topic does not exist.
	ErrTopicNotFound = errors.New("coordinator: topic not found")
	// ErrPartitionNotFound: the topic exists but has no partition of that number.
	ErrPartitionNotFound = errors.New("coordinator: partition not found")
	// ErrConflict: a compare-and-swap lost (stale revision or epoch), or a
	// broker ID is already registered by a live broker.
	ErrConflict = errors.New("coordinator: conflict")
	// ErrUnavailable: etcd could not be reached or did not answer in time.
	ErrUnavailable = errors.New("coordinator: etcd unavailable")
	// ErrInvalid: the caller passed an invalid argument (bad topic name, zero
	// topic ID, non-dense partition numbering, ...). Nothing was written.
	ErrInvalid = errors.New("coordinator: invalid argument")
)

const (
	defaultPrefix      = "/strata"
	defaultDialTimeout = 5 * time.Second
	defaultLeaseTTL    = 10 * time.Second
	embedStartTimeout  = 30 * time.Second
)

// Config configures Open.
type Config struct {
	Endpoints   []string      // empty = start embedded etcd
	EmbedDir    string        // embedded etcd data dir (e.g. <data-dir>/etcd)
	EmbedListen string        // embedded client URL host:port; "" = 127.0.0.1 with a free port chosen at run time
	Prefix      string        // key prefix, default "/strata"
	DialTimeout time.Duration // default 5s; also bounds every single etcd request made by the Store
	LeaseTTL    time.Duration // broker registration lease, default 10s (rounded up to whole seconds)
	Logger      *slog.Logger
}

// Store is the handle on the cluster metadata in etcd. It is safe for
// concurrent use. Every method's etcd request is bounded by Config.DialTimeout
// (or the caller's context if shorter); a request that times out or finds no
// etcd leader returns an error wrapping ErrUnavailable. On any error a write
// either happened entirely or not at all (each write is one etcd transaction),
// but after ErrUnavailable the caller cannot know which: re-read.
//
// Goroutines: the broker lease keep-alive (RegisterBroker) and one goroutine
// per WatchTopics call. Close stops and waits for all of them.
type Store struct {
	cfg       Config
	log       *slog.Logger
	cli       *clientv3.Client
	etcd      *embed.Etcd // nil when connected to external endpoints
	closing   atomic.Bool // set before the embedded etcd stops; silences its shutdown logs
	unlockDir func()      // releases the embedded etcd directory lock
	endpoints []string
	clusterID string
	keys      keys

	ctx    context.Context // canceled by Close; parent of every background goroutine
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	// mu guards closed and reg. No etcd I/O is done while holding it.
	mu     sync.Mutex
	closed bool // set by Close before it waits for goroutines; no new ones start after
	reg    *registration
}

// Open starts an embedded etcd when cfg.Endpoints is empty, connects to etcd
// and makes sure the cluster ID exists (creating it on first use). An
// unreachable etcd fails with ErrUnavailable within cfg.DialTimeout.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = defaultPrefix
	}
	cfg.Prefix = "/" + strings.Trim(cfg.Prefix, "/")
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = defaultLeaseTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Store{cfg: cfg, log: cfg.Logger.With("component", "coordinator"), keys: keys{prefix: cfg.Prefix}}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	s.endpoints = append([]string(nil), cfg.Endpoints...)
	if len(s.endpoints) == 0 {
		if cfg.EmbedDir == "" {
			s.cancel()
			return nil, fmt.Errorf("open coordinator: %w: no etcd endpoints and no embedded etcd dir", ErrInvalid)
		}
		e, urls, unlock, err := startEmbedded(ctx, cfg.EmbedDir, cfg.EmbedListen, s.log, &s.closing)
		if err != nil {
			s.cancel()
			return nil, err
		}
		s.etcd, s.endpoints, s.unlockDir = e, urls, unlock
		s.log.Info("embedded etcd started", "dir", cfg.EmbedDir, "endpoints", urls)
	}

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   s.endpoints,
		DialTimeout: cfg.DialTimeout,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		s.stopEmbedded()
		s.cancel()
		return nil, fmt.Errorf("open coordinator: connect %v: %w (%w)", s.endpoints, ErrUnavailable, err)
	}
	s.cli = cli

	id, err := s.ensureClusterID(ctx)
	if err != nil {
		_ = cli.Close()
		s.stopEmbedded()
		s.cancel()
		return nil, fmt.Errorf("open coordinator at %v: %w", s.endpoints, err)
	}
	s.clusterID = id
	return s, nil
}

// Close revokes this broker's registration lease (if any), stops background
// goroutines, closes the client and stops the embedded etcd. Idempotent; later
// calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown(true) })
	return s.closeErr
}

// shutdown stops everything; revoke=false simulates a crash (the lease is
// left to expire), used by tests.
func (s *Store) shutdown(revoke bool) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait() // keep-alive and watch goroutines exit on s.ctx
	var errs []error
	s.mu.Lock()
	reg := s.reg
	s.reg = nil
	s.mu.Unlock()
	if reg != nil && revoke {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DialTimeout)
		_, err := s.cli.Revoke(ctx, reg.lease)
		cancel()
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			errs = append(errs, s.classify(fmt.Sprintf("revoke lease of broker %d", reg.id), nil, err))
		}
	}
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, fmt.Errorf("close etcd client: %w", err))
	}
	s.stopEmbedded()
	return errors.Join(errs...)
}

func (s *Store) stopEmbedded() {
	if s.etcd != nil {
		s.closing.Store(true)
		s.etcd.Close()
		<-s.etcd.Server.StopNotify()
		s.etcd = nil
		s.unlockDir()
	}
}

// Client returns the underlying etcd client (owned by the Store: do not close it).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Endpoints returns the etcd client URLs in use (the embedded etcd's when embedded).
func (s *Store) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// ClusterID returns the cluster ID: 22 characters, the unpadded base64url form
// of a random UUID, created once per etcd key space and kept there.
func (s *Store) ClusterID() string { return s.clusterID }

// Prefix returns the key prefix in use (e.g. "/strata").
func (s *Store) Prefix() string { return s.cfg.Prefix }

func (s *Store) ensureClusterID(ctx context.Context) (string, error) {
	key := s.keys.clusterID()
	fresh := newClusterID()
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, fresh)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return "", s.classify("ensure cluster id "+key, ctx, err)
	}
	if resp.Succeeded {
		s.log.Info("created cluster id", "cluster_id", fresh)
		return fresh, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 || len(kvs[0].Value) == 0 {
		return "", fmt.Errorf("ensure cluster id %s: %w: empty value", key, ErrConflict)
	}
	return string(kvs[0].Value), nil
}

// newClusterID returns a Kafka-style cluster ID: a random (version 4) UUID in
// unpadded base64url, never starting with '-' (Kafka avoids those because
// they look like command-line flags).
func newClusterID() string {
	for {
		u := newUUID()
		s := base64.RawURLEncoding.EncodeToString(u[:])
		if s[0] != '-' {
			return s
		}
	}
}

func newUUID() [16]byte {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// spawn runs f in a goroutine owned by the Store (Close waits for it); false
// if the Store is closed.
func (s *Store) spawn(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// opCtx bounds one etcd request by DialTimeout.
func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.DialTimeout)
}

// classify wraps an etcd client error: the caller's cancellation stays a
// context error; timeouts, lost leaders and connection failures become
// ErrUnavailable. opctx is the bounded context used for the request (may be nil).
func (s *Store) classify(op string, opctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) && s.ctx.Err() != nil {
		return fmt.Errorf("%s: %w: store closed (%w)", op, ErrUnavailable, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if isUnavailable(err) || (opctx != nil && opctx.Err() != nil) {
		return fmt.Errorf("%s: %w (%w)", op, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, rpctypes.ErrNoLeader) ||
		errors.Is(err, rpctypes.ErrTimeout) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) ||
		errors.Is(err, rpctypes.ErrStopped) ||
		errors.Is(err, rpctypes.ErrLeaderChanged) {
		return true
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return true
		}
	}
	return false
}
