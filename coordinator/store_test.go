package coordinator_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/etcdtest"
)

func TestTwoStoresShareClusterIDAndTopics(t *testing.T) {
	eps := etcdtest.Start(t)
	s1 := openStore(t, eps)
	s2 := openStore(t, eps)
	ctx := testCtx(t)

	id := s1.ClusterID()
	if len(id) != 22 || id[0] == '-' {
		t.Fatalf("cluster id %q: want 22 chars not starting with '-'", id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(raw) != 16 || raw[6]>>4 != 4 {
		t.Fatalf("cluster id %q is not a base64url v4 UUID: %x, %v", id, raw, err)
	}
	if s2.ClusterID() != id {
		t.Fatalf("second store cluster id %q, want %q", s2.ClusterID(), id)
	}
	// Another prefix is another cluster.
	s3 := openStore(t, eps, func(c *coordinator.Config) { c.Prefix = "other" })
	if s3.ClusterID() == id || s3.Prefix() != "/other" {
		t.Fatalf("prefix /other: cluster id %q prefix %q, want a new id under /other", s3.ClusterID(), s3.Prefix())
	}

	tp := mkTopic("shared", 4, 1)
	if err := s1.CreateTopic(ctx, tp); err != nil {
		t.Fatal(err)
	}
	got, err := s2.Topic(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	sameTopic(t, got, tp)
	if err := s2.CreateTopic(ctx, mkTopic("shared", 1, 1)); !errors.Is(err, coordinator.ErrTopicExists) {
		t.Fatalf("create from second store: %v, want ErrTopicExists", err)
	}
	if all, err := s3.Topics(ctx); err != nil || len(all) != 0 {
		t.Fatalf("other prefix sees topics %v, %v", names(all), err)
	}
}

func TestOpenUnreachableFailsFast(t *testing.T) {
	t.Parallel() // mostly waiting on timeouts
	// A port that was free a moment ago: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	start := time.Now()
	s, err := coordinator.Open(context.Background(), coordinator.Config{
		Endpoints:   []string{"http://" + addr},
		DialTimeout: time.Second,
		Logger:      quietLogger(),
	})
	elapsed := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("open against an unreachable endpoint succeeded")
	}
	if !errors.Is(err, coordinator.ErrUnavailable) {
		t.Fatalf("open: %v, want ErrUnavailable", err)
	}
	if elapsed > 3*time.Second {
		t.Fatalf("open took %s with a 1s dial timeout", elapsed)
	}
}

func TestEmbeddedReopenKeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	ctx := testCtx(t)
	open := func(listen string) *coordinator.Store {
		t.Helper()
		s, err := coordinator.Open(ctx, coordinator.Config{EmbedDir: dir, EmbedListen: listen, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("open embedded: %v", err)
		}
		return s
	}
	s := open("")
	if eps := s.Endpoints(); len(eps) != 1 {
		t.Fatalf("embedded endpoints %v", eps)
	}
	id := s.ClusterID()

	// The directory is in use: a second Open fails at once, not hangs.
	start := time.Now()
	if s2, err := coordinator.Open(ctx, coordinator.Config{EmbedDir: dir, Logger: quietLogger()}); !errors.Is(err, coordinator.ErrConflict) {
		if err == nil {
			s2.Close()
		}
		t.Fatalf("second open of %s: %v, want ErrConflict", dir, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("second open took %s", d)
	}

	tp := mkTopic("durable", 2, 1)
	tp.Configs = map[string]string{"retention.ms": "5"}
	if err := s.CreateTopic(ctx, tp); err != nil {
		t.Fatal(err)
	}
	st := tp.Partitions[1]
	st.LeaderEpoch, st.PartitionEpoch = 1, 1
	if err := s.UpdatePartition(ctx, "durable", st, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}

	// Reopen on an explicit client address this time.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s = open("127.0.0.1:" + strconv.Itoa(port))
	defer s.Close()
	if want := []string{"http://127.0.0.1:" + strconv.Itoa(port)}; !slices.Equal(s.Endpoints(), want) {
		t.Fatalf("endpoints %v, want %v", s.Endpoints(), want)
	}
	if s.ClusterID() != id {
		t.Fatalf("cluster id after reopen %q, want %q", s.ClusterID(), id)
	}
	got, err := s.Topic(ctx, "durable")
	if err != nil {
		t.Fatal(err)
	}
	tp.Partitions[1] = st
	sameTopic(t, got, tp)
}

func TestEtcdGoneGivesUnavailable(t *testing.T) {
	t.Parallel() // mostly waiting on timeouts
	ctx := testCtx(t)
	owner, err := coordinator.Open(ctx, coordinator.Config{EmbedDir: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	client := openStore(t, owner.Endpoints(), func(c *coordinator.Config) { c.DialTimeout = 500 * time.Millisecond })
	if err := client.CreateTopic(ctx, mkTopic("before", 1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := owner.Close(); err != nil { // stops the embedded etcd
		t.Fatal(err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"topics", func() error { _, err := client.Topics(ctx); return err }},
		{"topic", func() error { _, err := client.Topic(ctx, "before"); return err }},
		{"create", func() error { return client.CreateTopic(ctx, mkTopic("after", 1, 1)) }},
		{"brokers", func() error { _, err := client.Brokers(ctx); return err }},
		{"register", func() error { return client.RegisterBroker(ctx, coordinator.BrokerInfo{ID: 1, Host: "h", Port: 1}) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			err := c.call()
			if !errors.Is(err, coordinator.ErrUnavailable) {
				t.Fatalf("%s with etcd gone: %v, want ErrUnavailable", c.name, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("%s took %s with a 500ms timeout", c.name, d)
			}
		})
	}
}

func TestOpenNeedsEndpointsOrDir(t *testing.T) {
	_, err := coordinator.Open(testCtx(t), coordinator.Config{Logger: quietLogger()})
	if !errors.Is(err, coordinator.ErrInvalid) {
		t.Fatalf("open without endpoints or dir: %v, want ErrInvalid", err)
	}
}
