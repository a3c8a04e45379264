package broker

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/stratabroker/strata/broker/locallog"
)

// partition is one partition replica held by this broker.
//
// Appends are serialized by mu; reads go straight to the log, which is safe
// for concurrent readers. waitMu guards the broadcast channel that wakes
// long-polling fetches when data arrives.
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
	cfg         atomic.Pointer[TopicConfig]

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
		if hw <= cur || p.hw.CompareAndSwap(cur, hw) {
			return
		}
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

// close flushes and closes the log; later appends fail.
func (p *partition) close() error {
	p.mu.Lock()
	l := p.log.Swap(nil)
	p.mu.Unlock()
	p.notify()
	if l == nil {
		return nil
	}
	return l.Close()
}

// remove closes the log and deletes its directory.
func (p *partition) remove() error {
	p.mu.Lock()
	l := p.log.Swap(nil)
	p.mu.Unlock()
	p.notify()
	if l == nil {
		return nil
	}
	return l.Delete()
}
