package bench

import (
	"context"
	"fmt"
	"strconv"
)

// P2: produce to three brokers on loopback (RF=3, min.insync.replicas=2,
// acks=all) as fast as they take it.
//
// Each repetition starts a fresh cluster on fresh data directories (broker
// 1 hosts the embedded etcd, the others join it) — as P1 does, so no
// repetition pays for a follower still catching up on the one before —
// creates a p2Partitions topic, whose leaders spread over the brokers, and
// runs p2Clients saturating producers with acks=all against it, counting
// the value bytes acknowledged in the measured window. All three brokers share this machine's one disk, so the
// limit is D_fsync / 3. Broker CPU is the three processes' sum.

const (
	p2Partitions = 6
	p2Clients    = 3
	p2MinISR     = 2
)

type p2Runner struct {
	env  *Env
	recs [][]byte
}

func prepareP2(ctx context.Context, env *Env) (Runner, error) {
	return &p2Runner{env: env, recs: GenerateRecords(p1Records, 2)}, nil
}

func (r *p2Runner) Close() error { return nil }

// createReplicatedTopic creates a partitions-partition topic with RF=3 and
// min.insync.replicas=2 on c.
func createReplicatedTopic(ctx context.Context, c *cluster, topic string, partitions int32) (topicInfo, error) {
	admin, err := adminClient(c.addr())
	if err != nil {
		return topicInfo{}, err
	}
	defer admin.Close()
	return createTopic(ctx, admin, topic, partitions, clusterSize,
		map[string]string{"min.insync.replicas": strconv.Itoa(p2MinISR)})
}

func (r *p2Runner) Rep(ctx context.Context, i int) (Rep, error) {
	c, err := r.env.startCluster(ctx, fmt.Sprintf("p2-rep%d", i+1), clusterSize)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	const topic = "bench-p2"
	if _, err := createReplicatedTopic(ctx, c, topic, p2Partitions); err != nil {
		return nil, err
	}
	opts := r.env.Opts
	rep, err := measureProduce(ctx, loadParams{addr: c.addr(), topic: topic, partitions: p2Partitions,
		clients: p2Clients, codec: "none", acksAll: true}, r.recs, c.pids(), opts.Warmup, opts.Duration)
	if aerr := c.alive(); aerr != nil {
		return rep, aerr
	}
	return rep, err
}
