package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNotHealthy: the broker did not answer /healthz 200 in time, or exited first.
	ErrNotHealthy = errors.New("harness: broker not healthy")
	// ErrNotRunning: the operation needs a running broker process.
	ErrNotRunning = errors.New("harness: broker not running")
	// ErrStopTimeout: the broker ignored SIGTERM and was killed.
	ErrStopTimeout = errors.New("harness: broker did not stop after SIGTERM")
)

const healthTimeout = 30 * time.Second

// stopTimeout bounds Stop's wait after SIGTERM; a variable so tests can shorten it.
var stopTimeout = 30 * time.Second

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the path of the strata binary: $STRATA_BIN when set,
// otherwise the result of `go build -o <tmp>/strata ./cmd/strata` in the
// module root (found with `go env GOMOD`), built once per process.
func Binary() (string, error) {
	if p := os.Getenv("STRATA_BIN"); p != "" {
		return p, nil
	}
	buildOnce.Do(func() {
		buildPath, buildErr = build()
	})
	return buildPath, buildErr
}

func build() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("harness: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("harness: go env GOMOD: not inside a module")
	}
	dir, err := os.MkdirTemp("", "strata-bin-")
	if err != nil {
		return "", fmt.Errorf("harness: build strata: %w", err)
	}
	bin := filepath.Join(dir, "strata")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/strata")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("harness: go build ./cmd/strata: %w\n%s", err, out)
	}
	return bin, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free when asked.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("harness: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// BrokerConfig describes one broker process.
type BrokerConfig struct {
	Bin           string   // binary; "" = Binary()
	DataDir       string   // --data-dir (required)
	BrokerID      int32    // --broker-id; 0 is passed as 0
	EtcdEndpoints []string // --etcd-endpoints; empty = embedded etcd
	Args          []string // extra flags, e.g. "--num.partitions=6"
	Env           []string // extra environment, appended to os.Environ()
	Port          int      // Kafka port; 0 = free
	MetricsPort   int      // metrics/health port; 0 = free
	LogPath       string   // stdout+stderr; default DataDir+".log"
}

// Broker is one broker process started by Start. Its methods are safe for
// concurrent use.
type Broker struct {
	Config      BrokerConfig // with Bin, ports and LogPath filled in
	Addr        string       // 127.0.0.1:Port
	MetricsAddr string       // 127.0.0.1:MetricsPort

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has been waited for
	exitCode int
	logFile  *os.File
}

// Start launches a broker in its own process group and waits (at most 30 s,
// or ctx) until GET /healthz answers 200. On failure it kills the process and
// returns an error that carries the log tail.
func Start(ctx context.Context, cfg BrokerConfig) (*Broker, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("harness: start broker: DataDir is required")
	}
	if cfg.Bin == "" {
		bin, err := Binary()
		if err != nil {
			return nil, err
		}
		cfg.Bin = bin
	}
	var err error
	if cfg.Port == 0 {
		if cfg.Port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if cfg.MetricsPort == 0 {
		for {
			if cfg.MetricsPort, err = FreePort(); err != nil {
				return nil, err
			}
			if cfg.MetricsPort != cfg.Port {
				break
			}
		}
	}
	if cfg.LogPath == "" {
		cfg.LogPath = filepath.Clean(cfg.DataDir) + ".log"
	}
	b := &Broker{
		Config:      cfg,
		Addr:        net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)),
		MetricsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.MetricsPort)),
		exitCode:    -1,
	}
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Broker) args() []string {
	c := b.Config
	a := []string{"serve",
		"--data-dir", c.DataDir,
		"--listen", b.Addr,
		"--advertise", b.Addr,
		"--broker-id", strconv.Itoa(int(c.BrokerID)),
		"--metrics-listen", b.MetricsAddr,
	}
	if len(c.EtcdEndpoints) > 0 {
		a = append(a, "--etcd-endpoints", strings.Join(c.EtcdEndpoints, ","))
	}
	return append(a, c.Args...)
}

func (b *Broker) start(ctx context.Context) error {
	b.mu.Lock()
	if b.running() {
		b.mu.Unlock()
		return fmt.Errorf("harness: start broker %d: already running", b.Config.BrokerID)
	}
	if err := os.MkdirAll(b.Config.DataDir, 0o755); err != nil {
		b.mu.Unlock()
		return fmt.Errorf("harness: start broker %d: %w", b.Config.BrokerID, err)
	}
	lf, err := os.OpenFile(b.Config.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.mu.Unlock()
		return fmt.Errorf("harness: start broker %d: open log: %w", b.Config.BrokerID, err)
	}
	fmt.Fprintf(lf, "=== harness: start %s %s at %s\n", b.Config.Bin, strings.Join(b.args(), " "), time.Now().Format(time.RFC3339Nano))
	// Not exec.CommandContext: the process outlives ctx, which bounds only the start.
	cmd := exec.Command(b.Config.Bin, b.args()...)
	cmd.Env = append(os.Environ(), b.Config.Env...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		b.mu.Unlock()
		return fmt.Errorf("harness: start broker %d: %w", b.Config.BrokerID, err)
	}
	done := make(chan struct{})
	b.cmd, b.done, b.logFile, b.exitCode = cmd, done, lf, -1
	b.mu.Unlock()

	go func() {
		err := cmd.Wait()
		code := cmd.ProcessState.ExitCode()
		if err != nil && code == -1 {
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
		b.mu.Lock()
		b.exitCode = code
		b.mu.Unlock()
		lf.Close()
		close(done)
	}()

	if err := b.waitHealthy(ctx, done); err != nil {
		_ = b.Kill()
		return fmt.Errorf("harness: start broker %d on %s: %w\n--- log tail (%s) ---\n%s",
			b.Config.BrokerID, b.Addr, err, b.Config.LogPath, b.LogTail(60))
	}
	return nil
}

// running reports whether a started process has not exited; b.mu held.
func (b *Broker) running() bool {
	if b.done == nil {
		return false
	}
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

func (b *Broker) waitHealthy(ctx context.Context, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + b.MetricsAddr + "/healthz"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /healthz: status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-done:
			return fmt.Errorf("%w: exited with code %d before /healthz answered", ErrNotHealthy, b.ExitCode())
		case <-ctx.Done():
			return fmt.Errorf("%w: %v (last: %v)", ErrNotHealthy, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func (b *Broker) signal(sig syscall.Signal) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.running() {
		return fmt.Errorf("harness: signal %v to broker %d: %w", sig, b.Config.BrokerID, ErrNotRunning)
	}
	if err := b.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("harness: signal %v to broker %d (pid %d): %w", sig, b.Config.BrokerID, b.cmd.Process.Pid, err)
	}
	return nil
}

func (b *Broker) doneCh() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.done
}

// Kill sends SIGKILL to the broker's PID and waits for it to exit. Killing a
// broker that is not running is not an error.
func (b *Broker) Kill() error {
	done := b.doneCh()
	if done == nil {
		return nil
	}
	if err := b.signal(syscall.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	<-done
	return nil
}

// Stop sends SIGTERM and waits up to 30 s for the broker to exit; if it does
// not, Stop kills it and returns ErrStopTimeout. A paused broker is resumed
// first so that it can act on SIGTERM.
func (b *Broker) Stop() error {
	done := b.doneCh()
	if done == nil {
		return nil
	}
	if err := b.signal(syscall.SIGTERM); err != nil {
		if errors.Is(err, ErrNotRunning) {
			return nil
		}
		return err
	}
	_ = b.signal(syscall.SIGCONT)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		_ = b.Kill()
		return fmt.Errorf("harness: stop broker %d (pid %d): %w", b.Config.BrokerID, b.PID(), ErrStopTimeout)
	}
}

// Restart starts the broker again with the same config and ports. The
// previous process must have exited (Stop or Kill first); if it is still
// running, Restart stops it.
func (b *Broker) Restart(ctx context.Context) error {
	if err := b.Stop(); err != nil {
		return err
	}
	return b.start(ctx)
}

// Pause sends SIGSTOP to the broker.
func (b *Broker) Pause() error { return b.signal(syscall.SIGSTOP) }

// Resume sends SIGCONT to the broker.
func (b *Broker) Resume() error { return b.signal(syscall.SIGCONT) }

// PID returns the PID of the current (or last) process, or 0 if none.
func (b *Broker) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil || b.cmd.Process == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// ExitCode returns the last process's exit code, 128+signal if it was killed
// by a signal, or -1 while it runs (or if it never ran).
func (b *Broker) ExitCode() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.exitCode
}

// LogTail returns the last n lines of the broker's log file.
func (b *Broker) LogTail(n int) string {
	data, err := os.ReadFile(b.Config.LogPath)
	if err != nil {
		return fmt.Sprintf("(read log %s: %v)", b.Config.LogPath, err)
	}
	data = bytes.TrimRight(data, "\n")
	lines := bytes.Split(data, []byte("\n"))
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// StartT starts a broker for a test: t.Fatal on error; on cleanup it kills
// the broker and, if the test failed, logs the broker's log tail.
func StartT(t testing.TB, cfg BrokerConfig) *Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout+5*time.Second)
	defer cancel()
	b, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Kill()
		if t.Failed() {
			t.Logf("broker %d (%s) log tail:\n%s", b.Config.BrokerID, b.Addr, b.LogTail(80))
		}
	})
	return b
}
