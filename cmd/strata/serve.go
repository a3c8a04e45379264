package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stratabroker/strata/broker"
	"github.com/stratabroker/strata/coordinator"
	"github.com/stratabroker/strata/internal/datadir"
)

const defaultListen = "127.0.0.1:9092,[::1]:9092"

// serveOptions are the settings that are not Kafka broker configs.
type serveOptions struct {
	dataDir       string
	listen        string
	advertise     string
	advertiseRepl string
	brokerID      int
	etcdEndpoints string
	etcdListen    string
	metricsListen string
	logLevel      string
	logFormat     string
	remote        string
}

func serve(args []string) int {
	fs := flag.NewFlagSet("strata serve", flag.ContinueOnError)
	var o serveOptions
	configFile := fs.String("config", "", "properties file of settings (key=value lines; keys are flag names)")
	fs.StringVar(&o.dataDir, "data-dir", "./strata-data", "directory for partition logs (and the embedded etcd)")
	fs.StringVar(&o.listen, "listen", defaultListen, "comma-separated host:port addresses to serve Kafka on")
	fs.StringVar(&o.advertise, "advertise", "", "host:port clients are told to connect to (default: the first listen address)")
	fs.StringVar(&o.advertiseRepl, "advertise-replicas", "", "host:port other brokers' replica fetchers connect to, when it differs from --advertise (e.g. a container's name in a compose network); default: the advertised address")
	fs.IntVar(&o.brokerID, "broker-id", 1, "this broker's id, unique in the cluster")
	fs.StringVar(&o.etcdEndpoints, "etcd-endpoints", "", "comma-separated etcd client URLs; empty = start an embedded etcd in the data directory")
	fs.StringVar(&o.etcdListen, "etcd-listen", "", "client address of the embedded etcd (default: 127.0.0.1 on a free port)")
	fs.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9644", "host:port for /metrics and /healthz; empty disables")
	fs.StringVar(&o.remote, "remote", "", "remote tier URL: file:///dir, s3://bucket/prefix?region=…&endpoint=…, minio://host:port/bucket/prefix; empty = <data-dir>/remote; none = no remote tier")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	settingFlags := make(map[string]*string)
	for _, s := range broker.Settings {
		settingFlags[s.Name] = fs.String(s.Name, s.Default, s.Doc)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: strata serve [flags]\n\nEvery flag can also be set as STRATA_<NAME> in the environment (upper case, '.' and '-' as '_')\nor as name=value in the --config file. Precedence: flag, environment, file, default.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "strata serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := applyEnvAndFile(fs, *configFile); err != nil {
		fmt.Fprintf(os.Stderr, "strata serve: %v\n", err)
		return 2
	}
	logger, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata serve: %v\n", err)
		return 2
	}
	slog.SetDefault(logger)

	values := make(map[string]string)
	for name, v := range settingFlags {
		values[name] = *v
	}
	cfg, err := broker.ParseBrokerConfig(values)
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata serve: %v\n", err)
		return 2
	}
	if o.brokerID < 0 || o.brokerID > 1<<30 {
		fmt.Fprintf(os.Stderr, "strata serve: --broker-id %d out of range\n", o.brokerID)
		return 2
	}
	if err := run(o, cfg, logger); err != nil {
		logger.Error("strata stopped", "err", err)
		return 1
	}
	return 0
}

func run(o serveOptions, cfg broker.BrokerConfig, logger *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	unlock, err := datadir.Lock(o.dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	dirID, err := datadir.ID(o.dataDir)
	if err != nil {
		return err
	}
	listen := splitComma(o.listen)
	if o.listen == defaultListen {
		// Local mode: serve [::1] too when the machine has IPv6 loopback.
		listen = usableListen(listen, logger)
	}
	if o.advertise == "" && len(listen) > 0 {
		o.advertise = listen[0]
	}

	openCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	store, err := coordinator.Open(openCtx, coordinator.Config{
		Endpoints:   splitComma(o.etcdEndpoints),
		EmbedDir:    filepath.Join(o.dataDir, "etcd"),
		EmbedListen: o.etcdListen,
		Logger:      logger, // the Store adds component=coordinator
	})
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer store.Close()
	if len(splitComma(o.etcdEndpoints)) == 0 {
		logger.Info("embedded etcd started", "endpoints", store.Endpoints())
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	tier, err := openTiering(ctx, o, &cfg, store, reg, logger)
	if err != nil {
		return err
	}
	if tier != nil {
		defer tier.Close()
	}
	srv, err := broker.New(broker.Options{
		Tiering:           tier,
		BrokerID:          int32(o.brokerID),
		DirID:             dirID,
		Listen:            listen,
		Advertise:         o.advertise,
		AdvertiseReplicas: o.advertiseRepl,
		DataDir:           o.dataDir,
		Config:            cfg,
		Store:             store,
		Logger:            logger,
		Registry:          reg,
	})
	if err != nil {
		return err
	}

	var httpSrv *http.Server
	if o.metricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			if !srv.Ready() {
				http.Error(w, "starting", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		ln, err := net.Listen("tcp", o.metricsListen)
		if err != nil {
			return fmt.Errorf("metrics listen %s: %w", o.metricsListen, err)
		}
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go httpSrv.Serve(ln)
		logger.Info("serving metrics", "listen", ln.Addr().String())
	}

	startCtx, cancelStart := context.WithTimeout(ctx, 5*time.Minute)
	err = srv.Start(startCtx)
	cancelStart()
	if err != nil {
		srv.Close()
		return err
	}
	logger.Info("strata ready", "broker.id", o.brokerID, "data_dir", o.dataDir, "cluster_id", store.ClusterID())
	<-ctx.Done()
	logger.Info("shutting down")
	if httpSrv != nil {
		shCtx, c := context.WithTimeout(context.Background(), 5*time.Second)
		httpSrv.Shutdown(shCtx)
		c()
	}
	if err := srv.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if err := store.Close(); err != nil {
		logger.Warn("close etcd", "err", err)
	}
	logger.Info("stopped cleanly")
	return nil
}

// applyEnvAndFile fills every flag not given on the command line from the
// environment (STRATA_NAME) or else the properties file.
func applyEnvAndFile(fs *flag.FlagSet, file string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fileVals := map[string]string{}
	if file != "" {
		var err error
		if fileVals, err = readProperties(file); err != nil {
			return err
		}
		for k := range fileVals {
			if fs.Lookup(k) == nil {
				return fmt.Errorf("config file %s: unknown setting %q", file, k)
			}
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" {
			return
		}
		env := "STRATA_" + strings.NewReplacer(".", "_", "-", "_").Replace(strings.ToUpper(f.Name))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
			return
		}
		if v, ok := fileVals[f.Name]; ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: %s: %w", file, f.Name, err))
			}
		}
	})
	return errors.Join(errs...)
}

func readProperties(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("config file %s:%d: expected key=value", path, n)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, sc.Err()
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// usableListen drops default addresses this machine cannot bind (a host
// without IPv6 loopback), keeping at least the first.
func usableListen(addrs []string, logger *slog.Logger) []string {
	var out []string
	for i, a := range addrs {
		if i > 0 {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				logger.Info("skipping default listen address", "addr", a, "reason", err)
				continue
			}
			ln.Close()
		}
		out = append(out, a)
	}
	return out
}
