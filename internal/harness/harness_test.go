package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a fake broker when STRATA_HARNESS_FAKE is set:
// it listens on --listen, serves /healthz on --metrics-listen, and exits 0
// on SIGTERM (or ignores it with mode "stubborn", or exits at once with "die").
func TestMain(m *testing.M) {
	if mode := os.Getenv("STRATA_HARNESS_FAKE"); mode != "" {
		os.Exit(fakeBroker(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeBroker(mode string, args []string) int {
	flags := map[string]string{}
	for i := 0; i+1 < len(args); i++ {
		if strings.HasPrefix(args[i], "--") && !strings.Contains(args[i], "=") {
			flags[args[i]] = args[i+1]
		}
	}
	fmt.Println("fake broker", strings.Join(args, " "))
	if mode == "die" {
		fmt.Println("fatal: configured to die")
		return 3
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	l, err := net.Listen("tcp", flags["--listen"])
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer l.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	go http.ListenAndServe(flags["--metrics-listen"], mux)
	for range sigs {
		if mode != "stubborn" {
			fmt.Println("graceful stop")
			return 0
		}
	}
	return 0
}

func fakeConfig(t *testing.T, mode string) BrokerConfig {
	t.Helper()
	return BrokerConfig{
		Bin:      os.Args[0],
		DataDir:  filepath.Join(t.TempDir(), "data"),
		BrokerID: 7,
		Args:     []string{"--num.partitions=3"},
		Env:      []string{"STRATA_HARNESS_FAKE=" + mode},
	}
}

func dialOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := StartT(t, fakeConfig(t, "ok"))
	if !dialOK(b.Addr) {
		t.Fatalf("dial %s after start failed", b.Addr)
	}
	if got := b.ExitCode(); got != -1 {
		t.Fatalf("ExitCode while running = %d, want -1", got)
	}
	tail := b.LogTail(5)
	for _, want := range []string{"serve", "--broker-id 7", "--listen " + b.Addr, "--metrics-listen " + b.MetricsAddr, "--num.partitions=3", "--data-dir " + b.Config.DataDir} {
		if !strings.Contains(tail, want) {
			t.Errorf("log tail lacks %q:\n%s", want, tail)
		}
	}
	pid1 := b.PID()

	if err := b.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := b.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got := b.ExitCode(); got != 0 {
		t.Fatalf("ExitCode after Stop = %d, want 0", got)
	}
	if !strings.Contains(b.LogTail(3), "graceful stop") {
		t.Errorf("log tail lacks graceful stop:\n%s", b.LogTail(3))
	}
	if err := b.Pause(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Pause after Stop = %v, want ErrNotRunning", err)
	}

	addr := b.Addr
	if err := b.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if b.Addr != addr || b.PID() == pid1 || !dialOK(b.Addr) {
		t.Fatalf("after restart: addr %s (was %s), pid %d (was %d)", b.Addr, addr, b.PID(), pid1)
	}
	if err := b.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if got, want := b.ExitCode(), 128+int(syscall.SIGKILL); got != want {
		t.Fatalf("ExitCode after Kill = %d, want %d", got, want)
	}
	if err := b.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}
}

func TestStartFailureCarriesLogTail(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Start(ctx, fakeConfig(t, "die"))
	if !errors.Is(err, ErrNotHealthy) {
		t.Fatalf("Start = %v, want ErrNotHealthy", err)
	}
	if !strings.Contains(err.Error(), "configured to die") || !strings.Contains(err.Error(), "code 3") {
		t.Fatalf("error lacks log tail or exit code: %v", err)
	}
}

func TestStopTimeoutKills(t *testing.T) {
	old := stopTimeout
	stopTimeout = 500 * time.Millisecond
	t.Cleanup(func() { stopTimeout = old })
	b := StartT(t, fakeConfig(t, "stubborn"))
	if err := b.Stop(); !errors.Is(err, ErrStopTimeout) {
		t.Fatalf("Stop = %v, want ErrStopTimeout", err)
	}
	if got, want := b.ExitCode(), 128+int(syscall.SIGKILL); got != want {
		t.Fatalf("ExitCode = %d, want %d", got, want)
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d, %v", p, err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("listen on free port %d: %v", p, err)
	}
	l.Close()
}
