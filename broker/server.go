package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/broker/groups"
	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/kafkaproto"
	"github.com/stratabroker/strata/tiering"
)

// Options wires a Server. cmd/strata fills it; tests may too.
type Options struct {
	BrokerID  int32
	DirID     string   // identity of the data directory (see coordinator.BrokerInfo.DirID)
	Listen    []string // host:port to bind; every one serves the same broker
	Advertise string   // host:port clients are told to use
	// AdvertiseReplicas is the host:port other brokers' replica fetchers
	// dial; "" = Advertise (see coordinator.BrokerInfo.ReplicaAddr).
	AdvertiseReplicas string
	DataDir           string // partition logs live in DataDir/logs
	Config            BrokerConfig
	Store             *coordinator.Store
	Logger            *slog.Logger
	Registry          prometheus.Registerer // nil = a private registry
	// Tiering is the remote tier's manager; nil = no remote tier. The
	// server runs it and serves cold fetches through it.
	Tiering *tiering.Manager
}

// Server is one Strata broker.
//
// Lock order: Server.applyMu → Server.mu → partition.mu. No I/O happens
// under Server.mu; partition logs are opened and closed under applyMu only.
type Server struct {
	opts     Options
	cfg      BrokerConfig
	log      *slog.Logger
	store    *coordinator.Store
	groups   *groups.Manager // the consumer-group coordinator
	fetchers *fetcherManager // replica fetchers of the partitions we follow
	tier     *tiering.Manager
	metrics  *metrics
	apis     map[int16]api
	versions kafkaproto.VersionTable
	advHost  string
	advPort  int32
	logDir   string

	applyMu sync.Mutex // serializes applying topic sets (opens/closes logs)

	mu     sync.RWMutex
	topics map[string]*topicState
	byID   map[[16]byte]*topicState

	brokersMu sync.Mutex
	brokers   []coordinator.BrokerInfo
	brokersAt time.Time

	ctrl controllerState // see controller.go

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	listeners []net.Listener
	connsMu   sync.Mutex
	conns     map[net.Conn]struct{}
	ready     atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// api is one registered Kafka API: its key, versions and handler.
type api struct {
	key      int16
	min, max int16
	handle   func(ctx context.Context, rc *requestContext, req kmsg.Request) kmsg.Response
}

// requestContext describes the request being served.
type requestContext struct {
	hdr    kafkaproto.RequestHeader
	remote net.Addr
}

// New validates options and builds a server; Start makes it serve.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("broker: Options.Store is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if len(opts.Listen) == 0 {
		return nil, errors.New("broker: no listen address")
	}
	if opts.Advertise == "" {
		opts.Advertise = opts.Listen[0]
	}
	host, port, err := splitHostPort(opts.Advertise)
	if err != nil {
		return nil, fmt.Errorf("broker: advertise address %q: %w", opts.Advertise, err)
	}
	if opts.AdvertiseReplicas != "" {
		if _, _, err := splitHostPort(opts.AdvertiseReplicas); err != nil {
			return nil, fmt.Errorf("broker: replica address %q: %w", opts.AdvertiseReplicas, err)
		}
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{
		opts:    opts,
		cfg:     opts.Config,
		log:     opts.Logger,
		store:   opts.Store,
		tier:    opts.Tiering,
		apis:    make(map[int16]api),
		advHost: host,
		advPort: port,
		logDir:  filepath.Join(opts.DataDir, "logs"),
		topics:  make(map[string]*topicState),
		byID:    make(map[[16]byte]*topicState),
		conns:   make(map[net.Conn]struct{}),
	}
	s.metrics = newMetrics(reg, s)
	s.fetchers = newFetcherManager(s)
	s.groups = s.newGroupManager()
	s.registerAPIs()
	return s, nil
}

func (s *Server) register(key, min, max int16, h func(context.Context, *requestContext, kmsg.Request) kmsg.Response) {
	s.versions.Register(key, min, max)
	s.apis[key] = api{key: key, min: min, max: max, handle: h}
}

// registerAPIs registers every implemented API; ApiVersions answers from
// exactly this table. Each API lives in its own file.
func (s *Server) registerAPIs() {
	s.register(0, 0, 11, s.handleProduce)
	s.register(1, 4, 12, s.handleFetch)
	s.register(2, 1, 9, s.handleListOffsets)
	s.register(3, 0, 12, s.handleMetadata)
	s.register(8, 2, 9, s.handleOffsetCommit)
	s.register(9, 1, 9, s.handleOffsetFetch)
	s.register(10, 0, 4, s.handleFindCoordinator)
	s.register(11, 0, 9, s.handleJoinGroup)
	s.register(12, 0, 4, s.handleHeartbeat)
	s.register(13, 0, 5, s.handleLeaveGroup)
	s.register(14, 0, 5, s.handleSyncGroup)
	s.register(15, 0, 5, s.handleDescribeGroups)
	s.register(16, 0, 5, s.handleListGroups)
	s.register(18, 0, 4, s.handleApiVersions)
	s.register(19, 2, 7, s.handleCreateTopics)
	s.register(20, 1, 6, s.handleDeleteTopics)
	s.register(21, 0, 2, s.handleDeleteRecords)
	s.registerInitProducerID()
	s.register(23, 2, 4, s.handleOffsetForLeaderEpoch)
	s.register(32, 1, 4, s.handleDescribeConfigs)
	s.register(33, 0, 2, s.handleAlterConfigs)
	s.register(37, 0, 3, s.handleCreatePartitions)
	s.register(42, 0, 2, s.handleDeleteGroups)
	s.register(44, 0, 1, s.handleIncrementalAlterConfigs)
	s.register(47, 0, 0, s.handleOffsetDelete)
	s.register(60, 0, 1, s.handleDescribeCluster)
}

// Start opens the partition logs this broker holds, registers the broker in
// etcd, follows topic changes and starts serving on every listener.
func (s *Server) Start(ctx context.Context) error {
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		return fmt.Errorf("broker: data dir: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	topics, err := s.store.Topics(ctx)
	if err != nil {
		return fmt.Errorf("broker: load topics: %w", err)
	}
	if err := s.applyTopics(topics, true); err != nil {
		return err
	}
	for _, addr := range s.opts.Listen {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("broker: listen %s: %w", addr, err)
		}
		s.listeners = append(s.listeners, ln)
	}
	if err := s.store.RegisterBroker(ctx, s.brokerInfo()); err != nil {
		s.closeListeners()
		return fmt.Errorf("broker: register broker %d: %w", s.opts.BrokerID, err)
	}
	s.goLoop(s.watchTopics)
	s.goLoop(s.controllerLoop)
	s.goLoop(s.isrLoop)
	s.goLoop(s.fenceOnLeaseLoss)
	s.goLoop(s.retentionLoop)
	s.groups.Start()
	s.goLoop(s.flushLoop)
	if s.tier != nil {
		s.goLoop(s.tier.Run)
	}
	for _, ln := range s.listeners {
		ln := ln
		s.goLoop(func(ctx context.Context) { s.acceptLoop(ln) })
		s.log.Info("serving Kafka", "listen", ln.Addr().String(), "advertise", s.opts.Advertise, "broker.id", s.opts.BrokerID)
	}
	s.ready.Store(true)
	return nil
}

// Ready reports whether the broker serves requests.
func (s *Server) Ready() bool { return s.ready.Load() }

// Addrs returns the bound listener addresses.
func (s *Server) Addrs() []net.Addr {
	var out []net.Addr
	for _, ln := range s.listeners {
		out = append(out, ln.Addr())
	}
	return out
}

func (s *Server) goLoop(f func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(s.ctx)
	}()
}

// Close stops accepting, closes every connection, waits for every goroutine
// it started, then flushes and closes every partition log. Idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.controlledShutdown()
		s.ready.Store(false)
		if s.cancel != nil {
			s.cancel()
		}
		s.closeListeners()
		s.connsMu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.connsMu.Unlock()
		s.wg.Wait()
		if err := s.groups.Close(); err != nil {
			s.log.Warn("release consumer groups", "err", err)
		}

		s.applyMu.Lock()
		defer s.applyMu.Unlock()
		s.mu.Lock()
		var parts []*partition
		for _, t := range s.topics {
			for _, p := range t.parts {
				if p != nil {
					parts = append(parts, p)
				}
			}
		}
		s.mu.Unlock()
		var errs []error
		for _, p := range parts {
			if err := p.close(); err != nil {
				errs = append(errs, err)
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Server) closeListeners() {
	for _, ln := range s.listeners {
		ln.Close()
	}
}

func (s *Server) acceptLoop(ln net.Listener) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		s.connsMu.Lock()
		if s.ctx.Err() != nil {
			s.connsMu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.connsMu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.connsMu.Lock()
				delete(s.conns, c)
				s.connsMu.Unlock()
			}()
			s.serveConn(c)
		}()
	}
}

func splitHostPort(hp string) (string, int32, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	var port int32
	if _, err := fmt.Sscanf(p, "%d", &port); err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, port, nil
}
