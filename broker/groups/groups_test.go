package groups

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stratabroker/strata/coordinator"
)

// fakeStore is an in-memory reference model of Store.
type fakeStore struct {
	mu      sync.Mutex
	broker  int32
	owners  map[string]Owner
	offsets map[string]map[[2]any]Offset
	states  map[string][]byte
	rev     int64
	lost    chan struct{}
}

func newFakeStore(broker int32) *fakeStore {
	return &fakeStore{broker: broker, owners: map[string]Owner{}, offsets: map[string]map[[2]any]Offset{}, states: map[string][]byte{}, lost: make(chan struct{})}
}

var _ Store = (*fakeStore)(nil)

func (f *fakeStore) GroupOwnerOf(_ context.Context, g string) (Owner, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.owners[g]
	return o, ok, nil
}

func (f *fakeStore) AcquireGroup(_ context.Context, g string) (Owner, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, ok := f.owners[g]; ok {
		if o.BrokerID == f.broker {
			return o, nil
		}
		return o, fmt.Errorf("acquire %s: %w", g, coordinator.ErrConflict)
	}
	f.rev++
	o := Owner{BrokerID: f.broker, Revision: f.rev}
	f.owners[g] = o
	return o, nil
}

func (f *fakeStore) check(g string, own Owner) error {
	if f.owners[g] != own {
		return fmt.Errorf("group %s: %w", g, coordinator.ErrConflict)
	}
	return nil
}

func (f *fakeStore) ReleaseGroup(_ context.Context, g string, own Owner) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(g, own); err != nil {
		return err
	}
	delete(f.owners, g)
	return nil
}

func (f *fakeStore) CommitOffsets(_ context.Context, g string, own Owner, offs []Offset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(g, own); err != nil {
		return err
	}
	if f.offsets[g] == nil {
		f.offsets[g] = map[[2]any]Offset{}
	}
	for _, o := range offs {
		f.offsets[g][[2]any{o.Topic, o.Partition}] = o
	}
	return nil
}

func (f *fakeStore) FetchOffsets(_ context.Context, g string, topics []string) ([]Offset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []Offset{}
	for _, o := range f.offsets[g] {
		if topics == nil || contains(topics, o.Topic) {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out, nil
}

func (f *fakeStore) DeleteOffsets(_ context.Context, g string, own Owner, parts map[string][]int32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(g, own); err != nil {
		return err
	}
	for t, ps := range parts {
		for _, p := range ps {
			delete(f.offsets[g], [2]any{t, p})
		}
	}
	return nil
}

func (f *fakeStore) DeleteGroup(_ context.Context, g string, own Owner) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(g, own); err != nil {
		return err
	}
	delete(f.offsets, g)
	delete(f.states, g)
	return nil
}

func (f *fakeStore) SaveGroupState(_ context.Context, g string, own Owner, state []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(g, own); err != nil {
		return err
	}
	f.states[g] = append([]byte(nil), state...)
	return nil
}

func (f *fakeStore) DeleteGroupState(_ context.Context, g string, own Owner) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(g, own); err != nil {
		return err
	}
	delete(f.states, g)
	return nil
}

func (f *fakeStore) LoadGroupState(_ context.Context, g string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.states[g], nil
}

func (f *fakeStore) Groups(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for g, offs := range f.offsets {
		if len(offs) > 0 || f.states[g] != nil {
			out = append(out, g)
		}
	}
	for g := range f.states {
		if len(f.offsets[g]) == 0 {
			out = append(out, g)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeStore) ExpireOffsets(_ context.Context, g string, own Owner, cutoff int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(g, own); err != nil {
		return 0, err
	}
	n := 0
	for k, o := range f.offsets[g] {
		if o.CommitTimestamp < cutoff {
			delete(f.offsets[g], k)
			n++
		}
	}
	return n, nil
}

func (f *fakeStore) Brokers(context.Context) ([]coordinator.BrokerInfo, error) {
	return []coordinator.BrokerInfo{{ID: f.broker}}, nil
}

func (f *fakeStore) RegistrationLost() <-chan struct{} { return f.lost }

// clock is an injected, manually advanced clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestManager(t *testing.T, delay time.Duration) (*Manager, *fakeStore, *clock) {
	t.Helper()
	st := newFakeStore(1)
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	m := New(st, Config{BrokerID: 1, InitialRebalanceDelay: delay, Now: clk.Now})
	t.Cleanup(func() { m.Close() })
	return m, st, clk
}

func joinReq(v int16, group, member string, instance *string, protocols ...string) *kmsg.JoinGroupRequest {
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version = v
	r.Group, r.MemberID, r.InstanceID = group, member, instance
	r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = 10_000, 30_000
	r.ProtocolType = "consumer"
	for _, p := range protocols {
		jp := kmsg.NewJoinGroupRequestProtocol()
		jp.Name, jp.Metadata = p, []byte("md-"+p)
		r.Protocols = append(r.Protocols, jp)
	}
	return r
}

// asyncJoin runs JoinGroup in a goroutine; the result arrives on the channel.
func asyncJoin(m *Manager, req *kmsg.JoinGroupRequest) chan *kmsg.JoinGroupResponse {
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { ch <- m.JoinGroup(context.Background(), req, Client{ID: "c", Host: "/127.0.0.1"}) }()
	return ch
}

func recv[T any](t *testing.T, ch chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no response within 5s")
		panic("unreachable")
	}
}

func pending[T any](t *testing.T, ch chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected response %+v", v)
	case <-time.After(20 * time.Millisecond):
	}
}

func wantCode(t *testing.T, what string, got int16, want *kerr.Error) {
	t.Helper()
	w := int16(0)
	if want != nil {
		w = want.Code
	}
	if got != w {
		t.Fatalf("%s: code %d (%v), want %d (%v)", what, got, kerr.ErrorForCode(got), w, want)
	}
}

// memberID does the v4+ MEMBER_ID_REQUIRED round and returns the id.
func memberID(t *testing.T, m *Manager, group string) string {
	t.Helper()
	r := m.JoinGroup(context.Background(), joinReq(5, group, "", nil, "range"), Client{ID: "c"})
	wantCode(t, "first join", r.ErrorCode, kerr.MemberIDRequired)
	if r.MemberID == "" {
		t.Fatal("MEMBER_ID_REQUIRED without a member id")
	}
	return r.MemberID
}

func TestMemberIDRequiredByVersion(t *testing.T) {
	m, _, _ := newTestManager(t, 0)
	for v := int16(0); v <= 9; v++ {
		group := fmt.Sprintf("g%d", v)
		r := recv(t, asyncJoin(m, joinReq(v, group, "", nil, "range")))
		if v >= 4 {
			wantCode(t, fmt.Sprintf("v%d", v), r.ErrorCode, kerr.MemberIDRequired)
			if r.MemberID == "" || r.Generation != -1 {
				t.Fatalf("v%d: member %q generation %d", v, r.MemberID, r.Generation)
			}
			r = recv(t, asyncJoin(m, joinReq(v, group, r.MemberID, nil, "range")))
		}
		wantCode(t, fmt.Sprintf("v%d join", v), r.ErrorCode, nil)
		if r.Generation != 1 || r.LeaderID != r.MemberID || len(r.Members) != 1 || r.Members[0].MemberID != r.MemberID || *r.Protocol != "range" {
			t.Fatalf("v%d: %+v", v, r)
		}
	}
}

func TestJoinSyncHeartbeatFlow(t *testing.T) {
	ctx := context.Background()
	m, _, clk := newTestManager(t, 0)
	a := memberID(t, m, "g")
	ra := recv(t, asyncJoin(m, joinReq(5, "g", a, nil, "range", "roundrobin")))
	if ra.Generation != 1 || ra.LeaderID != a || len(ra.Members) != 1 {
		t.Fatalf("first generation: %+v", ra)
	}
	sync := func(member string, gen int32, assign map[string]string) chan *kmsg.SyncGroupResponse {
		req := kmsg.NewPtrSyncGroupRequest()
		req.Version, req.Group, req.MemberID, req.Generation = 5, "g", member, gen
		for id, as := range assign {
			req.GroupAssignment = append(req.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: []byte(as)})
		}
		ch := make(chan *kmsg.SyncGroupResponse, 1)
		go func() { ch <- m.SyncGroup(ctx, req) }()
		return ch
	}
	hb := func(member string, gen int32) int16 {
		req := kmsg.NewPtrHeartbeatRequest()
		req.Version, req.Group, req.MemberID, req.Generation = 4, "g", member, gen
		return m.Heartbeat(ctx, req).ErrorCode
	}
	sr := recv(t, sync(a, 1, map[string]string{a: "A1"}))
	if sr.ErrorCode != 0 || string(sr.MemberAssignment) != "A1" || *sr.Protocol != "range" {
		t.Fatalf("leader sync: %+v", sr)
	}
	wantCode(t, "heartbeat stable", hb(a, 1), nil)
	wantCode(t, "heartbeat old generation", hb(a, 0), kerr.IllegalGeneration)
	wantCode(t, "heartbeat unknown member", hb("nobody", 1), kerr.UnknownMemberID)

	// A second member (only roundrobin in common with... both) triggers a rebalance.
	b := memberID(t, m, "g")
	jb := asyncJoin(m, joinReq(5, "g", b, nil, "roundrobin", "range"))
	pending(t, jb)
	wantCode(t, "heartbeat during rebalance", hb(a, 1), kerr.RebalanceInProgress)
	ja := asyncJoin(m, joinReq(5, "g", a, nil, "range", "roundrobin"))
	ra, rb := recv(t, ja), recv(t, jb)
	if ra.Generation != 2 || rb.Generation != 2 || ra.LeaderID != a || rb.LeaderID != a {
		t.Fatalf("generation 2: %+v / %+v", ra, rb)
	}
	// One vote each; ties go to the first member's order.
	if *ra.Protocol != "range" {
		t.Fatalf("protocol %q, want range", *ra.Protocol)
	}
	if len(ra.Members) != 2 || ra.Members[0].MemberID != a || ra.Members[1].MemberID != b || string(ra.Members[1].ProtocolMetadata) != "md-range" || len(rb.Members) != 0 {
		t.Fatalf("members: leader %+v follower %+v", ra.Members, rb.Members)
	}
	sb := sync(b, 2, nil)
	pending(t, sb)
	wantCode(t, "follower heartbeat while completing", hb(b, 2), nil)
	sa := sync(a, 2, map[string]string{a: "A2", b: "B2"})
	if r := recv(t, sa); string(r.MemberAssignment) != "A2" {
		t.Fatalf("leader assignment %q", r.MemberAssignment)
	}
	if r := recv(t, sb); string(r.MemberAssignment) != "B2" {
		t.Fatalf("follower assignment %q", r.MemberAssignment)
	}

	// b stops heartbeating: after its session it is gone and a must rejoin.
	clk.Add(5 * time.Second)
	wantCode(t, "a heartbeat", hb(a, 2), nil)
	clk.Add(6 * time.Second)
	m.Tick()
	wantCode(t, "a heartbeat after b expired", hb(a, 2), kerr.RebalanceInProgress)
	wantCode(t, "b heartbeat after expiry", hb(b, 2), kerr.UnknownMemberID)
	ra = recv(t, asyncJoin(m, joinReq(5, "g", a, nil, "range", "roundrobin")))
	if ra.Generation != 3 || len(ra.Members) != 1 || ra.Members[0].MemberID != a {
		t.Fatalf("generation 3: %+v", ra)
	}

	d := m.DescribeGroups(ctx, &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{"g", "nope"}})
	if d.Groups[0].State != "CompletingRebalance" || len(d.Groups[0].Members) != 1 || d.Groups[1].State != "Dead" || d.Groups[1].ErrorCode != 0 {
		t.Fatalf("describe: %+v", d.Groups)
	}
}

func TestRebalanceTimeoutRemovesLaggards(t *testing.T) {
	m, _, clk := newTestManager(t, 0)
	long := func(r *kmsg.JoinGroupRequest) *kmsg.JoinGroupRequest { r.SessionTimeoutMillis = 60_000; return r }
	a := memberID(t, m, "g")
	recv(t, asyncJoin(m, long(joinReq(5, "g", a, nil, "range"))))
	b := memberID(t, m, "g")
	jb := asyncJoin(m, long(joinReq(5, "g", b, nil, "range")))
	waitMembers(t, m, "g", 2)
	pending(t, jb)
	clk.Add(29 * time.Second)
	m.Tick()
	pending(t, jb)
	clk.Add(time.Second) // rebalance timeout 30s: a never rejoined
	m.Tick()
	rb := recv(t, jb)
	if rb.ErrorCode != 0 || rb.Generation != 2 || rb.LeaderID != b || len(rb.Members) != 1 {
		t.Fatalf("after timeout: %+v", rb)
	}
}

func TestInitialRebalanceDelay(t *testing.T) {
	m, _, clk := newTestManager(t, 3*time.Second)
	a := memberID(t, m, "g")
	ja := asyncJoin(m, joinReq(5, "g", a, nil, "range"))
	pending(t, ja)
	clk.Add(2 * time.Second)
	b := memberID(t, m, "g")
	jb := asyncJoin(m, joinReq(5, "g", b, nil, "range"))
	waitMembers(t, m, "g", 2)
	clk.Add(time.Second)
	m.Tick() // first delay over, but b joined: another delay
	pending(t, ja)
	clk.Add(3 * time.Second)
	m.Tick()
	ra, rb := recv(t, ja), recv(t, jb)
	if ra.Generation != 1 || rb.Generation != 1 || len(ra.Members) != 2 {
		t.Fatalf("%+v / %+v", ra, rb)
	}
}

func TestInconsistentProtocolAndSessionBounds(t *testing.T) {
	m, _, _ := newTestManager(t, 0)
	a := memberID(t, m, "g")
	recv(t, asyncJoin(m, joinReq(5, "g", a, nil, "range")))
	r := m.JoinGroup(context.Background(), joinReq(5, "g", "", nil, "sticky"), Client{})
	wantCode(t, "no common protocol", r.ErrorCode, kerr.InconsistentGroupProtocol)
	req := joinReq(5, "g", "", nil, "range")
	req.ProtocolType = "connect"
	wantCode(t, "other protocol type", m.JoinGroup(context.Background(), req, Client{}).ErrorCode, kerr.InconsistentGroupProtocol)
	wantCode(t, "no protocols on empty group", m.JoinGroup(context.Background(), joinReq(5, "h", "", nil), Client{}).ErrorCode, kerr.InconsistentGroupProtocol)
	for _, ms := range []int32{5999, 1_800_001} {
		req := joinReq(5, "g", "", nil, "range")
		req.SessionTimeoutMillis = ms
		wantCode(t, fmt.Sprint("session ", ms), m.JoinGroup(context.Background(), req, Client{}).ErrorCode, kerr.InvalidSessionTimeout)
	}
}

func TestStaticMemberReplacement(t *testing.T) {
	ctx := context.Background()
	m, _, _ := newTestManager(t, 0)
	f := memberID(t, m, "g")
	rf := recv(t, asyncJoin(m, joinReq(5, "g", f, nil, "range")))
	m.SyncGroup(ctx, &kmsg.SyncGroupRequest{Version: 5, Group: "g", MemberID: f, Generation: rf.Generation})
	inst := "i-1"
	jo := asyncJoin(m, joinReq(5, "g", "", &inst, "range")) // static: no MEMBER_ID_REQUIRED
	waitMembers(t, m, "g", 2)
	jf := asyncJoin(m, joinReq(5, "g", f, nil, "range"))
	ro, rf := recv(t, jo), recv(t, jf)
	wantCode(t, "static join", ro.ErrorCode, nil)
	if ro.Generation != 2 || rf.LeaderID != f || len(rf.Members) != 2 || *rf.Members[1].InstanceID != inst {
		t.Fatalf("generation 2: %+v / %+v", ro, rf)
	}
	old := ro.MemberID
	so := make(chan *kmsg.SyncGroupResponse, 1)
	go func() {
		so <- m.SyncGroup(ctx, &kmsg.SyncGroupRequest{Version: 5, Group: "g", MemberID: old, InstanceID: &inst, Generation: 2})
	}()
	m.SyncGroup(ctx, &kmsg.SyncGroupRequest{Version: 5, Group: "g", MemberID: f, Generation: 2,
		GroupAssignment: []kmsg.SyncGroupRequestGroupAssignment{{MemberID: old, MemberAssignment: []byte("O")}}})
	if r := recv(t, so); string(r.MemberAssignment) != "O" {
		t.Fatalf("static member assignment %q", r.MemberAssignment)
	}
	// The static member restarts: same instance id, no member id, same
	// metadata: a new member id in the same generation, no rebalance.
	r2 := m.JoinGroup(ctx, joinReq(5, "g", "", &inst, "range"), Client{})
	if r2.ErrorCode != 0 || r2.MemberID == old || r2.Generation != 2 || r2.LeaderID != f || len(r2.Members) != 0 {
		t.Fatalf("replacement: %+v", r2)
	}
	hb := &kmsg.HeartbeatRequest{Version: 4, Group: "g", MemberID: old, InstanceID: &inst, Generation: 2}
	wantCode(t, "old member id heartbeat", m.Heartbeat(ctx, hb).ErrorCode, kerr.FencedInstanceID)
	wantCode(t, "old member id join", m.JoinGroup(ctx, joinReq(5, "g", old, &inst, "range"), Client{}).ErrorCode, kerr.FencedInstanceID)
	hb.MemberID = r2.MemberID
	wantCode(t, "new member id heartbeat", m.Heartbeat(ctx, hb).ErrorCode, nil)
	d := m.DescribeGroups(ctx, &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{"g"}})
	if g := d.Groups[0]; g.State != "Stable" || len(g.Members) != 2 || g.Members[1].MemberID != r2.MemberID || string(g.Members[1].MemberAssignment) != "O" {
		t.Fatalf("after replacement: %+v", g)
	}
}

// waitMembers polls until the group has n members (a join goroutine got in).
func waitMembers(t *testing.T, m *Manager, group string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.mu.Lock()
		g := m.groups[group]
		m.mu.Unlock()
		got := -1
		if g != nil {
			g.mu.Lock()
			got = len(g.members)
			g.mu.Unlock()
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s has %d members, want %d", group, got, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestLeaveBatched(t *testing.T) {
	ctx := context.Background()
	m, _, _ := newTestManager(t, 0)
	a := memberID(t, m, "g")
	b := memberID(t, m, "g")
	ja, jb := asyncJoin(m, joinReq(5, "g", a, nil, "range")), asyncJoin(m, joinReq(5, "g", b, nil, "range"))
	recv(t, ja)
	recv(t, jb)
	req := &kmsg.LeaveGroupRequest{Version: 3, Group: "g", Members: []kmsg.LeaveGroupRequestMember{{MemberID: a}, {MemberID: "ghost"}, {MemberID: b}}}
	r := m.LeaveGroup(ctx, req)
	if r.ErrorCode != 0 || len(r.Members) != 3 || r.Members[0].ErrorCode != 0 || r.Members[1].ErrorCode != kerr.UnknownMemberID.Code || r.Members[2].ErrorCode != 0 {
		t.Fatalf("leave: %+v", r)
	}
	d := m.DescribeGroups(ctx, &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{"g"}})
	if d.Groups[0].State != "Empty" || len(d.Groups[0].Members) != 0 {
		t.Fatalf("after leave: %+v", d.Groups[0])
	}
	r = m.LeaveGroup(ctx, &kmsg.LeaveGroupRequest{Version: 1, Group: "g", MemberID: a})
	wantCode(t, "v1 leave of gone member", r.ErrorCode, kerr.UnknownMemberID)
}

func commitReq(group, member string, gen int32, offsets ...int64) *kmsg.OffsetCommitRequest {
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version, r.Group, r.MemberID, r.Generation = 8, group, member, gen
	t := kmsg.NewOffsetCommitRequestTopic()
	t.Topic = "t"
	for i, o := range offsets {
		md := fmt.Sprint("m", i)
		t.Partitions = append(t.Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: int32(i), Offset: o, LeaderEpoch: 7, Metadata: &md})
	}
	r.Topics = []kmsg.OffsetCommitRequestTopic{t}
	return r
}

func commitCode(t *testing.T, r *kmsg.OffsetCommitResponse) int16 {
	t.Helper()
	c := r.Topics[0].Partitions[0].ErrorCode
	for _, p := range r.Topics[0].Partitions {
		if p.ErrorCode != c {
			t.Fatalf("mixed codes %+v", r.Topics[0].Partitions)
		}
	}
	return c
}

func TestOffsetCommitValidationAndFetch(t *testing.T) {
	ctx := context.Background()
	m, st, _ := newTestManager(t, 0)
	// Unknown group: offset -1, no error, v1 and v8.
	f := m.OffsetFetch(ctx, &kmsg.OffsetFetchRequest{Version: 5, Group: "none", Topics: []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 1}}}})
	if f.ErrorCode != 0 || len(f.Topics) != 1 || len(f.Topics[0].Partitions) != 2 || f.Topics[0].Partitions[1].Offset != -1 || f.Topics[0].Partitions[1].ErrorCode != 0 {
		t.Fatalf("unknown group fetch: %+v", f)
	}
	f8 := m.OffsetFetch(ctx, &kmsg.OffsetFetchRequest{Version: 8, Groups: []kmsg.OffsetFetchRequestGroup{{Group: "none", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", Partitions: []int32{3}}}}, {Group: "none2"}}})
	if len(f8.Groups) != 2 || f8.Groups[0].Topics[0].Partitions[0].Offset != -1 || f8.Groups[0].ErrorCode != 0 || len(f8.Groups[1].Topics) != 0 {
		t.Fatalf("unknown group fetch v8: %+v", f8)
	}

	// Simple commit to a group without members.
	wantCode(t, "simple commit", commitCode(t, m.OffsetCommit(ctx, commitReq("s", "", -1, 10, 20))), nil)
	f = m.OffsetFetch(ctx, &kmsg.OffsetFetchRequest{Version: 7, Group: "s"}) // null topics: all
	if len(f.Topics) != 1 || len(f.Topics[0].Partitions) != 2 || f.Topics[0].Partitions[1].Offset != 20 || f.Topics[0].Partitions[1].LeaderEpoch != 7 || *f.Topics[0].Partitions[1].Metadata != "m1" {
		t.Fatalf("fetch after simple commit: %+v", f)
	}

	a := memberID(t, m, "g")
	ra := recv(t, asyncJoin(m, joinReq(5, "g", a, nil, "range")))
	wantCode(t, "commit while completing", commitCode(t, m.OffsetCommit(ctx, commitReq("g", a, 1, 5))), kerr.RebalanceInProgress)
	m.SyncGroup(ctx, &kmsg.SyncGroupRequest{Version: 5, Group: "g", MemberID: a, Generation: ra.Generation})
	wantCode(t, "member commit", commitCode(t, m.OffsetCommit(ctx, commitReq("g", a, 1, 5))), nil)
	wantCode(t, "old generation", commitCode(t, m.OffsetCommit(ctx, commitReq("g", a, 0, 5))), kerr.IllegalGeneration)
	wantCode(t, "unknown member", commitCode(t, m.OffsetCommit(ctx, commitReq("g", "x", 1, 5))), kerr.UnknownMemberID)
	wantCode(t, "simple commit to active group", commitCode(t, m.OffsetCommit(ctx, commitReq("g", "", -1, 5))), kerr.UnknownMemberID)
	wantCode(t, "unknown group with generation", commitCode(t, m.OffsetCommit(ctx, commitReq("fresh", "x", 3, 5))), kerr.UnknownMemberID)

	// OffsetDelete: subscription unreadable (not consumer metadata) → NON_EMPTY_GROUP.
	od := m.OffsetDelete(ctx, &kmsg.OffsetDeleteRequest{Group: "g", Topics: []kmsg.OffsetDeleteRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}})
	wantCode(t, "offset delete active group", od.ErrorCode, kerr.NonEmptyGroup)
	dg := m.DeleteGroups(ctx, &kmsg.DeleteGroupsRequest{Version: 2, Groups: []string{"g", "s", "nope"}})
	if dg.Groups[0].ErrorCode != kerr.NonEmptyGroup.Code || dg.Groups[1].ErrorCode != 0 || dg.Groups[2].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("delete groups: %+v", dg.Groups)
	}
	if offs, _ := st.FetchOffsets(ctx, "s", nil); len(offs) != 0 {
		t.Fatalf("offsets of deleted group: %+v", offs)
	}

	// Another broker took the group: the fenced write fails → NOT_COORDINATOR, group dropped.
	st.mu.Lock()
	st.owners["g"] = Owner{BrokerID: 2, Revision: 999}
	st.mu.Unlock()
	wantCode(t, "fenced commit", commitCode(t, m.OffsetCommit(ctx, commitReq("g", a, 1, 6))), kerr.NotCoordinator)
	hb := &kmsg.HeartbeatRequest{Version: 4, Group: "g", MemberID: a, Generation: 1}
	wantCode(t, "heartbeat after losing the group", m.Heartbeat(ctx, hb).ErrorCode, kerr.NotCoordinator)
}

func TestOffsetDeleteSubscribedAndExpiry(t *testing.T) {
	ctx := context.Background()
	m, st, clk := newTestManager(t, 0)
	a := memberID(t, m, "g")
	req := joinReq(5, "g", a, nil)
	sub := kmsg.ConsumerMemberMetadata{Version: 0, Topics: []string{"t"}}
	req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: sub.AppendTo(nil)}}
	ra := recv(t, asyncJoin(m, req))
	m.SyncGroup(ctx, &kmsg.SyncGroupRequest{Version: 5, Group: "g", MemberID: a, Generation: ra.Generation})
	c := commitReq("g", a, 1, 5)
	c.Topics = append(c.Topics, kmsg.OffsetCommitRequestTopic{Topic: "u", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 9}}})
	m.OffsetCommit(ctx, c)
	od := m.OffsetDelete(ctx, &kmsg.OffsetDeleteRequest{Group: "g", Topics: []kmsg.OffsetDeleteRequestTopic{
		{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
		{Topic: "u", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
	}})
	if od.ErrorCode != 0 || od.Topics[0].Partitions[0].ErrorCode != kerr.GroupSubscribedToTopic.Code || od.Topics[1].Partitions[0].ErrorCode != 0 {
		t.Fatalf("offset delete: %+v", od)
	}
	if offs, _ := st.FetchOffsets(ctx, "g", nil); len(offs) != 1 || offs[0].Topic != "t" {
		t.Fatalf("offsets after delete: %+v", offs)
	}
	m.LeaveGroup(ctx, &kmsg.LeaveGroupRequest{Version: 5, Group: "g", Members: []kmsg.LeaveGroupRequestMember{{MemberID: a}}})
	if s, _ := st.LoadGroupState(ctx, "g"); !strings.Contains(string(s), `"state":"Empty"`) {
		t.Fatalf("saved state after the last member left: %s", s)
	}
	clk.Add(7*24*time.Hour - time.Second)
	if n := m.ExpireOffsets(ctx); n != 0 {
		t.Fatalf("expired %d before retention", n)
	}
	clk.Add(time.Second)
	if n := m.ExpireOffsets(ctx); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	if s, _ := st.LoadGroupState(ctx, "g"); s != nil {
		t.Fatalf("saved state of the expired group: %s", s)
	}
	if gs, _ := st.Groups(ctx); len(gs) != 0 {
		t.Fatalf("groups after the whole group expired: %v", gs)
	}
}

func TestRegistrationLostDropsGroups(t *testing.T) {
	ctx := context.Background()
	m, st, _ := newTestManager(t, 0)
	a := memberID(t, m, "g")
	recv(t, asyncJoin(m, joinReq(5, "g", a, nil, "range")))
	b := memberID(t, m, "g")
	jb := asyncJoin(m, joinReq(5, "g", b, nil, "range")) // the group rebalances; b waits for a
	pending(t, jb)
	close(st.lost)
	m.Tick()
	wantCode(t, "waiting join after registration loss", recv(t, jb).ErrorCode, kerr.NotCoordinator)
	hb := &kmsg.HeartbeatRequest{Version: 4, Group: "g", MemberID: a, Generation: 1}
	wantCode(t, "heartbeat after registration loss", m.Heartbeat(ctx, hb).ErrorCode, kerr.CoordinatorNotAvailable)
}

// TestGroupResumesOnNewCoordinator: a Stable group's membership is saved;
// when another broker takes the group over it resumes it — same members,
// generation, leader and assignments — so heartbeats and commits go on
// without a rebalance, and a member that never comes back expires there.
func TestGroupResumesOnNewCoordinator(t *testing.T) {
	ctx := context.Background()
	m1, st, clk := newTestManager(t, 0)
	static := "instance-b"
	a := memberID(t, m1, "g")
	b := memberID(t, m1, "g")
	ja := asyncJoin(m1, joinReq(5, "g", a, nil, "range"))
	jb := asyncJoin(m1, joinReq(5, "g", b, &static, "range"))
	ra, rb := recv(t, ja), recv(t, jb)
	if ra.Generation != 1 || rb.Generation != 1 {
		t.Fatalf("generation: %+v / %+v", ra, rb)
	}
	leader := ra.LeaderID
	sync := func(m *Manager, member string, assign map[string]string) chan *kmsg.SyncGroupResponse {
		req := kmsg.NewPtrSyncGroupRequest()
		req.Version, req.Group, req.MemberID, req.Generation = 5, "g", member, 1
		for id, as := range assign {
			req.GroupAssignment = append(req.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: []byte(as)})
		}
		ch := make(chan *kmsg.SyncGroupResponse, 1)
		go func() { ch <- m.SyncGroup(ctx, req) }()
		return ch
	}
	other := a
	if leader == a {
		other = b
	}
	so := sync(m1, other, nil)
	sl := sync(m1, leader, map[string]string{a: "A1", b: "B1"})
	recv(t, sl)
	recv(t, so)
	st.mu.Lock()
	saved := st.states["g"] != nil
	st.mu.Unlock()
	if !saved {
		t.Fatal("a Stable group's state was not saved")
	}

	// Broker 1 dies (its claim lapses without a release); broker 2 takes over.
	st.mu.Lock()
	delete(st.owners, "g")
	st.broker = 2
	st.mu.Unlock()
	m2 := New(st, Config{BrokerID: 2, Now: clk.Now})
	t.Cleanup(func() { m2.Close() })
	hb := func(m *Manager, member string, gen int32) int16 {
		req := kmsg.NewPtrHeartbeatRequest()
		req.Version, req.Group, req.MemberID, req.Generation = 4, "g", member, gen
		return m.Heartbeat(ctx, req).ErrorCode
	}
	wantCode(t, "heartbeat of a on the new coordinator", hb(m2, a, 1), nil)
	wantCode(t, "heartbeat of b on the new coordinator", hb(m2, b, 1), nil)
	wantCode(t, "heartbeat with an old generation", hb(m2, a, 0), kerr.IllegalGeneration)
	wantCode(t, "commit on the new coordinator", commitCode(t, m2.OffsetCommit(ctx, commitReq("g", a, 1, 10))), nil)
	d := m2.DescribeGroups(ctx, &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{"g"}})
	dg := d.Groups[0]
	if dg.State != "Stable" || dg.Protocol != "range" || len(dg.Members) != 2 {
		t.Fatalf("resumed group: %+v", dg)
	}
	for _, mem := range dg.Members {
		want := map[string]string{a: "A1", b: "B1"}[mem.MemberID]
		if string(mem.MemberAssignment) != want {
			t.Fatalf("member %s assignment %q, want %q", mem.MemberID, mem.MemberAssignment, want)
		}
		if mem.MemberID == b && (mem.InstanceID == nil || *mem.InstanceID != static) {
			t.Fatalf("static member lost its instance id: %+v", mem)
		}
	}
	// The old coordinator's claim is fenced: its state is never written again.
	if err := st.SaveGroupState(ctx, "g", Owner{BrokerID: 1, Revision: 1}, []byte("stale")); err == nil {
		t.Fatal("the old owner could still save the group's state")
	}

	// b stops: its session (10 s) runs from the takeover; a rebalances alone.
	clk.Add(6 * time.Second)
	wantCode(t, "a heartbeat", hb(m2, a, 1), nil)
	clk.Add(6 * time.Second)
	m2.Tick()
	wantCode(t, "b after its session", hb(m2, b, 1), kerr.UnknownMemberID)
	wantCode(t, "a after b expired", hb(m2, a, 1), kerr.RebalanceInProgress)
	ra = recv(t, asyncJoin(m2, joinReq(5, "g", a, nil, "range")))
	if ra.Generation != 2 || len(ra.Members) != 1 || ra.Members[0].MemberID != a {
		t.Fatalf("generation after the takeover: %+v", ra)
	}
}
