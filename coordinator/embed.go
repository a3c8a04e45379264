package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// startEmbedded starts a single-member etcd in dir and waits until it serves.
// listen is the client host:port; "" picks a free 127.0.0.1 port. The peer URL
// always gets a free 127.0.0.1 port: a single member never talks to peers, and
// a restart with a different peer port keeps its data. Because a port picked
// free can be taken before etcd binds it, a start with chosen ports is retried
// a few times.
//
// The directory is locked (strata.lock) for as long as the returned etcd
// runs; the caller calls unlock after stopping it. A directory already in use
// fails at once with ErrConflict.
func startEmbedded(ctx context.Context, dir, listen string, log *slog.Logger, closing *atomic.Bool) (e *embed.Etcd, urls []string, unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("start embedded etcd in %s: %w", dir, err)
	}
	unlock, err = lockDir(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start embedded etcd in %s: %w", dir, err)
	}
	e, urls, err = startEmbeddedRetry(ctx, dir, listen, log, closing)
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return e, urls, unlock, nil
}

func startEmbeddedRetry(ctx context.Context, dir, listen string, log *slog.Logger, closing *atomic.Bool) (*embed.Etcd, []string, error) {
	attempts := 3
	var lastErr error
	for i := 0; i < attempts; i++ {
		clientHostPort := listen
		if clientHostPort == "" {
			p, err := freePort()
			if err != nil {
				return nil, nil, fmt.Errorf("start embedded etcd in %s: %w", dir, err)
			}
			clientHostPort = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		}
		peerPort, err := freePort()
		if err != nil {
			return nil, nil, fmt.Errorf("start embedded etcd in %s: %w", dir, err)
		}
		e, urls, err := startEmbeddedOnce(ctx, dir, clientHostPort, net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort)), log, closing)
		if err == nil {
			return e, urls, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, nil, lastErr
}

func startEmbeddedOnce(ctx context.Context, dir, clientHostPort, peerHostPort string, log *slog.Logger, closing *atomic.Bool) (*embed.Etcd, []string, error) {
	cu, err := url.Parse("http://" + clientHostPort)
	if err != nil {
		return nil, nil, fmt.Errorf("start embedded etcd: %w: client address %q: %v", ErrInvalid, clientHostPort, err)
	}
	pu, _ := url.Parse("http://" + peerHostPort)

	cfg := embed.NewConfig()
	cfg.Name = "strata"
	cfg.Dir = dir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(etcdLogger(log, closing))
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.ListenMetricsUrls = nil
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("start embedded etcd in %s on %s: %w", dir, clientHostPort, err)
	}
	timer := time.NewTimer(embedStartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return e, []string{cu.String()}, nil
	case err := <-e.Err():
		closing.Store(true)
		e.Close()
		closing.Store(false)
		return nil, nil, fmt.Errorf("start embedded etcd in %s on %s: %w", dir, clientHostPort, err)
	case <-timer.C:
		closing.Store(true)
		e.Server.Stop()
		e.Close()
		closing.Store(false)
		return nil, nil, fmt.Errorf("start embedded etcd in %s on %s: %w: not ready after %s", dir, clientHostPort, ErrUnavailable, embedStartTimeout)
	case <-ctx.Done():
		closing.Store(true)
		e.Server.Stop()
		e.Close()
		closing.Store(false)
		return nil, nil, fmt.Errorf("start embedded etcd in %s on %s: %w", dir, clientHostPort, ctx.Err())
	}
}

// freePort asks the kernel for a free 127.0.0.1 TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
