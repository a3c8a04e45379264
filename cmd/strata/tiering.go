package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratabroker/strata/broker"
	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/remote"
	"github.com/stratabroker/strata/tiering"
)

// openTiering opens the remote tier named by --remote (default: a directory
// in the data dir, so tiering works on a bare machine) and builds the
// tiering manager. --remote=none runs without a remote tier.
func openTiering(ctx context.Context, o serveOptions, cfg *broker.BrokerConfig, store *coordinator.Store, reg prometheus.Registerer, logger *slog.Logger) (*tiering.Manager, error) {
	url := strings.TrimSpace(o.remote)
	if url == "none" {
		logger.Info("no remote tier (--remote=none): topics keep all their data locally")
		return nil, nil
	}
	if url == "" {
		dir, err := filepath.Abs(filepath.Join(o.dataDir, "remote"))
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("remote tier directory: %w", err)
		}
		url = "file://" + dir
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := remote.Open(openCtx, url)
	if err != nil {
		return nil, fmt.Errorf("remote tier: %w", err)
	}
	cfg.RemoteTier = true
	if err := tiering.RegisterMetrics(reg); err != nil {
		st.Close()
		return nil, err
	}
	m, err := tiering.NewManager(tiering.Config{
		BrokerID:           int32(o.brokerID),
		TaskInterval:       cfg.RemoteTaskInterval,
		CopyBytesPerSecond: cfg.RemoteCopyBytesPerSecond,
		CopyConcurrency:    cfg.RemoteCopyConcurrency,
		Reader: tiering.ReaderConfig{
			ChunkSize:       cfg.RemoteChunkBytes,
			CacheDir:        filepath.Join(o.dataDir, "remote-cache"),
			CacheBytes:      cfg.RemoteChunkCacheBytes,
			Memory:          cfg.RemoteChunkCacheMemory,
			IndexCacheBytes: cfg.RemoteIndexCacheBytes,
			PrefetchChunks:  prefetch(cfg.RemotePrefetchChunks),
			Concurrency:     cfg.RemoteReaderThreads,
		},
	}, st, store, logger.With("component", "tiering"))
	if err != nil {
		st.Close()
		return nil, err
	}
	logger.Info("remote tier", "storage", st.String(), "new_topics_tiered", cfg.RemoteStorageDefault)
	return m, nil
}

// prefetch maps remote.log.prefetch.chunks onto the reader's setting, where
// 0 means its default and a negative number turns prefetch off.
func prefetch(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
