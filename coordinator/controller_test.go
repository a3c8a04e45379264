package coordinator_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
)

const testLeaseTTL = 2 * time.Second

// registeredCtl opens a Store with a short lease and registers broker id on it.
func registeredCtl(t *testing.T, eps []string, id int32) *coordinator.Store {
	t.Helper()
	s := openStore(t, eps, func(c *coordinator.Config) { c.LeaseTTL = testLeaseTTL })
	if err := s.RegisterBroker(testCtx(t), coordinator.BrokerInfo{ID: id, Host: "127.0.0.1", Port: 9000 + id}); err != nil {
		t.Fatalf("register broker %d: %v", id, err)
	}
	return s
}

type campaignResult struct {
	id   int32
	lost <-chan struct{}
	err  error
}

// campaignAll starts one Campaign per store; results arrive on the channel.
func campaignAll(ctx context.Context, stores map[int32]*coordinator.Store) <-chan campaignResult {
	out := make(chan campaignResult, len(stores))
	for id, s := range stores {
		go func() {
			lost, err := s.Campaign(ctx, id)
			out <- campaignResult{id, lost, err}
		}()
	}
	return out
}

func controllerID(t *testing.T, s *coordinator.Store) int32 {
	t.Helper()
	id, err := s.ControllerID(testCtx(t))
	if err != nil {
		t.Fatalf("controller id: %v", err)
	}
	return id
}

func waitResult(t *testing.T, ch <-chan campaignResult, within time.Duration) campaignResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("campaign of broker %d: %v", r.id, r.err)
		}
		return r
	case <-time.After(within):
		t.Fatalf("no controller elected within %s", within)
	}
	return campaignResult{}
}

func expectNoResult(t *testing.T, ch <-chan campaignResult, d time.Duration) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("a second controller was elected: broker %d (err %v)", r.id, r.err)
	case <-time.After(d):
	}
}

func closedWithin(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s not closed within %s", what, d)
	}
}

func TestControllerElectionExactlyOne(t *testing.T) {
	eps := etcdtest.Start(t)
	stores := map[int32]*coordinator.Store{1: registeredCtl(t, eps, 1), 2: registeredCtl(t, eps, 2), 3: registeredCtl(t, eps, 3)}
	if got := controllerID(t, stores[1]); got != -1 {
		t.Fatalf("controller before any campaign = %d, want -1", got)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	results := campaignAll(ctx, stores)

	first := waitResult(t, results, 5*time.Second)
	expectNoResult(t, results, 500*time.Millisecond)
	for id, s := range stores {
		if got := controllerID(t, s); got != first.id {
			t.Fatalf("store of broker %d sees controller %d, want %d", id, got, first.id)
		}
	}

	// Resign: exactly one of the other two takes over at once.
	if err := stores[first.id].Resign(testCtx(t), first.id); err != nil {
		t.Fatalf("resign: %v", err)
	}
	closedWithin(t, first.lost, 3*time.Second, "lost channel of the resigned controller")
	second := waitResult(t, results, 3*time.Second)
	if second.id == first.id {
		t.Fatalf("resigned broker %d was elected again", first.id)
	}
	expectNoResult(t, results, 300*time.Millisecond)
	if got := controllerID(t, stores[first.id]); got != second.id {
		t.Fatalf("controller = %d, want %d", got, second.id)
	}
	// Resigning a broker that does not hold the key changes nothing.
	if err := stores[first.id].Resign(testCtx(t), first.id); err != nil {
		t.Fatalf("second resign: %v", err)
	}
	if got := controllerID(t, stores[first.id]); got != second.id {
		t.Fatalf("controller after a no-op resign = %d, want %d", got, second.id)
	}

	// A clean Close revokes the lease: the last campaigner wins at once.
	if err := stores[second.id].Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	closedWithin(t, second.lost, 3*time.Second, "lost channel of the closed controller")
	third := waitResult(t, results, 3*time.Second)
	if third.id == first.id || third.id == second.id {
		t.Fatalf("third controller %d, want the remaining broker", third.id)
	}
	if got := controllerID(t, stores[third.id]); got != third.id {
		t.Fatalf("controller = %d, want %d", got, third.id)
	}
}

func TestControllerFailoverWithinLeaseTTL(t *testing.T) {
	eps := etcdtest.Start(t)
	stores := map[int32]*coordinator.Store{1: registeredCtl(t, eps, 1), 2: registeredCtl(t, eps, 2)}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	results := campaignAll(ctx, stores)
	first := waitResult(t, results, 5*time.Second)
	other := int32(3) - first.id

	// Crash the holder: the lease is not revoked and must expire.
	crashed := time.Now()
	if err := stores[first.id].CrashForTest(); err != nil {
		t.Fatalf("crash: %v", err)
	}
	closedWithin(t, first.lost, time.Second, "lost channel of the crashed controller")
	second := waitResult(t, results, testLeaseTTL+3*time.Second)
	if second.id != other {
		t.Fatalf("new controller %d, want %d", second.id, other)
	}
	if took := time.Since(crashed); took > testLeaseTTL+2*time.Second {
		t.Fatalf("failover took %s, lease TTL is %s", took, testLeaseTTL)
	}
	if got := controllerID(t, stores[other]); got != other {
		t.Fatalf("controller = %d, want %d", got, other)
	}
	select {
	case <-second.lost:
		t.Fatal("new controller's lost channel closed while it holds the lease")
	default:
	}
}

func TestControllerCampaignErrors(t *testing.T) {
	eps := etcdtest.Start(t)
	unregistered := openStore(t, eps)
	if _, err := unregistered.Campaign(testCtx(t), 1); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("campaign without registration: err = %v, want ErrInvalid", err)
	}
	s := registeredCtl(t, eps, 4)
	if _, err := s.Campaign(testCtx(t), 5); !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("campaign as another broker: err = %v, want ErrInvalid", err)
	}

	// A campaign blocked behind a live controller ends with ctx.
	holder := registeredCtl(t, eps, 6)
	lost, err := holder.Campaign(testCtx(t), 6)
	if err != nil {
		t.Fatalf("campaign: %v", err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	if _, err := s.Campaign(ctx, 4); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked campaign: err = %v, want deadline exceeded", err)
	}
	// Campaigning again while holding returns at once.
	again, err := holder.Campaign(testCtx(t), 6)
	if err != nil {
		t.Fatalf("second campaign of the holder: %v", err)
	}
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, lost, 2*time.Second, "lost after Close")
	closedWithin(t, again, 2*time.Second, "second lost after Close")
	if _, err := holder.Campaign(testCtx(t), 6); !errors.Is(err, coordinator.ErrUnavailable) {
		t.Fatalf("campaign on a closed store: err = %v, want ErrUnavailable", err)
	}
}

func TestWatchController(t *testing.T) {
	eps := etcdtest.Start(t)
	watcher := openStore(t, eps)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	ch := watcher.WatchController(ctx)
	next := func(want int32) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case id, ok := <-ch:
				if !ok {
					t.Fatal("watch closed")
				}
				if id == want {
					return
				}
			case <-deadline:
				t.Fatalf("controller %d not seen", want)
			}
		}
	}
	next(-1)
	s := registeredCtl(t, eps, 9)
	if _, err := s.Campaign(testCtx(t), 9); err != nil {
		t.Fatal(err)
	}
	next(9)
	if err := s.Resign(testCtx(t), 9); err != nil {
		t.Fatal(err)
	}
	next(-1)
	cancel()
	for range ch { // drains, then closes
	}
}

// A controller's partition writes are fenced on its term: once another
// broker holds the controller key, the old term's write is refused with
// ErrNotController and the partition is unchanged; the new term's writes
// go through.
func TestControllerWritesFencedOnTerm(t *testing.T) {
	eps := etcdtest.Start(t)
	ctx := testCtx(t)
	s1, s2 := registeredCtl(t, eps, 1), registeredCtl(t, eps, 2)
	tp := mkTopic("fenced", 1, 1, 2)
	if err := s1.CreateTopic(ctx, tp); err != nil {
		t.Fatal(err)
	}
	got, _ := s1.Topic(ctx, "fenced")
	st := got.Partitions[0]
	move := func(cur coordinator.PartitionState, leader int32) coordinator.PartitionState {
		cur.Replicas, cur.ISR = slices.Clone(cur.Replicas), slices.Clone(cur.ISR)
		cur.Leader = leader
		cur.LeaderEpoch++
		cur.PartitionEpoch++
		return cur
	}

	term1, err := s1.CampaignTerm(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	st1 := move(st, 2)
	if err := s1.UpdatePartitionAsController(ctx, term1, "fenced", got.ID, st1, st.PartitionEpoch); err != nil {
		t.Fatalf("write in the current term: %v", err)
	}
	// Broker 1 resigns (as if its lease lapsed); broker 2 is elected.
	if err := s1.Resign(ctx, 1); err != nil {
		t.Fatal(err)
	}
	term2, err := s2.CampaignTerm(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if term2.Revision == term1.Revision {
		t.Fatalf("new term has the old revision %d", term1.Revision)
	}
	stale := move(st1, 1)
	err = s1.UpdatePartitionAsController(ctx, term1, "fenced", got.ID, stale, st1.PartitionEpoch)
	if !errors.Is(err, coordinator.ErrNotController) {
		t.Fatalf("deposed controller's write: %v, want ErrNotController", err)
	}
	now, _ := s2.Topic(ctx, "fenced")
	if p := now.Partitions[0]; p.Leader != 2 || p.PartitionEpoch != st1.PartitionEpoch {
		t.Fatalf("partition after the refused write: leader %d epoch %d, want leader 2 epoch %d", p.Leader, p.PartitionEpoch, st1.PartitionEpoch)
	}
	if err := s2.UpdatePartitionAsController(ctx, term2, "fenced", got.ID, stale, st1.PartitionEpoch); err != nil {
		t.Fatalf("the new controller's write: %v", err)
	}
}
