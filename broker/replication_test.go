package broker

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/stratabroker/strata/broker/locallog"
	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/kafkaproto"
)

func testBatch(t *testing.T, n int) []byte {
	t.Helper()
	recs := make([]kafkaproto.Record, n)
	for i := range recs {
		recs[i] = kafkaproto.Record{OffsetDelta: int32(i), Value: fmt.Appendf(nil, "v%d", i)}
	}
	b, err := kafkaproto.BuildBatch(kafkaproto.BatchHeader{BaseTimestamp: 1, ProducerID: -1, BaseSequence: -1}, recs, kafkaproto.CodecNone)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testLog(t *testing.T) *locallog.Log {
	t.Helper()
	cfg := locallog.DefaultConfig()
	cfg.SegmentMs, cfg.RetentionMs, cfg.RetentionBytes = -1, -1, -1
	l, err := locallog.Open(t.TempDir(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// testPartition is partition 0 of "t" on broker 1, leading with replicas
// 1, 2, 3 and the given ISR at leader epoch 5.
func testPartition(t *testing.T, isr []int32) *partition {
	t.Helper()
	p := &partition{topic: "t", index: 0, self: 1}
	p.log.Store(testLog(t))
	p.fencedEpoch.Store(-1)
	cfg := TopicConfig{MinInsyncReplicas: 2}
	p.cfg.Store(&cfg)
	p.leader.Store(1)
	p.leaderEpoch.Store(5)
	p.becomeLeader(coordinator.PartitionState{Replicas: []int32{1, 2, 3}, Leader: 1, LeaderEpoch: 5, ISR: isr, PartitionEpoch: 7}, 0, time.Now())
	return p
}

func TestHighWatermarkFollowsISR(t *testing.T) {
	p := testPartition(t, []int32{1, 2, 3})
	now := time.Now()
	if _, err := p.appendAsLeader(testBatch(t, 10)); err != nil {
		t.Fatal(err)
	}
	if hw := p.highWatermark(); hw != 0 {
		t.Fatalf("HW after a leader append with 3 in the ISR = %d, want 0", hw)
	}
	steps := []struct {
		id     int32
		offset int64
		wantHW int64
	}{
		{2, 10, 0},  // 3 has not fetched: its log end is unknown
		{3, 4, 4},   // min(10, 4)
		{3, 10, 10}, // everyone at 10
		{2, 6, 10},  // a fetch below the HW never moves it back
	}
	for i, s := range steps {
		isr, known := p.recordFollowerFetch(s.id, s.offset, 10, now)
		if !known || isr != nil {
			t.Fatalf("step %d: known=%v propose=%v", i, known, isr)
		}
		if hw := p.highWatermark(); hw != s.wantHW {
			t.Fatalf("step %d: follower %d at %d: HW %d, want %d", i, s.id, s.offset, hw, s.wantHW)
		}
	}
	if _, known := p.recordFollowerFetch(9, 0, 10, now); known {
		t.Fatal("broker 9 is not a replica but was accepted")
	}
}

func TestISRExpandAndShrink(t *testing.T) {
	p := testPartition(t, []int32{1, 2})
	start := time.Now()
	if _, err := p.appendAsLeader(testBatch(t, 5)); err != nil {
		t.Fatal(err)
	}
	if isr, _ := p.recordFollowerFetch(2, 5, 5, start); isr != nil {
		t.Fatalf("ISR member 2 proposed %v", isr)
	}
	if hw := p.highWatermark(); hw != 5 {
		t.Fatalf("HW = %d, want 5", hw)
	}
	// 3 is behind the HW: not added.
	if isr, _ := p.recordFollowerFetch(3, 2, 5, start); isr != nil {
		t.Fatalf("lagging follower 3 proposed %v", isr)
	}
	// 3 reaches the HW: proposed, and counted for the HW at once.
	isr, _ := p.recordFollowerFetch(3, 5, 5, start)
	if !slices.Equal(isr, []int32{1, 2, 3}) {
		t.Fatalf("expansion proposed %v, want [1 2 3]", isr)
	}
	if n := p.maxISRSize.Load(); n != 3 {
		t.Fatalf("maximal ISR size %d, want 3", n)
	}
	if n := p.isrSize.Load(); n != 2 {
		t.Fatalf("committed ISR size %d before the CAS, want 2", n)
	}
	// Only one change in flight.
	if got := p.laggingISR(start.Add(time.Hour), time.Second); got != nil {
		t.Fatalf("shrink proposed %v while an expansion is pending", got)
	}
	committed := coordinator.PartitionState{Replicas: []int32{1, 2, 3}, Leader: 1, LeaderEpoch: 5, ISR: isr, PartitionEpoch: 8}
	p.isrChangeDone(&committed)
	if n := p.isrSize.Load(); n != 3 {
		t.Fatalf("committed ISR size %d after the CAS, want 3", n)
	}

	// Follower 2 keeps fetching at the log end, 3 stops.
	lag := 10 * time.Second
	for i := 1; i <= 3; i++ {
		p.recordFollowerFetch(2, 5, 5, start.Add(time.Duration(i)*5*time.Second))
	}
	if got := p.laggingISR(start.Add(5*time.Second), lag); got != nil {
		t.Fatalf("shrink %v before the lag passed", got)
	}
	got := p.laggingISR(start.Add(15*time.Second), lag)
	if !slices.Equal(got, []int32{1, 2}) {
		t.Fatalf("shrink proposed %v, want [1 2]", got)
	}
	p.isrChangeDone(nil) // the CAS lost
	// Everyone lags: the leader is never removed.
	got = p.laggingISR(start.Add(time.Hour), lag)
	if !slices.Equal(got, []int32{1}) {
		t.Fatalf("shrink proposed %v, want [1]", got)
	}
	committed = coordinator.PartitionState{Replicas: []int32{1, 2, 3}, Leader: 1, LeaderEpoch: 5, ISR: got, PartitionEpoch: 9}
	p.isrChangeDone(&committed)
	// The leader alone: its appends commit at once.
	if _, err := p.appendAsLeader(testBatch(t, 3)); err != nil {
		t.Fatal(err)
	}
	if hw := p.highWatermark(); hw != 8 {
		t.Fatalf("HW with the leader alone in the ISR = %d, want 8", hw)
	}
	if code, _ := ackedCode(p); code == 0 {
		t.Fatal("acks=all acknowledged with 1 in-sync replica and min.insync.replicas=2")
	}
}

func TestLaggingFollowerStaysCaughtUpWhileFetchingPreviousEnd(t *testing.T) {
	p := testPartition(t, []int32{1, 2})
	t0 := time.Now()
	// The leader's log end keeps moving; the follower always fetches what
	// the leader had at its previous fetch: Kafka counts it caught up then.
	for i := range 10 {
		now := t0.Add(time.Duration(i) * 4 * time.Second)
		p.recordFollowerFetch(2, int64(i*10), int64(i*10+10), now)
	}
	if got := p.laggingISR(t0.Add(38*time.Second), 10*time.Second); got != nil {
		t.Fatalf("follower keeping up with the previous log end was dropped: %v", got)
	}
}

func TestFollowerTruncationOffset(t *testing.T) {
	l := testLog(t)
	// Epoch 1: offsets 0-4, epoch 3: 5-9, epoch 4: 10-14.
	for _, e := range []int32{1, 3, 4} {
		if _, err := l.AppendAsLeader(testBatch(t, 5), e); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		epoch int32
		end   int64
		hw    int64
		want  int64
	}{
		{"same epoch, leader behind", 4, 12, 15, 12},
		{"same epoch, leader ahead", 4, 20, 15, 15},
		{"leader has epoch 3 as latest, longer", 3, 13, 15, 10},
		{"leader has epoch 3 as latest, shorter", 3, 7, 15, 7},
		{"undefined: keep the high watermark", -1, -1, 8, 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := followerTruncationOffset(l, c.epoch, c.end, c.hw); got != c.want {
				t.Fatalf("truncation for (%d, %d) hw %d = %d, want %d", c.epoch, c.end, c.hw, got, c.want)
			}
		})
	}
}

func TestAwaitReplication(t *testing.T) {
	s := &Server{opts: Options{BrokerID: 1}}
	p := testPartition(t, []int32{1, 2, 3})
	res, err := p.appendAsLeader(testBatch(t, 4))
	if err != nil {
		t.Fatal(err)
	}
	end := res.LastOffset + 1
	ctx := t.Context()

	// Nobody fetches: REQUEST_TIMED_OUT.
	if code, _ := s.awaitReplication(ctx, p, 5, end, time.Now().Add(50*time.Millisecond)); code != kerr.RequestTimedOut.Code {
		t.Fatalf("without followers: code %d, want REQUEST_TIMED_OUT", code)
	}
	// Both followers fetch past the batch: acknowledged.
	done := make(chan int16, 1)
	go func() {
		code, _ := s.awaitReplication(ctx, p, 5, end, time.Now().Add(5*time.Second))
		done <- code
	}()
	p.recordFollowerFetch(2, end, end, time.Now())
	p.recordFollowerFetch(3, end, end, time.Now())
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("replicated by the ISR: code %d, want 0", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("acks=all waiter not woken by the high watermark")
	}
	// A new leader epoch: NOT_LEADER_OR_FOLLOWER.
	res, err = p.appendAsLeader(testBatch(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	p.leaderEpoch.Store(6)
	if code, _ := s.awaitReplication(ctx, p, 5, res.LastOffset+1, time.Now().Add(time.Second)); code != kerr.NotLeaderForPartition.Code {
		t.Fatalf("after an epoch change: code %d, want NOT_LEADER_OR_FOLLOWER", code)
	}
}

func TestFencedAfterLeaseLoss(t *testing.T) {
	p := testPartition(t, []int32{1})
	if p.fenced() {
		t.Fatal("fenced before any lease loss")
	}
	p.fencedEpoch.Store(5) // lease lost while leading in epoch 5
	if !p.fenced() {
		t.Fatal("not fenced in the epoch the lease was lost in")
	}
	p.leaderEpoch.Store(6) // metadata makes it leader again in a later epoch
	if p.fenced() {
		t.Fatal("still fenced in a later epoch")
	}
}
