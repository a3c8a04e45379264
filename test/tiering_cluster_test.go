package test

// Tiered storage across brokers (KIP-405, TIERING-NOTES.md "Leader changes"
// and "Followers never copy tiered data"): three brokers on one etcd and one
// MinIO bucket, a tiered RF=3 topic with small segments and almost no local
// retention.
//
// (a) The leader is killed with SIGKILL after uploading; the controller
// elects another; segments uploaded before and after the change form one
// remote log: the etcd records are contiguous, never overlap, start at the
// log start, and every record is read from earliest on the new leader.
// (b) A follower is stopped, its data directory removed, and started again:
// it rebuilds from the bucket and the leader (OFFSET_MOVED_TO_TIERED_STORAGE,
// ListOffsets -4, the remote segment's epochs and producer snapshot), rejoins
// the ISR in etcd, and once leadership moves to it serves every record from
// earliest.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
	"github.com/stratabroker/strata/internal/harness"
	"github.com/stratabroker/strata/internal/miniotest"
)

// tcValue is the value of record i.
func tcValue(i int) []byte {
	v := fmt.Appendf(nil, "tc-%07d-", i)
	for len(v) < 100 {
		v = append(v, byte('a'+(i+len(v))%26))
	}
	return v
}

// tcProduce writes records [from, to) to partition 0 with acks=all.
func tcProduce(t *testing.T, addr, topic string, from, to int) {
	t.Helper()
	cl := clientKgo(t, addr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(4096)) // many batches: segments of 32 KiB roll often
	defer cl.Close()
	ctx := clientCtx(t, time.Minute)
	const chunk = 500
	for start := from; start < to; start += chunk {
		var rs []*kgo.Record
		for i := start; i < min(start+chunk, to); i++ {
			rs = append(rs, &kgo.Record{Partition: 0, Value: tcValue(i)})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce %d..%d to %s: %v", start, min(start+chunk, to), addr, err)
		}
	}
}

// tcFinished lists the finished remote segments of partition 0.
func tcFinished(t *testing.T, store *coordinator.Store, topicID [16]byte) []coordinator.RemoteSegment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	segs, err := store.RemoteSegments(ctx, topicID, 0)
	if err != nil {
		t.Fatalf("list remote segments: %v", err)
	}
	return slices.DeleteFunc(segs, func(r coordinator.RemoteSegment) bool { return r.State != coordinator.CopyFinished })
}

// tcCheckRemoteLog requires the finished records to be one gapless,
// non-overlapping run starting at logStart.
func tcCheckRemoteLog(t *testing.T, segs []coordinator.RemoteSegment, logStart int64) {
	t.Helper()
	if len(segs) == 0 {
		t.Fatal("no finished remote segments")
	}
	if segs[0].StartOffset != logStart {
		t.Fatalf("first remote segment starts at %d, log start is %d", segs[0].StartOffset, logStart)
	}
	for i := 1; i < len(segs); i++ {
		if prev, r := segs[i-1], segs[i]; r.StartOffset != prev.EndOffset+1 {
			t.Fatalf("remote segments %d [%d, %d] (broker %d epoch %d) and %d [%d, %d] (broker %d epoch %d): gap or overlap",
				i-1, prev.StartOffset, prev.EndOffset, prev.BrokerID, prev.LeaderEpoch, i, r.StartOffset, r.EndOffset, r.BrokerID, r.LeaderEpoch)
		}
	}
}

// tcLeader waits until the metadata of broker addr names a live leader
// other than not, and returns it.
func tcLeader(t *testing.T, addr, topic string, not int32) int32 {
	t.Helper()
	var leader int32 = -1
	apiEventually(t, 30*time.Second, "a new leader of "+topic, func() error {
		mt := apiFindTopic(apiMetadata(t, addr, 9, false, []string{topic}), topic)
		if mt == nil || len(mt.Partitions) != 1 || mt.Partitions[0].ErrorCode != 0 || mt.Partitions[0].Leader < 0 || mt.Partitions[0].Leader == not {
			return fmt.Errorf("metadata: %+v", mt)
		}
		leader = mt.Partitions[0].Leader
		return nil
	})
	return leader
}

// tcReadAll consumes [0, n) from earliest on addr and checks every record.
func tcReadAll(t *testing.T, who, addr, topic string, n int) {
	t.Helper()
	if off, code := tierListOffset(t, addr, topic, 0, -2); code != 0 || off != 0 {
		t.Fatalf("%s: earliest offset %d (%s), want 0", who, off, apiCode(code))
	}
	got := clientConsumeAll(t, addr, topic, map[int32]int64{0: int64(n)}, 60*time.Second)[0]
	if len(got) != n {
		t.Fatalf("%s: read %d records from earliest, want %d", who, len(got), n)
	}
	for i, r := range got {
		if r.Offset != int64(i) || string(r.Value) != string(tcValue(i)) {
			t.Fatalf("%s: record %d: offset %d value %.20q", who, i, r.Offset, r.Value)
		}
	}
}

// tcFirstLocalBase is the base offset of the oldest local segment file of
// partition 0.
func tcFirstLocalBase(t *testing.T, dataDir, topic string) int64 {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dataDir, "logs", topic+"-0"))
	if err != nil {
		t.Fatalf("read partition dir: %v", err)
	}
	for _, e := range ents { // sorted by name: 20-digit bases
		if name, ok := strings.CutSuffix(e.Name(), ".log"); ok {
			base, err := strconv.ParseInt(name, 10, 64)
			if err != nil {
				t.Fatalf("segment file %s: %v", e.Name(), err)
			}
			return base
		}
	}
	t.Fatalf("no segment file in %s", dataDir)
	return -1
}

func TestTieringCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: MinIO, etcd and three broker processes")
	}
	m := miniotest.Start(t, tierBucket)
	url := m.URL("s3", tierBucket, "cluster-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	eps := etcdtest.Start(t)
	root := t.TempDir()
	// Followers fetch in large steps (min bytes twice the segment size), so
	// their segments end elsewhere than the leader's: the new leader must
	// upload only the part of a segment past the old leader's last upload.
	args := tierArgs(url, "--replica.lag.time.max.ms=3000", "--replica.fetch.wait.max.ms=300", "--replica.fetch.min.bytes=65536")
	bs := map[int32]*harness.Broker{}
	dirs := map[int32]string{}
	for id := int32(1); id <= 3; id++ {
		dirs[id] = filepath.Join(root, fmt.Sprintf("b%d", id))
		bs[id] = harness.StartT(t, harness.BrokerConfig{DataDir: dirs[id], BrokerID: id, EtcdEndpoints: eps, Args: args})
	}
	store, err := coordinator.Open(context.Background(), coordinator.Config{Endpoints: eps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("open etcd: %v", err)
	}
	t.Cleanup(func() { store.Close() })

	const topic = "tiered-cluster"
	replCreateTopic(t, bs[1].Addr, topic, []int32{1, 2, 3}, map[string]string{
		"remote.storage.enable": "true", "segment.bytes": "32768", "local.retention.bytes": "1",
	})
	apiEventually(t, 30*time.Second, topic+" led by broker 1 with ISR 1,2,3", func() error {
		st := replState(t, store, topic)
		if st.Leader != 1 || len(st.ISR) != 3 {
			return fmt.Errorf("state %+v", st)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tp, err := store.Topic(ctx, topic)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	topicID := tp.ID

	// (a) Uploads before and after a leader change form one remote log.
	const half = 1500
	start := time.Now()
	tcProduce(t, bs[1].Addr, topic, 0, half)
	apiEventually(t, 30*time.Second, "broker 1 tiers most of its log", func() error {
		segs := tcFinished(t, store, topicID)
		if len(segs) < 3 || segs[len(segs)-1].EndOffset < half/2 {
			return fmt.Errorf("%d finished segments", len(segs))
		}
		return nil
	})
	t.Logf("first half produced and tiered by broker 1 in %v", time.Since(start))
	if err := bs[1].Kill(); err != nil {
		t.Fatal(err)
	}
	leader := tcLeader(t, bs[2].Addr, topic, 1)
	lb := bs[leader]
	t.Logf("broker %d leads after broker 1 was killed", leader)
	tcProduce(t, lb.Addr, topic, half, 2*half)
	apiEventually(t, 60*time.Second, fmt.Sprintf("broker %d tiers the second half", leader), func() error {
		segs := tcFinished(t, store, topicID)
		if len(segs) == 0 || segs[len(segs)-1].EndOffset < 2*half-400 || segs[len(segs)-1].BrokerID != leader {
			return fmt.Errorf("%d finished segments, last %+v", len(segs), segs[len(segs)-1:])
		}
		return nil
	})
	segs := tcFinished(t, store, topicID)
	tcCheckRemoteLog(t, segs, 0)
	byBroker := map[int32]int{}
	for _, r := range segs {
		byBroker[r.BrokerID]++
	}
	if byBroker[1] == 0 || byBroker[leader] == 0 {
		t.Fatalf("remote segments by uploader %v: want some from broker 1 and from broker %d", byBroker, leader)
	}
	if local, code := tierListOffset(t, lb.Addr, topic, 0, -4); code != 0 || local <= segs[0].EndOffset {
		t.Fatalf("new leader's local log start %d (%s): the cold part is not cold", local, apiCode(code))
	}
	tcReadAll(t, fmt.Sprintf("new leader %d", leader), lb.Addr, topic, 2*half)
	// Informational: whether the new leader's segment boundaries straddled
	// the old leader's last upload (then it uploaded only the rest).
	t.Logf("new leader uploaded a partial segment: %v", strings.Contains(lb.LogTail(3000), "uploading the part of a segment"))
	t.Logf("(a) %d remote segments (by uploader %v) gapless; all read from the new leader; %v so far", len(segs), byBroker, time.Since(start))

	// (b) A follower wiped of its data rebuilds from the bucket and the leader.
	follower := int32(5) - leader // the live broker that does not lead (2 or 3)
	fb := bs[follower]
	if err := fb.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dirs[follower]); err != nil {
		t.Fatal(err)
	}
	tcProduce(t, lb.Addr, topic, 2*half, 2*half+200) // the leader moves on meanwhile
	apiEventually(t, 30*time.Second, fmt.Sprintf("broker %d out of the ISR", follower), func() error {
		if st := replState(t, store, topic); slices.Contains(st.ISR, follower) {
			return fmt.Errorf("state %+v", st)
		}
		return nil
	})
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	err = fb.Restart(rctx)
	rcancel()
	if err != nil {
		t.Fatalf("restart broker %d with an empty data directory: %v", follower, err)
	}
	rebuilt := time.Now()
	apiEventually(t, 60*time.Second, fmt.Sprintf("broker %d back in the ISR", follower), func() error {
		if st := replState(t, store, topic); st.Leader != leader || !slices.Contains(st.ISR, follower) {
			return fmt.Errorf("state %+v", st)
		}
		return nil
	})
	t.Logf("wiped broker %d rejoined the ISR %v after its restart", follower, time.Since(rebuilt))
	if n := tierLocalLogFiles(t, dirs[follower], topic, 0); n == 0 {
		t.Fatalf("broker %d holds no local segment", follower)
	}
	if !strings.Contains(fb.LogTail(400), "follower rebuilt from the remote tier") {
		t.Fatalf("broker %d did not rebuild from the remote tier:\n%s", follower, fb.LogTail(60))
	}
	if base := tcFirstLocalBase(t, dirs[follower], topic); base <= segs[0].EndOffset {
		t.Fatalf("broker %d's first local segment starts at %d: it copied tiered data", follower, base)
	}
	replMoveLeader(t, store, topic, follower, -1)
	tcLeader(t, fb.Addr, topic, leader)
	tcReadAll(t, fmt.Sprintf("rebuilt broker %d", follower), fb.Addr, topic, 2*half+200)
	// The rebuilt broker leads: it keeps uploading after what is there.
	tcProduce(t, fb.Addr, topic, 2*half+200, 2*half+800)
	apiEventually(t, 60*time.Second, fmt.Sprintf("broker %d uploads as leader", follower), func() error {
		segs := tcFinished(t, store, topicID)
		if segs[len(segs)-1].BrokerID != follower {
			return fmt.Errorf("last segment by broker %d", segs[len(segs)-1].BrokerID)
		}
		return nil
	})
	tcCheckRemoteLog(t, tcFinished(t, store, topicID), 0)
	t.Logf("(b) done in %v total", time.Since(start))
}

// TestTieringUploadsWhenSealed: a segment uploads once it is sealed and
// committed, not at the next task round. The round is set to 10 minutes,
// so only the seal can have started the uploads: with one replica (the
// append commits it) and with three (the followers' fetches do).
func TestTieringUploadsWhenSealed(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: etcd and three broker processes")
	}
	eps := etcdtest.Start(t)
	root := t.TempDir()
	url := "file://" + filepath.Join(root, "bucket") + "?create_bucket=true"
	args := []string{"--remote", url, "--remote.log.manager.task.interval.ms=600000", "--auto.create.topics.enable=false",
		"--log.retention.check.interval.ms=200"}
	bs := map[int32]*harness.Broker{}
	dirs := map[int32]string{}
	for id := int32(1); id <= 3; id++ {
		dirs[id] = filepath.Join(root, fmt.Sprintf("b%d", id))
		bs[id] = harness.StartT(t, harness.BrokerConfig{DataDir: dirs[id], BrokerID: id, EtcdEndpoints: eps, Args: args})
	}
	for _, tc := range []struct {
		topic    string
		replicas []int32
	}{{"sealed-rf1", []int32{1}}, {"sealed-rf3", []int32{1, 2, 3}}} {
		replCreateTopic(t, bs[1].Addr, tc.topic, tc.replicas, map[string]string{"remote.storage.enable": "true", "segment.bytes": "32768"})
		leader := tcLeader(t, bs[1].Addr, tc.topic, -1)
		start := time.Now()
		tcProduce(t, bs[leader].Addr, tc.topic, 0, 1500)
		active := tierActiveBase(t, dirs[leader], tc.topic, 0)
		if active < 500 {
			t.Fatalf("%s: active segment at %d: too few segments sealed to test", tc.topic, active)
		}
		apiEventually(t, 15*time.Second, tc.topic+": every sealed segment uploaded", func() error {
			up, code := tierListOffset(t, bs[leader].Addr, tc.topic, 0, -5)
			if code != 0 || up != active-1 {
				return fmt.Errorf("highest uploaded offset %d (%s), want %d", up, apiCode(code), active-1)
			}
			return nil
		})
		t.Logf("%s: segments up to offset %d uploaded %v after the first record", tc.topic, active-1, time.Since(start).Round(time.Millisecond))
	}

	// A segment rolled by segment.ms, with no append after it, by the
	// retention check.
	const timed = "sealed-by-time"
	replCreateTopic(t, bs[1].Addr, timed, []int32{1, 2, 3}, map[string]string{"remote.storage.enable": "true", "segment.ms": "1000"})
	leader := tcLeader(t, bs[1].Addr, timed, -1)
	tcProduce(t, bs[leader].Addr, timed, 0, 100)
	apiEventually(t, 20*time.Second, timed+": the segment rolled by time uploaded", func() error {
		up, code := tierListOffset(t, bs[leader].Addr, timed, 0, -5)
		if code != 0 || up != 99 {
			return fmt.Errorf("highest uploaded offset %d (%s), want 99", up, apiCode(code))
		}
		return nil
	})
}
