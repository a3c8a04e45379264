package test

// End-to-end tests of consumer groups (classic protocol): franz-go group
// consumers (range, cooperative-sticky, static members) while members join
// and leave; kcat's balanced consumer, a sarama consumer group and a
// kafka-go group reader; committed offsets across a clean restart and a
// kill -9; and the group coordinator's answers to bad input.
//
// Every test first asks the broker's ApiVersions whether it advertises
// JoinGroup (key 11) and skips when it does not; once it does, the other
// group APIs must be advertised too and every test asserts fully.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/segmentio/kafka-go"
	"github.com/stratabroker/strata/internal/harness"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupsAPIs are the group APIs a broker advertising JoinGroup must serve.
var groupsAPIs = map[int16]string{
	8: "OffsetCommit", 9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup",
	12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup", 15: "DescribeGroups", 16: "ListGroups",
}

var (
	groupsFlagOnce  sync.Once
	groupsDelayFlag bool
)

// groupsBrokerArgs returns the flags of a group test broker: no initial
// rebalance delay when the binary knows the setting (`strata serve -h`).
func groupsBrokerArgs(t testing.TB) []string {
	t.Helper()
	groupsFlagOnce.Do(func() {
		bin, err := harness.Binary()
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(ctx, bin, "serve", "-h").CombinedOutput() // -h exits non-zero
		groupsDelayFlag = bytes.Contains(out, []byte("group.initial.rebalance.delay.ms"))
	})
	if groupsDelayFlag {
		return []string{"--group.initial.rebalance.delay.ms=0"}
	}
	return nil
}

// groupsRequire skips the test unless the broker at addr advertises
// JoinGroup; once it does, every API of groupsAPIs must be advertised.
func groupsRequire(t *testing.T, addr string) {
	t.Helper()
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "strata-groups-test", "1"
	resp := rawReq[*kmsg.ApiVersionsResponse](t, addr, req)
	if resp.ErrorCode != 0 {
		t.Fatalf("ApiVersions: %s", apiCode(resp.ErrorCode))
	}
	have := map[int16]bool{}
	for _, k := range resp.ApiKeys {
		have[k.ApiKey] = true
	}
	if !have[11] {
		t.Skip("consumer groups not advertised by this broker yet")
	}
	for key, name := range groupsAPIs {
		if !have[key] {
			t.Errorf("broker advertises JoinGroup but not %s (key %d)", name, key)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// groupsStart starts one broker for a group test and skips the test when it
// does not serve consumer groups yet.
func groupsStart(t *testing.T, args ...string) *harness.Broker {
	t.Helper()
	b := clientStartBroker(t, append(groupsBrokerArgs(t), args...)...)
	groupsRequire(t, b.Addr)
	return b
}

// groupsProduce produces n records over parts partitions (record i to
// partition i % parts, value "<topic>-<i>") with one lz4 producer and
// returns the values per partition indexed by offset.
func groupsProduce(t *testing.T, addr, topic string, parts int32, n int) map[int32][]string {
	t.Helper()
	cl := clientKgo(t, addr,
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.DisableIdempotentWrite(), // idempotence is tested elsewhere
		kgo.MaxBufferedRecords(n+1),
	)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Topic: topic, Partition: int32(i % int(parts)), Value: []byte(topic + "-" + strconv.Itoa(i))}
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records to %s: %v", n, topic, err)
	}
	want := map[int32][]string{}
	for p := int32(0); p < parts; p++ {
		want[p] = make([]string, 0, n/int(parts)+1)
	}
	for _, r := range rs {
		want[r.Partition] = append(want[r.Partition], string(r.Value))
	}
	for _, r := range rs {
		if r.Offset < 0 || r.Offset >= int64(len(want[r.Partition])) || want[r.Partition][r.Offset] != string(r.Value) {
			// Produced out of order within a partition: index by offset.
			byOff := map[int32][]string{}
			for p, vs := range want {
				byOff[p] = make([]string, len(vs))
			}
			for _, r := range rs {
				byOff[r.Partition][r.Offset] = string(r.Value)
			}
			return byOff
		}
	}
	return want
}

// groupsProduceMore produces values to topic (record i to partition
// i % parts) and returns them per partition with their offsets.
func groupsProduceMore(t *testing.T, addr, topic string, parts int32, values []string) map[int32]map[int64]string {
	t.Helper()
	cl := clientKgo(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DisableIdempotentWrite())
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs := make([]*kgo.Record, len(values))
	for i, v := range values {
		rs[i] = &kgo.Record{Topic: topic, Partition: int32(i % int(parts)), Value: []byte(v)}
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records to %s: %v", len(values), topic, err)
	}
	out := map[int32]map[int64]string{}
	for _, r := range rs {
		if out[r.Partition] == nil {
			out[r.Partition] = map[int64]string{}
		}
		out[r.Partition][r.Offset] = string(r.Value)
	}
	return out
}

// groupsTracker records which (partition, offset) of a topic were processed
// by any member, checking each value against what was produced.
type groupsTracker struct {
	topic string
	want  map[int32][]string

	mu     sync.Mutex
	seen   map[int32][]bool
	total  int // records processed, duplicates included
	unique int
	bad    []string
}

func groupsNewTracker(topic string, want map[int32][]string) *groupsTracker {
	tr := &groupsTracker{topic: topic, want: want, seen: map[int32][]bool{}}
	for p, vs := range want {
		tr.seen[p] = make([]bool, len(vs))
	}
	return tr
}

func (tr *groupsTracker) wanted() int {
	n := 0
	for _, vs := range tr.want {
		n += len(vs)
	}
	return n
}

func (tr *groupsTracker) record(r *kgo.Record) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.total++
	vs, ok := tr.want[r.Partition]
	switch {
	case r.Topic != tr.topic || !ok:
		tr.badf("record from %s/%d, not a partition of %s", r.Topic, r.Partition, tr.topic)
	case r.Offset < 0 || r.Offset >= int64(len(vs)):
		tr.badf("%s/%d: offset %d outside [0, %d)", r.Topic, r.Partition, r.Offset, len(vs))
	case string(r.Value) != vs[r.Offset]:
		tr.badf("%s/%d@%d: value %q, produced %q", r.Topic, r.Partition, r.Offset, r.Value, vs[r.Offset])
	case !tr.seen[r.Partition][r.Offset]:
		tr.seen[r.Partition][r.Offset] = true
		tr.unique++
	}
}

func (tr *groupsTracker) badf(format string, args ...any) {
	if len(tr.bad) < 10 {
		tr.bad = append(tr.bad, fmt.Sprintf(format, args...))
	}
}

// counts returns (total processed, unique processed).
func (tr *groupsTracker) counts() (int, int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.total, tr.unique
}

// missing describes the first unprocessed offsets of each partition.
func (tr *groupsTracker) missing() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var parts []string
	ps := make([]int32, 0, len(tr.seen))
	for p := range tr.seen {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	for _, p := range ps {
		n, first := 0, int64(-1)
		for o, ok := range tr.seen[p] {
			if !ok {
				if first < 0 {
					first = int64(o)
				}
				n++
			}
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("p%d: %d missing from %d", p, n, first))
		}
	}
	return strings.Join(parts, "; ")
}

// check fails the test on bad records or any unprocessed offset.
func (tr *groupsTracker) check(t *testing.T) {
	t.Helper()
	total, unique := tr.counts()
	tr.mu.Lock()
	bad := slices.Clone(tr.bad)
	tr.mu.Unlock()
	for _, b := range bad {
		t.Errorf("bad record: %s", b)
	}
	if want := tr.wanted(); unique != want {
		t.Errorf("processed %d distinct records of %d (%s)", unique, want, tr.missing())
	}
	t.Logf("processed %d records, %d distinct (%d duplicates)", total, unique, total-unique)
}

// groupsMember is one franz-go group consumer run by its own goroutine: it
// polls only while the tracker's total is below gate, processes and marks
// what it polled, and lets rebalances happen between polls
// (BlockRebalanceOnPoll), so a revoke always commits what was processed.
type groupsMember struct {
	name   string
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	errs        []string
	tolerate    []string // errors containing one of these are expected (failover)
	ignored     int
	lastIgnored string
}

func groupsStartMember(t *testing.T, name string, seeds []string, group, topic string, tr *groupsTracker, gate *atomic.Int64, opts ...kgo.Opt) *groupsMember {
	return groupsStartMemberTolerating(t, name, nil, seeds, group, topic, tr, gate, opts...)
}

// groupsStartMemberTolerating is groupsStartMember for a member whose
// errors containing one of tolerate are expected.
func groupsStartMemberTolerating(t *testing.T, name string, tolerate []string, seeds []string, group, topic string, tr *groupsTracker, gate *atomic.Int64, opts ...kgo.Opt) *groupsMember {
	t.Helper()
	base := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ClientID(name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(200 * time.Millisecond),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(200 * time.Millisecond),
		kgo.RetryTimeout(40 * time.Second),
		kgo.RequestTimeoutOverhead(5 * time.Second),
		kgo.MetadataMinAge(100 * time.Millisecond),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatalf("member %s: kgo.NewClient: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	m := &groupsMember{name: name, cl: cl, cancel: cancel, done: make(chan struct{}), tolerate: tolerate}
	go m.run(ctx, tr, gate)
	t.Cleanup(m.stop)
	return m
}

func (m *groupsMember) errorf(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	for _, s := range m.tolerate {
		if strings.Contains(msg, s) {
			m.ignored++
			m.lastIgnored = msg
			return
		}
	}
	if len(m.errs) < 10 {
		m.errs = append(m.errs, fmt.Sprintf(format, args...))
	}
}

func (m *groupsMember) run(ctx context.Context, tr *groupsTracker, gate *atomic.Int64) {
	defer close(m.done)
	defer m.cl.Close() // dynamic members leave the group here
	for ctx.Err() == nil {
		if total, _ := tr.counts(); int64(total) >= gate.Load() {
			select { // poll interval of a gate bounded by ctx
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		fs := m.cl.PollRecords(ctx, 1000)
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, kgo.ErrClientClosed) {
				m.errorf("%s: fetch %s/%d: %v", m.name, tp, p, err)
			}
		})
		rs := fs.Records()
		for _, r := range rs {
			tr.record(r)
		}
		m.cl.MarkCommitRecords(rs...)
		m.cl.AllowRebalance()
	}
	m.cl.AllowRebalance()
	cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := m.cl.CommitMarkedOffsets(cctx); err != nil {
		m.errorf("%s: final commit: %v", m.name, err)
	}
}

// stop ends the member (final commit, then close) and waits for it.
func (m *groupsMember) stop() {
	m.cancel()
	<-m.done
}

func (m *groupsMember) check(t *testing.T) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.errs {
		t.Errorf("member %s", e)
	}
	if m.ignored > 0 {
		t.Logf("member %s: %d expected errors, the last: %s", m.name, m.ignored, m.lastIgnored)
	}
}

// groupsDescribe describes group through cl.
func groupsDescribe(cl *kgo.Client, group string) (kadm.DescribedGroup, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gs, err := kadm.NewClient(cl).DescribeGroups(ctx, group)
	if err != nil {
		return kadm.DescribedGroup{}, err
	}
	g, ok := gs[group]
	if !ok {
		return kadm.DescribedGroup{}, fmt.Errorf("group %s not in DescribeGroups response", group)
	}
	if g.Err != nil {
		return g, fmt.Errorf("describe %s: %w", group, g.Err)
	}
	return g, nil
}

// groupsWaitStable waits until group is Stable with exactly members
// members, each assigned at least one partition of topic.
func groupsWaitStable(t *testing.T, cl *kgo.Client, group, topic string, members int, d time.Duration) {
	t.Helper()
	clientEventually(t, d, fmt.Sprintf("group %s stable with %d members", group, members), func() (bool, string) {
		g, err := groupsDescribe(cl, group)
		if err != nil {
			return false, err.Error()
		}
		var assigned []string
		ok := g.State == "Stable" && len(g.Members) == members
		for _, m := range g.Members {
			n := 0
			if ca, isConsumer := m.Assigned.AsConsumer(); isConsumer {
				for _, tp := range ca.Topics {
					if tp.Topic == topic {
						n += len(tp.Partitions)
					}
				}
			}
			if n == 0 {
				ok = false
			}
			assigned = append(assigned, fmt.Sprintf("%s:%d", m.ClientID, n))
		}
		return ok, fmt.Sprintf("state %s, members %v", g.State, assigned)
	})
}

// groupsCommitted returns the committed offset of every partition of topic
// in group (−1 where none), failing on errors.
func groupsCommitted(t *testing.T, cl *kgo.Client, group, topic string, parts int32) (map[int32]int64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for p := int32(0); p < parts; p++ {
		o, ok := got.Lookup(topic, p)
		switch {
		case !ok:
			out[p] = -1
		case o.Err != nil:
			return nil, fmt.Errorf("%s/%d: %w", topic, p, o.Err)
		default:
			out[p] = o.At
		}
	}
	return out, nil
}

// groupsWantCommitted waits (bounded) until group's committed offsets of
// topic equal ends, and fails with the last difference otherwise.
func groupsWantCommitted(t *testing.T, cl *kgo.Client, group, topic string, ends map[int32]int64, d time.Duration) {
	t.Helper()
	clientEventually(t, d, fmt.Sprintf("group %s to have committed the high watermarks of %s", group, topic), func() (bool, string) {
		got, err := groupsCommitted(t, cl, group, topic, int32(len(ends)))
		if err != nil {
			return false, err.Error()
		}
		for p, end := range ends {
			if got[p] != end {
				return false, fmt.Sprintf("committed %v, high watermarks %v", got, ends)
			}
		}
		return true, ""
	})
}

func groupsEnds(want map[int32][]string) map[int32]int64 {
	ends := map[int32]int64{}
	for p, vs := range want {
		ends[p] = int64(len(vs))
	}
	return ends
}

func TestGroupsFranzGoMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: 200,000 records consumed three times while members join and leave")
	}
	b := groupsStart(t)
	const topic, parts, n = "groups-members", 6, 200_000
	admin := clientKgo(t, b.Addr)
	clientCreateTopic(t, admin, topic, parts, nil)
	want := groupsProduce(t, b.Addr, topic, parts, n)
	ends := groupsEnds(want)
	if hw := clientEndOffsets(t, admin, topic); fmt.Sprint(hw) != fmt.Sprint(ends) {
		t.Fatalf("high watermarks %v after producing %v", hw, ends)
	}

	cases := []struct {
		name     string
		balancer kgo.GroupBalancer
		static   bool
	}{
		{"range", kgo.RangeBalancer(), false},
		{"cooperative-sticky", kgo.CooperativeStickyBalancer(), false},
		{"static-range", kgo.RangeBalancer(), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			group := "g-" + tc.name
			tr := groupsNewTracker(topic, want)
			var gate atomic.Int64
			opts := func(i int) []kgo.Opt {
				o := []kgo.Opt{kgo.Balancers(tc.balancer), kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond)}
				if tc.static {
					o = append(o, kgo.InstanceID(fmt.Sprintf("%s-instance-%d", group, i)))
				}
				return o
			}
			seeds := []string{b.Addr}
			waitTotal := func(limit int64) {
				clientEventually(t, 60*time.Second, fmt.Sprintf("%d records processed", limit), func() (bool, string) {
					total, unique := tr.counts()
					return int64(total) >= limit, fmt.Sprintf("total %d, distinct %d", total, unique)
				})
			}

			// One member reads the first 40,000.
			gate.Store(40_000)
			m1 := groupsStartMember(t, "m1", seeds, group, topic, tr, &gate, opts(1)...)
			waitTotal(40_000)
			// Two more join; all three read up to 100,000.
			m2 := groupsStartMember(t, "m2", seeds, group, topic, tr, &gate, opts(2)...)
			m3 := groupsStartMember(t, "m3", seeds, group, topic, tr, &gate, opts(3)...)
			groupsWaitStable(t, admin, group, topic, 3, 30*time.Second)
			gate.Store(100_000)
			waitTotal(100_000)
			// One leaves (a static member only by session timeout); the
			// other two finish.
			m2.stop()
			gate.Store(1 << 40)
			if !tc.static {
				groupsWaitStable(t, admin, group, topic, 2, 30*time.Second)
			}
			clientEventually(t, 90*time.Second, "every record processed", func() (bool, string) {
				total, unique := tr.counts()
				return unique == n, fmt.Sprintf("total %d, distinct %d of %d (%s)", total, unique, n, tr.missing())
			})
			if tc.static {
				groupsWaitStable(t, admin, group, topic, 2, 30*time.Second)
			}
			m1.stop()
			m3.stop()
			for _, m := range []*groupsMember{m1, m2, m3} {
				m.check(t)
			}
			tr.check(t)
			groupsWantCommitted(t, admin, group, topic, ends, 10*time.Second)
			g, err := groupsDescribe(admin, group)
			if err != nil {
				t.Fatalf("describe after all members stopped: %v", err)
			}
			if !tc.static && (g.State != "Empty" || len(g.Members) != 0) {
				t.Errorf("group %s after every member left: state %s, %d members; want Empty, 0", group, g.State, len(g.Members))
			}
		})
	}
}

// groupsSmallTopic creates topic with parts partitions and produces n
// records to it; it returns the values by partition and offset.
func groupsSmallTopic(t *testing.T, addr, topic string, parts int32, n int) map[int32][]string {
	t.Helper()
	clientCreateTopic(t, clientKgo(t, addr), topic, parts, nil)
	return groupsProduce(t, addr, topic, parts, n)
}

func TestGroupsKcatBalanced(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if kcat, err = exec.LookPath("kafkacat"); err != nil {
			t.Skip("kcat not on PATH (make test installs Debian's kcat; CI must not skip this)")
		}
	}
	b := groupsStart(t)
	const topic, group, parts, n = "groups-kcat", "g-kcat", 3, 3000
	want := groupsSmallTopic(t, b.Addr, topic, parts, n)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, "-G", group, "-b", b.Addr, "-o", "beginning", "-e", "-q",
		"-X", "auto.offset.reset=earliest", topic)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat -G did not finish: %v (consumed %d lines)\nstderr:\n%s", err, bytes.Count(out.Bytes(), []byte("\n")), errb.String())
	}
	got := map[string]int{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		got[sc.Text()]++
	}
	missing := 0
	for _, vs := range want {
		for _, v := range vs {
			if got[v] == 0 {
				if missing < 3 {
					t.Errorf("kcat -G did not print %q", v)
				}
				missing++
			}
			delete(got, v)
		}
	}
	if missing > 0 || len(got) > 0 {
		t.Errorf("kcat -G: %d records missing, %d unexpected lines\nstderr:\n%s", missing, len(got), errb.String())
	}
	groupsWantCommitted(t, clientKgo(t, b.Addr), group, topic, groupsEnds(want), 15*time.Second)
}

// groupsSaramaHandler counts claimed messages into a tracker and marks them.
type groupsSaramaHandler struct {
	tr *groupsTracker
}

func (h groupsSaramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h groupsSaramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h groupsSaramaHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		h.tr.record(&kgo.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Value: m.Value})
		s.MarkMessage(m, "")
	}
	return nil
}

func TestGroupsSarama(t *testing.T) {
	b := groupsStart(t)
	const topic, group, parts, n = "groups-sarama", "g-sarama", 3, 3000
	want := groupsSmallTopic(t, b.Addr, topic, parts, n)
	tr := groupsNewTracker(topic, want)

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.ClientID = "strata-groups-sarama"
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.AutoCommit.Enable = true
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	cfg.Consumer.MaxWaitTime = 200 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	cfg.Consumer.Group.Session.Timeout = 10 * time.Second
	cfg.Metadata.Retry.Max = 10
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	cg, err := sarama.NewConsumerGroup([]string{b.Addr}, group, cfg)
	if err != nil {
		t.Fatalf("sarama.NewConsumerGroup: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < 20 && ctx.Err() == nil; i++ { // Consume returns at every rebalance
			if err = cg.Consume(ctx, []string{topic}, groupsSaramaHandler{tr}); err != nil {
				break
			}
		}
		done <- err
	}()
	var cgErrs []string
	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		for e := range cg.Errors() { // closed by cg.Close
			cgErrs = append(cgErrs, e.Error())
		}
	}()
	clientEventually(t, 45*time.Second, "sarama consumer group to process every record", func() (bool, string) {
		total, unique := tr.counts()
		return unique == n, fmt.Sprintf("total %d, distinct %d of %d", total, unique, n)
	})
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("sarama Consume: %v", err)
	}
	if err := cg.Close(); err != nil { // commits what was marked
		t.Errorf("sarama consumer group Close: %v", err)
	}
	<-errsDone
	for _, e := range cgErrs {
		t.Errorf("sarama consumer group error: %s", e)
	}
	tr.check(t)
	groupsWantCommitted(t, clientKgo(t, b.Addr), group, topic, groupsEnds(want), 10*time.Second)
}

func TestGroupsKafkaGo(t *testing.T) {
	b := groupsStart(t)
	const topic, group, parts, n = "groups-kafkago", "g-kafkago", 3, 3000
	want := groupsSmallTopic(t, b.Addr, topic, parts, n)
	tr := groupsNewTracker(topic, want)

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           []string{b.Addr},
		GroupID:           group,
		Topic:             topic,
		StartOffset:       kafka.FirstOffset,
		MaxWait:           200 * time.Millisecond,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		CommitInterval:    0, // CommitMessages commits synchronously
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 2*n; i++ { // bounded: at most every record twice
		if _, unique := tr.counts(); unique == n {
			break
		}
		m, err := r.FetchMessage(ctx)
		if err != nil {
			total, unique := tr.counts()
			t.Fatalf("kafka-go FetchMessage after %d records (%d distinct of %d): %v", total, unique, n, err)
		}
		tr.record(&kgo.Record{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset, Value: m.Value})
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatalf("kafka-go CommitMessages %s/%d@%d: %v", m.Topic, m.Partition, m.Offset, err)
		}
	}
	tr.check(t)
	if err := r.Close(); err != nil {
		t.Errorf("kafka-go Reader Close: %v", err)
	}
	groupsWantCommitted(t, clientKgo(t, b.Addr), group, topic, groupsEnds(want), 10*time.Second)
}

// groupsConsumeNew runs one franz-go member of group until it has processed
// exactly the records of want (by partition and offset), then commits and
// leaves. Any other record (an old one: offsets were not resumed) fails.
func groupsConsumeNew(t *testing.T, addr, group, topic string, want map[int32]map[int64]string) {
	t.Helper()
	cl := clientKgo(t, addr,
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(), kgo.FetchMaxWait(200*time.Millisecond),
		kgo.SessionTimeout(6*time.Second), kgo.RetryTimeout(30*time.Second),
	)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	n := 0
	for _, vs := range want {
		n += len(vs)
	}
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("group %s: %d of %d new records after 40 s", group, got, n)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Errorf("group %s: fetch %s/%d: %v", group, tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			v, ok := want[r.Partition][r.Offset]
			if !ok || v != string(r.Value) {
				t.Fatalf("group %s: got %s/%d@%d %q; committed offsets were not resumed (want only %d new records)", group, r.Topic, r.Partition, r.Offset, r.Value, n)
			}
			delete(want[r.Partition], r.Offset)
			got++
		})
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("group %s: commit: %v", group, err)
	}
}

func TestGroupsOffsetsSurviveRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: restarts and kills the broker")
	}
	b := groupsStart(t)
	const topic, group, parts = "groups-restart", "g-restart", 3
	want := groupsSmallTopic(t, b.Addr, topic, parts, 900)
	old := map[int32]map[int64]string{}
	for p, vs := range want {
		old[p] = map[int64]string{}
		for o, v := range vs {
			old[p][int64(o)] = v
		}
	}
	groupsConsumeNew(t, b.Addr, group, topic, old)
	admin := clientKgo(t, b.Addr)
	ends := groupsEnds(want)
	groupsWantCommitted(t, admin, group, topic, ends, 10*time.Second)

	for i, how := range []string{"clean restart", "kill -9"} {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		var err error
		if how == "kill -9" {
			if err = b.Kill(); err == nil {
				err = b.Restart(ctx)
			}
		} else {
			err = b.Restart(ctx)
		}
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		admin = clientKgo(t, b.Addr)
		groupsWantCommitted(t, admin, group, topic, ends, 20*time.Second)
		vals := make([]string, 30)
		for j := range vals {
			vals[j] = fmt.Sprintf("after-%d-%d", i, j)
		}
		more := groupsProduceMore(t, b.Addr, topic, parts, vals)
		for p, m := range more {
			for o := range m {
				ends[p] = max(ends[p], o+1)
			}
		}
		groupsConsumeNew(t, b.Addr, group, topic, more)
		groupsWantCommitted(t, admin, group, topic, ends, 10*time.Second)
	}
}

// groupsJoinReq builds a consumer JoinGroup request at version v.
func groupsJoinReq(v int16, group, member string, instance *string, sessionMs int32, protocols ...string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = v
	req.Group, req.MemberID, req.InstanceID = group, member, instance
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = sessionMs, 10_000
	req.ProtocolType = "consumer"
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"groups-bad"}
	for _, name := range protocols {
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name, p.Metadata = name, meta.AppendTo(nil)
		req.Protocols = append(req.Protocols, p)
	}
	return req
}

// groupsJoin joins group as a new member at v ≥ 4 (MEMBER_ID_REQUIRED then
// a rejoin with the given id) and returns the successful response.
func groupsJoin(t *testing.T, addr string, v int16, group string, sessionMs int32, protocols ...string) *kmsg.JoinGroupResponse {
	t.Helper()
	resp := rawReq[*kmsg.JoinGroupResponse](t, addr, groupsJoinReq(v, group, "", nil, sessionMs, protocols...))
	if v >= 4 {
		apiWantCode(t, fmt.Sprintf("JoinGroup v%d %s without member id", v, group), resp.ErrorCode, kerr.MemberIDRequired)
		if resp.MemberID == "" {
			t.Fatalf("JoinGroup v%d %s: MEMBER_ID_REQUIRED without a member id", v, group)
		}
		resp = rawReq[*kmsg.JoinGroupResponse](t, addr, groupsJoinReq(v, group, resp.MemberID, nil, sessionMs, protocols...))
	}
	apiWantCode(t, fmt.Sprintf("JoinGroup v%d %s", v, group), resp.ErrorCode, nil)
	if resp.MemberID == "" || resp.Generation < 1 {
		t.Fatalf("JoinGroup v%d %s: member %q generation %d", v, group, resp.MemberID, resp.Generation)
	}
	return resp
}

func TestGroupsBadInput(t *testing.T) {
	b := groupsStart(t)
	addr := b.Addr
	clientCreateTopic(t, clientKgo(t, addr), "groups-bad", 2, nil)

	// A member that will stop heartbeating; its session (6 s) expires while
	// the other checks run.
	expiring := groupsJoin(t, addr, 5, "g-expire", 6000, "range")
	expiredAt := time.Now().Add(6 * time.Second)

	// JoinGroup v4 without member id: MEMBER_ID_REQUIRED; v2: joined at once.
	a := groupsJoin(t, addr, 5, "g-bad", 10_000, "range", "roundrobin")
	if a.LeaderID != a.MemberID {
		t.Errorf("first member %q of g-bad: leader %q, want itself", a.MemberID, a.LeaderID)
	}
	if a.Protocol == nil || *a.Protocol != "range" {
		t.Errorf("g-bad protocol %v, want range (first common protocol of the only member)", a.Protocol)
	}
	v2 := groupsJoin(t, addr, 2, "g-v2", 10_000, "range")
	t.Logf("JoinGroup v2 answered member %q generation %d", v2.MemberID, v2.Generation)

	// Leader's SyncGroup completes generation a.Generation.
	syncReq := kmsg.NewPtrSyncGroupRequest()
	syncReq.Version = 3
	syncReq.Group, syncReq.MemberID, syncReq.Generation = "g-bad", a.MemberID, a.Generation
	assign := kmsg.NewConsumerMemberAssignment()
	at := kmsg.NewConsumerMemberAssignmentTopic()
	at.Topic, at.Partitions = "groups-bad", []int32{0, 1}
	assign.Topics = append(assign.Topics, at)
	sa := kmsg.NewSyncGroupRequestGroupAssignment()
	sa.MemberID, sa.MemberAssignment = a.MemberID, assign.AppendTo(nil)
	syncReq.GroupAssignment = append(syncReq.GroupAssignment, sa)
	sresp := rawReq[*kmsg.SyncGroupResponse](t, addr, syncReq)
	apiWantCode(t, "SyncGroup of the leader", sresp.ErrorCode, nil)
	if !bytes.Equal(sresp.MemberAssignment, sa.MemberAssignment) {
		t.Errorf("SyncGroup assignment %x, leader sent %x", sresp.MemberAssignment, sa.MemberAssignment)
	}

	// No common protocol with the group's members.
	inc := rawReq[*kmsg.JoinGroupResponse](t, addr, groupsJoinReq(2, "g-bad", "", nil, 10_000, "sticky-only"))
	apiWantCode(t, "JoinGroup with no protocol in common", inc.ErrorCode, kerr.InconsistentGroupProtocol)

	// SyncGroup with a stale generation.
	stale := *syncReq
	stale.Generation = a.Generation - 1
	stale.GroupAssignment = nil
	apiWantCode(t, "SyncGroup with a stale generation", rawReq[*kmsg.SyncGroupResponse](t, addr, &stale).ErrorCode, kerr.IllegalGeneration)

	// OffsetCommit from an unknown member.
	commit := func(member string, gen int32, offset int64) int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version = 7
		req.Group, req.MemberID, req.Generation = "g-bad", member, gen
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = "groups-bad"
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = 0, offset, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp := rawReq[*kmsg.OffsetCommitResponse](t, addr, req)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("OffsetCommit response for one partition: %+v", resp.Topics)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	apiWantCode(t, "OffsetCommit from an unknown member", commit("no-such-member", a.Generation, 5), kerr.UnknownMemberID)

	// The group carries on: heartbeat, commit and fetch of the real member.
	hb := func(group, member string, gen int32) int16 {
		req := kmsg.NewPtrHeartbeatRequest()
		req.Version = 3
		req.Group, req.MemberID, req.Generation = group, member, gen
		return rawReq[*kmsg.HeartbeatResponse](t, addr, req).ErrorCode
	}
	apiWantCode(t, "Heartbeat of the leader after the bad requests", hb("g-bad", a.MemberID, a.Generation), nil)
	apiWantCode(t, "OffsetCommit of the leader", commit(a.MemberID, a.Generation, 7), nil)
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.Version = 5
	fetch.Group = "g-bad"
	ft := kmsg.NewOffsetFetchRequestTopic()
	ft.Topic, ft.Partitions = "groups-bad", []int32{0, 1}
	fetch.Topics = append(fetch.Topics, ft)
	fresp := rawReq[*kmsg.OffsetFetchResponse](t, addr, fetch)
	apiWantCode(t, "OffsetFetch", fresp.ErrorCode, nil)
	gotOffsets := map[int32]int64{}
	for _, rt := range fresp.Topics {
		for _, rp := range rt.Partitions {
			apiWantCode(t, fmt.Sprintf("OffsetFetch %s/%d", rt.Topic, rp.Partition), rp.ErrorCode, nil)
			gotOffsets[rp.Partition] = rp.Offset
		}
	}
	if gotOffsets[0] != 7 || gotOffsets[1] != -1 || len(gotOffsets) != 2 {
		t.Errorf("OffsetFetch g-bad: %v, want map[0:7 1:-1]", gotOffsets)
	}
	// An unknown group: offset −1, no error.
	fetch.Group = "g-never-seen"
	fresp = rawReq[*kmsg.OffsetFetchResponse](t, addr, fetch)
	apiWantCode(t, "OffsetFetch of an unknown group", fresp.ErrorCode, nil)
	for _, rt := range fresp.Topics {
		for _, rp := range rt.Partitions {
			if rp.ErrorCode != 0 || rp.Offset != -1 {
				t.Errorf("OffsetFetch unknown group %s/%d: offset %d %s, want -1 NONE", rt.Topic, rp.Partition, rp.Offset, apiCode(rp.ErrorCode))
			}
		}
	}

	// Heartbeat after the session expired.
	if testing.Short() {
		return
	}
	admin := clientKgo(t, addr)
	clientEventually(t, time.Until(expiredAt)+15*time.Second, "g-expire's member to expire", func() (bool, string) {
		g, err := groupsDescribe(admin, "g-expire")
		if err != nil {
			return false, err.Error()
		}
		return len(g.Members) == 0, fmt.Sprintf("state %s, %d members", g.State, len(g.Members))
	})
	apiWantCode(t, "Heartbeat after the session expired", hb("g-expire", expiring.MemberID, expiring.Generation), kerr.UnknownMemberID)
	// And the group can be joined again.
	again := groupsJoin(t, addr, 5, "g-expire", 6000, "range")
	if again.Generation <= expiring.Generation {
		t.Errorf("g-expire rejoined at generation %d, not after %d", again.Generation, expiring.Generation)
	}
}
