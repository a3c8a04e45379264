package broker

// InitProducerId (key 22), v0–4.
//
// Idempotent producers only: a request without a transactional id gets a
// producer id from a block reserved in etcd (producerIDBlockSize at a time,
// so ids are unique across brokers and restarts) and epoch 0. From v3 a
// producer may send its current id and epoch to bump the epoch (KIP-360):
// when that id was handed out by this broker with that epoch it gets the same id
// with epoch+1, otherwise (unknown id, other epoch, epoch exhausted) a fresh
// id — both let it restart its sequences at 0 safely. Transactions are not
// supported: a transactional id is answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
// which every client treats as fatal rather than retrying forever.
// v5 (KIP-890) is not served.

import (
	"context"
	"math"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// producerIDBlockSize is how many producer ids one etcd reservation covers.
const producerIDBlockSize = 1000

// producerIDsRemembered bounds the ids whose epoch is kept for bumps; past
// it the memory is cleared and bump requests get fresh ids (still correct).
const producerIDsRemembered = 100_000

// producerIDs hands out producer ids from the current block. mu guards all
// fields and is held across a block refill (one etcd round trip per
// producerIDBlockSize ids).
type producerIDs struct {
	alloc func(ctx context.Context, n int64) (int64, error)

	mu     sync.Mutex
	next   int64 // next free id of the block
	end    int64 // end of the block (exclusive)
	epochs map[int64]int16
}

func newProducerIDs(alloc func(ctx context.Context, n int64) (int64, error)) *producerIDs {
	return &producerIDs{alloc: alloc, epochs: map[int64]int16{}}
}

// init returns the id and epoch for a producer that currently has
// (pid, epoch), or (-1, -1) for a new one.
func (p *producerIDs) init(ctx context.Context, pid int64, epoch int16) (int64, int16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pid >= 0 && epoch >= 0 && epoch < math.MaxInt16-1 {
		if e, ok := p.epochs[pid]; ok && e == epoch {
			p.epochs[pid] = epoch + 1
			return pid, epoch + 1, nil
		}
	}
	if p.next >= p.end {
		first, err := p.alloc(ctx, producerIDBlockSize)
		if err != nil {
			return -1, -1, err
		}
		p.next, p.end = first, first+producerIDBlockSize
	}
	id := p.next
	p.next++
	if len(p.epochs) >= producerIDsRemembered {
		clear(p.epochs)
	}
	p.epochs[id] = 0
	return id, 0, nil
}

// registerInitProducerID registers InitProducerId when the metadata store
// can reserve producer ids; without one the API is not advertised and
// clients produce without idempotence.
func (s *Server) registerInitProducerID() {
	if s.store == nil {
		return
	}
	s.register(22, 0, 4, s.newInitProducerID(s.store.AllocateProducerIDs))
}

// newInitProducerID returns the InitProducerId handler, with its own
// producer id state.
func (s *Server) newInitProducerID(alloc func(ctx context.Context, n int64) (int64, error)) func(context.Context, *requestContext, kmsg.Request) kmsg.Response {
	ids := newProducerIDs(alloc)
	return func(ctx context.Context, rc *requestContext, kreq kmsg.Request) kmsg.Response {
		req := kreq.(*kmsg.InitProducerIDRequest)
		resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		if req.TransactionalID != nil {
			resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			return resp
		}
		pid, epoch := int64(-1), int16(-1)
		if req.Version >= 3 {
			pid, epoch = req.ProducerID, req.ProducerEpoch
		}
		id, e, err := ids.init(ctx, pid, epoch)
		if err != nil {
			s.log.Warn("init producer id", "err", err)
			resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
			return resp
		}
		resp.ProducerID, resp.ProducerEpoch = id, e
		return resp
	}
}
