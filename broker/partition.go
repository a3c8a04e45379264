package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/stratabroker/strata/broker/locallog"
)

// hwCheckpointTicks: the flush loop (250 ms ticks) checkpoints high
// watermarks every this many ticks — 5 s, Kafka's
// replica.high.watermark.checkpoint.interval.ms default.
const hwCheckpointTicks = 20

// partition is one partition replica held by this broker.
//
// Appends are serialized by mu; reads go straight to the log, which is safe
// for concurrent readers. waitMu guards the broadcast channel that wakes
// long-polling fetches when data arrives.
//
// The high watermark is checkpointed (high-watermark-checkpoint in the
// partition directory) every 5 s when it moved, and on clean close; a log
// reopened with replicas starts its HW at min(checkpoint, log end) instead
// of at the log end, so a restarted replica never exposes records the ISR
// had not committed. ckptMu serializes checkpoint writes with closing the
// log (lock order: ckptMu → mu); it is held across the checkpoint's I/O and
// nothing else waits on it.
type partition struct {
	topic   string
	topicID [16]byte
	index   int32
	self    int32 // this broker's id

	mu  sync.Mutex // guards swapping the log out on close/remove
	log atomic.Pointer[locallog.Log]

	leader      atomic.Int32
	leaderEpoch atomic.Int32
	isrSize     atomic.Int32 // committed ISR (min.insync.replicas is checked against it)
	maxISRSize  atomic.Int32 // maximal ISR (committed + being added): 1 = the leader alone moves the HW
	fencedEpoch atomic.Int32 // leader epoch in which the etcd lease was lost; -1 none
	hw          atomic.Int64 // high watermark: offsets below it are committed
	ckptMu      sync.Mutex   // serializes HW checkpoint writes and close/remove
	hwCkpt      int64        // HW last checkpointed; -1 none (guarded by ckptMu)
	cfg         atomic.Pointer[TopicConfig]

	// sealedCommitted, when set, is called when the high watermark passes
	// the end of a segment this leader sealed: the tiering manager uploads
	// it now. sealEnds are the next offsets of the sealed segments not yet
	// passed, ascending (several when the HW lags more than a segment);
	// sealFirst is sealEnds[0], 0 none, for the HW path's fast check.
	sealedCommitted func()
	sealMu          sync.Mutex
	sealEnds        []int64
	sealFirst       atomic.Int64

	roleSet bool // a role was applied (guarded by Server.applyMu)

	repMu sync.Mutex // guards rep; a leaf lock, no I/O under it
	rep   replicaSet

	waitMu sync.Mutex
	waitCh chan struct{}
}

var errPartitionClosed = errors.New("broker: partition closed")

func (p *partition) getLog() *locallog.Log { return p.log.Load() }

func (p *partition) config() *TopicConfig { return p.cfg.Load() }

// highWatermark returns the offset below which records are committed.
func (p *partition) highWatermark() int64 { return p.hw.Load() }

// appendAsLeader stamps and appends validated batches, advancing the high
// watermark when this replica alone forms the ISR.
func (p *partition) appendAsLeader(records []byte) (locallog.AppendResult, error) {
	// No partition lock here: the log serializes appends itself, and with
	// group commit concurrent appenders must be able to share one fsync.
	l := p.getLog()
	if l == nil {
		return locallog.AppendResult{}, errPartitionClosed
	}
	res, err := l.AppendAsLeader(records, p.leaderEpoch.Load())
	if res.Rolled {
		// Also when the append failed after the roll: the sealed segment
		// is whole.
		p.noteSealed(res.FirstOffset)
	}
	if err != nil {
		return res, err
	}
	if p.maxISRSize.Load() <= 1 {
		p.advanceHighWatermark(res.LastOffset + 1)
	}
	p.notify()
	return res, nil
}

// fenced reports whether this leader lost its etcd lease in its current
// epoch and so must not acknowledge writes.
func (p *partition) fenced() bool {
	f := p.fencedEpoch.Load()
	return f >= 0 && p.leaderEpoch.Load() <= f
}

// advanceHighWatermark moves the high watermark forward, never back.
func (p *partition) advanceHighWatermark(hw int64) {
	for {
		cur := p.hw.Load()
		if hw <= cur {
			return
		}
		if p.hw.CompareAndSwap(cur, hw) {
			p.sealedReached(hw)
			return
		}
	}
}

// noteSealed records that the segment ending at next-1 is sealed, to call
// sealedCommitted once the high watermark reaches next (at once if it has).
func (p *partition) noteSealed(next int64) {
	if p.sealedCommitted == nil || next <= 0 {
		return
	}
	p.sealMu.Lock()
	// Concurrent appenders may report their rolls out of order.
	i, found := slices.BinarySearch(p.sealEnds, next)
	if !found {
		p.sealEnds = slices.Insert(p.sealEnds, i, next)
	}
	p.sealFirst.Store(p.sealEnds[0])
	p.sealMu.Unlock()
	p.sealedReached(p.highWatermark())
}

// sealedReached calls sealedCommitted once when hw has passed the end of
// one or more sealed segments not yet reported.
func (p *partition) sealedReached(hw int64) {
	if f := p.sealFirst.Load(); f == 0 || hw < f {
		return
	}
	p.sealMu.Lock()
	n := 0
	for n < len(p.sealEnds) && p.sealEnds[n] <= hw {
		n++
	}
	p.sealEnds = p.sealEnds[n:]
	if len(p.sealEnds) > 0 {
		p.sealFirst.Store(p.sealEnds[0])
	} else {
		p.sealFirst.Store(0)
	}
	p.sealMu.Unlock()
	if n > 0 {
		p.sealedCommitted()
	}
}

// waitChan returns a channel closed at the next append.
func (p *partition) waitChan() <-chan struct{} {
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	if p.waitCh == nil {
		p.waitCh = make(chan struct{})
	}
	return p.waitCh
}

func (p *partition) notify() {
	p.waitMu.Lock()
	if p.waitCh != nil {
		close(p.waitCh)
		p.waitCh = nil
	}
	p.waitMu.Unlock()
}

// initHighWatermark sets the high watermark of a freshly opened log l.
// With one replica everything recovered counts as committed (HW = log
// end). With more, the HW starts at the checkpoint, raised to the log start
// and capped at the log end; without a checkpoint (a log written before
// checkpoints existed) at the log end as before; with a damaged one at the
// log start, the followers' fetches moving it on.
func (p *partition) initHighWatermark(l *locallog.Log, replicas int, log *slog.Logger) {
	leo := l.LogEndOffset()
	hw := leo
	if replicas > 1 {
		ck, err := l.ReadHighWatermark()
		switch {
		case err == nil:
			hw = min(max(ck, l.LogStartOffset()), leo)
		case errors.Is(err, os.ErrNotExist):
		default:
			hw = l.LogStartOffset()
			log.Warn("high-watermark checkpoint unreadable; starting the high watermark at the log start", "topic", p.topic, "partition", p.index, "log_start", hw, "err", err)
		}
	}
	p.hw.Store(hw)
	p.ckptMu.Lock()
	p.hwCkpt = -1
	p.ckptMu.Unlock()
}

// checkpointHighWatermark writes the high-watermark checkpoint if the HW
// moved since the last one. A closed partition is skipped.
func (p *partition) checkpointHighWatermark() error {
	p.ckptMu.Lock()
	defer p.ckptMu.Unlock()
	return p.checkpointLocked()
}

func (p *partition) checkpointLocked() error {
	l := p.getLog()
	if l == nil {
		return nil
	}
	hw := p.hw.Load()
	if hw == p.hwCkpt {
		return nil
	}
	if err := l.WriteHighWatermark(hw); err != nil {
		return fmt.Errorf("checkpoint high watermark of %s-%d: %w", p.topic, p.index, err)
	}
	p.hwCkpt = hw
	return nil
}

// checkpointHighWatermarks checkpoints every partition's high watermark
// that moved; errors are logged.
func (s *Server) checkpointHighWatermarks() {
	for _, p := range s.allPartitions() {
		if err := p.checkpointHighWatermark(); err != nil && s.ctx.Err() == nil {
			s.log.Error("high-watermark checkpoint", "topic", p.topic, "partition", p.index, "err", err)
		}
	}
}

// close checkpoints the high watermark, flushes and closes the log; later
// appends fail.
func (p *partition) close() error {
	p.ckptMu.Lock()
	defer p.ckptMu.Unlock()
	ckErr := p.checkpointLocked()
	p.mu.Lock()
	l := p.log.Swap(nil)
	p.mu.Unlock()
	p.notify()
	if l == nil {
		return ckErr
	}
	return errors.Join(ckErr, l.Close())
}

// remove closes the log and deletes its directory.
func (p *partition) remove() error {
	p.ckptMu.Lock()
	defer p.ckptMu.Unlock()
	p.mu.Lock()
	l := p.log.Swap(nil)
	p.mu.Unlock()
	p.notify()
	if l == nil {
		return nil
	}
	return l.Delete()
}
