package coordinator_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
)

func brokerIDs(t *testing.T, s *coordinator.Store) []int32 {
	t.Helper()
	bs, err := s.Brokers(testCtx(t))
	if err != nil {
		t.Fatalf("brokers: %v", err)
	}
	ids := make([]int32, len(bs))
	for i, b := range bs {
		ids[i] = b.ID
	}
	return ids
}

func TestBrokerRegistration(t *testing.T) {
	eps := etcdtest.Start(t)
	ctx := testCtx(t)
	s1 := openStore(t, eps)
	s2 := openStore(t, eps)
	b7 := coordinator.BrokerInfo{ID: 7, Host: "10.0.0.7", Port: 9092, Rack: "az-b"}
	if err := s1.RegisterBroker(ctx, b7); err != nil {
		t.Fatal(err)
	}
	if s1.RegistrationLost() == nil {
		t.Fatal("RegistrationLost is nil after registering")
	}
	bs, err := s2.Brokers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || bs[0] != b7 {
		t.Fatalf("brokers = %+v, want [%+v]", bs, b7)
	}

	tests := []struct {
		name    string
		s       *coordinator.Store
		b       coordinator.BrokerInfo
		wantErr error
	}{
		{"same id from another store", s2, coordinator.BrokerInfo{ID: 7, Host: "h", Port: 1}, coordinator.ErrConflict},
		{"second registration on one store", s1, coordinator.BrokerInfo{ID: 8, Host: "h", Port: 1}, coordinator.ErrConflict},
		{"no host", s2, coordinator.BrokerInfo{ID: 3, Port: 1}, coordinator.ErrInvalid},
		{"bad port", s2, coordinator.BrokerInfo{ID: 3, Host: "h", Port: 70000}, coordinator.ErrInvalid},
		{"other id", s2, coordinator.BrokerInfo{ID: 3, Host: "10.0.0.3", Port: 9093}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.s.RegisterBroker(ctx, tc.b); !errors.Is(err, tc.wantErr) {
				t.Fatalf("register: %v, want %v", err, tc.wantErr)
			}
		})
	}
	if ids := brokerIDs(t, s1); !slices.Equal(ids, []int32{3, 7}) {
		t.Fatalf("broker ids = %v, want [3 7]", ids)
	}

	// Close revokes the lease: broker 7 is gone at once (no TTL wait), and
	// its ID is free again.
	lost := s1.RegistrationLost()
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	default:
		t.Fatal("RegistrationLost not closed after Close")
	}
	if ids := brokerIDs(t, s2); !slices.Equal(ids, []int32{3}) {
		t.Fatalf("broker ids after close = %v, want [3]", ids)
	}
	s3 := openStore(t, eps)
	if err := s3.RegisterBroker(ctx, b7); err != nil {
		t.Fatalf("re-register 7 after close: %v", err)
	}
	if ids := brokerIDs(t, s2); !slices.Equal(ids, []int32{3, 7}) {
		t.Fatalf("broker ids = %v, want [3 7]", ids)
	}
}

func TestBrokerLeaseExpiresWithoutKeepAlive(t *testing.T) {
	t.Parallel() // mostly waiting on timeouts
	eps := etcdtest.Start(t)
	ctx := testCtx(t)
	crashing := openStore(t, eps, func(c *coordinator.Config) { c.LeaseTTL = 2 * time.Second })
	watcher := openStore(t, eps)
	b := coordinator.BrokerInfo{ID: 5, Host: "127.0.0.1", Port: 19092}
	if err := crashing.RegisterBroker(ctx, b); err != nil {
		t.Fatal(err)
	}
	// Kept alive: still there after more than one TTL.
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if ids := brokerIDs(t, watcher); !slices.Equal(ids, []int32{5}) {
			t.Fatalf("live broker vanished: ids %v", ids)
		}
		time.Sleep(200 * time.Millisecond)
	}
	crashed := time.Now()
	if err := crashing.CrashForTest(); err != nil {
		t.Fatal(err)
	}
	if err := watcher.RegisterBroker(ctx, b); !errors.Is(err, coordinator.ErrConflict) {
		t.Fatalf("register while the crashed lease lives: %v, want ErrConflict", err)
	}
	eventually(t, 10*time.Second, "crashed broker's lease expires", func() bool {
		return len(brokerIDs(t, watcher)) == 0
	})
	if d := time.Since(crashed); d < time.Second {
		t.Fatalf("broker vanished after %s: lease was revoked, not expired", d)
	}
	if err := watcher.RegisterBroker(ctx, b); err != nil {
		t.Fatalf("register after expiry: %v", err)
	}
}

func TestWatchBrokers(t *testing.T) {
	eps := etcdtest.Start(t)
	ctx := testCtx(t)
	watcher := openStore(t, eps)
	ch := watcher.WatchBrokers(ctx)
	ids := func(bs []coordinator.BrokerInfo) []int32 {
		out := make([]int32, len(bs))
		for i, b := range bs {
			out[i] = b.ID
		}
		return out
	}
	wait := func(what string, want []int32) []coordinator.BrokerInfo {
		t.Helper()
		timer := time.NewTimer(10 * time.Second)
		defer timer.Stop()
		for {
			select {
			case bs, ok := <-ch:
				if !ok {
					t.Fatalf("broker watch closed waiting for %s", what)
				}
				if slices.Equal(ids(bs), want) {
					return bs
				}
			case <-timer.C:
				t.Fatalf("no broker set %v (%s) within 10s", want, what)
			}
		}
	}
	wait("initial empty set", []int32{})

	s2, s9 := openStore(t, eps), openStore(t, eps)
	b9 := coordinator.BrokerInfo{ID: 9, Host: "h9", Port: 9}
	if err := s9.RegisterBroker(ctx, b9); err != nil {
		t.Fatal(err)
	}
	if err := s2.RegisterBroker(ctx, coordinator.BrokerInfo{ID: 2, Host: "h2", Port: 2}); err != nil {
		t.Fatal(err)
	}
	if bs := wait("two brokers", []int32{2, 9}); bs[1] != b9 {
		t.Fatalf("broker 9 = %+v, want %+v", bs[1], b9)
	}
	if err := s9.Close(); err != nil {
		t.Fatal(err)
	}
	wait("broker 9 gone", []int32{2})
}

func TestRegistrationLostWhenEtcdUnreachable(t *testing.T) {
	t.Parallel() // mostly waiting on the lease to run out
	ctx := testCtx(t)
	owner, err := coordinator.Open(ctx, coordinator.Config{EmbedDir: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	member := openStore(t, owner.Endpoints(), func(c *coordinator.Config) {
		c.LeaseTTL = 2 * time.Second
		c.DialTimeout = 500 * time.Millisecond
	})
	if err := member.RegisterBroker(ctx, coordinator.BrokerInfo{ID: 1, Host: "h", Port: 1}); err != nil {
		t.Fatal(err)
	}
	lost := member.RegistrationLost()
	select {
	case <-lost:
		t.Fatal("registration lost while etcd is up")
	default:
	}
	if err := owner.Close(); err != nil { // etcd gone for good
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(15 * time.Second):
		t.Fatal("RegistrationLost not closed 15s after etcd stopped (lease TTL 2s)")
	}
}
