// Package miniotest runs a real MinIO server for tests: a child process on a
// free 127.0.0.1 port with its data in a temporary directory, stopped at
// t.Cleanup. The MinIO binary is built once from the Go module proxy and
// cached (Binary); scripts/install-tools.sh builds the same one so `make
// test` never waits for it. It must never be imported by non-test code.
package miniotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Version is the MinIO module version tests run; scripts/install-tools.sh
// names the same one (a test checks).
const Version = "v0.0.0-20260212201848-7aac2a2c5b7c"

const module = "github.com/minio/minio"

// Limits on waiting; every wait here is bounded.
const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
	buildTimeout = 40 * time.Minute
	lockTimeout  = 45 * time.Minute
)

// Server is one running (or stopped) MinIO process.
type Server struct {
	Endpoint  string // http://127.0.0.1:port
	Host      string // 127.0.0.1:port
	AccessKey string
	SecretKey string
	Dir       string // data directory

	bin         string
	port        int
	consolePort int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	logs *tailBuffer
}

// Start runs a MinIO server on a free 127.0.0.1 port with its data in
// t.TempDir(), waits until it is ready, creates the buckets and stops it at
// t.Cleanup.
func Start(t testing.TB, buckets ...string) *Server {
	t.Helper()
	return StartDir(t, t.TempDir(), buckets...)
}

// StartDir is Start with the data in dir (which must exist).
func StartDir(t testing.TB, dir string, buckets ...string) *Server {
	t.Helper()
	bin := Binary(t)
	var key [12]byte
	if _, err := rand.Read(key[:]); err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	s := &Server{
		AccessKey: "strata-test",
		SecretKey: hex.EncodeToString(key[:]),
		Dir:       dir,
		bin:       bin,
		logs:      &tailBuffer{max: 64 << 10},
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a port picked free may be taken before MinIO binds it
		p1, err1 := freePort()
		p2, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("miniotest: pick ports: %v", err)
		}
		if p1 == p2 {
			continue
		}
		s.port, s.consolePort = p1, p2
		s.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(p1))
		s.Endpoint = "http://" + s.Host
		if lastErr = s.launch(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("miniotest: start MinIO: %v\n--- MinIO output (tail) ---\n%s", lastErr, s.logs.String())
	}
	t.Cleanup(s.Stop)
	for _, b := range buckets {
		if err := s.MakeBucket(b); err != nil {
			t.Fatalf("miniotest: %v", err)
		}
	}
	return s
}

// launch starts the process on s.port and waits until it is live.
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	cmd := exec.Command(s.bin, "server",
		"--address", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		"--console-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.consolePort)),
		s.Dir)
	cmd.Env = append(filteredEnv(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1", // accept a data directory on the root disk
	)
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	// If the test binary dies, take MinIO with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	if err := waitLive(s.Endpoint, done); err != nil {
		s.stopLocked()
		return err
	}
	return nil
}

// waitLive polls MinIO's health endpoints until both answer 200, the
// process exits, or readyTimeout passes.
func waitLive(endpoint string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		select {
		case <-exited:
			return errors.New("MinIO exited before it was ready")
		default:
		}
		if healthy(client, endpoint+"/minio/health/live") && healthy(client, endpoint+"/minio/health/ready") {
			return nil
		}
		select {
		case <-exited:
			return errors.New("MinIO exited before it was ready")
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("MinIO not ready at %s after %v", endpoint, readyTimeout)
}

func healthy(c *http.Client, u string) bool {
	resp, err := c.Get(u)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop ends the server gracefully (SIGTERM, then wait). It is idempotent.
// Only if MinIO ignores SIGTERM for stopTimeout is it killed, so a test
// never hangs on it.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill() // by its own PID; bounded wait above failed
		<-done
	}
}

// Running reports whether the process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Restart starts the server again on the same port and data directory (it
// stops it first if it is running): for tests that take MinIO away and
// bring it back.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 10; attempt++ { // the old socket may linger a moment
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("miniotest: restart MinIO on %s: %v\n--- MinIO output (tail) ---\n%s", s.Host, err, s.logs.String())
}

// MakeBucket creates a bucket (no error if it exists).
func (s *Server) MakeBucket(bucket string) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
	if err != nil {
		if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
			return nil
		}
		return fmt.Errorf("make bucket %s: %w", bucket, err)
	}
	return nil
}

// Client returns a minio-go client for the server.
func (s *Server) Client() (*minio.Client, error) {
	c, err := minio.New(s.Host, &minio.Options{
		Creds:      credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("minio client for %s: %w", s.Host, err)
	}
	return c, nil
}

// URL returns a remote.Open URL for bucket/prefix on this server, with its
// credentials inside: scheme "s3" gives
// s3://bucket/prefix?endpoint=...&path_style=true&access_key=..&secret_key=..&region=us-east-1
// and "minio" gives minio://KEY:SECRET@host:port/bucket/prefix?secure=false.
// Any other scheme gives "".
func (s *Server) URL(scheme, bucket, prefix string) string {
	prefix = strings.Trim(prefix, "/")
	switch scheme {
	case "s3":
		q := url.Values{}
		q.Set("endpoint", s.Endpoint)
		q.Set("path_style", "true")
		q.Set("access_key", s.AccessKey)
		q.Set("secret_key", s.SecretKey)
		q.Set("region", "us-east-1")
		return "s3://" + bucket + "/" + prefix + "?" + q.Encode()
	case "minio":
		u := url.URL{
			Scheme:   "minio",
			User:     url.UserPassword(s.AccessKey, s.SecretKey),
			Host:     s.Host,
			Path:     "/" + bucket + "/" + prefix,
			RawQuery: "secure=false",
		}
		return u.String()
	default:
		return ""
	}
}

// Logs returns the tail of MinIO's output.
func (s *Server) Logs() string { return s.logs.String() }

// filteredEnv is the test's environment without MINIO_ variables, so a
// developer's own MinIO settings do not leak into the test server.
func filteredEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	return env
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(bytes.Clone(b.buf))
}

// Binary returns the path of the MinIO binary: $STRATA_MINIO_BIN if set,
// else $HOME/.cache/strata/bin/minio-<Version>. A missing cached binary is
// built with `go install` (minutes on 2 cores) under a lock file, so test
// packages running in parallel build it once; in -short mode the test is
// skipped instead.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("STRATA_MINIO_BIN"); p != "" {
		if err := executable(p); err != nil {
			t.Fatalf("miniotest: STRATA_MINIO_BIN=%s: %v", p, err)
		}
		return p
	}
	path, err := CachedBinaryPath()
	if err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	if executable(path) == nil {
		return path
	}
	if testing.Short() {
		t.Skipf("miniotest: MinIO binary %s not built and -short given (run `make tools` or scripts/install-tools.sh)", path)
	}
	t.Logf("miniotest: building MinIO %s into %s; this takes several minutes on 2 cores (once; `make tools` does it ahead)", Version, path)
	start := time.Now()
	if err := build(path); err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	t.Logf("miniotest: MinIO ready after %v", time.Since(start).Round(time.Second))
	return path
}

// CachedBinaryPath is where Binary keeps the MinIO it builds.
func CachedBinaryPath() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find home directory for the MinIO cache: %w", err)
	}
	return filepath.Join(home, ".cache", "strata", "bin", "minio-"+Version), nil
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// build installs MinIO to path, holding path+".lock" meanwhile.
func build(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	defer lock.Close()
	deadline := time.Now().Add(lockTimeout)
	for {
		err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock %s: %w", lock.Name(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("another process held %s for %v", lock.Name(), lockTimeout)
		}
		time.Sleep(2 * time.Second)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if executable(path) == nil { // built by whoever held the lock
		return nil
	}
	tmp, err := os.MkdirTemp(dir, ".minio-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", module+"@"+Version)
	cmd.Dir = tmp // outside any module
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go install %s@%s: %w\n%s", module, Version, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "minio"), path); err != nil {
		return fmt.Errorf("install MinIO binary: %w", err)
	}
	return nil
}
