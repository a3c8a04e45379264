package broker

// Replication, follower side: replica fetchers (DESIGN.md path 3).
//
// For every leader broker this broker follows, num.replica.fetchers
// goroutines (default one) each keep one connection to that leader and
// fetch all their partitions in one Fetch v12 with ReplicaID = our broker
// id, long-polling up to replica.fetch.wait.max.ms. A partition newly
// assigned to a fetcher, or whose leader epoch changed, first truncates:
// OffsetForLeaderEpoch v4 for our latest epoch, then the log is cut to
// min(leader's end offset for that epoch, our end offset for the epoch the
// leader answered, our log end) — Kafka's KIP-279 rule; UNDEFINED (-1)
// cuts to our high watermark. Fetched batches are appended as they came
// (AppendAsFollower) and our high watermark becomes min(leader's HW, our
// log end).
//
// FENCED_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER, UNKNOWN_LEADER_EPOCH and
// UNKNOWN_TOPIC_OR_PARTITION back the partition off until new metadata
// re-assigns it (or a second passes). OFFSET_OUT_OF_RANGE truncates again
// (or restarts the log at the leader's log start when we are below it).
// OFFSET_MOVED_TO_TIERED_STORAGE (our log end below the leader's local log
// start) rebuilds the log from the remote tier (rebuildFromRemote in
// tiered.go: ListOffsets -4, the remote segment ending before it, its
// epoch history and producer snapshot) and fetches from there.
//
// Ownership: the fetcherManager (under its mutex) maps partitions to
// fetchers; each fetcher owns its connection and its goroutine (tracked by
// Server.wg, stopped through its context). A fetcher applies responses
// holding its own mutex, and remove takes that mutex, so once remove
// returns no append of that fetcher reaches the partition any more.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/broker/locallog"
	"github.com/stratabroker/strata/kafkaproto"
)

const (
	replicaBackoff         = time.Second
	refusedBackoff         = 200 * time.Millisecond // a new topic or epoch reaches the leader's metadata soon
	replicaResponseMax     = 10 << 20               // Kafka's replica.fetch.response.max.bytes
	replicaMaxFrame        = 256 << 20
	replicaRequestOverhead = 30 * time.Second // socket deadline beyond the long poll
)

type fetcherKey struct {
	leader int32
	idx    int
}

// fetchState is one partition inside a fetcher.
type fetchState struct {
	p          *partition
	epoch      int32
	truncate   bool      // OffsetForLeaderEpoch before the next fetch
	delayUntil time.Time // backed off until then
	lastErr    int16     // last error code logged, to log each change once
}

// refused backs st off briefly after the leader refused it (it does not
// lead, or not yet, in our epoch), logging each new reason once.
func (st *fetchState) refused(f *replicaFetcher, what string, code int16, now time.Time) {
	if code != st.lastErr {
		f.s.log.Info(what+"; waiting for new metadata", "topic", st.p.topic, "partition", st.p.index, "leader", f.key.leader, "epoch", st.epoch, "err", kerr.ErrorForCode(code))
	}
	st.lastErr = code
	st.delayUntil = now.Add(refusedBackoff)
}

type fetcherManager struct {
	s        *Server
	mu       sync.Mutex
	fetchers map[fetcherKey]*replicaFetcher
	where    map[*partition]fetcherKey
}

func newFetcherManager(s *Server) *fetcherManager {
	return &fetcherManager{s: s, fetchers: make(map[fetcherKey]*replicaFetcher), where: make(map[*partition]fetcherKey)}
}

func (m *fetcherManager) fetcherIndex(p *partition) int {
	n := m.s.cfg.NumReplicaFetchers
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(p.topic))
	h.Write([]byte(strconv.Itoa(int(p.index))))
	return int(h.Sum32() % uint32(n))
}

// assign makes p follow leader in leaderEpoch. A new assignment or a new
// epoch truncates before fetching.
func (m *fetcherManager) assign(p *partition, leader, epoch int32) {
	key := fetcherKey{leader, m.fetcherIndex(p)}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.where[p]; ok && old != key {
		m.removeLocked(p)
	}
	f := m.fetchers[key]
	if f == nil {
		if m.s.ctx == nil || m.s.ctx.Err() != nil {
			return
		}
		f = m.startFetcher(key)
	}
	m.where[p] = key
	f.mu.Lock()
	if st := f.parts[p]; st == nil || st.epoch != epoch {
		f.parts[p] = &fetchState{p: p, epoch: epoch, truncate: true}
	}
	f.mu.Unlock()
	f.poke()
}

// remove stops fetching p; no append of a fetcher reaches p after it returns.
func (m *fetcherManager) remove(p *partition) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removeLocked(p)
}

func (m *fetcherManager) removeLocked(p *partition) {
	key, ok := m.where[p]
	if !ok {
		return
	}
	delete(m.where, p)
	f := m.fetchers[key]
	if f == nil {
		return
	}
	f.mu.Lock()
	delete(f.parts, p)
	empty := len(f.parts) == 0
	f.mu.Unlock()
	if empty {
		delete(m.fetchers, key)
		f.cancel()
	}
}

// following reports the leader p is fetched from, -1 if none (tests).
func (m *fetcherManager) following(p *partition) int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, ok := m.where[p]; ok {
		return k.leader
	}
	return -1
}

func (m *fetcherManager) startFetcher(key fetcherKey) *replicaFetcher {
	ctx, cancel := context.WithCancel(m.s.ctx)
	f := &replicaFetcher{s: m.s, key: key, parts: make(map[*partition]*fetchState), wake: make(chan struct{}, 1), cancel: cancel}
	m.fetchers[key] = f
	m.s.wg.Add(1)
	go func() {
		defer m.s.wg.Done()
		f.run(ctx)
	}()
	return f
}

// replicaFetcher fetches the partitions one leader broker leads for us.
type replicaFetcher struct {
	s      *Server
	key    fetcherKey
	mu     sync.Mutex // guards parts; held while a response is applied
	parts  map[*partition]*fetchState
	wake   chan struct{}
	cancel context.CancelFunc
	conn   *replicaConn // owned by the run goroutine
}

func (f *replicaFetcher) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *replicaFetcher) run(ctx context.Context) {
	log := f.s.log.With("leader", f.key.leader, "fetcher", f.key.idx)
	defer func() {
		if f.conn != nil {
			f.conn.close()
		}
	}()
	for ctx.Err() == nil {
		if f.conn == nil {
			c, err := f.dial(ctx)
			if err != nil {
				log.Info("replica fetcher cannot reach leader; retrying", "err", err)
				f.sleep(ctx, replicaBackoff)
				continue
			}
			f.conn = c
		}
		worked, err := f.round(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Info("replica fetch failed; reconnecting", "err", err)
			}
			f.conn.close()
			f.conn = nil
			f.sleep(ctx, replicaBackoff)
			continue
		}
		if !worked {
			f.sleep(ctx, f.nextWake())
		}
	}
}

func (f *replicaFetcher) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-f.wake:
	case <-t.C:
	}
}

// nextWake is how long until a backed-off partition may be fetched again.
func (f *replicaFetcher) nextWake() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := replicaBackoff
	now := time.Now()
	for _, st := range f.parts {
		d = min(d, max(st.delayUntil.Sub(now), 10*time.Millisecond))
	}
	return d
}

func (f *replicaFetcher) dial(ctx context.Context) (*replicaConn, error) {
	var addr string
	for _, b := range f.s.liveBrokers(ctx) {
		if b.ID == f.key.leader {
			addr = b.ReplicaAddr
			if addr == "" {
				addr = net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
			}
		}
	}
	if addr == "" {
		f.s.invalidateBrokers()
		return nil, fmt.Errorf("broker %d is not registered", f.key.leader)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	rc := &replicaConn{c: c, br: bufio.NewReaderSize(c, 64<<10),
		fmt: kmsg.NewRequestFormatter(kmsg.FormatterClientID(fmt.Sprintf("strata-replica-fetcher-%d-%d", f.s.opts.BrokerID, f.key.idx)))}
	rc.stop = context.AfterFunc(ctx, func() { c.Close() })
	return rc, nil
}

// round truncates the partitions that need it, then fetches the others
// once. worked=false means nothing could be done (all backed off).
func (f *replicaFetcher) round(ctx context.Context) (bool, error) {
	now := time.Now()
	var trunc, fetch []fetchState
	f.mu.Lock()
	for _, st := range f.parts {
		if now.Before(st.delayUntil) || st.p.getLog() == nil {
			continue
		}
		if st.truncate {
			trunc = append(trunc, *st)
		} else {
			fetch = append(fetch, *st)
		}
	}
	f.mu.Unlock()
	if len(trunc) > 0 {
		if err := f.truncate(ctx, trunc); err != nil {
			return false, err
		}
		return true, nil // the truncated partitions join the next fetch
	}
	if len(fetch) == 0 {
		return false, nil
	}
	return true, f.fetch(ctx, fetch)
}

// current returns the live state for a snapshot, or nil when the partition
// left this fetcher or changed epoch meanwhile. Caller holds f.mu.
func (f *replicaFetcher) current(snap fetchState) *fetchState {
	st := f.parts[snap.p]
	if st == nil || st.epoch != snap.epoch {
		return nil
	}
	return st
}

func (f *replicaFetcher) truncate(ctx context.Context, parts []fetchState) error {
	req := kmsg.NewPtrOffsetForLeaderEpochRequest()
	req.Version = 4
	req.ReplicaID = f.s.opts.BrokerID
	idx := make(map[string]map[int32]fetchState)
	topics := make(map[string]int)
	for _, st := range parts {
		p := st.p
		l := p.getLog()
		if l == nil {
			continue
		}
		latest := l.LatestEpoch()
		if latest < 0 {
			// Nothing with an epoch here: nothing to diverge from.
			f.mu.Lock()
			if cur := f.current(st); cur != nil {
				cur.truncate = false
				if hw := p.hw.Load(); hw > l.LogEndOffset() {
					p.hw.Store(l.LogEndOffset())
				}
			}
			f.mu.Unlock()
			continue
		}
		ti, ok := topics[p.topic]
		if !ok {
			ti = len(req.Topics)
			topics[p.topic] = ti
			t := kmsg.NewOffsetForLeaderEpochRequestTopic()
			t.Topic = p.topic
			req.Topics = append(req.Topics, t)
			idx[p.topic] = make(map[int32]fetchState)
		}
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = p.index, st.epoch, latest
		req.Topics[ti].Partitions = append(req.Topics[ti].Partitions, rp)
		idx[p.topic][p.index] = st
	}
	if len(req.Topics) == 0 {
		return nil
	}
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	if err := f.conn.roundTrip(req, resp, 10*time.Second); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			snap, ok := idx[rt.Topic][rp.Partition]
			if !ok {
				continue
			}
			st := f.current(snap)
			if st == nil {
				continue
			}
			if rp.ErrorCode != 0 {
				st.refused(f, "OffsetForLeaderEpoch refused", rp.ErrorCode, now)
				continue
			}
			st.lastErr = 0
			if err := f.applyTruncation(st.p, rp.LeaderEpoch, rp.EndOffset); err != nil {
				f.s.log.Error("truncate follower log", "topic", rt.Topic, "partition", rp.Partition, "err", err)
				st.delayUntil = now.Add(replicaBackoff)
				continue
			}
			st.truncate = false
		}
	}
	return nil
}

// applyTruncation cuts p's log after the leader answered (epoch, end) for
// our latest epoch.
func (f *replicaFetcher) applyTruncation(p *partition, epoch int32, end int64) error {
	l := p.getLog()
	if l == nil {
		return errPartitionClosed
	}
	leo := l.LogEndOffset()
	target := followerTruncationOffset(l, epoch, end, p.highWatermark())
	if target < leo {
		f.s.log.Info("truncating follower log to the leader's history", "topic", p.topic, "partition", p.index, "from", leo, "to", target, "leader_epoch", epoch)
		if err := l.TruncateTo(target); err != nil {
			return err
		}
	}
	if leo = l.LogEndOffset(); p.hw.Load() > leo {
		p.hw.Store(leo)
	}
	return nil
}

// followerTruncationOffset is where a follower cuts its log given the
// leader's OffsetForLeaderEpoch answer (epoch, end) for its latest epoch.
func followerTruncationOffset(l *locallog.Log, epoch int32, end, hw int64) int64 {
	leo := l.LogEndOffset()
	if epoch < 0 || end < 0 {
		// UNDEFINED: the leader knows nothing of our epochs; keep what is
		// committed (Kafka truncates to the high watermark).
		return min(hw, leo)
	}
	target := min(end, leo)
	if epoch != l.LatestEpoch() {
		// The leader's history diverged from ours after epoch: our own
		// end of that epoch bounds what we share with it.
		if e, ourEnd := l.EndOffsetForEpoch(epoch); e >= 0 && ourEnd >= 0 {
			target = min(target, ourEnd)
		}
	}
	return max(target, 0)
}

func (f *replicaFetcher) fetch(ctx context.Context, parts []fetchState) error {
	cfg := f.s.cfg
	req := kmsg.NewPtrFetchRequest()
	req.Version = 12
	req.ReplicaID = f.s.opts.BrokerID
	req.MaxWaitMillis = int32(cfg.ReplicaFetchWaitMax / time.Millisecond)
	if req.MaxWaitMillis <= 0 {
		req.MaxWaitMillis = 500
	}
	req.MinBytes = max(cfg.ReplicaFetchMinBytes, 1)
	req.MaxBytes = replicaResponseMax
	req.SessionID, req.SessionEpoch = 0, -1
	partMax := cfg.ReplicaFetchMaxBytes
	if partMax <= 0 {
		partMax = 1 << 20
	}
	idx := make(map[string]map[int32]fetchState)
	topics := make(map[string]int)
	fetchAt := make(map[*partition]int64, len(parts))
	for _, st := range parts {
		p := st.p
		l := p.getLog()
		if l == nil {
			continue
		}
		ti, ok := topics[p.topic]
		if !ok {
			ti = len(req.Topics)
			topics[p.topic] = ti
			t := kmsg.NewFetchRequestTopic()
			t.Topic = p.topic
			req.Topics = append(req.Topics, t)
			idx[p.topic] = make(map[int32]fetchState)
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = p.index
		rp.CurrentLeaderEpoch = st.epoch
		rp.FetchOffset = l.LogEndOffset()
		rp.LastFetchedEpoch = -1
		rp.LogStartOffset = l.LogStartOffset()
		rp.PartitionMaxBytes = partMax
		req.Topics[ti].Partitions = append(req.Topics[ti].Partitions, rp)
		idx[p.topic][p.index] = st
		fetchAt[p] = rp.FetchOffset
	}
	if len(req.Topics) == 0 {
		return nil
	}
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if err := f.conn.roundTrip(req, resp, time.Duration(req.MaxWaitMillis)*time.Millisecond+replicaRequestOverhead); err != nil {
		return err
	}
	if resp.ErrorCode != 0 {
		return fmt.Errorf("fetch: %w", kerr.ErrorForCode(resp.ErrorCode))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for _, rt := range resp.Topics {
		for i := range rt.Partitions {
			rp := &rt.Partitions[i]
			snap, ok := idx[rt.Topic][rp.Partition]
			if !ok {
				continue
			}
			st := f.current(snap)
			if st == nil {
				continue
			}
			f.applyFetched(st, rp, fetchAt[st.p], now)
		}
	}
	return nil
}

// applyFetched appends one partition's answer. Caller holds f.mu.
func (f *replicaFetcher) applyFetched(st *fetchState, rp *kmsg.FetchResponseTopicPartition, fetchedAt int64, now time.Time) {
	p := st.p
	l := p.getLog()
	if l == nil {
		return
	}
	log := f.s.log
	switch rp.ErrorCode {
	case 0:
	case kerr.FencedLeaderEpoch.Code, kerr.NotLeaderForPartition.Code, kerr.UnknownLeaderEpoch.Code,
		kerr.UnknownTopicOrPartition.Code, kerr.ReplicaNotAvailable.Code:
		st.refused(f, "leader refused follower fetch", rp.ErrorCode, now)
		return
	case kerr.OffsetOutOfRange.Code:
		if leo := l.LogEndOffset(); rp.LogStartOffset >= 0 && leo < rp.LogStartOffset {
			log.Warn("follower log end below the leader's log start; restarting the log there", "topic", p.topic, "partition", p.index, "log_end", leo, "leader_log_start", rp.LogStartOffset)
			if err := l.TruncateTo(rp.LogStartOffset); err != nil {
				log.Error("restart follower log", "topic", p.topic, "partition", p.index, "err", err)
				st.delayUntil = now.Add(replicaBackoff)
			}
			p.hw.Store(min(p.hw.Load(), l.LogEndOffset()))
			return
		}
		st.truncate = true
		st.delayUntil = now.Add(100 * time.Millisecond)
		return
	case kerr.OffsetMovedToTieredStorage.Code:
		// broker/tiered.go: restart the log at the leader's local log start.
		if err := f.rebuildFromRemote(f.s.ctx, st, rp.LogStartOffset); err != nil {
			log.Warn("follower below the leader's local log start could not rebuild from the remote tier; retrying", "topic", p.topic, "partition", p.index, "log_end", l.LogEndOffset(), "err", err)
			st.delayUntil = now.Add(replicaBackoff)
		}
		return
	default:
		log.Warn("follower fetch error", "topic", p.topic, "partition", p.index, "err", kerr.ErrorForCode(rp.ErrorCode))
		st.delayUntil = now.Add(replicaBackoff)
		return
	}
	st.lastErr = 0
	if len(rp.RecordBatches) > 0 {
		if l.LogEndOffset() != fetchedAt {
			return // the log moved since the request (cannot happen while we own it)
		}
		if _, err := l.AppendAsFollower(rp.RecordBatches); err != nil {
			if errors.Is(err, locallog.ErrOffsetOutOfRange) {
				st.truncate = true
				return
			}
			log.Error("append as follower", "topic", p.topic, "partition", p.index, "err", err)
			st.delayUntil = now.Add(replicaBackoff)
			return
		}
	}
	leo := l.LogEndOffset()
	if hw := min(rp.HighWatermark, leo); hw >= 0 && hw != p.hw.Load() {
		p.hw.Store(hw)
		p.notify()
	}
}

// replicaConn is a minimal synchronous Kafka client connection.
type replicaConn struct {
	c    net.Conn
	br   *bufio.Reader
	fmt  *kmsg.RequestFormatter
	corr int32
	buf  []byte
	stop func() bool
}

func (rc *replicaConn) close() {
	rc.stop()
	rc.c.Close()
}

// roundTrip sends req and decodes the answer into resp within timeout.
func (rc *replicaConn) roundTrip(req kmsg.Request, resp kmsg.Response, timeout time.Duration) error {
	rc.corr++
	resp.SetVersion(req.GetVersion())
	rc.buf = rc.fmt.AppendRequest(rc.buf[:0], req, rc.corr)
	if err := rc.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := rc.c.Write(rc.buf); err != nil {
		return fmt.Errorf("send %s: %w", kmsg.NameForKey(req.Key()), err)
	}
	frame, err := kafkaproto.ReadFrame(rc.br, replicaMaxFrame, nil)
	if err != nil {
		return fmt.Errorf("read %s response: %w", kmsg.NameForKey(req.Key()), err)
	}
	if len(frame) < 4 {
		return fmt.Errorf("%s response of %d bytes", kmsg.NameForKey(req.Key()), len(frame))
	}
	if corr := int32(binary.BigEndian.Uint32(frame)); corr != rc.corr {
		return fmt.Errorf("%s response: correlation id %d, want %d", kmsg.NameForKey(req.Key()), corr, rc.corr)
	}
	body := frame[4:]
	if resp.IsFlexible() {
		if body, err = skipTagSection(body); err != nil {
			return fmt.Errorf("%s response header: %w", kmsg.NameForKey(req.Key()), err)
		}
	}
	if err := resp.ReadFrom(body); err != nil {
		return fmt.Errorf("decode %s response: %w", kmsg.NameForKey(req.Key()), err)
	}
	if len(rc.buf) > 1<<20 {
		rc.buf = nil
	}
	return nil
}

// skipTagSection skips a tagged-field section (uvarint count, then per field
// uvarint tag, uvarint size and the bytes).
func skipTagSection(b []byte) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errors.New("bad tag count")
	}
	b = b[k:]
	for i := uint64(0); i < n; i++ {
		if _, k = binary.Uvarint(b); k <= 0 {
			return nil, errors.New("bad tag")
		}
		b = b[k:]
		size, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < size {
			return nil, errors.New("bad tag size")
		}
		b = b[k+int(size):]
	}
	return b, nil
}
