// Package etcdtest starts a throwaway single-member etcd inside the test
// process, for tests of packages that keep metadata in etcd. It binds only
// 127.0.0.1 on ports chosen free at run time, keeps its data under
// t.TempDir(), skips fsync (tests never survive a machine crash) and stops
// through t.Cleanup. It must never be imported by non-test code.
package etcdtest

import (
	"errors"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds how long Start waits for etcd to serve.
const startTimeout = 30 * time.Second

// Start starts an embedded etcd and returns its client endpoints
// (e.g. "http://127.0.0.1:41234"). It fails the test if etcd cannot start.
func Start(t testing.TB) (endpoints []string) {
	t.Helper()
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a port picked free may be taken before etcd binds it
		e, eps, err := start(dir)
		if err == nil {
			t.Cleanup(func() {
				e.Close()
				<-e.Server.StopNotify()
			})
			return eps
		}
		lastErr = err
	}
	t.Fatalf("etcdtest: start embedded etcd: %v", lastErr)
	return nil
}

func start(dir string) (*embed.Etcd, []string, error) {
	cp, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	pp, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	cu := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(cp))}
	pu := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(pp))}

	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = dir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.ListenClientUrls = []url.URL{cu}
	cfg.AdvertiseClientUrls = []url.URL{cu}
	cfg.ListenPeerUrls = []url.URL{pu}
	cfg.AdvertisePeerUrls = []url.URL{pu}
	cfg.ListenMetricsUrls = nil
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, nil, err
	}
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return e, []string{cu.String()}, nil
	case err := <-e.Err():
		e.Close()
		return nil, nil, err
	case <-timer.C:
		e.Server.Stop()
		e.Close()
		return nil, nil, errNotReady
	}
}

var errNotReady = errors.New("etcd not ready after " + startTimeout.String())

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
