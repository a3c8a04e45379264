package groups

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/stratabroker/strata/coordinator"
)

// Config configures a Manager. Zero durations take Kafka's defaults.
type Config struct {
	BrokerID               int32
	InitialRebalanceDelay  time.Duration // group.initial.rebalance.delay.ms (0 allowed: tests)
	MinSessionTimeout      time.Duration // group.min.session.timeout.ms, default 6s
	MaxSessionTimeout      time.Duration // group.max.session.timeout.ms, default 30m
	OffsetsRetention       time.Duration // offsets.retention.minutes, default 7d
	RetentionCheckInterval time.Duration // offsets.retention.check.interval.ms, default 10m
	TickInterval           time.Duration // timer resolution, default 100ms
	MaxMetadataBytes       int           // offset.metadata.max.bytes, default 4096
	// PartitionExists reports whether a topic partition exists (OffsetCommit
	// answers UNKNOWN_TOPIC_OR_PARTITION otherwise); nil = every one does.
	PartitionExists func(topic string, partition int32) bool
	Now             func() time.Time
	Logger          *slog.Logger
}

func (c *Config) fill() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.MinSessionTimeout, 6*time.Second)
	def(&c.MaxSessionTimeout, 30*time.Minute)
	def(&c.OffsetsRetention, 7*24*time.Hour)
	def(&c.RetentionCheckInterval, 10*time.Minute)
	def(&c.TickInterval, 100*time.Millisecond)
	if c.MaxMetadataBytes <= 0 {
		c.MaxMetadataBytes = 4096
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Manager coordinates every group this broker owns.
type Manager struct {
	store Store
	cfg   Config
	log   *slog.Logger

	acquireMu sync.Mutex // serializes claims (store I/O under it, never under mu)

	mu     sync.Mutex
	groups map[string]*group
	closed bool

	lostSeen <-chan struct{} // registration-lost channel already handled (tick loop only)

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	startOnce sync.Once
	closeOnce sync.Once
}

// New builds a Manager; Start runs its loops.
func New(store Store, cfg Config) *Manager {
	cfg.fill()
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{store: store, cfg: cfg, log: cfg.Logger, groups: make(map[string]*group), ctx: ctx, cancel: cancel}
}

// Start runs the timer loop and the offset retention loop until Close.
func (m *Manager) Start() {
	m.startOnce.Do(func() {
		m.wg.Add(2)
		go func() {
			defer m.wg.Done()
			t := time.NewTicker(m.cfg.TickInterval)
			defer t.Stop()
			for {
				select {
				case <-m.ctx.Done():
					return
				case <-t.C:
					m.Tick()
				}
			}
		}()
		go func() {
			defer m.wg.Done()
			t := time.NewTicker(m.cfg.RetentionCheckInterval)
			defer t.Stop()
			for {
				select {
				case <-m.ctx.Done():
					return
				case <-t.C:
					m.ExpireOffsets(m.ctx)
				}
			}
		}()
	})
}

// Close stops the loops, waits for them, answers every waiting member with
// NOT_COORDINATOR and releases every claim. Idempotent.
func (m *Manager) Close() error {
	var errs []error
	m.closeOnce.Do(func() {
		m.cancel()
		m.wg.Wait()
		m.mu.Lock()
		m.closed = true
		gs := m.groups
		m.groups = map[string]*group{}
		m.mu.Unlock()
		now := m.cfg.Now()
		for _, g := range gs {
			g.mu.Lock()
			g.drop(kerr.NotCoordinator.Code, now)
			g.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := m.store.ReleaseGroup(ctx, g.id, g.own); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
	})
	return errors.Join(errs...)
}

// Tick expires sessions, pending member ids and rebalance timers, and drops
// every group when the broker's registration was lost. The Manager's loop
// calls it every TickInterval; tests call it with an injected clock.
func (m *Manager) Tick() {
	if lost := m.store.RegistrationLost(); lost != nil && lost != m.lostSeen {
		select {
		case <-lost:
			m.lostSeen = lost
			m.dropAll()
		default:
		}
	}
	now := m.cfg.Now()
	for _, g := range m.owned() {
		g.mu.Lock()
		if g.state != Dead {
			g.tick(now)
		}
		g.mu.Unlock()
		m.persist(g)
	}
}

func (m *Manager) owned() []*group {
	m.mu.Lock()
	defer m.mu.Unlock()
	gs := make([]*group, 0, len(m.groups))
	for _, g := range m.groups {
		gs = append(gs, g)
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].id < gs[j].id })
	return gs
}

func (m *Manager) dropAll() {
	m.mu.Lock()
	gs := m.groups
	m.groups = map[string]*group{}
	m.mu.Unlock()
	now := m.cfg.Now()
	for _, g := range gs {
		g.mu.Lock()
		g.drop(kerr.NotCoordinator.Code, now)
		g.mu.Unlock()
	}
	if len(gs) > 0 {
		m.log.Warn("broker registration lost: dropped every consumer group", "groups", len(gs))
	}
}

// forget drops one group (its claim was lost or it was deleted).
func (m *Manager) forget(g *group, code int16) {
	m.mu.Lock()
	if m.groups[g.id] == g {
		delete(m.groups, g.id)
	}
	m.mu.Unlock()
	g.mu.Lock()
	g.drop(code, m.cfg.Now())
	g.mu.Unlock()
}

func (m *Manager) registrationLost() bool {
	lost := m.store.RegistrationLost()
	if lost == nil {
		return false
	}
	select {
	case <-lost:
		return true
	default:
		return false
	}
}

// lookup returns the group if this broker coordinates it, claiming it when
// nobody does. Codes: NOT_COORDINATOR (another broker owns it),
// COORDINATOR_NOT_AVAILABLE (etcd trouble, closing, registration lost).
func (m *Manager) lookup(ctx context.Context, id string) (*group, int16) {
	m.mu.Lock()
	g, closed := m.groups[id], m.closed
	m.mu.Unlock()
	if closed {
		return nil, kerr.NotCoordinator.Code
	}
	if g != nil {
		return g, 0
	}
	m.acquireMu.Lock()
	defer m.acquireMu.Unlock()
	m.mu.Lock()
	g = m.groups[id]
	m.mu.Unlock()
	if g != nil {
		return g, 0
	}
	if m.registrationLost() {
		return nil, kerr.CoordinatorNotAvailable.Code
	}
	own, err := m.store.AcquireGroup(ctx, id)
	if err != nil {
		if errors.Is(err, coordinator.ErrConflict) {
			return nil, kerr.NotCoordinator.Code
		}
		m.log.Warn("acquire group", "group", id, "err", err)
		return nil, kerr.CoordinatorNotAvailable.Code
	}
	saved, err := m.store.LoadGroupState(ctx, id)
	if err != nil {
		// The claim stays; the next request loads again.
		m.log.Warn("load group state", "group", id, "err", err)
		return nil, kerr.CoordinatorNotAvailable.Code
	}
	g = newGroup(id, own, &m.cfg, m.cfg.Now())
	if saved != nil {
		if err := g.restore(saved, m.cfg.Now()); err != nil {
			m.log.Error("saved group state unusable; the group starts empty", "group", id, "err", err)
			g = newGroup(id, own, &m.cfg, m.cfg.Now())
		} else {
			m.log.Info("group resumed from its saved state", "group", id, "state", g.state,
				"generation", g.generation, "members", len(g.members))
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, kerr.NotCoordinator.Code
	}
	m.groups[id] = g
	return g, 0
}

// Coordinator answers FindCoordinator for a group: the broker that owns it,
// else the live broker a stable hash of the id picks (claimed at once when
// that is this broker).
func (m *Manager) Coordinator(ctx context.Context, id string) (int32, error) {
	m.mu.Lock()
	_, ok := m.groups[id]
	m.mu.Unlock()
	if ok {
		return m.cfg.BrokerID, nil
	}
	own, ok, err := m.store.GroupOwnerOf(ctx, id)
	if err != nil {
		return -1, err
	}
	if ok {
		return own.BrokerID, nil
	}
	ids, err := m.liveBrokers(ctx)
	if err != nil {
		return -1, err
	}
	pick := pickBroker(id, ids)
	if pick == m.cfg.BrokerID || pick < 0 {
		if _, code := m.lookup(ctx, id); code == kerr.NotCoordinator.Code {
			// Someone claimed it in between: send the client there.
			if own, ok, err := m.store.GroupOwnerOf(ctx, id); err == nil && ok {
				return own.BrokerID, nil
			}
		}
		return m.cfg.BrokerID, nil
	}
	return pick, nil
}

// pickBroker hashes a group id over the sorted live broker ids; -1 if none.
func pickBroker(id string, ids []int32) int32 {
	if len(ids) == 0 {
		return -1
	}
	s := append([]int32(nil), ids...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	h := fnv.New32a()
	h.Write([]byte(id))
	return s[h.Sum32()%uint32(len(s))]
}

func (m *Manager) liveBrokers(ctx context.Context) ([]int32, error) {
	bs, err := m.store.Brokers(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]int32, len(bs))
	for i, b := range bs {
		ids[i] = b.ID
	}
	return ids, nil
}
