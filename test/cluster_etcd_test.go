package test

// A leader cut off from etcd — its process running, its followers and
// clients still reaching it, only its etcd connection gone — must be fenced
// once its lease is gone (DESIGN.md invariant 6): it stops acknowledging
// writes, the controller on the other side elects a new leader from the
// ISR, and when the link returns the broker registers again, rejoins the
// ISR, and every acknowledged record is there exactly once, on every broker
// that leads.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
)

// tcpProxy forwards connections to target until cut, which drops every
// connection and refuses new ones until restored.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
}

func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		p.setCut(true)
	})
	return p
}

func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *tcpProxy) serve(c net.Conn) {
	if !p.track(c) {
		c.Close()
		return
	}
	d, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil || !p.track(d) {
		c.Close()
		if d != nil {
			d.Close()
		}
		return
	}
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	wg.Add(2)
	go pipe(d, c)
	go pipe(c, d)
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, d)
	p.mu.Unlock()
}

// setCut drops every connection and refuses new ones (true), or lets them
// through again (false).
func (p *tcpProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

func TestClusterLeaderCutOffFromEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits for a broker lease (10 s) to expire")
	}
	var proxy *tcpProxy
	c := clusterStartVia(t, 3, func(id int32, eps []string) []string {
		if id != 1 {
			return eps
		}
		if proxy == nil {
			u, err := url.Parse(eps[0])
			if err != nil {
				t.Fatal(err)
			}
			proxy = startTCPProxy(t, u.Host)
		}
		return []string{"http://" + proxy.ln.Addr().String()} // broker 1 reaches etcd only through the proxy
	})

	const topic = "etcd-cut"
	sts := c.createTopic(topic, 3, 3, map[string]string{"min.insync.replicas": "2"})
	p := int32(-1)
	for _, st := range sts {
		if st.Leader == 1 {
			p = st.Partition
		}
	}
	if p < 0 {
		t.Fatalf("broker 1 leads no partition of %s: %+v", topic, sts)
	}
	old := sts[p]
	before := clusterValues("before", 50)
	clusterProduceSync(t, c.addrs(), topic, p, before)

	// Cut broker 1 off from etcd. Its lease lapses after 10 s; the
	// controller (broker 2 or 3 — broker 1 cannot keep the controller key
	// either) elects a new leader from the ISR in a new epoch.
	proxy.setCut(true)
	cutAt := time.Now()
	moved := c.waitStates(clusterLease+20*time.Second, fmt.Sprintf("partition %d led by another broker in a later epoch", p), topic,
		func(sts []coordinator.PartitionState) error {
			st := sts[p]
			if st.Leader == 1 || st.Leader < 0 || st.LeaderEpoch <= old.LeaderEpoch {
				return fmt.Errorf("leader %d epoch %d ISR %v", st.Leader, st.LeaderEpoch, st.ISR)
			}
			return nil
		})[p]
	t.Logf("new leader %d in epoch %d, %.1f s after the cut", moved.Leader, moved.LeaderEpoch, time.Since(cutAt).Seconds())

	c.waitMetadata(15*time.Second, "brokers 2 and 3 follow the new leader", topic, []int32{2, 3},
		func(_ int32, _ *kmsg.MetadataResponse, mt *kmsg.MetadataResponseTopic) error {
			for _, mp := range mt.Partitions {
				if mp.Partition == p && (mp.Leader != moved.Leader || mp.LeaderEpoch != moved.LeaderEpoch) {
					return fmt.Errorf("partition %d: leader %d epoch %d", p, mp.Leader, mp.LeaderEpoch)
				}
			}
			return nil
		})

	// Broker 1 still believes in its old epoch (it cannot see etcd), but
	// its lease is gone: it must refuse writes rather than acknowledge them.
	for _, acks := range []int16{1, -1} {
		apiEventually(t, 15*time.Second, fmt.Sprintf("broker 1 refuses acks=%d writes as a fenced leader", acks), func() error {
			resp := rawReq[*kmsg.ProduceResponse](t, c.bs[1].Addr,
				rawProduceReq(9, acks, topic, p, rawBatch(rawBatchSpec{}, rawValues(fmt.Sprintf("fenced-acks%d", acks))...)))
			rp := rawProducePartition(t, resp)
			if rp.ErrorCode != kerr.NotLeaderForPartition.Code {
				return fmt.Errorf("answered %s", apiCode(rp.ErrorCode))
			}
			return nil
		})
	}
	after := clusterValues("after", 50)
	clusterProduceSync(t, c.addrs(2, 3), topic, p, after)

	// The link returns: broker 1 registers again, follows the new leader,
	// rejoins the ISR.
	proxy.setCut(false)
	c.waitMetadata(40*time.Second, "broker 1 registered again and listed by every broker", topic, c.ids,
		func(_ int32, md *kmsg.MetadataResponse, _ *kmsg.MetadataResponseTopic) error {
			for _, b := range md.Brokers {
				if b.NodeID == 1 {
					return nil
				}
			}
			return fmt.Errorf("brokers %v", md.Brokers)
		})
	c.waitStates(40*time.Second, fmt.Sprintf("broker 1 back in partition %d's ISR", p), topic, func(sts []coordinator.PartitionState) error {
		if !slices.Contains(sts[p].ISR, 1) {
			return fmt.Errorf("ISR %v", sts[p].ISR)
		}
		return nil
	})

	want := append(slices.Clone(before), after...)
	end := c.stableEnd(topic, p, 20*time.Second)
	if end != int64(len(want)) {
		t.Fatalf("partition %d ends at %d, want the %d acknowledged records", p, end, len(want))
	}
	// Read from whoever leads; then make each broker leader in turn (by
	// compare-and-swap, as an operator's reassignment would) and read again:
	// broker 1's log must hold exactly the acknowledged records too.
	for _, leader := range []int32{0, 1, 2, 3} {
		cur := c.states(topic)[p]
		if leader > 0 && cur.Leader != leader {
			next := cur
			next.Replicas, next.ISR = slices.Clone(cur.Replicas), slices.Clone(cur.ISR)
			next.Leader, next.LeaderEpoch, next.PartitionEpoch = leader, cur.LeaderEpoch+1, cur.PartitionEpoch+1
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := c.store.UpdatePartition(ctx, topic, next, cur.PartitionEpoch)
			cancel()
			if err != nil {
				t.Fatalf("make broker %d leader: %v", leader, err)
			}
			cur = next
		}
		recs, err := clusterRead(t, c.bs[cur.Leader].Addr, topic, p, end, 30*time.Second)
		if err != nil {
			t.Fatalf("read partition %d from leader %d: %v", p, cur.Leader, err)
		}
		clusterWantValues(t, fmt.Sprintf("broker %d", cur.Leader), recs, want)
	}
}
