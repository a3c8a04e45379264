package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
)

// clusterSize is the number of brokers of P2's cluster (and L1's).
const clusterSize = 3

// cluster is brokers 1…n on 127.0.0.1 sharing the etcd embedded in broker 1.
type cluster struct {
	brokers []*brokerProc
}

// startCluster starts n brokers (ids 1…n) named name-b<id>: broker 1 hosts
// the embedded etcd on a free port, the others join it. args go to every
// broker. On error every broker started is stopped.
func (e *Env) startCluster(ctx context.Context, name string, n int, args ...string) (_ *cluster, err error) {
	if n < 1 {
		return nil, fmt.Errorf("bench: cluster of %d brokers", n)
	}
	etcdPort, _, err := twoFreePorts()
	if err != nil {
		return nil, fmt.Errorf("bench: cluster %s: %w", name, err)
	}
	etcdAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(etcdPort))
	c := &cluster{}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	first, err := e.startBrokerOn(ctx, fmt.Sprintf("%s-b1", name), 1, nil, append([]string{"--etcd-listen=" + etcdAddr}, args...)...)
	if err != nil {
		return nil, err
	}
	c.brokers = append(c.brokers, first)
	endpoints := []string{"http://" + etcdAddr}
	for id := 2; id <= n; id++ {
		bp, err := e.startBrokerOn(ctx, fmt.Sprintf("%s-b%d", name, id), int32(id), endpoints, args...)
		if err != nil {
			return nil, err
		}
		c.brokers = append(c.brokers, bp)
	}
	return c, nil
}

// addr is a bootstrap address of the cluster.
func (c *cluster) addr() string { return c.brokers[0].b.Addr }

func (c *cluster) pids() []int {
	var out []int
	for _, bp := range c.brokers {
		out = append(out, bp.b.PID())
	}
	return out
}

// alive reports the first broker that exited.
func (c *cluster) alive() error {
	for _, bp := range c.brokers {
		if err := bp.alive(); err != nil {
			return err
		}
	}
	return nil
}

// stop stops the brokers, the one hosting etcd last, and removes their data.
func (c *cluster) stop() error {
	if c == nil {
		return nil
	}
	var errs []error
	for i := len(c.brokers) - 1; i >= 0; i-- {
		errs = append(errs, c.brokers[i].stop())
	}
	c.brokers = nil
	return errors.Join(errs...)
}
